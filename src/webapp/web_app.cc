#include "webapp/web_app.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/json_util.h"
#include "common/logging.h"
#include "queue/uuid.h"
#include "serving/deployment.h"
#include "serving/insight_emitter.h"
#include "serving/model_manager.h"
#include "webapp/assets.h"

namespace edgeloop::webapp {
namespace {

using http::Method;
using http::Response;
using Json = nlohmann::json;
using inference::Tensor;

constexpr std::string_view kCookie = "edgeloop_session";

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

int64_t WallMs(Clock::WallTime time) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
}

Response MethodNotAllowed(std::string_view allowed) {
  Response response = Response::Error(405, "method not allowed; use " + std::string(allowed));
  response.headers.emplace_back("Allow", std::string(allowed));
  return response;
}

// The query parameter `name` of a target ("" when absent); no percent-decoding beyond %XX.
std::string QueryParam(std::string_view target, std::string_view name) {
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return "";
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name && eq != std::string_view::npos) {
      std::string out;
      std::string_view value = pair.substr(eq + 1);
      for (size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '%' && i + 2 < value.size()) {
          out.push_back(
              static_cast<char>(std::stoi(std::string(value.substr(i + 1, 2)), nullptr, 16)));
          i += 2;
        } else {
          out.push_back(value[i] == '+' ? ' ' : value[i]);
        }
      }
      return out;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return "";
}

// Decodes %XX in a path segment; false when an escape is invalid.
bool DecodeSegment(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size() || !std::isxdigit(static_cast<unsigned char>(in[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
      return false;
    }
    out->push_back(static_cast<char>(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16)));
    i += 2;
  }
  return true;
}

void AddSecurityHeaders(Response& response) {
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  response.headers.emplace_back("X-Frame-Options", "DENY");
  response.headers.emplace_back("Referrer-Policy", "no-referrer");
  response.headers.emplace_back("Cache-Control", "no-store");
}

std::string CardOf(const inference::ModelConfig& config) {
  std::ifstream in(config.version_dir / "card.json");
  if (!in) return "";
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The verdict and a score for row `row` of the default outputs.
std::pair<bool, std::optional<double>> Verdict(const std::vector<Tensor>& outputs, int64_t row,
                                               std::optional<double> threshold) {
  auto verdict = serving::AnomalyVerdict(outputs, row, threshold);
  if (!verdict.second && !outputs.empty()) {
    const Tensor& first = outputs[0];
    const int64_t rows = first.shape().empty() ? 1 : first.shape()[0];
    if (rows > 0 && first.element_count() == rows) {
      if (first.datatype() == inference::DataType::kFp32) {
        verdict.second = first.values<float>()[static_cast<size_t>(row)];
      } else if (first.datatype() == inference::DataType::kFp64) {
        verdict.second = first.values<double>()[static_cast<size_t>(row)];
      }
    }
  }
  return verdict;
}

// The series of row `row`: the first BYTES input of shape [-1] (streaming detectors key their
// state by it), else "".
std::string SeriesOf(const std::vector<Tensor>& inputs, int64_t row) {
  for (const Tensor& tensor : inputs) {
    if (tensor.datatype() == inference::DataType::kBytes && tensor.shape().size() == 1) {
      return tensor.strings()[static_cast<size_t>(row)];
    }
  }
  return "";
}

void AppendDouble(std::optional<double> value, std::string* out) {
  if (!value || !std::isfinite(*value)) {
    out->append("null");
    return;
  }
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), *value);
  out->append(buffer, ec == std::errc() ? end : buffer);
}

}  // namespace

StatusOr<std::unique_ptr<WebApp>> WebApp::Create(WebAppOptions options,
                                                 const serving::WebAppContext& context) {
  if (context.manager == nullptr || context.api == nullptr || context.registry == nullptr) {
    return InvalidArgumentError("the web app needs the model manager, registry and API handler");
  }
  std::unique_ptr<WebApp> app(new WebApp(std::move(options), context));
  if (!app->options_.users_file.empty()) {
    ASSIGN_OR_RETURN(UsersFile users, UsersFile::Load(app->options_.users_file));
    std::error_code ec;
    app->users_mtime_ = std::filesystem::last_write_time(app->options_.users_file, ec);
    if (users.users().empty()) {
      log::Warn("the web app's users file has no users: only token login works",
                {{"users_file", app->options_.users_file.string()}});
    }
    app->users_ = std::move(users);
  }
  app->dev_mode_ = app->options_.users_file.empty() && context.loopback_only;
  SiteMonitorOptions monitor_options;
  monitor_options.queue_url = context.queue_url;
  monitor_options.uplink_status_url = app->options_.uplink_status_url;
  monitor_options.clock = app->options_.clock;
  monitor_options.fetch = app->options_.fetch;
  ASSIGN_OR_RETURN(app->monitor_, SiteMonitor::Create(std::move(monitor_options)));
  if (app->options_.monitor_interval.count() > 0) {
    app->monitor_->Start(app->options_.monitor_interval);
  }
  if (app->dev_mode_) {
    log::Warn(
        "web app in dev mode: no --web-users file, so every visitor on loopback is an "
        "operator",
        {});
  }
  return app;
}

WebApp::WebApp(WebAppOptions options, const serving::WebAppContext& context)
    : options_(std::move(options)),
      context_(context),
      sessions_(options_.clock, options_.session_idle_timeout, options_.max_sessions),
      recent_(/*points_per_series=*/500, /*max_series=*/200, /*max_anomalies=*/200) {}

WebApp::~WebApp() {
  if (monitor_) monitor_->Stop();
}

Status WebApp::RefreshUsers() {
  if (options_.users_file.empty()) return Status::Ok();
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(options_.users_file, ec);
  std::lock_guard<std::mutex> lock(users_mu_);
  if (!ec && mtime == users_mtime_ && users_) return Status::Ok();
  auto users = UsersFile::Load(options_.users_file);
  if (!users.ok()) {
    log::Warn("cannot reload the users file; keeping the previous one",
              {{"error", users.status().message()}});
    return users.status();
  }
  users_ = std::move(*users);
  users_mtime_ = mtime;
  return Status::Ok();
}

std::optional<WebApp::Principal> WebApp::Authenticate(const http::Request& request) {
  constexpr std::string_view kBearer = "Bearer ";
  const std::string_view authorization = request.Header("Authorization");
  if (authorization.size() > kBearer.size() && authorization.substr(0, kBearer.size()) == kBearer) {
    if (!context_.api_token.empty() &&
        ConstantTimeEquals(authorization.substr(kBearer.size()), context_.api_token)) {
      return Principal{"api-token", Role::kOperator, "", false};
    }
    return std::nullopt;
  }
  const std::string_view id = CookieValue(request.Header("Cookie"), kCookie);
  if (auto session = sessions_.Find(id)) {
    return Principal{session->user, session->role, session->csrf, true};
  }
  return std::nullopt;
}

Response WebApp::Session(const http::Request& request) {
  auto principal = Authenticate(request);
  Response response;
  if (!principal && dev_mode_) {
    const ::edgeloop::webapp::Session session = sessions_.Create("dev", Role::kOperator);
    principal = Principal{session.user, session.role, session.csrf, true};
    response.headers.emplace_back("Set-Cookie", std::string(kCookie) + "=" + session.id +
                                                    "; Path=/; HttpOnly; SameSite=Strict");
  }
  Json body = {{"mode", dev_mode_ ? "dev" : "production"},
               {"login_methods", Json::array()},
               {"logged_in", principal.has_value()}};
  if (!options_.users_file.empty()) body["login_methods"].push_back("password");
  if (!context_.api_token.empty()) body["login_methods"].push_back("token");
  if (dev_mode_) {
    body["notice"] =
        "Dev mode: no users file is configured and the server listens on loopback only, so "
        "everyone who can reach it is an operator. Start serve with --web-users FILE for "
        "production.";
  }
  if (principal) {
    body["user"] = principal->user;
    body["role"] = std::string(RoleName(principal->role));
    body["csrf"] = principal->csrf;
  }
  response.status = 200;
  response.body = Dump(body);
  return response;
}

Response WebApp::Login(const http::Request& request) {
  Json body = Json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return Response::Error(400, "the request body must be a JSON object");
  }
  std::string user;
  Role role = Role::kUser;
  if (body.contains("token")) {
    if (!body["token"].is_string()) return Response::Error(400, "'token' must be a string");
    if (context_.api_token.empty() ||
        !ConstantTimeEquals(body["token"].get<std::string>(), context_.api_token)) {
      return Response::Error(401, "wrong token");
    }
    user = "api-token";
    role = Role::kOperator;
  } else {
    if (!body.contains("user") || !body["user"].is_string() || !body.contains("password") ||
        !body["password"].is_string()) {
      return Response::Error(400, "give 'user' and 'password' (strings), or 'token'");
    }
    if (options_.users_file.empty()) {
      return Response::Error(401, "no users are configured on this server (serve --web-users)");
    }
    (void)RefreshUsers();
    std::string hash;
    {
      std::lock_guard<std::mutex> lock(users_mu_);
      if (users_) {
        if (const User* found = users_->Find(body["user"].get<std::string>())) {
          hash = found->password_hash;
          role = found->role;
        }
      }
    }
    // Hashing runs outside the lock; an unknown user fails the same way as a wrong password.
    if (hash.empty() || !VerifyPassword(body["password"].get<std::string>(), hash)) {
      log::Warn("web app login refused", {{"user", body["user"].get<std::string>()}});
      return Response::Error(401, "wrong user name or password");
    }
    user = body["user"].get<std::string>();
  }
  const ::edgeloop::webapp::Session session = sessions_.Create(user, role);
  log::Info("web app login", {{"user", user}, {"role", std::string(RoleName(role))}});
  Response response = Response::Json(200, Dump({{"logged_in", true},
                                                {"user", user},
                                                {"role", std::string(RoleName(role))},
                                                {"csrf", session.csrf},
                                                {"mode", dev_mode_ ? "dev" : "production"}}));
  response.headers.emplace_back("Set-Cookie", std::string(kCookie) + "=" + session.id +
                                                  "; Path=/; HttpOnly; SameSite=Strict");
  return response;
}

Response WebApp::Models() {
  Json models = Json::array();
  std::string last;
  for (const serving::IndexEntry& entry : context_.manager->Index(/*ready_only=*/true)) {
    if (entry.name == last) continue;  // the highest ready version is what the page scores
    last = entry.name;
    auto servable = context_.manager->Find(entry.name, std::nullopt);
    if (!servable.ok()) continue;
    const inference::ModelConfig& config = (*servable)->config;
    Json model = {{"name", entry.name},
                  {"version", (*servable)->version_string},
                  {"platform", std::string((*servable)->model->platform())},
                  {"stateful", (*servable)->model->stateful()}};
    auto schema = SchemaFor(config, CardOf(config), context_.anomaly_threshold);
    if (schema.ok()) {
      model["schema"] = Json::parse(SchemaJson(*schema, config));
    } else {
      model["error"] = schema.status().message();
    }
    models.push_back(std::move(model));
  }
  return Response::Json(200,
                        Dump({{"models", models}, {"feedback", context_.insights != nullptr}}));
}

Response WebApp::ScoreRecord(const http::Request& request, std::string_view model) {
  const Clock::SteadyTime started = options_.clock->Now();
  Json body = Json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains("values") ||
      !body["values"].is_object()) {
    return Response::Error(400, "the body must be {\"values\": {\"column\": value, ...}}");
  }
  auto found = context_.manager->Find(model, std::nullopt);
  if (!found.ok()) return http::ErrorResponse(found.status());
  std::shared_ptr<const serving::ServableVersion> servable = std::move(*found);
  const inference::ModelConfig& config = servable->config;
  auto schema = SchemaFor(config, CardOf(config), context_.anomaly_threshold);
  if (!schema.ok()) return http::ErrorResponse(schema.status());
  std::vector<std::pair<std::string, std::string>> values;
  for (const auto& [name, value] : body["values"].items()) {
    if (value.is_string()) {
      values.emplace_back(name, value.get<std::string>());
    } else if (value.is_null()) {
      values.emplace_back(name, "");
    } else if (value.is_number() || value.is_boolean()) {
      values.emplace_back(name, value.dump());
    } else {
      return Response::Error(400, "'" + name + "' must be a string, number, boolean or null");
    }
  }
  auto batch = ParseRecord(values, *schema, config);
  if (!batch.ok()) return http::ErrorResponse(batch.status());
  std::vector<int> indices = schema->outputs;
  const bool explain = schema->contributions >= 0;
  if (explain) indices.push_back(schema->contributions);
  std::vector<Tensor> outputs;
  const Status status = servable->model->Predict(batch->inputs, indices, &outputs);
  servable->metrics.CountRequest(config.name, servable->version_string,
                                 status.ok() ? 200 : http::HttpStatusFromStatus(status));
  if (!status.ok()) return http::ErrorResponse(status);
  std::vector<Tensor> contributions;
  if (explain) {
    contributions.push_back(std::move(outputs.back()));
    outputs.pop_back();
  }
  const auto [anomaly, score] = Verdict(outputs, 0, schema->threshold);
  const std::string request_id = queue::NewEventId(*options_.clock);
  const double seconds = std::chrono::duration<double>(options_.clock->Now() - started).count();
  servable->metrics.request_seconds->Observe(seconds);
  if (context_.insights != nullptr) {
    context_.insights->OnPrediction(servable, request_id, batch->inputs, outputs, seconds);
  }
  recent_.Add({WallMs(options_.clock->WallNow()), config.name, SeriesOf(batch->inputs, 0),
               score.value_or(0), anomaly});
  std::string row;
  AppendRowValues(outputs, 0, &row);
  Json out = {{"model", config.name},     {"version", servable->version_string},
              {"request_id", request_id}, {"row", 0},
              {"anomaly", anomaly},       {"values", Json::parse(row)}};
  out["score"] = score && std::isfinite(*score) ? Json(*score) : Json(nullptr);
  Json names = Json::array();
  for (int index : schema->outputs) names.push_back(config.outputs[index].name);
  out["outputs"] = names;
  if (explain && contributions[0].datatype() == inference::DataType::kFp32) {
    const auto v = contributions[0].values<float>();
    std::vector<std::pair<double, std::string>> ranked;
    const size_t features = v.size() > 0 ? v.size() - 1 : 0;
    for (size_t k = 0; k < features; ++k) {
      const std::string name =
          k < config.feature_names.size() ? config.feature_names[k] : "f" + std::to_string(k);
      ranked.emplace_back(v[k], name);
    }
    std::sort(ranked.begin(), ranked.end(),
              [](auto& a, auto& b) { return std::fabs(a.first) > std::fabs(b.first); });
    Json top = Json::array();
    for (size_t k = 0; k < ranked.size() && k < 8; ++k) {
      top.push_back({{"feature", ranked[k].second}, {"value", ranked[k].first}});
    }
    out["contributions"] = top;
    if (!v.empty()) out["bias"] = v[v.size() - 1];
  }
  return Response::Json(200, Dump(out));
}

Response WebApp::ScoreCsv(const http::Request& request, std::string_view model) {
  const Clock::SteadyTime started = options_.clock->Now();
  auto found = context_.manager->Find(model, std::nullopt);
  if (!found.ok()) return http::ErrorResponse(found.status());
  std::shared_ptr<const serving::ServableVersion> servable = std::move(*found);
  const inference::ModelConfig& config = servable->config;
  auto schema = SchemaFor(config, CardOf(config), context_.anomaly_threshold);
  if (!schema.ok()) return http::ErrorResponse(schema.status());
  const std::string upload = queue::NewEventId(*options_.clock);
  std::vector<std::string> ignored;
  std::string results;
  results.reserve(request.body.size() / 4 + 64);
  std::string ids;
  int64_t rows = 0;
  int64_t anomalies = 0;
  int64_t batches = 0;
  int64_t recorded_anomalies = 0;
  const int64_t now_ms = WallMs(options_.clock->WallNow());
  const Status status = ReadCsv(
      request.body, *schema, config, options_.csv, &ignored, [&](ParsedBatch& batch) -> Status {
        std::vector<Tensor> outputs;
        const Clock::SteadyTime batch_started = options_.clock->Now();
        RETURN_IF_ERROR(servable->model->Predict(batch.inputs, schema->outputs, &outputs)
                            .WithContext("rows " + std::to_string(batch.first_row + 1) + "-" +
                                         std::to_string(batch.first_row + batch.rows)));
        const std::string request_id = upload + "-" + std::to_string(batches);
        const double seconds =
            std::chrono::duration<double>(options_.clock->Now() - batch_started).count();
        servable->metrics.batch_rows->Observe(static_cast<double>(batch.rows));
        if (context_.insights != nullptr) {
          context_.insights->OnPrediction(servable, request_id, batch.inputs, outputs, seconds);
        }
        ids += (batches ? "," : "") + json::Quote(request_id);
        for (int64_t r = 0; r < batch.rows; ++r) {
          const auto [anomaly, score] = Verdict(outputs, r, schema->threshold);
          if (anomaly) ++anomalies;
          // A bulk upload adds at most 50 anomalies and its last rows to the recent-scores
          // ring, so that one file does not push every live series' anomalies out.
          if (anomaly ? recorded_anomalies < 50 : batch.rows - r <= 50) {
            if (anomaly) ++recorded_anomalies;
            recent_.Add(
                {now_ms, config.name, SeriesOf(batch.inputs, r), score.value_or(0), anomaly});
          }
          if (rows) results.push_back(',');
          results.push_back('[');
          results.append(std::to_string(batch.first_row + r));
          results.push_back(',');
          results.append(std::to_string(batches));
          results.push_back(',');
          results.append(std::to_string(r));
          results.append(anomaly ? ",true," : ",false,");
          AppendDouble(score, &results);
          results.push_back(',');
          AppendRowValues(outputs, r, &results);
          results.push_back(']');
          ++rows;
        }
        ++batches;
        return Status::Ok();
      });
  const int code = status.ok() ? 200 : http::HttpStatusFromStatus(status);
  servable->metrics.CountRequest(config.name, servable->version_string, code);
  if (!status.ok()) return http::ErrorResponse(status);
  const double seconds = std::chrono::duration<double>(options_.clock->Now() - started).count();
  servable->metrics.request_seconds->Observe(seconds);
  Json names = Json::array();
  for (int index : schema->outputs) names.push_back(config.outputs[index].name);
  std::string body = "{\"model\":" + json::Quote(config.name) +
                     ",\"version\":" + json::Quote(servable->version_string) +
                     ",\"rows\":" + std::to_string(rows) +
                     ",\"anomalies\":" + std::to_string(anomalies) + ",\"outputs\":" + Dump(names) +
                     ",\"ignored_columns\":" + Dump(ignored) + ",\"seconds\":";
  AppendDouble(seconds, &body);
  body += ",\"request_ids\":[" + ids + "],\"results\":[" + results + "]}";
  log::Info(
      "web app scored a CSV file",
      {{"model", config.name}, {"rows", rows}, {"anomalies", anomalies}, {"seconds", seconds}});
  return Response::Json(200, std::move(body));
}

void WebApp::Feedback(const http::Request& request, http::Responder respond) {
  Json body = Json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return respond(Response::Error(400, "the request body must be a JSON object"));
  }
  for (const char* field : {"model", "version", "request_id", "verdict"}) {
    if (!body.contains(field) || !body[field].is_string() ||
        body[field].get<std::string>().empty()) {
      return respond(Response::Error(400, std::string("'") + field + "' (a string) is required"));
    }
  }
  const std::string verdict = body["verdict"].get<std::string>();
  if (verdict != "correct" && verdict != "incorrect" && verdict != "label") {
    return respond(Response::Error(400, "'verdict' is correct, incorrect or label"));
  }
  Json label = {{"verdict", verdict}};
  if (body.contains("label") && !body["label"].is_null()) {
    if (!body["label"].is_string() && !body["label"].is_number() && !body["label"].is_boolean()) {
      return respond(Response::Error(400, "'label' is a string, number or boolean"));
    }
    label["value"] = body["label"];
  } else if (verdict == "label") {
    return respond(Response::Error(400, "give the true label in 'label'"));
  }
  if (body.contains("row")) {
    if (!body["row"].is_number_integer())
      return respond(Response::Error(400, "'row' is an integer"));
    label["row"] = body["row"];
  }
  std::string note;
  if (body.contains("note") && !body["note"].is_null()) {
    if (!body["note"].is_string()) return respond(Response::Error(400, "'note' is a string"));
    note = body["note"].get<std::string>();
    if (note.size() > 2000) return respond(Response::Error(400, "'note' has at most 2000 bytes"));
  }
  // The existing OIP feedback path makes the event (serve --queue) and answers once it is
  // durable.
  const std::string model = body["model"].get<std::string>();
  const std::string version = body["version"].get<std::string>();
  for (char c : model + version) {
    if (c == '/' || c == '?' || c == '%' || c == '#' || static_cast<unsigned char>(c) < 0x20) {
      return respond(Response::Error(400, "invalid model or version name"));
    }
  }
  http::Request forwarded;
  forwarded.method = Method::kPost;
  forwarded.target = "/v2/models/" + model + "/versions/" + version + "/feedback";
  forwarded.headers.emplace_back("Content-Type", "application/json");
  forwarded.body = Dump({{"request_id", body["request_id"]}, {"label", label}, {"comment", note}});
  context_.api->Handle(std::move(forwarded), std::move(respond));
}

Response WebApp::Operator() {
  Json models = Json::array();
  for (const serving::IndexEntry& entry : context_.manager->Index(/*ready_only=*/false)) {
    Json model = {{"name", entry.name},
                  {"version", entry.version},
                  {"state", std::string(serving::VersionStateName(entry.state))},
                  {"reason", entry.reason}};
    if (entry.state == serving::VersionState::kReady && !entry.version.empty()) {
      int64_t number = 0;
      std::from_chars(entry.version.data(), entry.version.data() + entry.version.size(), number);
      auto servable = context_.manager->Find(entry.name, number);
      if (servable.ok()) {
        model["since_ms"] = WallMs((*servable)->loaded_at);
        model["fingerprint"] = (*servable)->fingerprint;
        model["platform"] = std::string((*servable)->model->platform());
      }
    }
    models.push_back(std::move(model));
  }
  Json deployment = nullptr;
  if (context_.deployer != nullptr) {
    deployment = Json::parse(context_.deployer->ReportJson(), nullptr, false);
    if (deployment.is_discarded()) deployment = nullptr;
  }
  const std::vector<Sample> samples = ParsePrometheusText(context_.registry->Render());
  const double total = SumOf(samples, "edgeloop_inference_requests_total");
  const double ok = SumOf(samples, "edgeloop_inference_requests_total", "code=\"200\"");
  const double count = SumOf(samples, "edgeloop_inference_request_duration_seconds_count");
  const double sum = SumOf(samples, "edgeloop_inference_request_duration_seconds_sum");
  // p95 from the histogram buckets summed over models.
  std::map<double, double> buckets;
  for (const Sample& sample : samples) {
    if (sample.name != "edgeloop_inference_request_duration_seconds_bucket") continue;
    const size_t le = sample.labels.find("le=\"");
    if (le == std::string::npos) continue;
    const std::string bound =
        sample.labels.substr(le + 4, sample.labels.find('"', le + 4) - le - 4);
    buckets[bound == "+Inf" ? HUGE_VAL : std::strtod(bound.c_str(), nullptr)] += sample.value;
  }
  std::optional<double> p95;
  for (const auto& [bound, cumulative] : buckets) {
    if (count > 0 && cumulative >= 0.95 * count) {
      p95 = bound;
      break;
    }
  }
  double rate = 0;
  {
    std::lock_guard<std::mutex> lock(rate_mu_);
    const Clock::SteadyTime now = options_.clock->Now();
    const double dt = std::chrono::duration<double>(now - rate_at_).count();
    if (rate_total_ < 0) {
      rate_total_ = total;
      rate_at_ = now;
    } else if (dt >= 1.0) {
      rate_ = (total - rate_total_) / dt;
      rate_total_ = total;
      rate_at_ = now;
    }
    rate = rate_;
  }
  Json requests = {{"total", total},
                   {"errors", total - ok},
                   {"rate_per_s", rate},
                   {"latency_mean_ms", count > 0 ? sum / count * 1000 : 0.0}};
  requests["latency_p95_ms"] = p95 && std::isfinite(*p95) ? Json(*p95 * 1000) : Json(nullptr);
  Json site = Json::parse(monitor_->Json());
  return Response::Json(
      200, Dump({{"models", models},
                 {"deployment", deployment},
                 {"requests", requests},
                 {"queue", site["queue"]},
                 {"uplink", site["uplink"]},
                 {"dropped_insights", SumOf(samples, "edgeloop_insight_events_dropped_total")}}));
}

void WebApp::ForwardToApi(http::Request request, http::Responder respond) {
  // Scores of streaming detectors (stateful models) are recorded for the Recent anomalies page:
  // the request's series and timestamps, the response's score and anomaly outputs.
  const std::string_view path = request.path();
  constexpr std::string_view kPrefix = "/v2/models/";
  if (request.method != Method::kPost || path.substr(0, kPrefix.size()) != kPrefix ||
      path.size() < 6 || path.substr(path.size() - 6) != "/infer") {
    return context_.api->Handle(std::move(request), std::move(respond));
  }
  std::string_view rest = path.substr(kPrefix.size());
  const std::string model(rest.substr(0, rest.find('/')));
  auto found = context_.manager->Find(model, std::nullopt);
  if (!found.ok() || !(*found)->model->stateful()) {
    return context_.api->Handle(std::move(request), std::move(respond));
  }
  auto body = std::make_shared<std::string>(request.body);
  auto wrapped = http::Responder::FromCallback(
      [this, body, model,
       shared = std::make_shared<http::Responder>(std::move(respond))](Response response) mutable {
        if (response.status == 200) {
          const Json in = Json::parse(*body, nullptr, false);
          const Json out = Json::parse(response.body, nullptr, false);
          std::map<std::string, const Json*> inputs, outputs;
          if (in.is_object() && in.contains("inputs") && in["inputs"].is_array()) {
            for (const Json& t : in["inputs"]) {
              if (t.is_object() && t.contains("name") && t["name"].is_string() &&
                  t.contains("data"))
                inputs[t["name"].get<std::string>()] = &t["data"];
            }
          }
          if (out.is_object() && out.contains("outputs") && out["outputs"].is_array()) {
            for (const Json& t : out["outputs"]) {
              if (t.is_object() && t.contains("name") && t["name"].is_string() &&
                  t.contains("data"))
                outputs[t["name"].get<std::string>()] = &t["data"];
            }
          }
          const Json* score = outputs.count("score") ? outputs["score"] : nullptr;
          const Json* anomaly = outputs.count("anomaly") ? outputs["anomaly"] : nullptr;
          const Json* series = inputs.count("series") ? inputs["series"] : nullptr;
          const Json* time = inputs.count("timestamp") ? inputs["timestamp"] : nullptr;
          const int64_t now_ms = WallMs(options_.clock->WallNow());
          if (score != nullptr && score->is_array()) {
            for (size_t i = 0; i < score->size(); ++i) {
              ScorePoint point;
              point.model = model;
              point.score = (*score)[i].is_number() ? (*score)[i].get<double>() : 0;
              point.anomaly = anomaly != nullptr && anomaly->is_array() && i < anomaly->size() &&
                              (*anomaly)[i].is_boolean() && (*anomaly)[i].get<bool>();
              point.series = series != nullptr && series->is_array() && i < series->size() &&
                                     (*series)[i].is_string()
                                 ? (*series)[i].get<std::string>()
                                 : "";
              point.time_ms = time != nullptr && time->is_array() && i < time->size() &&
                                      (*time)[i].is_number_integer()
                                  ? (*time)[i].get<int64_t>()
                                  : now_ms;
              recent_.Add(point);
            }
          }
        }
        (*shared)(std::move(response));
      });
  context_.api->Handle(std::move(request), std::move(wrapped));
}

void WebApp::Handle(http::Request request, http::Responder respond) {
  const std::string_view path = request.path();
  const Method method = request.method == Method::kHead ? Method::kGet : request.method;
  if (path == "/" || path == "/ui") {
    if (method != Method::kGet) return respond(MethodNotAllowed("GET"));
    Response response;
    response.status = 302;
    response.content_type = "text/plain; charset=utf-8";
    response.headers.emplace_back("Location", "/ui/");
    return respond(std::move(response));
  }
  if (path.substr(0, 4) != "/ui/") return ForwardToApi(std::move(request), std::move(respond));

  if (path.substr(0, 8) != "/ui/api/") {
    if (method != Method::kGet) return respond(MethodNotAllowed("GET"));
    const Asset* asset = FindAsset(path == "/ui/index.html" ? "/ui/" : path);
    if (asset == nullptr) return respond(Response::Error(404, "not found: " + std::string(path)));
    Response response;
    response.status = 200;
    response.content_type = asset->content_type;
    response.body = std::string(asset->body);
    AddSecurityHeaders(response);
    response.headers.emplace_back(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'");
    return respond(std::move(response));
  }

  auto finish = [&respond](Response response) {
    AddSecurityHeaders(response);
    respond(std::move(response));
  };
  std::vector<std::string> segments;
  {
    std::string_view rest = path.substr(8);
    while (!rest.empty()) {
      const size_t slash = rest.find('/');
      std::string decoded;
      if (!DecodeSegment(rest.substr(0, slash), &decoded)) {
        return finish(Response::Error(400, "invalid percent-encoding in the path"));
      }
      if (!decoded.empty()) segments.push_back(std::move(decoded));
      if (slash == std::string_view::npos) break;
      rest.remove_prefix(slash + 1);
    }
  }
  if (segments.empty()) return finish(Response::Error(404, "not found: " + std::string(path)));
  const std::string& route = segments[0];

  if (route == "session" && segments.size() == 1) {
    if (method != Method::kGet) return finish(MethodNotAllowed("GET"));
    return finish(Session(request));
  }
  if (route == "login" && segments.size() == 1) {
    if (method != Method::kPost) return finish(MethodNotAllowed("POST"));
    return finish(Login(request));
  }

  // Everything else needs a principal; POSTs made with a cookie need the CSRF token.
  std::optional<Principal> principal = Authenticate(request);
  if (!principal) {
    return finish(Response::Error(401, dev_mode_ ? "no session: reload the page"
                                                 : "log in first (session expired or missing)"));
  }
  if (method == Method::kPost && principal->cookie &&
      !ConstantTimeEquals(request.Header("X-CSRF-Token"), principal->csrf)) {
    return finish(
        Response::Error(403, "missing or wrong CSRF token (X-CSRF-Token); reload the page"));
  }
  if (route == "logout" && segments.size() == 1) {
    if (method != Method::kPost) return finish(MethodNotAllowed("POST"));
    sessions_.Remove(CookieValue(request.Header("Cookie"), kCookie));
    Response response = Response::Json(200, R"({"logged_in":false})");
    response.headers.emplace_back(
        "Set-Cookie", std::string(kCookie) + "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    return finish(std::move(response));
  }
  if (route == "models" && segments.size() == 1) {
    if (method != Method::kGet) return finish(MethodNotAllowed("GET"));
    return finish(Models());
  }
  if (route == "models" && segments.size() == 3 &&
      (segments[2] == "score" || segments[2] == "score-csv")) {
    if (method != Method::kPost) return finish(MethodNotAllowed("POST"));
    if (segments[2] == "score") return finish(ScoreRecord(request, segments[1]));
    return finish(ScoreCsv(request, segments[1]));
  }
  if (route == "feedback" && segments.size() == 1) {
    if (method != Method::kPost) return finish(MethodNotAllowed("POST"));
    return Feedback(request, http::Responder::FromCallback(
                                 [shared = std::make_shared<http::Responder>(std::move(respond))](
                                     Response response) mutable {
                                   AddSecurityHeaders(response);
                                   (*shared)(std::move(response));
                                 }));
  }
  if (route == "anomalies" && segments.size() == 1) {
    if (method != Method::kGet) return finish(MethodNotAllowed("GET"));
    return finish(Response::Json(200, recent_.Json(QueryParam(request.target, "model"))));
  }
  if (route == "operator" && segments.size() == 1) {
    if (method != Method::kGet) return finish(MethodNotAllowed("GET"));
    if (principal->role != Role::kOperator) {
      return finish(Response::Error(403, "the operator view is for operators"));
    }
    return finish(Operator());
  }
  finish(Response::Error(404, "not found: " + std::string(path)));
}

serving::WebAppFactory MakeWebAppFactory(WebAppOptions options) {
  return
      [options](const serving::WebAppContext& context) -> StatusOr<std::unique_ptr<http::Handler>> {
        ASSIGN_OR_RETURN(std::unique_ptr<WebApp> app, WebApp::Create(options, context));
        return std::unique_ptr<http::Handler>(std::move(app));
      };
}

}  // namespace edgeloop::webapp
