#include "hub/handler.h"

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "hub/codec.h"
#include "hub/event.h"

namespace edgeloop::hub {
namespace {

using http::Method;
using http::Response;
using Json = nlohmann::json;

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Response JsonResponse(int status, const Json& json) { return Response::Json(status, Dump(json)); }

Response Overloaded(int status, std::string_view message) {
  Response response = Response::Error(status, message);
  response.headers.emplace_back("Retry-After", "1");
  return response;
}

Response MethodNotAllowed(std::string_view allowed) {
  Response response = Response::Error(405, "method not allowed; use " + std::string(allowed));
  response.headers.emplace_back("Allow", std::string(allowed));
  return response;
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string UrlDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%' && i + 2 < text.size() && Hex(text[i + 1]) >= 0 &&
               Hex(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(Hex(text[i + 1]) * 16 + Hex(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

class QueryParams {
 public:
  explicit QueryParams(std::string_view target) {
    const size_t q = target.find('?');
    if (q == std::string_view::npos) return;
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
      const size_t amp = rest.find('&');
      const std::string_view pair = rest.substr(0, amp);
      rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
      if (pair.empty()) continue;
      const size_t eq = pair.find('=');
      params_.emplace_back(UrlDecode(pair.substr(0, eq)),
                           eq == std::string_view::npos ? "" : UrlDecode(pair.substr(eq + 1)));
    }
  }
  std::string Get(std::string_view name, std::string fallback = "") const {
    for (const auto& [k, v] : params_) {
      if (k == name) return v;
    }
    return fallback;
  }

 private:
  std::vector<std::pair<std::string, std::string>> params_;
};

StatusOr<int64_t> ParseInt(std::string_view name, std::string_view text) {
  int64_t value = 0;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
  if (result.ec != std::errc() || result.ptr != text.data() + text.size()) {
    return InvalidArgumentError("'" + std::string(name) + "' must be an integer");
  }
  return value;
}

// Unix milliseconds or RFC 3339.
StatusOr<std::optional<int64_t>> ParseTime(std::string_view name, const std::string& text) {
  if (text.empty()) return std::optional<int64_t>();
  if (text.find('-') != std::string::npos && text.size() >= 20) {
    auto ms = ParseRfc3339Ms(text);
    if (!ms.ok())
      return InvalidArgumentError("'" + std::string(name) + "': " + ms.status().message());
    return std::optional<int64_t>(*ms);
  }
  ASSIGN_OR_RETURN(int64_t ms, ParseInt(name, text));
  return std::optional<int64_t>(ms);
}

// "90s", "5m", "1h", "1d", "250ms" or plain milliseconds.
StatusOr<int64_t> ParseDuration(std::string_view name, std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0)
    return InvalidArgumentError("'" + std::string(name) + "' must be like 5m, 1h or 1d");
  ASSIGN_OR_RETURN(int64_t n, ParseInt(name, text.substr(0, digits)));
  const std::string_view unit = text.substr(digits);
  int64_t scale;
  if (unit.empty() || unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60'000;
  } else if (unit == "h") {
    scale = 3'600'000;
  } else if (unit == "d") {
    scale = 86'400'000;
  } else {
    return InvalidArgumentError("'" + std::string(name) + "' has an unknown unit '" +
                                std::string(unit) + "'");
  }
  if (n <= 0 || n > 366LL * 86'400'000 / scale) {
    return InvalidArgumentError("'" + std::string(name) + "' is out of range");
  }
  return n * scale;
}

StatusOr<QueryFilter> ParseFilter(const QueryParams& params) {
  QueryFilter filter;
  ASSIGN_OR_RETURN(filter.from_ms, ParseTime("from", params.Get("from")));
  ASSIGN_OR_RETURN(filter.to_ms, ParseTime("to", params.Get("to")));
  filter.site = params.Get("site");
  filter.model = params.Get("model");
  filter.version = params.Get("version");
  return filter;
}

Json ValueJson(const SqlValue& value) {
  if (const auto* n = std::get_if<int64_t>(&value)) return *n;
  if (const auto* d = std::get_if<double>(&value)) return std::isfinite(*d) ? Json(*d) : Json();
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  return nullptr;
}

Json TableJson(const SqlTable& table) {
  Json rows = Json::array();
  for (const auto& row : table.rows) {
    Json object = Json::object();
    for (size_t c = 0; c < table.columns.size(); ++c) object[table.columns[c]] = ValueJson(row[c]);
    rows.push_back(std::move(object));
  }
  return {{"columns", table.columns}, {"rows", std::move(rows)}};
}

void AppendCsvField(std::string* out, std::string_view text) {
  // Cells that a spreadsheet would run as a formula are prefixed with a quote (CSV injection).
  const bool formula = !text.empty() && (text[0] == '=' || text[0] == '+' || text[0] == '@');
  if (!formula && text.find_first_of(",\"\r\n") == std::string_view::npos) {
    out->append(text);
    return;
  }
  out->push_back('"');
  if (formula) out->push_back('\'');
  for (char c : text) {
    if (c == '"') out->push_back('"');
    out->push_back(c);
  }
  out->push_back('"');
}

std::string TableCsv(const SqlTable& table) {
  std::string out;
  for (size_t c = 0; c < table.columns.size(); ++c) {
    if (c > 0) out.push_back(',');
    AppendCsvField(&out, table.columns[c]);
  }
  out.append("\r\n");
  for (const auto& row : table.rows) {
    for (size_t c = 0; c < row.size(); ++c) {
      if (c > 0) out.push_back(',');
      if (const auto* n = std::get_if<int64_t>(&row[c])) {
        out.append(std::to_string(*n));
      } else if (const auto* d = std::get_if<double>(&row[c])) {
        char buffer[32];
        const auto r = std::to_chars(buffer, buffer + sizeof(buffer), *d);
        out.append(buffer, r.ptr);
      } else if (const auto* s = std::get_if<std::string>(&row[c])) {
        AppendCsvField(&out, *s);
      }
    }
    out.append("\r\n");
  }
  return out;
}

Response TableResponse(const SqlTable& table, bool csv, std::string_view name) {
  if (!csv) return JsonResponse(200, TableJson(table));
  Response response = Response::Json(200, TableCsv(table));
  response.content_type = "text/csv; charset=utf-8";
  response.headers.emplace_back("Content-Disposition",
                                "attachment; filename=\"" + std::string(name) + ".csv\"");
  return response;
}

}  // namespace

HubHandler::HubHandler(Store* store, metrics::Registry* registry, Clock* clock,
                       HubHandlerOptions options)
    : store_(store),
      registry_(registry),
      clock_(clock),
      options_(options),
      auth_(store, clock, options.token_cache_ttl),
      paused_(options.start_paused) {
  events_accepted_ =
      registry->AddCounter("edgeloop_hub_events_total", "Uploaded events by outcome.", {"outcome"})
          ->With({"accepted"});
  events_duplicate_ =
      registry->AddCounter("edgeloop_hub_events_total", "", {"outcome"})->With({"duplicate"});
  events_rejected_ =
      registry->AddCounter("edgeloop_hub_events_total", "", {"outcome"})->With({"rejected"});
  uploads_ = registry->AddCounter("edgeloop_hub_uploads_total", "Uploads stored.")->With({});
  overloaded_ = registry
                    ->AddCounter("edgeloop_hub_overloaded_total",
                                 "Requests refused with 429/503 because every worker was busy.")
                    ->With({});
  ingest_seconds_ = registry
                        ->AddHistogram("edgeloop_hub_ingest_seconds",
                                       "Time to decode, validate and store one upload.", {},
                                       metrics::LatencyBuckets())
                        ->With({});
  const int workers = std::max(1, options_.workers);
  for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { WorkerLoop(); });
}

HubHandler::~HubHandler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    paused_ = false;
  }
  work_.notify_all();
  for (std::thread& thread : threads_) thread.join();
}

void HubHandler::Resume() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    paused_ = false;
  }
  work_.notify_all();
}

bool HubHandler::Submit(Task task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t workers = threads_.size();
    const size_t idle = paused_ ? 0 : workers - static_cast<size_t>(busy_);
    if (queue_.size() >= options_.max_queue + idle) return false;
    queue_.push_back(std::move(task));
  }
  work_.notify_one();
  return true;
}

void HubHandler::WorkerLoop() {
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_.wait(lock, [this] { return stopping_ || (!paused_ && !queue_.empty()); });
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
    }
    task();
    std::lock_guard<std::mutex> lock(mu_);
    --busy_;
  }
}

int64_t HubHandler::WallMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_->WallNow().time_since_epoch())
      .count();
}

void HubHandler::Handle(http::Request request, http::Responder respond) {
  const std::string path(request.path());
  const bool get = request.method == Method::kGet || request.method == Method::kHead;

  if (path == "/healthz") return respond(JsonResponse(200, {{"status", "ok"}}));
  if (path == "/metrics") {
    if (!get) return respond(MethodNotAllowed("GET"));
    Response response = Response::Json(200, registry_->Render());
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return respond(std::move(response));
  }
  if (path.rfind("/api/", 0) != 0) {
    const Asset* asset = FindAsset(path == "/" ? "/index.html" : path);
    if (asset == nullptr) return respond(Response::Error(404, "not found: " + path));
    if (!get) return respond(MethodNotAllowed("GET"));
    Response response = Response::Json(200, std::string(asset->data));
    response.content_type = asset->content_type;
    response.headers.emplace_back("Cache-Control", "no-cache");
    response.headers.emplace_back("X-Content-Type-Options", "nosniff");
    return respond(std::move(response));
  }

  const bool ingest = path == "/api/v1/ingest";
  const bool health = path == "/api/v1/health";
  const bool jobs = path == "/api/v1/jobs" || path.rfind("/api/v1/jobs/", 0) == 0;
  const bool labelled = path == "/api/v1/labelled";
  auto shared_request = std::make_shared<http::Request>(std::move(request));
  auto shared_respond = std::make_shared<http::Responder>(std::move(respond));
  const bool queued =
      Submit([this, ingest, health, jobs, labelled, shared_request, shared_respond, path] {
        http::Request& req = *shared_request;
        if (ingest) return Ingest(req, *shared_respond);
        if (health) return (*shared_respond)(Health());
        if (jobs) return (*shared_respond)(Jobs(req, path));
        if (labelled) return (*shared_respond)(Labelled(req));
        if (path == "/api/v1/sites" && req.method == Method::kPost) {
          return (*shared_respond)(AddSite(req));
        }
        (*shared_respond)(Query(req, path));
      });
  if (!queued) {
    overloaded_->Increment();
    (*shared_respond)(ingest ? Overloaded(429, "the hub is overloaded; retry after the delay")
                             : Overloaded(503, "the hub is overloaded; retry after the delay"));
  }
}

void HubHandler::Ingest(const http::Request& request, http::Responder& respond) {
  const auto started = std::chrono::steady_clock::now();
  if (request.method != Method::kPost) return respond(MethodNotAllowed("POST"));
  auto principal = auth_.Authenticate(request.Header("Authorization"));
  if (!principal.ok()) return respond(http::ErrorResponse(principal.status()));
  if (principal->role != Role::kSite) {
    return respond(Response::Error(403, "only site tokens may upload events"));
  }
  const std::string encoding(request.Header("Content-Encoding"));
  auto decoded = Decode(encoding, request.body, options_.max_batch_bytes);
  if (!decoded.ok()) {
    const StatusCode code = decoded.status().code();
    const int status = code == StatusCode::kOutOfRange      ? 413
                       : code == StatusCode::kUnimplemented ? 415
                                                            : 400;
    return respond(Response::Error(status, decoded.status().message()));
  }
  auto batch = ParseBatch(*decoded, principal->site, {options_.max_events, 1 << 20});
  if (!batch.ok()) {
    const int status = batch.status().code() == StatusCode::kOutOfRange ? 413 : 403;
    return respond(Response::Error(status, batch.status().message()));
  }
  if (batch->events.empty() && batch->rejected.empty()) {
    return respond(Response::Error(400, "the batch holds no events"));
  }
  UploadMeta meta{principal->site,
                  WallMs(),
                  std::string(request.Header("Idempotency-Key").substr(0, 200)),
                  encoding,
                  static_cast<int64_t>(request.body.size()),
                  static_cast<int64_t>(decoded->size())};
  auto result = store_->Ingest(meta, batch->events, static_cast<int64_t>(batch->rejected.size()));
  if (!result.ok()) {
    log::Warn("ingest failed", {{"site", principal->site}, {"error", result.status()}});
    Response response = http::ErrorResponse(result.status());
    if (response.status == 503) response.headers.emplace_back("Retry-After", "1");
    return respond(std::move(response));
  }
  events_accepted_->Increment(static_cast<uint64_t>(result->accepted));
  events_duplicate_->Increment(static_cast<uint64_t>(result->duplicates));
  events_rejected_->Increment(batch->rejected.size());
  uploads_->Increment();
  Json rejected = Json::array();
  for (const Rejection& r : batch->rejected) {
    Json item = {{"line", r.line}, {"error", r.error}};
    item["id"] = r.id.empty() ? Json() : Json(r.id);
    rejected.push_back(std::move(item));
  }
  ingest_seconds_->Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  respond(JsonResponse(200, {{"accepted", result->accepted},
                             {"duplicates", result->duplicates},
                             {"rejected", std::move(rejected)}}));
}

Response HubHandler::AddSite(const http::Request& request) {
  auto principal = auth_.Authenticate(request.Header("Authorization"));
  if (!principal.ok()) return http::ErrorResponse(principal.status());
  if (principal->role != Role::kAdmin)
    return Response::Error(403, "only admin tokens may add sites");
  Json body = Json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains("name") ||
      !body["name"].is_string()) {
    return Response::Error(400, "the body must be {\"name\": \"<site>\"}");
  }
  const std::string name = body["name"];
  const int64_t now = WallMs();
  if (Status s = store_->AddSite(name, now); !s.ok()) return http::ErrorResponse(s);
  auto token = NewToken();
  if (!token.ok()) return http::ErrorResponse(token.status());
  TokenRecord record{"site:" + name, Role::kSite, name, now, std::nullopt, std::nullopt};
  if (Status s = store_->AddToken(HashToken(*token), record); !s.ok())
    return http::ErrorResponse(s);
  return JsonResponse(201, {{"site", name}, {"token", *token}});
}

Response HubHandler::Query(const http::Request& request, std::string_view full_path) {
  auto principal = auth_.Authenticate(request.Header("Authorization"));
  if (!principal.ok()) {
    Response response = http::ErrorResponse(principal.status());
    if (response.status == 401)
      response.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"edgeloop-hub\"");
    return response;
  }
  std::string_view path = full_path;
  if (path == "/api/v1/whoami") {
    Json who = {{"name", principal->name}, {"role", std::string(RoleName(principal->role))}};
    if (!principal->site.empty()) who["site"] = principal->site;
    return JsonResponse(200, who);
  }
  if (principal->role == Role::kSite) {
    return Response::Error(403, "site tokens may only upload; reading needs a read or admin token");
  }
  if (request.method != Method::kGet && request.method != Method::kHead) {
    return MethodNotAllowed("GET");
  }
  const QueryParams params(request.target);
  bool csv = params.Get("format") == "csv";
  if (path.size() > 4 && path.substr(path.size() - 4) == ".csv") {
    csv = true;
    path.remove_suffix(4);
  }
  auto filter = ParseFilter(params);
  if (!filter.ok()) return http::ErrorResponse(filter.status());
  auto limit = ParseInt("limit", params.Get("limit", "100"));
  if (!limit.ok()) return http::ErrorResponse(limit.status());
  if (*limit < 1 || *limit > 1'000'000)
    return Response::Error(400, "'limit' must be between 1 and 1000000");
  auto bucket = ParseDuration("bucket", params.Get("bucket", "1h"));
  if (!bucket.ok()) return http::ErrorResponse(bucket.status());

  const std::string name(path.substr(path.rfind('/') + 1));
  StatusOr<SqlTable> table = InternalError("unreachable");
  if (name == "sites") {
    auto sites = store_->ListSites();
    if (!sites.ok()) return http::ErrorResponse(sites.status());
    const int64_t now = WallMs();
    SqlTable t;
    t.columns = {"site",         "created_at",    "last_seen_at",
                 "events_total", "uploads_total", "sync_state"};
    for (const SiteInfo& s : *sites) {
      std::string state = "never";
      if (s.last_seen_at) {
        const int64_t age = now - *s.last_seen_at;
        state = age < options_.stale_after.count()     ? "ok"
                : age < options_.offline_after.count() ? "stale"
                                                       : "offline";
      }
      t.rows.push_back({s.name, s.created_at,
                        s.last_seen_at ? SqlValue{*s.last_seen_at} : SqlValue{}, s.events_total,
                        s.uploads_total, state});
    }
    table = std::move(t);
  } else if (name == "stats") {
    std::vector<std::string> group_by;
    const std::string group = params.Get("group_by", "site");
    size_t start = 0;
    while (start < group.size()) {
      const size_t comma = group.find(',', start);
      const std::string item =
          group.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!item.empty()) group_by.push_back(item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    table = store_->Counts(*filter, *bucket, group_by);
  } else if (name == "anomalies") {
    std::optional<double> min_score;
    if (const std::string text = params.Get("min_score"); !text.empty()) {
      char* end = nullptr;
      min_score = std::strtod(text.c_str(), &end);
      if (end == text.c_str() || *end != '\0')
        return Response::Error(400, "'min_score' must be a number");
    }
    const std::string order = params.Get("order", "score");
    if (order != "score" && order != "time")
      return Response::Error(400, "'order' must be score or time");
    table = store_->Anomalies(*filter, min_score, order == "score", *limit);
  } else if (name == "versions") {
    table = store_->Versions(*filter);
  } else if (name == "accuracy") {
    table = store_->Accuracy(*filter, *bucket);
  } else if (name == "events") {
    table = store_->Events(*filter, *limit);
  } else if (name == "uploads") {
    table = store_->Uploads(*filter, *limit);
  } else if (name == "drift") {
    table = store_->DriftReports(*filter, *limit);
  } else if (name == "distribution") {
    auto bins = ParseInt("bins", params.Get("bins", "20"));
    if (!bins.ok()) return http::ErrorResponse(bins.status());
    auto h =
        store_->Distribution(*filter, params.Get("metric", "latency_ms"), static_cast<int>(*bins));
    if (!h.ok()) return http::ErrorResponse(h.status());
    SqlTable t;
    t.columns = {"lower_bound", "count"};
    for (size_t i = 0; i < h->counts.size(); ++i)
      t.rows.push_back({h->lower_bounds[i], h->counts[i]});
    if (csv) return TableResponse(t, true, name);
    Json json = TableJson(t);
    json["summary"] = {{"count", h->count}, {"min", h->min}, {"max", h->max}, {"mean", h->mean},
                       {"p50", h->p50},     {"p90", h->p90}, {"p99", h->p99}};
    return JsonResponse(200, json);
  } else {
    return Response::Error(404, "no such endpoint: " + std::string(full_path));
  }
  if (!table.ok()) return http::ErrorResponse(table.status());
  return TableResponse(*table, csv, name);
}

Response HubHandler::Health() {
  // Open to anyone (load balancers, `edgeloop up`): no names, counts or secrets.
  // The schema does not change while the hub runs: asked once, so that health checks add no
  // load to the store.
  Json body = {{"status", "ok"}, {"scheduler", jobs_ != nullptr}};
  if (schema_version_ == 0) {
    auto version = store_->SchemaVersion();
    if (!version.ok()) {
      body["status"] = "store unavailable";
      return JsonResponse(503, body);
    }
    schema_version_ = *version;
  }
  body["schema_version"] = schema_version_.load();
  return JsonResponse(200, body);
}

namespace {

Json JobJson(const JobRecord& job, bool full) {
  auto opt_int = [](const std::optional<int64_t>& v) { return v ? Json(*v) : Json(); };
  auto opt_double = [](const std::optional<double>& v) {
    return v && std::isfinite(*v) ? Json(*v) : Json();
  };
  auto text = [](const std::string& v) { return v.empty() ? Json() : Json(v); };
  Json out = {{"id", job.id},
              {"model", job.model},
              {"trigger", job.trigger},
              {"status", job.status},
              {"created_at", job.created_at},
              {"started_at", opt_int(job.started_at)},
              {"finished_at", opt_int(job.finished_at)},
              {"exit_step", text(job.exit_step)},
              {"error", text(job.error)},
              {"gate_passed", job.gate_passed ? Json(*job.gate_passed == 1) : Json()},
              {"gate_metric", text(job.gate_metric)},
              {"challenger", opt_double(job.challenger)},
              {"champion", opt_double(job.champion)},
              {"version", text(job.version)},
              {"digest", text(job.digest)}};
  if (full) {
    Json details = Json::parse(job.details, nullptr, false);
    if (details.is_object()) {
      for (auto& [key, value] : details.items()) out[key] = value;
    }
  }
  return out;
}

}  // namespace

Response HubHandler::Jobs(const http::Request& request, std::string_view path) {
  auto principal = auth_.Authenticate(request.Header("Authorization"));
  if (!principal.ok()) {
    Response response = http::ErrorResponse(principal.status());
    if (response.status == 401)
      response.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"edgeloop-hub\"");
    return response;
  }
  if (principal->role == Role::kSite) {
    return Response::Error(403, "site tokens may only upload; jobs need a read or admin token");
  }
  if (path == "/api/v1/jobs" && request.method == Method::kPost) {
    if (principal->role != Role::kAdmin) {
      return Response::Error(403, "only admin tokens may start jobs");
    }
    if (jobs_ == nullptr) {
      return Response::Error(409, "the hub runs no scheduler; start it with --schedule FILE");
    }
    Json body = Json::parse(request.body, nullptr, false);
    if (body.is_discarded() || !body.is_object() || !body.contains("model") ||
        !body["model"].is_string() || body["model"].get<std::string>().empty()) {
      return Response::Error(400, "the body must be {\"model\": \"<name>\"}");
    }
    auto id = jobs_->RunNow(body["model"].get<std::string>());
    if (!id.ok()) return http::ErrorResponse(id.status());
    return JsonResponse(202, {{"id", *id}, {"status", "queued"}});
  }
  if (request.method != Method::kGet && request.method != Method::kHead) {
    return MethodNotAllowed(path == "/api/v1/jobs" ? "GET, POST" : "GET");
  }
  const QueryParams params(request.target);
  if (path == "/api/v1/jobs") {
    auto limit = ParseInt("limit", params.Get("limit", "100"));
    if (!limit.ok()) return http::ErrorResponse(limit.status());
    if (*limit < 1 || *limit > 10'000)
      return Response::Error(400, "'limit' must be between 1 and 10000");
    auto list = store_->ListJobs(params.Get("model"), *limit);
    if (!list.ok()) return http::ErrorResponse(list.status());
    Json rows = Json::array();
    for (const JobRecord& job : *list) rows.push_back(JobJson(job, false));
    return JsonResponse(200, {{"jobs", std::move(rows)}});
  }
  std::string_view rest = path.substr(std::string_view("/api/v1/jobs/").size());
  bool log = false;
  if (rest.size() > 4 && rest.substr(rest.size() - 4) == "/log") {
    log = true;
    rest.remove_suffix(4);
  }
  auto id = ParseInt("job id", rest);
  if (!id.ok()) return Response::Error(404, "no such job: " + std::string(rest));
  auto job = store_->GetJob(*id);
  if (!job.ok()) return http::ErrorResponse(job.status());
  if (!job->has_value()) return Response::Error(404, "no job " + std::string(rest));
  if (log) {
    Response response = Response::Json(200, (*job)->log);
    response.content_type = "text/plain; charset=utf-8";
    return response;
  }
  return JsonResponse(200, JobJson(**job, true));
}

Response HubHandler::Labelled(const http::Request& request) {
  auto principal = auth_.Authenticate(request.Header("Authorization"));
  if (!principal.ok()) return http::ErrorResponse(principal.status());
  if (principal->role == Role::kSite) {
    return Response::Error(403, "site tokens may only upload; reading needs a read or admin token");
  }
  if (request.method != Method::kGet && request.method != Method::kHead) {
    return MethodNotAllowed("GET");
  }
  const QueryParams params(request.target);
  auto filter = ParseFilter(params);
  if (!filter.ok()) return http::ErrorResponse(filter.status());
  if (filter->model.empty()) return Response::Error(400, "'model' is required");
  auto after = ParseTime("after", params.Get("after"));
  if (!after.ok()) return http::ErrorResponse(after.status());
  auto limit = ParseInt("limit", params.Get("limit", "1000000"));
  if (!limit.ok()) return http::ErrorResponse(limit.status());
  if (*limit < 1 || *limit > 10'000'000)
    return Response::Error(400, "'limit' must be between 1 and 10000000");
  // Labels younger than `settle_ms` (default 1 s) are left for the next read: an upload that
  // was received earlier but is still committing cannot then slip below a reader's watermark.
  auto settle = ParseInt("settle_ms", params.Get("settle_ms", "1000"));
  if (!settle.ok()) return http::ErrorResponse(settle.status());
  if (*settle < 0) return Response::Error(400, "'settle_ms' must not be negative");
  auto table = store_->Labelled(*filter, *after, WallMs() - *settle, *limit);
  if (!table.ok()) return http::ErrorResponse(table.status());
  const std::string format = params.Get("format", "jsonl");
  if (format == "json") return TableResponse(*table, false, "labelled");
  if (format != "jsonl") return Response::Error(400, "'format' must be jsonl or json");
  // One JSON object per labelled event, `inputs` flattened into top-level keys (an input
  // whose name is taken by a fixed key gets the prefix "input_"), times as RFC 3339.
  const std::vector<std::string>& cols = table->columns;
  std::string body;
  for (const auto& row : table->rows) {
    Json line = Json::object();
    Json inputs;
    for (size_t c = 0; c < cols.size(); ++c) {
      const std::string& col = cols[c];
      if (col == "inputs") {
        if (const auto* text = std::get_if<std::string>(&row[c])) {
          inputs = Json::parse(*text, nullptr, false);
        }
      } else if (col == "ts" || col == "labelled_at") {
        line[col] = FormatRfc3339(Clock::WallTime(std::chrono::milliseconds(
            std::get_if<int64_t>(&row[c]) ? *std::get_if<int64_t>(&row[c]) : 0)));
      } else if (col == "correct") {
        const auto* n = std::get_if<int64_t>(&row[c]);
        line[col] = n ? Json(*n == 1) : Json();
      } else {
        line[col] = ValueJson(row[c]);
      }
    }
    // A label that is a JSON object (the edge's {"failure": 1}) also gives label_<key> columns.
    Json label_object;
    if (line.contains("label") && line["label"].is_string()) {
      const std::string& text = line["label"].get_ref<const std::string&>();
      if (!text.empty() && text[0] == '{') label_object = Json::parse(text, nullptr, false);
    }
    if (label_object.is_object()) {
      for (auto& [key, value] : label_object.items()) line["label_" + key] = value;
    }
    if (inputs.is_object()) {
      for (auto& [key, value] : inputs.items()) {
        const std::string name = line.contains(key) ? "input_" + key : key;
        line[name] = value;
      }
    }
    body += Dump(line);
    body += '\n';
  }
  Response response = Response::Json(200, std::move(body));
  response.content_type = "application/x-ndjson";
  return response;
}

}  // namespace edgeloop::hub
