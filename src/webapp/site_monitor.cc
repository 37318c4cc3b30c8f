#include "webapp/site_monitor.h"

#include <curl/curl.h>

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

namespace edgeloop::webapp {
namespace {

using JsonValue = nlohmann::json;

size_t Append(char* data, size_t size, size_t count, void* out) {
  auto* body = static_cast<std::string*>(out);
  if (body->size() > (8 << 20)) return 0;  // a metrics page is never this large
  body->append(data, size * count);
  return size * count;
}

StatusOr<std::string> CurlGet(const std::string& url) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return InternalError("curl_easy_init failed");
  std::string body;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 2000L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  const CURLcode code = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (code != CURLE_OK) return UnavailableError(curl_easy_strerror(code));
  if (status != 200) return UnavailableError("HTTP " + std::to_string(status));
  return body;
}

int64_t WallMs(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock.WallNow().time_since_epoch())
      .count();
}

}  // namespace

std::vector<Sample> ParsePrometheusText(std::string_view text) {
  std::vector<Sample> samples;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    if (line.empty() || line[0] == '#') continue;
    Sample sample;
    size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string_view::npos) continue;
    sample.name = std::string(line.substr(0, name_end));
    std::string_view rest = line.substr(name_end);
    if (rest[0] == '{') {
      const size_t close = rest.rfind('}');
      if (close == std::string_view::npos) continue;
      sample.labels = std::string(rest.substr(1, close - 1));
      rest.remove_prefix(close + 1);
    }
    while (!rest.empty() && rest[0] == ' ') rest.remove_prefix(1);
    const size_t value_end = rest.find(' ');
    std::string_view value = rest.substr(0, value_end);
    if (value == "+Inf") {
      sample.value = HUGE_VAL;
    } else {
      const auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), sample.value);
      if (ec != std::errc() || p != value.data() + value.size()) continue;
    }
    samples.push_back(std::move(sample));
  }
  return samples;
}

double SumOf(const std::vector<Sample>& samples, std::string_view name,
             std::string_view labels_contain) {
  double sum = 0;
  for (const Sample& sample : samples) {
    if (sample.name != name) continue;
    if (!labels_contain.empty() && sample.labels.find(labels_contain) == std::string::npos)
      continue;
    sum += sample.value;
  }
  return sum;
}

StatusOr<std::unique_ptr<SiteMonitor>> SiteMonitor::Create(SiteMonitorOptions options) {
  if (!options.uplink_status_url.empty() && options.uplink_status_url.rfind("http://", 0) != 0 &&
      options.uplink_status_url.rfind("https://", 0) != 0) {
    return InvalidArgumentError("--uplink-status-url must be an http:// or https:// URL, got '" +
                                options.uplink_status_url + "'");
  }
  if (!options.fetch) options.fetch = CurlGet;
  return std::unique_ptr<SiteMonitor>(new SiteMonitor(std::move(options)));
}

SiteMonitor::SiteMonitor(SiteMonitorOptions options) : options_(std::move(options)) {
  uplink_since_ms_ = WallMs(*options_.clock);
}

SiteMonitor::~SiteMonitor() { Stop(); }

void SiteMonitor::Poll() {
  std::string queue_json = "null";
  if (options_.queue != nullptr || !options_.queue_url.empty()) {
    queue::Queue* queue = options_.queue;
    Status open_status;
    if (queue == nullptr) {
      if (owned_queue_ == nullptr) {
        queue::QueueOptions queue_options;
        queue_options.url = options_.queue_url;
        queue_options.read_only = true;
        auto opened = queue::Queue::Open(queue_options);
        if (opened.ok()) {
          owned_queue_ = std::move(*opened);
        } else {
          open_status = opened.status();
        }
      }
      queue = owned_queue_.get();
    }
    JsonValue q = {{"url", options_.queue_url}};
    if (queue == nullptr) {
      q["error"] = open_status.message();
    } else {
      auto stats = queue->Stats();
      if (!stats.ok()) {
        q["error"] = stats.status().message();
        owned_queue_.reset();  // reopen on the next poll
      } else {
        int64_t dropped = 0;
        for (const auto& [reason, n] : stats->drops) dropped += n;
        q.update({{"backend", stats->backend},
                  {"depth", stats->ready + stats->leased + stats->retry},
                  {"ready", stats->ready},
                  {"leased", stats->leased},
                  {"retry", stats->retry},
                  {"oldest_age_ms", stats->oldest_age_ms},
                  {"dead_letters", stats->dlq_size},
                  {"bytes", stats->bytes},
                  {"max_bytes", stats->max_bytes},
                  {"dropped", dropped},
                  {"appended_total", stats->appended_total},
                  {"acked_total", stats->acked_total}});
      }
    }
    queue_json = q.dump();
  }

  std::string state = "unknown";
  std::string error;
  JsonValue uplink = JsonValue::object();
  if (!options_.uplink_status_url.empty()) {
    auto body = options_.fetch(options_.uplink_status_url);
    if (!body.ok()) {
      state = "unreachable";
      error = body.status().message();
    } else {
      const std::vector<Sample> samples = ParsePrometheusText(*body);
      state = SumOf(samples, "edgeloop_worker_held_back") > 0 ? "offline" : "online";
      uplink = {{"backlog", SumOf(samples, "edgeloop_worker_backlog_events")},
                {"oldest_unsent_s", SumOf(samples, "edgeloop_worker_oldest_unsent_age_seconds")},
                {"drain_rate", SumOf(samples, "edgeloop_worker_drain_rate_events_per_second")},
                {"dead_letters", SumOf(samples, "edgeloop_worker_dead_letter_events")},
                {"sent_total", SumOf(samples, "edgeloop_worker_events_total", "acked")}};
    }
  }
  const int64_t now_ms = WallMs(*options_.clock);
  std::lock_guard<std::mutex> lock(mu_);
  queue_json_ = std::move(queue_json);
  if (state != uplink_state_) {
    uplink_state_ = state;
    uplink_since_ms_ = now_ms;
  }
  uplink_error_ = error;
  uplink_json_ = uplink.dump();
}

void SiteMonitor::Start(std::chrono::milliseconds interval) {
  thread_ = std::thread([this, interval] {
    while (true) {
      Poll();
      std::unique_lock<std::mutex> lock(mu_);
      if (wake_.wait_for(lock, interval, [this] { return stopping_; })) return;
    }
  });
}

void SiteMonitor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string SiteMonitor::Json() const {
  std::lock_guard<std::mutex> lock(mu_);
  JsonValue uplink = JsonValue::parse(uplink_json_);
  uplink["state"] = uplink_state_;
  uplink["since_ms"] = uplink_since_ms_;
  uplink["url"] = options_.uplink_status_url;
  if (!uplink_error_.empty()) uplink["error"] = uplink_error_;
  return "{\"queue\":" + queue_json_ + ",\"uplink\":" + uplink.dump() + "}";
}

std::string SiteMonitor::uplink_state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return uplink_state_;
}

}  // namespace edgeloop::webapp
