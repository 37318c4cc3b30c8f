// HttpClient: a small blocking HTTP(S) client over one libcurl easy handle, private to the
// registry component (RemoteStore is its only user).
//
// It sends exactly one request per Send() call: it follows no redirects, adds no authentication
// and retries nothing; those policies belong to the caller. Request bodies are pulled from a
// RequestBody and 2xx response bodies pushed into a ResponseSink, so blobs of any size stream
// without being held in memory. The connection is kept alive between requests.
#ifndef EDGELOOP_REGISTRY_HTTP_CLIENT_H_
#define EDGELOOP_REGISTRY_HTTP_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace edgeloop::registry {

// Response headers; names compare case-insensitively. Value type.
class HttpHeaders {
 public:
  void Add(std::string name, std::string value);
  void Clear() { entries_.clear(); }
  // The first value of `name`, if any.
  std::optional<std::string_view> Get(std::string_view name) const;
  // Every value of `name`, in order.
  std::vector<std::string_view> GetAll(std::string_view name) const;

 private:
  std::vector<std::pair<std::string, std::string>> entries_;  // names lowercased
};

// A request body read from the start, possibly more than once (a retried request rewinds it).
class RequestBody {
 public:
  virtual ~RequestBody() = default;
  // Total bytes; sent as Content-Length.
  virtual int64_t size() const = 0;
  // Back to the first byte.
  virtual Status Rewind() = 0;
  // Copies up to `max` bytes into `buffer`; 0 at the end. An error aborts the request and is what
  // Send() returns.
  virtual StatusOr<size_t> Read(char* buffer, size_t max) = 0;
};

// A body from bytes the caller keeps alive for the duration of the request.
class StringBody final : public RequestBody {
 public:
  explicit StringBody(std::string_view bytes) : bytes_(bytes) {}
  int64_t size() const override { return static_cast<int64_t>(bytes_.size()); }
  Status Rewind() override {
    offset_ = 0;
    return Status::Ok();
  }
  StatusOr<size_t> Read(char* buffer, size_t max) override;

 private:
  std::string_view bytes_;
  size_t offset_ = 0;
};

// Receives the body of a 2xx response.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // Called once before the first Write (also when the body is empty). An error aborts the
  // request and is what Send() returns.
  virtual Status Begin(int status, const HttpHeaders& headers) = 0;
  virtual Status Write(std::string_view data) = 0;
};

struct HttpRequest {
  std::string method = "GET";        // GET, HEAD, PUT, POST, PATCH, DELETE
  std::string url;                   // absolute http:// or https:// URL
  std::vector<std::string> headers;  // "Name: value"
  RequestBody* body = nullptr;       // not owned; null: no body (POST/PUT send Content-Length: 0)
  ResponseSink* sink = nullptr;      // not owned; receives 2xx bodies when set
  // Largest body kept in HttpResponse::body when there is no sink (2xx) or for error bodies
  // (which are truncated, not refused, at 64 KiB).
  int64_t max_body = 1 << 20;
};

struct HttpResponse {
  int status = 0;
  HttpHeaders headers;  // of the final response only (not of "100 Continue")
  std::string body;     // see HttpRequest::max_body
};

struct HttpClientOptions {
  bool insecure_tls = false;  // skip certificate and host name verification
  std::string ca_file;        // extra CA bundle (PEM); empty: the system store
  // A request fails when no byte moves for this long (rounded up to whole seconds).
  int64_t timeout_ms = 60'000;
  // Longest wait for a TCP (and TLS) connection.
  int64_t connect_timeout_ms = 10'000;
};

// Not thread-safe: one client per thread (it owns one libcurl easy handle).
class HttpClient {
 public:
  // kInvalidArgument when `ca_file` does not exist; kInternal when libcurl cannot start.
  static StatusOr<std::unique_ptr<HttpClient>> Create(HttpClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request and returns the response, whatever its status. Fails with:
  //   kUnavailable       the host cannot be reached or the connection broke (names the host);
  //   kDeadlineExceeded  no progress for `timeout_ms`;
  //   kFailedPrecondition the server's TLS certificate is not trusted;
  //   kResourceExhausted an in-memory 2xx body would exceed `max_body`;
  //   the status of the RequestBody or ResponseSink that aborted the request.
  // Messages name the method and host, never header values (which may hold credentials).
  StatusOr<HttpResponse> Send(const HttpRequest& request);

 private:
  struct Impl;
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Process-wide totals of the requests every HttpClient sent, for tests and diagnostics.
// Counted when a request is sent, whatever its outcome. Thread-safe.
struct HttpTraffic {
  int64_t requests = 0;
  int64_t gets = 0;
  int64_t heads = 0;
  int64_t puts = 0;
  int64_t posts = 0;
  int64_t patches = 0;
  int64_t deletes = 0;
  int64_t range_requests = 0;  // requests with a Range header
  int64_t bytes_sent = 0;      // request bodies
  int64_t bytes_received = 0;  // response bodies
};
HttpTraffic GetHttpTraffic();

// URL helpers (libcurl's URL parser).
// `reference` (absolute, or relative such as "/v2/x?_state=y") resolved against `base`.
StatusOr<std::string> ResolveUrl(std::string_view base, std::string_view reference);
// "scheme://host:port" with the default port filled in, lowercased; empty if unparsable.
std::string UrlOrigin(std::string_view url);
// "host:port" (default port filled in), for messages.
std::string UrlAuthority(std::string_view url);
// The scheme ("http", "https") and host name (without brackets or port) of `url`.
std::string UrlScheme(std::string_view url);
std::string UrlHost(std::string_view url);
// Appends "name=value" as a query parameter, with '?' or '&' as needed. `value` is
// percent-encoded except for unreserved characters and ':'.
std::string AppendQuery(std::string_view url, std::string_view name, std::string_view value);
// Percent-encodes everything but unreserved characters (RFC 3986).
std::string UrlEncode(std::string_view text);
// True for "localhost", 127.0.0.0/8 (dotted quad) and ::1: addresses that never leave the
// machine. Like Reference::IsLoopback, other names are not trusted even if they resolve there.
bool IsLoopbackHost(std::string_view host);

}  // namespace edgeloop::registry

#endif  // EDGELOOP_REGISTRY_HTTP_CLIENT_H_
