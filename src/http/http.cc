#include "http/http.h"

#include <strings.h>

#include "common/json_util.h"

namespace edgeloop::http {
namespace {

class CallbackSink final : public ResponseSink {
 public:
  explicit CallbackSink(std::function<void(Response)> callback) : callback_(std::move(callback)) {}
  void Send(Response response) override { callback_(std::move(response)); }

 private:
  std::function<void(Response)> callback_;
};

}  // namespace

std::string_view MethodName(Method method) {
  switch (method) {
    case Method::kGet:
      return "GET";
    case Method::kHead:
      return "HEAD";
    case Method::kPost:
      return "POST";
    case Method::kPut:
      return "PUT";
    case Method::kDelete:
      return "DELETE";
    case Method::kPatch:
      return "PATCH";
    case Method::kOptions:
      return "OPTIONS";
    case Method::kOther:
      return "OTHER";
  }
  return "OTHER";
}

std::string_view Request::path() const {
  std::string_view view(target);
  const size_t query = view.find('?');
  return query == std::string_view::npos ? view : view.substr(0, query);
}

std::string_view Request::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() && strncasecmp(key.data(), name.data(), name.size()) == 0) {
      return value;
    }
  }
  return {};
}

Response Response::Json(int status, std::string body) {
  Response response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

Response Response::Error(int status, std::string_view message) {
  return Json(status, json::ErrorBody(message));
}

int HttpStatusFromStatus(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return 400;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
    case StatusCode::kAborted:
      return 409;
    case StatusCode::kFailedPrecondition:
      return 412;
    case StatusCode::kCancelled:
      return 499;
    case StatusCode::kUnimplemented:
      return 501;
    case StatusCode::kUnavailable:
    case StatusCode::kResourceExhausted:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    case StatusCode::kDataLoss:
    case StatusCode::kInternal:
    case StatusCode::kUnknown:
      return 500;
  }
  return 500;
}

Response ErrorResponse(const Status& status) {
  Response response = Response::Error(HttpStatusFromStatus(status), status.message());
  if (status.code() == StatusCode::kResourceExhausted) {
    response.headers.emplace_back("Retry-After", "1");
  }
  return response;
}

Responder Responder::FromCallback(std::function<void(Response)> callback) {
  return Responder(std::make_shared<CallbackSink>(std::move(callback)));
}

Responder& Responder::operator=(Responder&& other) noexcept {
  if (this != &other) {
    if (sink_) sink_->Send(Response::Error(500, "internal error: request dropped"));
    sink_ = std::move(other.sink_);
  }
  return *this;
}

Responder::~Responder() {
  if (sink_) sink_->Send(Response::Error(500, "internal error: request dropped"));
}

void Responder::operator()(Response response) {
  std::shared_ptr<ResponseSink> sink = std::move(sink_);
  if (sink) sink->Send(std::move(response));
}

}  // namespace edgeloop::http
