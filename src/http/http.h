// The HTTP request/response types and the Handler interface between the HTTP server and the
// application. A Handler is a function from Request to Response (delivered through a
// Responder), so it is tested without sockets.
#ifndef EDGELOOP_HTTP_HTTP_H_
#define EDGELOOP_HTTP_HTTP_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace edgeloop::http {

enum class Method { kGet, kHead, kPost, kPut, kDelete, kPatch, kOptions, kOther };

std::string_view MethodName(Method method);

struct Request {
  Method method = Method::kGet;
  std::string target;  // as received: path plus optional "?query"
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The target without its query string.
  std::string_view path() const;
  // The value of the first header named `name` (case-insensitive), or "".
  std::string_view Header(std::string_view name) const;
};

struct Response {
  int status = 200;
  // Points at static storage (a string literal): it is not copied.
  std::string_view content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // besides Content-Type/Length
  std::string body;
  // Close the connection after this response.
  bool close = false;

  static Response Json(int status, std::string body);
  // {"error": message} with `status`.
  static Response Error(int status, std::string_view message);
};

// The one place where a Status code becomes an HTTP status: INVALID_ARGUMENT 400,
// UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404, ALREADY_EXISTS/ABORTED 409,
// FAILED_PRECONDITION 412... see http.cc. OK maps to 200.
int HttpStatusFromStatus(const Status& status);
// Response::Error(HttpStatusFromStatus(status), status.message()); a RESOURCE_EXHAUSTED
// status also gets `Retry-After: 1`.
Response ErrorResponse(const Status& status);

// Where a response goes; implemented by the server's connections.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void Send(Response response) = 0;
};

// Delivers the response to one request. Call it exactly once, from any thread; it is cheap to
// move and not copyable. If it is destroyed without having been called, it answers 500, so a
// request is never left hanging.
class Responder {
 public:
  explicit Responder(std::shared_ptr<ResponseSink> sink) : sink_(std::move(sink)) {}
  // For tests and adapters: the response is handed to `callback`.
  static Responder FromCallback(std::function<void(Response)> callback);

  Responder(Responder&& other) noexcept = default;
  Responder& operator=(Responder&& other) noexcept;
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  ~Responder();

  void operator()(Response response);
  explicit operator bool() const { return sink_ != nullptr; }

 private:
  std::shared_ptr<ResponseSink> sink_;
};

// The application behind the server. Handle is called on an I/O thread; it must not block for
// long (I/O, locks held by slow work) but may do bounded CPU work such as running a small model.
// Thread-safe: called concurrently from every I/O thread.
class Handler {
 public:
  virtual ~Handler() = default;
  virtual void Handle(Request request, Responder respond) = 0;
};

}  // namespace edgeloop::http

#endif  // EDGELOOP_HTTP_HTTP_H_
