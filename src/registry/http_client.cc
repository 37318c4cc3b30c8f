#include "registry/http_client.h"

#include <curl/curl.h>
#include <strings.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <system_error>

#include "common/build_info.h"
#include "common/logging.h"

namespace edgeloop::registry {
namespace {

// Error bodies are kept for messages only; a misbehaving server cannot make us buffer more.
constexpr int64_t kMaxErrorBody = 64 << 10;

struct TrafficCounters {
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> gets{0};
  std::atomic<int64_t> heads{0};
  std::atomic<int64_t> puts{0};
  std::atomic<int64_t> posts{0};
  std::atomic<int64_t> patches{0};
  std::atomic<int64_t> deletes{0};
  std::atomic<int64_t> range_requests{0};
  std::atomic<int64_t> bytes_sent{0};
  std::atomic<int64_t> bytes_received{0};
};

TrafficCounters& Traffic() {
  static TrafficCounters* counters = new TrafficCounters();  // never destroyed
  return *counters;
}

void CountRequest(const HttpRequest& request) {
  TrafficCounters& t = Traffic();
  t.requests.fetch_add(1, std::memory_order_relaxed);
  const std::string& m = request.method;
  if (m == "GET") t.gets.fetch_add(1, std::memory_order_relaxed);
  if (m == "HEAD") t.heads.fetch_add(1, std::memory_order_relaxed);
  if (m == "PUT") t.puts.fetch_add(1, std::memory_order_relaxed);
  if (m == "POST") t.posts.fetch_add(1, std::memory_order_relaxed);
  if (m == "PATCH") t.patches.fetch_add(1, std::memory_order_relaxed);
  if (m == "DELETE") t.deletes.fetch_add(1, std::memory_order_relaxed);
  for (const std::string& h : request.headers) {
    if (h.size() > 6 && strncasecmp(h.c_str(), "range:", 6) == 0) {
      t.range_requests.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r' ||
                           text.back() == '\n')) {
    text.remove_suffix(1);
  }
  return text;
}

Status InitCurlOnce() {
  static std::once_flag once;
  static CURLcode result = CURLE_OK;
  std::call_once(once, [] { result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (result != CURLE_OK) {
    return InternalError(std::string("libcurl initialisation failed: ") +
                         curl_easy_strerror(result));
  }
  return Status::Ok();
}

// Owns a CURLU handle.
struct UrlHandle {
  CURLU* url = curl_url();
  ~UrlHandle() { curl_url_cleanup(url); }
  UrlHandle() = default;
  UrlHandle(const UrlHandle&) = delete;
  UrlHandle& operator=(const UrlHandle&) = delete;

  bool Set(std::string_view text) {
    return url != nullptr &&
           curl_url_set(url, CURLUPART_URL, std::string(text).c_str(), 0) == CURLUE_OK;
  }
  std::string Get(CURLUPart part, unsigned int flags = 0) const {
    char* out = nullptr;
    if (curl_url_get(url, part, &out, flags) != CURLUE_OK || out == nullptr) return {};
    std::string result(out);
    curl_free(out);
    return result;
  }
};

std::string UrlPath(std::string_view url) {
  UrlHandle u;
  if (!u.Set(url)) return {};
  return u.Get(CURLUPART_PATH);
}

}  // namespace

void HttpHeaders::Add(std::string name, std::string value) {
  entries_.emplace_back(Lower(name), std::move(value));
}

std::optional<std::string_view> HttpHeaders::Get(std::string_view name) const {
  const std::string key = Lower(name);
  for (const auto& [n, v] : entries_) {
    if (n == key) return std::string_view(v);
  }
  return std::nullopt;
}

std::vector<std::string_view> HttpHeaders::GetAll(std::string_view name) const {
  const std::string key = Lower(name);
  std::vector<std::string_view> out;
  for (const auto& [n, v] : entries_) {
    if (n == key) out.emplace_back(v);
  }
  return out;
}

StatusOr<size_t> StringBody::Read(char* buffer, size_t max) {
  const size_t n = std::min(max, bytes_.size() - offset_);
  std::copy_n(bytes_.data() + offset_, n, buffer);
  offset_ += n;
  return n;
}

// Per-request state shared with the libcurl callbacks.
struct Transfer {
  RequestBody* body = nullptr;
  ResponseSink* sink = nullptr;
  int64_t max_body = 0;
  HttpResponse response;
  int current_status = 0;  // of the response whose headers are arriving
  bool sink_begun = false;
  Status callback_status;  // why a callback aborted the transfer
  int64_t sent = 0;
  int64_t received = 0;

  bool IsSuccess() const { return current_status >= 200 && current_status < 300; }
};

struct HttpClient::Impl {
  HttpClientOptions options;
  CURL* curl = nullptr;
  std::string user_agent;

  ~Impl() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }

  static size_t OnHeader(char* data, size_t size, size_t count, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t n = size * count;
    std::string_view line(data, n);
    if (line.substr(0, 5) == "HTTP/") {
      // A new response (after "100 Continue"): forget the previous one's headers.
      t->response.headers.Clear();
      const size_t space = line.find(' ');
      t->current_status = 0;
      if (space != std::string_view::npos && line.size() >= space + 4) {
        int code = 0;
        for (size_t i = space + 1; i < space + 4; ++i) {
          if (!std::isdigit(static_cast<unsigned char>(line[i]))) return 0;
          code = code * 10 + (line[i] - '0');
        }
        t->current_status = code;
      }
      return n;
    }
    const std::string_view trimmed = Trim(line);
    const size_t colon = trimmed.find(':');
    if (colon != std::string_view::npos) {
      t->response.headers.Add(std::string(trimmed.substr(0, colon)),
                              std::string(Trim(trimmed.substr(colon + 1))));
    }
    return n;
  }

  static size_t OnWrite(char* data, size_t size, size_t count, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t n = size * count;
    t->received += static_cast<int64_t>(n);
    Traffic().bytes_received.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
    if (t->IsSuccess() && t->sink != nullptr) {
      if (!t->sink_begun) {
        t->sink_begun = true;
        t->callback_status = t->sink->Begin(t->current_status, t->response.headers);
        if (!t->callback_status.ok()) return 0;
      }
      t->callback_status = t->sink->Write(std::string_view(data, n));
      return t->callback_status.ok() ? n : 0;
    }
    const int64_t limit = t->IsSuccess() ? t->max_body : kMaxErrorBody;
    const int64_t room = limit - static_cast<int64_t>(t->response.body.size());
    if (static_cast<int64_t>(n) > room) {
      if (t->IsSuccess()) {
        t->callback_status = ResourceExhaustedError("response body is larger than " +
                                                    std::to_string(t->max_body) + " bytes");
        return 0;
      }
      if (room > 0) t->response.body.append(data, static_cast<size_t>(room));
      return n;  // error bodies are only for messages: truncate quietly
    }
    t->response.body.append(data, n);
    return n;
  }

  static size_t OnRead(char* buffer, size_t size, size_t count, void* user) {
    auto* t = static_cast<Transfer*>(user);
    StatusOr<size_t> n = t->body->Read(buffer, size * count);
    if (!n.ok()) {
      t->callback_status = n.status();
      return CURL_READFUNC_ABORT;
    }
    t->sent += static_cast<int64_t>(*n);
    Traffic().bytes_sent.fetch_add(static_cast<int64_t>(*n), std::memory_order_relaxed);
    return *n;
  }
};

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpClient::~HttpClient() = default;

StatusOr<std::unique_ptr<HttpClient>> HttpClient::Create(HttpClientOptions options) {
  RETURN_IF_ERROR(InitCurlOnce());
  if (!options.ca_file.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(options.ca_file, ec)) {
      return InvalidArgumentError("CA file '" + options.ca_file + "' does not exist");
    }
  }
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->curl = curl_easy_init();
  if (impl->curl == nullptr) return InternalError("curl_easy_init failed");
  impl->user_agent = std::string("edgeloop/") + build_info::kVersion;
  return std::unique_ptr<HttpClient>(new HttpClient(std::move(impl)));
}

StatusOr<HttpResponse> HttpClient::Send(const HttpRequest& request) {
  CURL* curl = impl_->curl;
  const HttpClientOptions& options = impl_->options;
  // Keeps the live connections, DNS and TLS session caches; clears every option.
  curl_easy_reset(curl);

  Transfer transfer;
  transfer.sink = request.sink;
  transfer.max_body = request.max_body;
  const std::string host = UrlHost(request.url);
  const std::string scheme = UrlScheme(request.url);
  if (scheme != "http" && scheme != "https") {
    return InvalidArgumentError("unsupported URL for " + request.method + " (host '" + host +
                                "'): only http and https are used");
  }

  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, impl_->user_agent.c_str());
  // Larger than the 16/64 KiB defaults: fewer callbacks and syscalls for model-sized blobs.
  curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 256L << 10);
  curl_easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, 256L << 10);
  // A proxy from the environment must never see loopback traffic.
  if (IsLoopbackHost(host)) curl_easy_setopt(curl, CURLOPT_PROXY, "");

  const int64_t stall_s = std::max<int64_t>(1, (options.timeout_ms + 999) / 1000);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, static_cast<long>(stall_s));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::max<int64_t>(1, options.connect_timeout_ms)));

  if (options.insecure_tls) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!options.ca_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO, options.ca_file.c_str());
  }

  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &Impl::OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Impl::OnWrite);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);

  const bool sends_body = request.method == "PUT" || request.method == "POST" ||
                          request.method == "PATCH" || request.body != nullptr;
  StringBody empty_body("");
  transfer.body = request.body != nullptr ? request.body : &empty_body;
  if (request.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (sends_body) {
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE,
                     static_cast<curl_off_t>(transfer.body->size()));
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, &Impl::OnRead);
    curl_easy_setopt(curl, CURLOPT_READDATA, &transfer);
    if (request.method != "PUT") {
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
  } else if (request.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }

  curl_slist* headers = nullptr;
  for (const std::string& h : request.headers) headers = curl_slist_append(headers, h.c_str());
  if (sends_body) {
    bool has_type = false;
    for (const std::string& h : request.headers) {
      if (h.size() > 13 && strncasecmp(h.c_str(), "content-type:", 13) == 0) has_type = true;
    }
    // libcurl would otherwise send "application/x-www-form-urlencoded" for a POST.
    if (!has_type) headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

  CountRequest(request);
  const auto start = std::chrono::steady_clock::now();
  const CURLcode code = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();

  // Only the path: queries may carry upload state tokens that are long and useless in logs.
  long new_connections = 0;
  curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &new_connections);
  log::Debug("http request", {{"method", request.method},
                              {"host", host},
                              {"path", UrlPath(request.url)},
                              {"status", transfer.current_status},
                              {"curl", static_cast<int>(code)},
                              {"new_connections", static_cast<int64_t>(new_connections)},
                              {"sent", transfer.sent},
                              {"received", transfer.received},
                              {"ms", static_cast<int64_t>(ms)}});

  if (code != CURLE_OK) {
    if (!transfer.callback_status.ok()) return transfer.callback_status;
    const std::string authority = UrlAuthority(request.url);
    // "(GET over https)": which request failed, without its URL (queries may hold upload state).
    const std::string how = " (" + request.method + " over " + scheme + ")";
    const std::string detail = curl_easy_strerror(code);
    switch (code) {
      case CURLE_OPERATION_TIMEDOUT: {
        curl_off_t connect_us = 0;
        curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connect_us);
        if (connect_us == 0) {
          return UnavailableError("cannot connect to " + authority + how + ": timed out");
        }
        return DeadlineExceededError("no progress from " + authority + how + " for " +
                                     std::to_string(stall_s) + " s");
      }
      case CURLE_PEER_FAILED_VERIFICATION:
        return FailedPreconditionError("the TLS certificate of " + authority + " is not trusted" +
                                       how + ": " + detail +
                                       "; configure its CA bundle (ca_file) or, for tests only, "
                                       "insecure_tls");
      case CURLE_SSL_CONNECT_ERROR:
        return UnavailableError("TLS handshake with " + authority + " failed" + how + ": " +
                                detail +
                                "; if it serves plain HTTP: that is used only for loopback "
                                "hosts or with allow_http");
      default:
        return UnavailableError("cannot reach " + authority + how + ": " + detail);
    }
  }
  if (transfer.IsSuccess() && request.sink != nullptr && !transfer.sink_begun) {
    // An empty 2xx body: the sink still learns the status and headers.
    RETURN_IF_ERROR(request.sink->Begin(transfer.current_status, transfer.response.headers));
  }
  transfer.response.status = transfer.current_status;
  return std::move(transfer.response);
}

HttpTraffic GetHttpTraffic() {
  const TrafficCounters& t = Traffic();
  HttpTraffic out;
  out.requests = t.requests.load(std::memory_order_relaxed);
  out.gets = t.gets.load(std::memory_order_relaxed);
  out.heads = t.heads.load(std::memory_order_relaxed);
  out.puts = t.puts.load(std::memory_order_relaxed);
  out.posts = t.posts.load(std::memory_order_relaxed);
  out.patches = t.patches.load(std::memory_order_relaxed);
  out.deletes = t.deletes.load(std::memory_order_relaxed);
  out.range_requests = t.range_requests.load(std::memory_order_relaxed);
  out.bytes_sent = t.bytes_sent.load(std::memory_order_relaxed);
  out.bytes_received = t.bytes_received.load(std::memory_order_relaxed);
  return out;
}

StatusOr<std::string> ResolveUrl(std::string_view base, std::string_view reference) {
  UrlHandle u;
  if (!u.Set(base)) return InvalidArgumentError("invalid base URL");
  if (curl_url_set(u.url, CURLUPART_URL, std::string(reference).c_str(), 0) != CURLUE_OK) {
    return InvalidArgumentError("invalid URL reference '" + std::string(reference) + "'");
  }
  std::string out = u.Get(CURLUPART_URL);
  if (out.empty()) return InvalidArgumentError("invalid URL reference");
  return out;
}

std::string UrlOrigin(std::string_view url) {
  UrlHandle u;
  if (!u.Set(url)) return {};
  const std::string scheme = Lower(u.Get(CURLUPART_SCHEME));
  const std::string host = Lower(u.Get(CURLUPART_HOST));
  const std::string port = u.Get(CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (scheme.empty() || host.empty()) return {};
  return scheme + "://" + host + ":" + port;
}

std::string UrlAuthority(std::string_view url) {
  UrlHandle u;
  if (!u.Set(url)) return {};
  return Lower(u.Get(CURLUPART_HOST)) + ":" + u.Get(CURLUPART_PORT, CURLU_DEFAULT_PORT);
}

std::string UrlScheme(std::string_view url) {
  UrlHandle u;
  if (!u.Set(url)) return {};
  return Lower(u.Get(CURLUPART_SCHEME));
}

std::string UrlHost(std::string_view url) {
  UrlHandle u;
  if (!u.Set(url)) return {};
  std::string host = Lower(u.Get(CURLUPART_HOST));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host;
}

std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    }
  }
  return out;
}

std::string AppendQuery(std::string_view url, std::string_view name, std::string_view value) {
  std::string out(url);
  const size_t hash = out.find('#');
  if (hash != std::string::npos) out.resize(hash);
  const size_t query = out.find('?');
  if (query == std::string::npos) {
    out += '?';
  } else if (query + 1 != out.size() && out.back() != '&') {
    out += '&';
  }
  std::string encoded = UrlEncode(value);
  // Keep "sha256:..." readable; ':' is allowed in a query.
  std::string restored;
  for (size_t i = 0; i < encoded.size(); ++i) {
    if (encoded.compare(i, 3, "%3A") == 0) {
      restored += ':';
      i += 2;
    } else {
      restored += encoded[i];
    }
  }
  out += UrlEncode(name) + "=" + restored;
  return out;
}

bool IsLoopbackHost(std::string_view host) {
  std::string h = Lower(host);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h == "localhost" || h == "::1") return true;
  // 127.0.0.0/8 in dotted-quad form only.
  if (h.rfind("127.", 0) != 0) return false;
  int dots = 0;
  for (char c : h) {
    if (c == '.') {
      ++dots;
    } else if (!std::isdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return dots == 3;
}

}  // namespace edgeloop::registry
