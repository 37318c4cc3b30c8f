#include "serving/oip_handler.h"

#include <array>
#include <cmath>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/build_info.h"
#include "common/json_util.h"
#include "queue/uuid.h"
#include "serving/deployment.h"
#include "serving/drift.h"
#include "serving/infer_codec.h"
#include "serving/insight_emitter.h"
#include "serving/rollout.h"

namespace edgeloop::serving {
namespace {

using http::Method;
using http::Response;
using Json = nlohmann::json;

// The segments of a request path: "/v2/models/m/infer" is {"v2","models","m","infer"}. Empty
// segments (double or trailing slashes) are dropped; percent-escapes are decoded. Views point into
// the request's path, or into `decoded_` when the path had escapes, so the common case allocates
// nothing. No route has more than kMax segments; longer paths only need to be told apart.
class PathSegments {
 public:
  static constexpr size_t kMax = 8;

  // False for an invalid percent-escape.
  bool Parse(std::string_view path) {
    if (path.find('%') != std::string_view::npos) {
      decoded_.reserve(path.size());
      for (size_t i = 0; i < path.size(); ++i) {
        if (path[i] != '%') {
          decoded_.push_back(path[i]);
          continue;
        }
        if (i + 2 >= path.size() || Hex(path[i + 1]) < 0 || Hex(path[i + 2]) < 0) return false;
        const char c = static_cast<char>(Hex(path[i + 1]) * 16 + Hex(path[i + 2]));
        // An escaped slash stays part of its segment; mark it so the split below keeps it.
        decoded_.push_back(c == '/' ? '\0' : c);
        i += 2;
      }
      path = decoded_;
    }
    size_t start = 0;
    for (size_t i = 0; i <= path.size(); ++i) {
      if (i < path.size() && path[i] != '/') continue;
      if (i > start) {
        if (size_ == kMax) {
          overflow_ = true;
          return true;
        }
        items_[size_++] = path.substr(start, i - start);
      }
      start = i + 1;
    }
    return true;
  }

  // More segments than any route has count as kMax + 1.
  size_t size() const { return overflow_ ? kMax + 1 : size_; }
  bool empty() const { return size_ == 0; }
  std::string_view operator[](size_t i) const { return items_[i]; }

 private:
  static int Hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  std::string decoded_;
  std::array<std::string_view, kMax> items_;
  size_t size_ = 0;
  bool overflow_ = false;
};

Response MethodNotAllowed(std::string_view allowed) {
  Response response = Response::Error(405, "method not allowed; use " + std::string(allowed));
  response.headers.emplace_back("Allow", std::string(allowed));
  return response;
}

Json SpecsToJson(const std::vector<inference::TensorSpec>& specs) {
  Json list = Json::array();
  for (const inference::TensorSpec& spec : specs) {
    list.push_back({{"name", spec.name},
                    {"datatype", std::string(inference::DataTypeName(spec.datatype))},
                    {"shape", spec.shape}});
  }
  return list;
}

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// The route key of a request per a rollout's `route_key` (rollout.h), falling back to the
// request id; empty when there is none (the rollout then routes at random).
std::string RouteKeyOf(const http::Request& request, const InferRequest& parsed,
                       const std::string& spec) {
  constexpr std::string_view kHeader = "header:";
  constexpr std::string_view kInput = "input:";
  const std::string_view view = spec;
  if (view.substr(0, kHeader.size()) == kHeader) {
    const std::string_view value = request.Header(view.substr(kHeader.size()));
    if (!value.empty()) return std::string(value);
  } else if (view.substr(0, kInput.size()) == kInput) {
    const std::string_view name = view.substr(kInput.size());
    for (const inference::Tensor& input : parsed.inputs) {
      if (input.name() != name || input.element_count() == 0) continue;
      if (input.datatype() == inference::DataType::kBytes) return input.strings().front();
      const double value = NumericElement(input, 0);
      if (!std::isnan(value)) return Json(value).dump();
    }
  }
  if (parsed.id) return *parsed.id;
  return std::string(request.Header("X-Request-Id"));
}

}  // namespace

OipHandler::OipHandler(ModelManager* manager, metrics::Registry* registry, Clock* clock,
                       const std::atomic<bool>* draining, ControlAccess control,
                       const Deployer* deployer, InsightEmitter* insights, DriftMonitor* drift)
    : manager_(manager),
      registry_(registry),
      clock_(clock),
      draining_(draining),
      control_(std::move(control)),
      deployer_(deployer),
      insights_(insights),
      drift_(drift),
      rollouts_(deployer != nullptr ? deployer->router() : nullptr) {}

std::optional<Response> OipHandler::CheckControlAccess(const http::Request& request) const {
  if (control_.token.empty()) {
    if (control_.allow_without_token) return std::nullopt;
    return Response::Error(403,
                           "the repository control API is disabled: this server listens beyond "
                           "loopback without a token; start it with --api-token-file");
  }
  constexpr std::string_view kBearer = "Bearer ";
  const std::string_view header = request.Header("Authorization");
  std::string_view presented;
  if (header.size() > kBearer.size() && header.substr(0, kBearer.size()) == kBearer) {
    presented = header.substr(kBearer.size());
  }
  // Compare in time independent of where the first difference is.
  const std::string& expected = control_.token;
  unsigned char difference = presented.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const char got = i < presented.size() ? presented[i] : '\0';
    difference |= static_cast<unsigned char>(got ^ expected[i]);
  }
  if (difference == 0) return std::nullopt;
  Response response = Response::Error(401, "a valid 'Authorization: Bearer <token>' is required");
  response.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"edgeloop\"");
  return response;
}

void OipHandler::Handle(http::Request request, http::Responder respond) {
  PathSegments s;
  if (!s.Parse(request.path())) {
    return respond(Response::Error(400, "invalid percent-encoding in the path"));
  }
  const Method method = request.method == Method::kHead ? Method::kGet : request.method;
  const bool get = method == Method::kGet;
  const bool post = method == Method::kPost;

  if (s.size() == 1 && s[0] == "metrics") {
    if (!get) return respond(MethodNotAllowed("GET"));
    Response response = Response::Json(200, registry_->Render());
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return respond(std::move(response));
  }
  if (s.empty() || s[0] != "v2") {
    return respond(Response::Error(404, "not found: " + std::string(request.path())));
  }
  if (s.size() == 1) {
    if (!get) return respond(MethodNotAllowed("GET"));
    return respond(Response::Json(200, Dump({{"name", "edgeloop"},
                                             {"version", build_info::kVersion},
                                             {"extensions", Json::array({"model_repository"})}})));
  }
  if (s[1] == "deployment" && s.size() == 2) {
    if (!get) return respond(MethodNotAllowed("GET"));
    if (deployer_ == nullptr) {
      return respond(Response::Error(
          404,
          "this server does not deploy from a registry (it was started without --deployment)"));
    }
    return respond(Response::Json(200, deployer_->ReportJson()));
  }
  if (s[1] == "health" && s.size() == 3 && (s[2] == "live" || s[2] == "ready")) {
    if (!get) return respond(MethodNotAllowed("GET"));
    if (s[2] == "live") return respond(Response::Json(200, R"({"live":true})"));
    return respond(ServerReady());
  }
  if (s[1] == "models" && s.size() >= 3) {
    const std::string_view model = s[2];
    std::optional<int64_t> version;
    size_t rest = 3;
    if (s.size() >= 5 && s[3] == "versions") {
      version = ParseVersionDirName(s[4]);
      if (!version) {
        // No version folder can have this name, so it is an unknown version.
        return respond(Response::Error(404, "model '" + std::string(model) + "' has no version '" +
                                                std::string(s[4]) +
                                                "' (versions are positive integers)"));
      }
      rest = 5;
    } else if (s.size() == 4 && s[3] == "versions") {
      return respond(Response::Error(404, "not found: " + std::string(request.path())));
    }
    if (s.size() == rest) {
      if (!get) return respond(MethodNotAllowed("GET"));
      return respond(ModelMetadata(model, version));
    }
    if (s.size() == rest + 1 && s[rest] == "ready") {
      if (!get) return respond(MethodNotAllowed("GET"));
      return respond(ModelReady(model, version));
    }
    if (s.size() == rest + 1 && s[rest] == "infer") {
      if (!post) return respond(MethodNotAllowed("POST"));
      return Infer(request, model, version, std::move(respond));
    }
    if (s.size() == rest + 1 && s[rest] == "drift") {
      if (!get) return respond(MethodNotAllowed("GET"));
      return respond(Drift(model, version));
    }
    if (s.size() == rest + 1 && s[rest] == "feedback") {
      if (!post) return respond(MethodNotAllowed("POST"));
      return Feedback(request, model, version, std::move(respond));
    }
  }
  if (s[1] == "repository") {
    if (s.size() == 3 && s[2] == "index") {
      if (!post) return respond(MethodNotAllowed("POST"));
      return respond(RepositoryIndex(request));
    }
    if (s.size() == 5 && s[2] == "models" && (s[4] == "load" || s[4] == "unload")) {
      if (!post) return respond(MethodNotAllowed("POST"));
      if (auto denied = CheckControlAccess(request)) return respond(std::move(*denied));
      const std::string model(s[3]);
      if (!request.body.empty()) {
        Json body = Json::parse(request.body, nullptr, false);
        if (body.is_discarded() || !body.is_object()) {
          return respond(Response::Error(400, "the request body must be a JSON object"));
        }
        if (body.contains("parameters") && !body["parameters"].empty()) {
          return respond(Response::Error(
              501, "load/unload parameters are not supported; change the repository instead"));
        }
      }
      if (s[4] == "unload") {
        const Status status = manager_->Unload(model);
        return respond(status.ok() ? Response::Json(200, "{}") : http::ErrorResponse(status));
      }
      auto shared = std::make_shared<http::Responder>(std::move(respond));
      manager_->LoadAsync(model, [shared](Status status) {
        (*shared)(status.ok() ? Response::Json(200, "{}") : http::ErrorResponse(status));
      });
      return;
    }
  }
  respond(Response::Error(404, "not found: " + std::string(request.path())));
}

Response OipHandler::ServerReady() const {
  if (draining_ != nullptr && draining_->load()) {
    return Response::Json(503, R"({"ready":false,"error":"the server is shutting down"})");
  }
  const Status status = manager_->Readiness();
  if (status.ok()) return Response::Json(200, R"({"ready":true})");
  return Response::Json(503, Dump({{"ready", false}, {"error", status.message()}}));
}

Response OipHandler::ModelReady(std::string_view model, std::optional<int64_t> version) const {
  auto servable = manager_->Find(model, version);
  Json body = {{"name", model}};
  if (version) body["version"] = std::to_string(*version);
  if (servable.ok()) {
    body["ready"] = true;
    return Response::Json(200, Dump(body));
  }
  if (servable.status().code() == StatusCode::kNotFound) {
    return http::ErrorResponse(servable.status());
  }
  body["ready"] = false;
  body["error"] = servable.status().message();
  return Response::Json(http::HttpStatusFromStatus(servable.status()), Dump(body));
}

Response OipHandler::Drift(std::string_view model, std::optional<int64_t> version) const {
  if (drift_ == nullptr) {
    return Response::Error(404, "drift monitoring is off on this server (--drift-window-rows 0)");
  }
  auto servable = manager_->Find(model, version);
  if (!servable.ok()) return http::ErrorResponse(servable.status());
  return Response::Json(200, drift_->ReportJson(*servable));
}

Response OipHandler::ModelMetadata(std::string_view model, std::optional<int64_t> version) const {
  auto servable = manager_->Find(model, version);
  if (!servable.ok()) return http::ErrorResponse(servable.status());
  const ServableVersion& chosen = **servable;
  Json versions = Json::array();
  if (version) {
    versions.push_back(chosen.version_string);
  } else {
    for (const auto& ready : manager_->ReadyVersions(model)) {
      versions.push_back(ready->version_string);
    }
  }
  Json body = {{"name", model},
               {"versions", versions},
               {"platform", std::string(chosen.model->platform())},
               {"inputs", SpecsToJson(chosen.config.inputs)},
               {"outputs", SpecsToJson(chosen.config.outputs)}};
  if (!chosen.config.feature_names.empty()) {
    body["parameters"] = {{"feature_names", chosen.config.feature_names}};
  }
  if (chosen.config.encoding) {
    // The raw columns the input takes, and the categories each categorical one knows.
    Json columns = Json::array();
    for (const inference::EncodedColumn& c : chosen.config.encoding->columns) {
      Json column = {{"column", c.column},
                     {"kind", std::string(inference::EncodedColumnKindName(c.kind))}};
      if (!c.categories.empty()) column["categories"] = c.categories;
      columns.push_back(std::move(column));
    }
    body["parameters"]["encoding"] = std::move(columns);
  }
  return Response::Json(200, Dump(body));
}

Response OipHandler::RepositoryIndex(const http::Request& request) const {
  bool ready_only = false;
  if (!request.body.empty()) {
    Json body = Json::parse(request.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      return Response::Error(400, "the request body must be a JSON object");
    }
    if (body.contains("ready")) {
      if (!body["ready"].is_boolean()) return Response::Error(400, "'ready' must be a boolean");
      ready_only = body["ready"].get<bool>();
    }
  }
  Json list = Json::array();
  for (const IndexEntry& entry : manager_->Index(ready_only)) {
    list.push_back({{"name", entry.name},
                    {"version", entry.version},
                    {"state", std::string(VersionStateName(entry.state))},
                    {"reason", entry.reason}});
  }
  return Response::Json(200, Dump(list));
}

void OipHandler::Infer(http::Request& request, std::string_view model,
                       std::optional<int64_t> version, http::Responder respond) {
  const Clock::SteadyTime started = clock_->Now();
  auto found = manager_->Find(model, version);
  if (!found.ok()) {
    // Counted without the model's name: names and versions that do not resolve come from
    // clients and must not grow the metric's label set without bound.
    Response response = http::ErrorResponse(found.status());
    manager_->CountUnknownModelRequest(response.status);
    return respond(std::move(response));
  }
  std::shared_ptr<const ServableVersion> servable = std::move(*found);
  auto parsed = ParseInferRequest(request.body, servable->config);
  if (!parsed.ok()) {
    Response response = http::ErrorResponse(parsed.status());
    servable->metrics.CountRequest(servable->config.name, servable->version_string,
                                   response.status);
    return respond(std::move(response));
  }

  // A rollout in progress routes the requests that name no version: to the candidate for a
  // share of the route keys (canary), or to the champion with a copy for the candidate (shadow).
  // A candidate that cannot take the request counts an error against it; the champion answers.
  std::shared_ptr<Rollout> rollout;
  std::shared_ptr<const ServableVersion> shadow;
  std::shared_ptr<BatchItem> shadow_item;
  if (!version && rollouts_ != nullptr) rollout = rollouts_->Find(model);
  if (rollout) {
    const RouteDecision route =
        rollout->Route(RouteKeyOf(request, *parsed, rollout->policy().route_key));
    if (route.version != servable->config.version) {
      auto target = manager_->Find(model, route.version);
      StatusOr<InferRequest> reparsed = target.ok()
                                            ? ParseInferRequest(request.body, (*target)->config)
                                            : StatusOr<InferRequest>(target.status());
      if (reparsed.ok()) {
        servable = std::move(*target);
        parsed = std::move(reparsed);
      } else {
        rollout->Observe(route.version, false, 0, {});
      }
    }
    if (route.shadow) {
      // The copy is parsed for the candidate's own inputs.
      auto target = manager_->Find(model, *route.shadow);
      StatusOr<InferRequest> copy = target.ok() ? ParseInferRequest(request.body, (*target)->config)
                                                : StatusOr<InferRequest>(target.status());
      if (copy.ok()) {
        shadow = std::move(*target);
        shadow_item = std::make_shared<BatchItem>();
        shadow_item->inputs = std::move(copy->inputs);
        shadow_item->output_indices = std::move(copy->output_indices);
      } else {
        rollout->Observe(*route.shadow, false, 0, {});
      }
    }
  }
  if (drift_ != nullptr) drift_->Observe(servable, parsed->inputs);

  // With insight events on, the request gets an id (the OIP `id`, else X-Request-Id, else a
  // new UUIDv7) that feedback refers to, and the inputs are kept for the emitter.
  std::string request_id;
  std::shared_ptr<std::vector<inference::Tensor>> kept_inputs;
  if (insights_ != nullptr) {
    request_id = parsed->id ? *parsed->id : std::string(request.Header("X-Request-Id"));
    if (request_id.empty()) request_id = queue::NewEventId(*clock_);
    kept_inputs = std::make_shared<std::vector<inference::Tensor>>(parsed->inputs);
  }
  BatchItem item;
  item.inputs = std::move(parsed->inputs);
  item.output_indices = std::move(parsed->output_indices);
  item.done = [this, servable, started, id = std::move(parsed->id), respond = std::move(respond),
               request_id = std::move(request_id), kept_inputs = std::move(kept_inputs), rollout,
               shadow, shadow_item](StatusOr<std::vector<inference::Tensor>> outputs) mutable {
    const double seconds = std::chrono::duration<double>(clock_->Now() - started).count();
    Response response =
        outputs.ok()
            ? Response::Json(200, SerializeInferResponse(servable->config.name,
                                                         servable->version_string, id, *outputs))
            : http::ErrorResponse(outputs.status());
    if (kept_inputs != nullptr) {
      response.headers.emplace_back("X-Request-Id", request_id);
      if (outputs.ok()) {
        insights_->OnPrediction(servable, request_id, *kept_inputs, *outputs, seconds);
      }
    }
    if (rollout) {
      rollout->Observe(servable->config.version, outputs.ok(), seconds,
                       outputs.ok() ? RowScores(*outputs) : std::vector<double>());
    }
    servable->metrics.CountRequest(servable->config.name, servable->version_string,
                                   response.status);
    servable->metrics.request_seconds->Observe(seconds);
    respond(std::move(response));
    if (shadow) RunShadow(rollout, shadow, std::move(*shadow_item));
  };
  if (servable->batcher) {
    servable->batcher->Submit(std::move(item));
    return;
  }
  const int64_t rows = item.rows();
  std::vector<BatchItem> batch;
  batch.push_back(std::move(item));
  servable->metrics.batch_rows->Observe(static_cast<double>(rows));
  RunBatch(*servable->model, batch);
}

void OipHandler::RunShadow(const std::shared_ptr<Rollout>& rollout,
                           const std::shared_ptr<const ServableVersion>& shadow, BatchItem item) {
  // After the champion's answer was handed over: the copy's result is only observed.
  const Clock::SteadyTime started = clock_->Now();
  item.done = [this, rollout, version = shadow->config.version,
               started](StatusOr<std::vector<inference::Tensor>> outputs) {
    rollout->Observe(version, outputs.ok(),
                     std::chrono::duration<double>(clock_->Now() - started).count(),
                     outputs.ok() ? RowScores(*outputs) : std::vector<double>());
  };
  if (shadow->batcher) {
    shadow->batcher->Submit(std::move(item));
    return;
  }
  std::vector<BatchItem> batch;
  batch.push_back(std::move(item));
  RunBatch(*shadow->model, batch);
}

void OipHandler::Feedback(const http::Request& request, std::string_view model,
                          std::optional<int64_t> version, http::Responder respond) {
  if (insights_ == nullptr) {
    return respond(Response::Error(
        501, "this server records no feedback: start it with --queue to emit events"));
  }
  auto found = manager_->Find(model, version);
  if (!found.ok()) return respond(http::ErrorResponse(found.status()));
  Json body = Json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return respond(Response::Error(400, "the request body must be a JSON object"));
  }
  if (!body.contains("request_id") || !body["request_id"].is_string() ||
      body["request_id"].get<std::string>().empty() ||
      body["request_id"].get<std::string>().size() > 256) {
    return respond(Response::Error(
        400, "'request_id' (the X-Request-Id of the prediction, 1 to 256 characters) is required"));
  }
  if (!body.contains("label") || body["label"].is_discarded()) {
    return respond(Response::Error(400, "'label' (any JSON value) is required"));
  }
  std::string comment;
  if (body.contains("comment")) {
    if (!body["comment"].is_string())
      return respond(Response::Error(400, "'comment' must be a string"));
    comment = body["comment"].get<std::string>();
  }
  const std::string version_string = version ? std::to_string(*version) : "";
  auto shared = std::make_shared<http::Responder>(std::move(respond));
  const std::string request_id = body["request_id"].get<std::string>();
  insights_->OnFeedback(
      std::string(model), version_string, request_id, Dump(body["label"]), std::move(comment),
      [shared, request_id](StatusOr<std::string> id) {
        if (!id.ok()) return (*shared)(http::ErrorResponse(id.status()));
        (*shared)(Response::Json(201, Dump({{"id", *id}, {"request_id", request_id}})));
      });
}

}  // namespace edgeloop::serving
