#include "functions/upload.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/logging.h"
#include "functions/compliance.h"
#include "functions/crypto.h"

namespace edgeloop::functions {
namespace {

using Json = nlohmann::json;

Status WriteAll(int fd, std::string_view data, const std::string& what) {
  size_t written = 0;
  while (written < data.size()) {
    const ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return UnavailableError("cannot write " + what + ": " + std::strerror(errno));
    written += static_cast<size_t>(n);
  }
  return Status::Ok();
}

class FolderSink : public Sink {
 public:
  explicit FolderSink(std::filesystem::path dir) : dir_(std::move(dir)) {}

  std::string Describe() const override { return "folder:" + dir_.string(); }

  Status Probe() override {
    if (::access(dir_.c_str(), W_OK | X_OK) != 0) {
      return UnavailableError("the folder " + dir_.string() +
                              " is not writable: " + std::strerror(errno));
    }
    return Status::Ok();
  }

  SendOutcome Send(const Batch& batch, const Context&) override {
    SendOutcome outcome;
    if (Status probe = Probe(); !probe.ok()) {
      outcome.kind = SendOutcome::Kind::kUnavailable;
      outcome.error = probe.message();
      return outcome;
    }
    std::string name = batch.key + ".jsonl";
    if (!EncodingExtension(batch.encoding).empty()) {
      name += "." + std::string(EncodingExtension(batch.encoding));
    }
    const std::filesystem::path final_path = dir_ / name;
    std::error_code ec;
    if (std::filesystem::exists(final_path, ec)) {
      outcome.duplicates = static_cast<int64_t>(batch.ids.size());
      return outcome;
    }
    const std::filesystem::path temp =
        dir_ / (".tmp-" + batch.key + "-" + std::to_string(::getpid()) + "-" +
                std::to_string(std::hash<std::thread::id>()(std::this_thread::get_id())));
    Status status = WriteFile(temp, final_path, batch.body);
    if (!status.ok()) {
      std::filesystem::remove(temp, ec);
      outcome.kind = SendOutcome::Kind::kUnavailable;
      outcome.error = status.message();
      return outcome;
    }
    outcome.accepted = static_cast<int64_t>(batch.ids.size());
    return outcome;
  }

 private:
  Status WriteFile(const std::filesystem::path& temp, const std::filesystem::path& final_path,
                   std::string_view body) {
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
      return UnavailableError("cannot create " + temp.string() + ": " + std::strerror(errno));
    Status status = WriteAll(fd, body, temp.string());
    if (status.ok() && ::fsync(fd) != 0) {
      status = UnavailableError("cannot sync " + temp.string() + ": " + std::strerror(errno));
    }
    ::close(fd);
    RETURN_IF_ERROR(status);
    if (::rename(temp.c_str(), final_path.c_str()) != 0) {
      return UnavailableError("cannot rename into " + final_path.string() + ": " +
                              std::strerror(errno));
    }
    const int dir_fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      ::fsync(dir_fd);
      ::close(dir_fd);
    }
    return Status::Ok();
  }

  const std::filesystem::path dir_;
};

size_t AppendToString(char* data, size_t size, size_t count, void* user) {
  auto* out = static_cast<std::string*>(user);
  // Bound what a misbehaving destination can make us hold.
  if (out->size() + size * count > (size_t{4} << 20)) return 0;
  out->append(data, size * count);
  return size * count;
}

size_t CollectHeader(char* data, size_t size, size_t count, void* user) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(user);
  std::string line(data, size * count);
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string value = line.substr(colon + 1);
    const auto first = value.find_first_not_of(" \t");
    const auto last = value.find_last_not_of(" \t\r\n");
    (*headers)[name] = first == std::string::npos ? "" : value.substr(first, last - first + 1);
  }
  return size * count;
}

int CancelCheck(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* context = static_cast<const Context*>(user);
  return context != nullptr && context->IsCancelled() ? 1 : 0;
}

void GlobalCurlInit() {
  static const bool done = [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return true;
  }();
  (void)done;
}

class HttpSink : public Sink {
 public:
  explicit HttpSink(HttpSinkOptions options) : options_(std::move(options)) {}

  std::string Describe() const override { return options_.url; }

 private:
  void SetTlsOptions(CURL* curl) const {
    if (!options_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());
    if (!options_.client_cert_file.empty()) {
      curl_easy_setopt(curl, CURLOPT_SSLCERT, options_.client_cert_file.c_str());
      curl_easy_setopt(curl, CURLOPT_SSLKEY, options_.client_key_file.c_str());
    }
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
  }

 public:
  Status Probe() override {
    CURL* curl = curl_easy_init();
    if (curl == nullptr) return InternalError("curl_easy_init failed");
    std::string body;
    curl_easy_setopt(curl, CURLOPT_URL, options_.health_url.c_str());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options_.connect_timeout.count()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendToString);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    SetTlsOptions(curl);
    const CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    if (code != CURLE_OK) {
      return UnavailableError(options_.health_url + ": " + curl_easy_strerror(code));
    }
    // Reachable and not overloaded is enough: a hub without the health route (404) or one that
    // would refuse our token (401) is up, and the upload itself then says what is wrong.
    if (status == 429 || status >= 500 || status < 200) {
      return UnavailableError(options_.health_url + " answered " + std::to_string(status));
    }
    return Status::Ok();
  }

  SendOutcome Send(const Batch& batch, const Context& context) override {
    SendOutcome outcome;
    CURL* curl = curl_easy_init();
    if (curl == nullptr) {
      outcome.kind = SendOutcome::Kind::kUnavailable;
      outcome.error = "curl_easy_init failed";
      return outcome;
    }
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/x-ndjson");
    if (batch.encoding != Encoding::kIdentity) {
      headers = curl_slist_append(
          headers, ("Content-Encoding: " + std::string(EncodingName(batch.encoding))).c_str());
    }
    headers = curl_slist_append(headers, ("Idempotency-Key: " + batch.key).c_str());
    headers = curl_slist_append(headers, "Expect:");
    if (!options_.token.empty()) {
      headers = curl_slist_append(headers, ("Authorization: Bearer " + options_.token).c_str());
    }
    std::string response;
    std::map<std::string, std::string> response_headers;
    curl_easy_setopt(curl, CURLOPT_URL, options_.url.c_str());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, batch.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(batch.body.size()));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options_.connect_timeout.count()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendToString);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, CollectHeader);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response_headers);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, CancelCheck);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &context);
    SetTlsOptions(curl);
    const CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);

    if (code != CURLE_OK) {
      outcome.kind = SendOutcome::Kind::kUnavailable;
      outcome.error = options_.url + ": " + curl_easy_strerror(code);
      return outcome;
    }
    if (status == 429 || status >= 500) {
      outcome.kind = SendOutcome::Kind::kUnavailable;
      outcome.error = options_.url + " answered " + std::to_string(status);
      if (auto it = response_headers.find("retry-after"); it != response_headers.end()) {
        char* end = nullptr;
        const long seconds = std::strtol(it->second.c_str(), &end, 10);
        if (end != it->second.c_str() && *end == '\0' && seconds >= 0) {
          outcome.retry_after = std::chrono::seconds(std::min<long>(seconds, 86'400));
        }
      }
      return outcome;
    }
    if (status < 200 || status >= 300) {
      outcome.kind = SendOutcome::Kind::kRefused;
      Json error = Json::parse(response, nullptr, false);
      std::string message =
          error.is_object() && error.contains("error") && error["error"].is_string()
              ? error["error"].get<std::string>()
              : response.substr(0, 200);
      outcome.error =
          options_.url + " refused the batch (" + std::to_string(status) + "): " + message;
      return outcome;
    }
    Json body = Json::parse(response, nullptr, false);
    if (!body.is_object() || !body.contains("accepted") || !body["accepted"].is_number_integer()) {
      // A 2xx without the agreed answer: the destination is not what we expect; do not count
      // the events as delivered.
      outcome.kind = SendOutcome::Kind::kUnavailable;
      outcome.error = options_.url + " answered " + std::to_string(status) +
                      " without the ingest response body";
      return outcome;
    }
    outcome.accepted = body["accepted"].get<int64_t>();
    if (body.contains("duplicates") && body["duplicates"].is_number_integer()) {
      outcome.duplicates = body["duplicates"].get<int64_t>();
    }
    if (body.contains("rejected") && body["rejected"].is_array()) {
      for (const Json& item : body["rejected"]) {
        if (!item.is_object() || !item.contains("id") || !item["id"].is_string()) continue;
        std::string error = item.contains("error") && item["error"].is_string()
                                ? item["error"].get<std::string>()
                                : "rejected";
        outcome.rejected.emplace_back(item["id"].get<std::string>(), std::move(error));
      }
    }
    return outcome;
  }

 private:
  const HttpSinkOptions options_;
};

bool DefaultWait(std::chrono::nanoseconds delay, const Context& context) {
  const auto deadline = std::chrono::steady_clock::now() + delay;
  while (std::chrono::steady_clock::now() < deadline) {
    if (context.IsCancelled()) return false;
    std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(
        deadline - std::chrono::steady_clock::now(), std::chrono::milliseconds(100)));
  }
  return !context.IsCancelled();
}

}  // namespace

StatusOr<Encoding> ParseEncoding(std::string_view text) {
  if (text == "zstd") return Encoding::kZstd;
  if (text == "gzip") return Encoding::kGzip;
  if (text == "identity" || text == "none") return Encoding::kIdentity;
  return InvalidArgumentError("unknown compression '" + std::string(text) +
                              "' (zstd, gzip or identity)");
}

std::string_view EncodingName(Encoding encoding) {
  switch (encoding) {
    case Encoding::kZstd:
      return "zstd";
    case Encoding::kGzip:
      return "gzip";
    case Encoding::kIdentity:
      return "identity";
  }
  return "identity";
}

std::string_view EncodingExtension(Encoding encoding) {
  switch (encoding) {
    case Encoding::kZstd:
      return "zst";
    case Encoding::kGzip:
      return "gz";
    case Encoding::kIdentity:
      return "";
  }
  return "";
}

StatusOr<std::string> Compress(std::string_view data, Encoding encoding) {
  if (encoding == Encoding::kIdentity) return std::string(data);
  if (encoding == Encoding::kZstd) {
    std::string out(ZSTD_compressBound(data.size()), '\0');
    const size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
    if (ZSTD_isError(n)) return InternalError(std::string("zstd: ") + ZSTD_getErrorName(n));
    out.resize(n);
    return out;
  }
  z_stream stream{};
  // windowBits 15 + 16: a gzip wrapper.
  if (deflateInit2(&stream, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return InternalError("zlib: deflateInit2 failed");
  }
  std::string out(deflateBound(&stream, data.size()), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  const int result = deflate(&stream, Z_FINISH);
  const size_t produced = stream.total_out;
  deflateEnd(&stream);
  if (result != Z_STREAM_END) return InternalError("zlib: deflate did not finish");
  out.resize(produced);
  return out;
}

StatusOr<std::string> Decompress(std::string_view data, Encoding encoding, size_t max_bytes) {
  if (encoding == Encoding::kIdentity) return std::string(data);
  std::string out;
  if (encoding == Encoding::kZstd) {
    ZSTD_DStream* stream = ZSTD_createDStream();
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    std::string chunk(ZSTD_DStreamOutSize(), '\0');
    size_t last = 1;
    while (in.pos < in.size) {
      ZSTD_outBuffer buffer{chunk.data(), chunk.size(), 0};
      last = ZSTD_decompressStream(stream, &buffer, &in);
      if (ZSTD_isError(last)) {
        ZSTD_freeDStream(stream);
        return InvalidArgumentError(std::string("not valid zstd: ") + ZSTD_getErrorName(last));
      }
      out.append(chunk.data(), buffer.pos);
      if (out.size() > max_bytes) {
        ZSTD_freeDStream(stream);
        return InvalidArgumentError("the decompressed body is too large");
      }
    }
    ZSTD_freeDStream(stream);
    if (last != 0) return InvalidArgumentError("truncated zstd data");
    return out;
  }
  z_stream stream{};
  if (inflateInit2(&stream, 15 + 16) != Z_OK) return InternalError("zlib: inflateInit2 failed");
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  char chunk[64 << 10];
  int result = Z_OK;
  while (result != Z_STREAM_END) {
    stream.next_out = reinterpret_cast<Bytef*>(chunk);
    stream.avail_out = sizeof(chunk);
    result = inflate(&stream, Z_NO_FLUSH);
    if (result != Z_OK && result != Z_STREAM_END) {
      inflateEnd(&stream);
      return InvalidArgumentError("not valid gzip data");
    }
    out.append(chunk, sizeof(chunk) - stream.avail_out);
    if (out.size() > max_bytes) {
      inflateEnd(&stream);
      return InvalidArgumentError("the decompressed body is too large");
    }
    if (result == Z_OK && stream.avail_in == 0 && stream.avail_out != 0) {
      inflateEnd(&stream);
      return InvalidArgumentError("truncated gzip data");
    }
  }
  inflateEnd(&stream);
  return out;
}

std::string BatchKey(std::string_view destination, std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  std::string text(destination);
  text.push_back('\n');
  for (const std::string& id : ids) text += id + "\n";
  return Sha256Hex(text);
}

std::unique_ptr<Sink> MakeFolderSink(std::filesystem::path dir) {
  return std::make_unique<FolderSink>(std::move(dir));
}

StatusOr<std::unique_ptr<Sink>> MakeHttpSink(HttpSinkOptions options) {
  if (options.url.rfind("http://", 0) != 0 && options.url.rfind("https://", 0) != 0) {
    return InvalidArgumentError("upload url must start with http:// or https://: " + options.url);
  }
  const bool tls_files = !options.ca_file.empty() || !options.client_cert_file.empty() ||
                         !options.client_key_file.empty();
  if (tls_files && options.url.rfind("https://", 0) != 0) {
    return InvalidArgumentError("upload: ca_file and client certificates need an https:// url: " +
                                options.url);
  }
  if (options.client_cert_file.empty() != options.client_key_file.empty()) {
    return InvalidArgumentError("upload: give both client_cert_file and client_key_file");
  }
  if (options.health_url.empty()) {
    const size_t slash = options.url.find_last_of('/');
    const size_t scheme_end = options.url.find("://") + 3;
    options.health_url = slash != std::string::npos && slash >= scheme_end
                             ? options.url.substr(0, slash) + "/health"
                             : options.url + "/health";
  }
  GlobalCurlInit();
  return std::unique_ptr<Sink>(new HttpSink(std::move(options)));
}

RateLimiter::RateLimiter(int64_t bytes_per_second, Clock* clock)
    : rate_(bytes_per_second), clock_(clock), next_free_(clock->Now()) {}

std::chrono::nanoseconds RateLimiter::Reserve(int64_t bytes) {
  if (rate_ <= 0) return std::chrono::nanoseconds(0);
  std::lock_guard<std::mutex> lock(mu_);
  const Clock::SteadyTime now = clock_->Now();
  // Idle time earns credit only up to now: with the one-second allowance below, that is a
  // burst of one second's worth of bytes.
  if (next_free_ < now) next_free_ = now;
  const auto cost = std::chrono::nanoseconds(
      static_cast<int64_t>(static_cast<double>(bytes) * 1e9 / static_cast<double>(rate_)));
  next_free_ += cost;
  // The bytes may go once the reservation, less the burst allowance, is paid off.
  const Clock::SteadyTime allowed = next_free_ - std::chrono::seconds(1);
  return allowed > now ? std::chrono::duration_cast<std::chrono::nanoseconds>(allowed - now)
                       : std::chrono::nanoseconds(0);
}

UploadFunction::UploadFunction(UploadOptions options)
    : options_(std::move(options)),
      name_("upload:" + options_.destination),
      limiter_(options_.bandwidth_bytes_per_second, options_.clock) {
  if (!options_.wait) options_.wait = DefaultWait;
  if (options_.metrics != nullptr) {
    const std::string& d = options_.destination;
    auto* requests = options_.metrics->AddCounter(
        "edgeloop_upload_requests_total",
        "Upload requests by result: ok, unavailable (down, 429, 5xx), refused (other 4xx)",
        {"destination", "result"});
    requests_ok_ = requests->With({d, "ok"});
    requests_unavailable_ = requests->With({d, "unavailable"});
    requests_refused_ = requests->With({d, "refused"});
    auto* events = options_.metrics->AddCounter(
        "edgeloop_upload_events_total",
        "Events the destination answered for: accepted, duplicate (already had it), rejected",
        {"destination", "outcome"});
    events_accepted_ = events->With({d, "accepted"});
    events_duplicate_ = events->With({d, "duplicate"});
    events_rejected_ = events->With({d, "rejected"});
    wire_bytes_ = options_.metrics
                      ->AddCounter("edgeloop_upload_bytes_total",
                                   "Compressed bytes sent (request bodies)", {"destination"})
                      ->With({d});
    raw_bytes_ = options_.metrics
                     ->AddCounter("edgeloop_upload_uncompressed_bytes_total",
                                  "JSON Lines bytes before compression", {"destination"})
                     ->With({d});
  }
}

StatusOr<std::unique_ptr<UploadFunction>> UploadFunction::Create(UploadOptions options) {
  if (options.destination.empty())
    return InvalidArgumentError("upload: a destination name is required");
  if (!options.sink) return InvalidArgumentError("upload: a sink is required");
  if (options.bandwidth_bytes_per_second < 0) {
    return InvalidArgumentError("upload: the bandwidth cap must not be negative");
  }
  if (options.max_request_bytes == 0) {
    return InvalidArgumentError("upload: max request bytes must be positive");
  }
  return std::unique_ptr<UploadFunction>(new UploadFunction(std::move(options)));
}

Status UploadFunction::Run(std::vector<Record>& records, std::vector<Result>& results,
                           Context& context) {
  if (!context.compliance) {
    return FailedPreconditionError(
        "upload refused: the batch passed no compliance stage (put `compliance` before "
        "`upload`)");
  }
  // Lanes: priority → members, highest priority first.
  std::map<int, std::vector<size_t>, std::greater<int>> lanes;
  for (size_t i = 0; i < records.size(); ++i) {
    if (results[i].disposition != Disposition::kContinue || records[i].absorbed_into >= 0) {
      continue;
    }
    lanes[records[i].priority].push_back(i);
  }
  Status status;
  for (const auto& [priority, members] : lanes) {
    std::vector<size_t> chunk;
    size_t chunk_bytes = 0;
    for (size_t i : members) {
      // Lines are measured once here and serialised again in SendChunk: cheap next to I/O.
      const size_t bytes = records[i].body.dump().size() + 1;
      if (!chunk.empty() && chunk_bytes + bytes > options_.max_request_bytes) {
        status = SendChunk(chunk, priority, records, results, context);
        if (!status.ok()) break;
        chunk.clear();
        chunk_bytes = 0;
      }
      chunk.push_back(i);
      chunk_bytes += bytes;
    }
    if (status.ok() && !chunk.empty())
      status = SendChunk(chunk, priority, records, results, context);
    if (!status.ok()) break;
  }
  // Records absorbed into an aggregate end as their aggregate did.
  for (size_t i = 0; i < records.size(); ++i) {
    const int leader = records[i].absorbed_into;
    if (leader >= 0 && results[i].disposition == Disposition::kContinue &&
        results[static_cast<size_t>(leader)].disposition != Disposition::kContinue) {
      results[i] = results[static_cast<size_t>(leader)];
    }
  }
  return status;
}

Status UploadFunction::SendChunk(const std::vector<size_t>& members, int priority,
                                 std::vector<Record>& records, std::vector<Result>& results,
                                 Context& context) {
  Batch batch;
  batch.encoding = options_.encoding;
  batch.priority = priority;
  std::string lines;
  std::vector<std::string> fields;
  std::map<std::string, size_t> by_id;
  for (size_t i : members) {
    Json& body = records[i].body;
    // The event id always travels (it is random, not personal): consumers dedupe on it.
    if (!body.contains("id")) body["id"] = records[i].id;
    const std::string id = body["id"].is_string() ? body["id"].get<std::string>() : records[i].id;
    batch.ids.push_back(id);
    by_id[id] = i;
    lines += body.dump(-1, ' ', false, Json::error_handler_t::replace);
    lines.push_back('\n');
    CollectLeafPaths(body, &fields);
  }
  batch.key = BatchKey(options_.destination, batch.ids);
  batch.raw_bytes = lines.size();
  ASSIGN_OR_RETURN(batch.body, Compress(lines, options_.encoding));

  const auto delay = limiter_.Reserve(static_cast<int64_t>(batch.body.size()));
  if (delay.count() > 0 && !options_.wait(delay, context)) {
    return CancelledError("upload cancelled while waiting for bandwidth");
  }
  if (context.IsCancelled()) return CancelledError("upload cancelled");
  const SendOutcome outcome = options_.sink->Send(batch, context);
  if (wire_bytes_) {
    wire_bytes_->Increment(batch.body.size());
    raw_bytes_->Increment(batch.raw_bytes);
  }
  switch (outcome.kind) {
    case SendOutcome::Kind::kUnavailable: {
      if (requests_unavailable_) requests_unavailable_->Increment();
      for (size_t i : members) {
        results[i] = {Disposition::kRetry, outcome.error, outcome.retry_after};
      }
      return UnavailableError(outcome.error);
    }
    case SendOutcome::Kind::kRefused:
      if (requests_refused_) requests_refused_->Increment();
      for (size_t i : members) results[i] = {Disposition::kFail, outcome.error, std::nullopt};
      log::Warn("upload refused", {{"destination", options_.destination},
                                   {"events", static_cast<int64_t>(members.size())},
                                   {"error", outcome.error}});
      return Status::Ok();
    case SendOutcome::Kind::kOk:
      break;
  }
  if (requests_ok_) {
    requests_ok_->Increment();
    events_accepted_->Increment(static_cast<uint64_t>(std::max<int64_t>(outcome.accepted, 0)));
    events_duplicate_->Increment(static_cast<uint64_t>(std::max<int64_t>(outcome.duplicates, 0)));
    events_rejected_->Increment(outcome.rejected.size());
  }
  for (size_t i : members) results[i] = {Disposition::kDone, "uploaded", std::nullopt};
  for (const auto& [id, error] : outcome.rejected) {
    auto it = by_id.find(id);
    if (it != by_id.end()) {
      results[it->second] = {Disposition::kFail, "rejected by the destination: " + error,
                             std::nullopt};
    }
  }
  // The audit record: what left, how many, which fields, and the hash of the exact bytes.
  const ComplianceStamp& stamp = *context.compliance;
  if (stamp.audit != nullptr) {
    Json record = {{"ts", FormatRfc3339(context.clock->WallNow())},
                   {"destination", options_.destination},
                   {"sink", options_.sink->Describe()},
                   {"policy", stamp.policy_path},
                   {"policy_sha256", stamp.policy_sha256},
                   {"idempotency_key", batch.key},
                   {"events", static_cast<int64_t>(members.size())},
                   {"priority", priority},
                   {"accepted", outcome.accepted},
                   {"duplicates", outcome.duplicates},
                   {"rejected", static_cast<int64_t>(outcome.rejected.size())},
                   {"fields", fields},
                   {"body_sha256", Sha256Hex(lines)},
                   {"encoding", std::string(EncodingName(batch.encoding))},
                   {"wire_bytes", static_cast<int64_t>(batch.body.size())}};
    if (Status status = stamp.audit->Append(record); !status.ok()) {
      // The data left but its record did not: retry the batch (same key, so the destination
      // dedupes it) until the record is written.
      for (size_t i : members) results[i] = {Disposition::kRetry, status.message(), std::nullopt};
      return status;
    }
  }
  return Status::Ok();
}

}  // namespace edgeloop::functions
