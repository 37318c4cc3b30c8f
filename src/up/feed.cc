#include "up/feed.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "common/logging.h"
#include "registry/http_client.h"

namespace edgeloop::up {
namespace {

using Json = nlohmann::json;
constexpr size_t kScoredCap = 20'000;

std::string RandomHex(int bytes) {
  std::random_device device;
  std::string out;
  char buffer[3];
  for (int i = 0; i < bytes; ++i) {
    std::snprintf(buffer, sizeof(buffer), "%02x", device() & 0xff);
    out += buffer;
  }
  return out;
}

struct Answer {
  int status = 0;
  std::string body;
};

StatusOr<Answer> Post(registry::HttpClient& client, const std::string& url, const std::string& body,
                      const std::vector<std::string>& headers) {
  registry::StringBody request_body(body);
  registry::HttpRequest request;
  request.method = "POST";
  request.url = url;
  request.headers = headers;
  request.headers.push_back("Content-Type: application/json");
  request.body = &request_body;
  ASSIGN_OR_RETURN(registry::HttpResponse response, client.Send(request));
  return Answer{response.status, std::move(response.body)};
}

}  // namespace

FeedStats::FeedStats(size_t rolling_window, double threshold)
    : window_(std::max<size_t>(1, rolling_window)), threshold_(threshold) {}

void FeedStats::Add(const std::string& version, int phase, int label, double probability) {
  const bool correct = (probability >= threshold_) == (label == 1);
  std::lock_guard<std::mutex> lock(mu_);
  Cell& cell = cells_[version][phase];
  ++cell.rows;
  cell.correct += correct;
  if (cell.scored.size() < kScoredCap) cell.scored.emplace_back(probability, label);
  if (recent_.size() < window_) {
    recent_.push_back(correct);
  } else {
    recent_correct_ -= recent_[recent_next_];
    recent_[recent_next_] = correct;
    recent_next_ = (recent_next_ + 1) % window_;
  }
  recent_correct_ += correct;
}

double FeedStats::Auc(const std::vector<std::pair<double, int>>& scored) {
  std::vector<std::pair<double, int>> sorted = scored;
  std::sort(sorted.begin(), sorted.end());
  double positives = 0, negatives = 0, rank_sum = 0;
  // Average ranks over ties (Mann-Whitney U).
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j < sorted.size() && sorted[j].first == sorted[i].first) ++j;
    const double average_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    for (size_t k = i; k < j; ++k) {
      if (sorted[k].second == 1) {
        positives += 1;
        rank_sum += average_rank;
      } else {
        negatives += 1;
      }
    }
    i = j;
  }
  if (positives == 0 || negatives == 0) return std::nan("");
  return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives);
}

double FeedStats::RollingAccuracy() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (recent_.empty()) return std::nan("");
  return static_cast<double>(recent_correct_) / static_cast<double>(recent_.size());
}

std::string FeedStats::ToJson() const {
  const double rolling = RollingAccuracy();
  Json out;
  out["rolling_accuracy"] = std::isnan(rolling) ? Json(nullptr) : Json(rolling);
  out["threshold"] = threshold_;
  Json versions = Json::object();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [version, phases] : cells_) {
    Json v = Json::object();
    for (const auto& [phase, cell] : phases) {
      const double auc = Auc(cell.scored);
      v[std::to_string(phase)] = {
          {"rows", cell.rows},
          {"accuracy", static_cast<double>(cell.correct) / static_cast<double>(cell.rows)},
          {"auc", std::isnan(auc) ? Json(nullptr) : Json(auc)}};
    }
    versions[version] = std::move(v);
  }
  out["versions"] = std::move(versions);
  return out.dump();
}

Feed::Feed(FeedOptions options, std::vector<DemoRow> rows)
    : options_(std::move(options)), rows_(std::move(rows)), position_(options_.start) {}

std::string Feed::CurrentVersion() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_version_;
}

std::string Feed::StateJson() const {
  Json out = Json::parse(stats_.ToJson());
  const size_t position = position_.load();
  out["position"] = position;
  out["total"] = rows_.size();
  out["requests"] = requests_.load();
  out["feedback"] = feedback_.load();
  out["errors"] = errors_.load();
  if (position > 0 && position <= rows_.size()) {
    const DemoRow& row = rows_[position - 1];
    out["sim_time"] = DemoCsvRow(row).substr(0, 20);
    out["phase"] = row.phase;
  }
  std::lock_guard<std::mutex> lock(mu_);
  out["current_version"] = current_version_;
  out["last_error"] = last_error_;
  return out.dump();
}

void Feed::WriteState() const {
  if (options_.state_file.empty()) return;
  const std::filesystem::path tmp = options_.state_file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << StateJson() << "\n";
    if (!out) return;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, options_.state_file, ec);
}

Status Feed::Run(const std::atomic<bool>& stop) {
  registry::HttpClientOptions client_options;
  client_options.timeout_ms = 10'000;
  client_options.connect_timeout_ms = 2'000;
  ASSIGN_OR_RETURN(std::unique_ptr<registry::HttpClient> client,
                   registry::HttpClient::Create(client_options));
  const std::string infer_url = options_.serve_url + "/v2/models/" + options_.model + "/infer";
  const std::string feedback_url =
      options_.serve_url + "/v2/models/" + options_.model + "/feedback";
  const std::string run = RandomHex(4);
  const double rate = std::max(0.01, options_.rows_per_second);
  const auto started = std::chrono::steady_clock::now();
  const size_t first = position_.load();
  auto last_write = started;
  auto note_error = [&](const std::string& what) {
    errors_.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu_);
    if (what != last_error_) log::Warn("feed", {{"error", what}});
    last_error_ = what;
  };

  for (size_t i = first; i < rows_.size() && !stop.load();) {
    const auto due =
        started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      std::chrono::duration<double>(static_cast<double>(i - first) / rate));
    while (!stop.load() && std::chrono::steady_clock::now() < due) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          due - std::chrono::steady_clock::now(), std::chrono::milliseconds(50)));
    }
    if (stop.load()) break;
    const DemoRow& row = rows_[i];
    const std::string request_id = "feed-" + run + "-" + std::to_string(i);
    Json request = {{"id", request_id},
                    {"inputs",
                     {{{"name", options_.input_name},
                       {"datatype", "FP32"},
                       {"shape", {1, row.features.size()}},
                       {"data", row.features}}}}};
    auto answer =
        Post(*client, infer_url, request.dump(), {"X-Edgeloop-Route-Key: " + row.machine_id});
    if (!answer.ok() || answer->status == 503) {
      // The server is away (restarting, draining) or not ready: wait and send the row again.
      note_error(answer.ok() ? "infer: 503 " + answer->body : answer.status().ToString());
      for (int k = 0; k < 20 && !stop.load(); ++k) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      continue;
    }
    requests_.fetch_add(1);
    ++i;
    position_.store(i);
    if (answer->status != 200) {
      note_error("infer: HTTP " + std::to_string(answer->status) + " " + answer->body);
      continue;
    }
    Json response = Json::parse(answer->body, nullptr, false);
    double probability = std::nan("");
    std::string version;
    if (response.is_object()) {
      version = response.value("model_version", "");
      for (const Json& output : response.value("outputs", Json::array())) {
        if (output.value("name", "") == "probability" && output.contains("data") &&
            !output["data"].empty() && output["data"][0].is_number()) {
          probability = output["data"][0].get<double>();
        }
      }
    }
    if (std::isnan(probability)) {
      note_error("infer: no probability in " + answer->body.substr(0, 200));
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (version != current_version_ && !current_version_.empty()) {
        log::Info("the edge answers with a new model version",
                  {{"from", current_version_}, {"to", version}});
      }
      current_version_ = version;
    }
    stats_.Add(version, row.phase, row.failure, probability);
    // The operator who checked the machine confirms what happened. Their id stays on site: the
    // compliance policy lets the label leave, never the comment.
    Json feedback = {{"request_id", request_id},
                     {"label", row.failure},
                     {"comment", "checked by " + row.operator_id}};
    auto sent = Post(*client, feedback_url, feedback.dump(), {});
    if (sent.ok() && sent->status == 201) {
      feedback_.fetch_add(1);
    } else {
      note_error(sent.ok() ? "feedback: HTTP " + std::to_string(sent->status) + " " + sent->body
                           : sent.status().ToString());
    }
    if (std::chrono::steady_clock::now() - last_write > std::chrono::seconds(2)) {
      WriteState();
      last_write = std::chrono::steady_clock::now();
    }
  }
  WriteState();
  return Status::Ok();
}

size_t SavedFeedPosition(const std::filesystem::path& state_file) {
  std::ifstream in(state_file);
  if (!in) return 0;
  Json state = Json::parse(in, nullptr, false);
  if (!state.is_object() || !state.contains("position") ||
      !state["position"].is_number_unsigned()) {
    return 0;
  }
  return state["position"].get<size_t>();
}

}  // namespace edgeloop::up
