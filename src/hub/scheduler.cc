#include "hub/scheduler.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/logging.h"
#include "hub/auth.h"

namespace edgeloop::hub {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

std::string Line(const YAML::Node& node) { return "line " + std::to_string(node.Mark().line + 1); }

Status Bad(const std::string& origin, const YAML::Node& node, const std::string& message) {
  return InvalidArgumentError(origin + ": " + Line(node) + ": " + message);
}

Status CheckKeys(const std::string& origin, const YAML::Node& map, const std::string& what,
                 const std::set<std::string>& known) {
  if (!map.IsMap()) return Bad(origin, map, what + " must be a mapping");
  for (const auto& item : map) {
    const std::string key = item.first.as<std::string>();
    if (known.count(key) == 0) {
      std::string list;
      for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
      return Bad(origin, item.first,
                 "unknown key '" + key + "' in " + what + " (known: " + list + ")");
    }
  }
  return Status::Ok();
}

StatusOr<std::string> Scalar(const std::string& origin, const YAML::Node& node,
                             const std::string& key) {
  if (!node.IsScalar()) return Bad(origin, node, "'" + key + "' must be a string");
  return node.as<std::string>();
}

StatusOr<int64_t> Count(const std::string& origin, const YAML::Node& node, const std::string& key) {
  ASSIGN_OR_RETURN(std::string text, Scalar(origin, node, key));
  int64_t value = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), value);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size() || value < 1) {
    return Bad(origin, node, "'" + key + "' must be a positive integer");
  }
  return value;
}

StatusOr<int64_t> Duration(const std::string& origin, const YAML::Node& node,
                           const std::string& key) {
  ASSIGN_OR_RETURN(std::string text, Scalar(origin, node, key));
  auto ms = ParseDurationMs(text);
  if (!ms.ok()) return Bad(origin, node, "'" + key + "': " + ms.status().message());
  return *ms;
}

fs::path Resolve(const fs::path& base, const std::string& path) {
  const fs::path p(path);
  return p.is_absolute() ? p : (base / p).lexically_normal();
}

// A champion or push reference stays as written unless it is a relative folder.
std::string ResolveReference(const fs::path& base, const std::string& ref) {
  if (ref.find("://") != std::string::npos) return ref;
  return Resolve(base, ref).string();
}

StatusOr<ModelSchedule> ParseModel(const std::string& origin, const YAML::Node& node,
                                   const fs::path& base, const fs::path& default_lake) {
  RETURN_IF_ERROR(
      CheckKeys(origin, node, "a model",
                {"model", "pipeline", "train", "lake", "champion", "push", "key", "promote",
                 "schedule", "triggers", "cooldown", "timeout", "max_log_bytes"}));
  ModelSchedule m;
  for (const char* required : {"model", "pipeline", "train"}) {
    if (!node[required]) return Bad(origin, node, "a model needs '" + std::string(required) + "'");
  }
  ASSIGN_OR_RETURN(m.model, Scalar(origin, node["model"], "model"));
  if (m.model.empty() || m.model.size() > 256) return Bad(origin, node["model"], "bad model name");
  ASSIGN_OR_RETURN(std::string pipeline, Scalar(origin, node["pipeline"], "pipeline"));
  ASSIGN_OR_RETURN(std::string train, Scalar(origin, node["train"], "train"));
  m.pipeline = Resolve(base, pipeline);
  m.train = Resolve(base, train);
  m.lake = default_lake;
  if (node["lake"]) {
    ASSIGN_OR_RETURN(std::string lake, Scalar(origin, node["lake"], "lake"));
    m.lake = Resolve(base, lake);
  }
  if (m.lake.empty()) return Bad(origin, node, "model '" + m.model + "' needs a 'lake'");
  if (node["champion"]) {
    ASSIGN_OR_RETURN(std::string ref, Scalar(origin, node["champion"], "champion"));
    m.champion = ResolveReference(base, ref);
  }
  if (node["push"]) {
    ASSIGN_OR_RETURN(m.push, Scalar(origin, node["push"], "push"));
  }
  if (node["key"]) {
    ASSIGN_OR_RETURN(std::string key, Scalar(origin, node["key"], "key"));
    m.key = Resolve(base, key);
  }
  if (node["promote"]) {
    ASSIGN_OR_RETURN(m.promote, Scalar(origin, node["promote"], "promote"));
  }
  if (!m.promote.empty() && (m.push.empty() || m.key.empty())) {
    return Bad(origin, node["promote"], "'promote' needs 'push' and 'key'");
  }
  if (const YAML::Node schedule = node["schedule"]) {
    if (!schedule.IsSequence()) return Bad(origin, schedule, "'schedule' must be a list");
    for (const YAML::Node& entry : schedule) {
      RETURN_IF_ERROR(CheckKeys(origin, entry, "a schedule entry", {"cron", "timezone"}));
      if (!entry["cron"]) return Bad(origin, entry, "a schedule entry needs 'cron'");
      ASSIGN_OR_RETURN(std::string expression, Scalar(origin, entry["cron"], "cron"));
      std::string zone_name = "UTC";
      if (entry["timezone"]) {
        ASSIGN_OR_RETURN(zone_name, Scalar(origin, entry["timezone"], "timezone"));
      }
      auto zone = TimeZone::Load(zone_name);
      if (!zone.ok()) return Bad(origin, entry, zone.status().message());
      auto cron = CronSchedule::Parse(expression, *zone);
      if (!cron.ok()) return Bad(origin, entry["cron"], cron.status().message());
      m.crons.push_back(std::move(*cron));
    }
  }
  if (const YAML::Node triggers = node["triggers"]) {
    RETURN_IF_ERROR(CheckKeys(origin, triggers, "'triggers'", {"drift", "feedback"}));
    if (const YAML::Node drift = triggers["drift"]) {
      RETURN_IF_ERROR(CheckKeys(origin, drift, "'triggers.drift'", {"events", "window"}));
      if (!drift["events"]) return Bad(origin, drift, "'triggers.drift' needs 'events'");
      ASSIGN_OR_RETURN(m.drift_events, Count(origin, drift["events"], "events"));
      if (drift["window"]) {
        ASSIGN_OR_RETURN(m.drift_window_ms, Duration(origin, drift["window"], "window"));
      }
    }
    if (const YAML::Node feedback = triggers["feedback"]) {
      RETURN_IF_ERROR(CheckKeys(origin, feedback, "'triggers.feedback'", {"min_labels"}));
      if (!feedback["min_labels"]) {
        return Bad(origin, feedback, "'triggers.feedback' needs 'min_labels'");
      }
      ASSIGN_OR_RETURN(m.min_labels, Count(origin, feedback["min_labels"], "min_labels"));
    }
  }
  if (node["cooldown"]) {
    ASSIGN_OR_RETURN(m.cooldown_ms, Duration(origin, node["cooldown"], "cooldown"));
  }
  if (node["timeout"]) {
    ASSIGN_OR_RETURN(m.timeout_ms, Duration(origin, node["timeout"], "timeout"));
  }
  if (node["max_log_bytes"]) {
    ASSIGN_OR_RETURN(int64_t bytes, Count(origin, node["max_log_bytes"], "max_log_bytes"));
    m.max_log_bytes = static_cast<size_t>(std::min<int64_t>(bytes, 16 << 20));
  }
  return m;
}

StatusOr<ScheduleConfig> ParseRoot(const std::string& origin, const YAML::Node& root,
                                   const fs::path& base) {
  RETURN_IF_ERROR(CheckKeys(origin, root, "the schedule", {"lake", "work_dir", "models"}));
  ScheduleConfig config;
  fs::path lake;
  if (root["lake"]) {
    ASSIGN_OR_RETURN(std::string text, Scalar(origin, root["lake"], "lake"));
    lake = Resolve(base, text);
  }
  config.work_dir = base / "jobs";
  if (root["work_dir"]) {
    ASSIGN_OR_RETURN(std::string text, Scalar(origin, root["work_dir"], "work_dir"));
    config.work_dir = Resolve(base, text);
  }
  const YAML::Node models = root["models"];
  if (!models || !models.IsSequence() || models.size() == 0) {
    return Bad(origin, root, "'models' must be a non-empty list");
  }
  std::set<std::string> names;
  for (const YAML::Node& node : models) {
    ASSIGN_OR_RETURN(ModelSchedule m, ParseModel(origin, node, base, lake));
    if (!names.insert(m.model).second) {
      return Bad(origin, node, "model '" + m.model + "' is listed twice");
    }
    config.models.push_back(std::move(m));
  }
  return config;
}

// The gate numbers of `edgeloop train --json`'s summary.
void ReadTrainSummary(const Json& summary, JobRecord* job, Json* details) {
  if (!summary.is_object()) return;
  if (summary.contains("version") && summary["version"].is_string()) {
    job->version = summary["version"];
  }
  if (summary.contains("gate_passed") && summary["gate_passed"].is_boolean()) {
    job->gate_passed = summary["gate_passed"].get<bool>() ? 1 : 0;
  }
  if (summary.contains("pushed") && summary["pushed"].is_object() &&
      summary["pushed"].contains("digest")) {
    job->digest = summary["pushed"]["digest"].get<std::string>();
  }
  const Json& gate = summary.contains("gate") ? summary["gate"] : Json();
  if (gate.is_object()) {
    (*details)["gate"] = gate;
    if (gate.contains("metric") && gate["metric"].is_string()) job->gate_metric = gate["metric"];
  }
  const std::string metric = job->gate_metric.empty() ? "roc_auc" : job->gate_metric;
  const Json& metrics = summary.contains("metrics") ? summary["metrics"] : Json();
  if (metrics.is_object() && metrics.contains("test") && metrics["test"].contains(metric) &&
      metrics["test"][metric].is_number()) {
    job->challenger = metrics["test"][metric].get<double>();
    if (job->gate_metric.empty()) job->gate_metric = metric;
  }
  if (gate.is_object() && gate.contains("champion") && gate["champion"].contains("metrics") &&
      gate["champion"]["metrics"].contains(metric) &&
      gate["champion"]["metrics"][metric].is_number()) {
    job->champion = gate["champion"]["metrics"][metric].get<double>();
  }
  Json trained = Json::object();
  for (const char* key :
       {"name", "version", "rows", "lineage", "pushed", "promoted", "threshold"}) {
    if (summary.contains(key)) trained[key] = summary[key];
  }
  (*details)["trained"] = std::move(trained);
}

std::string LastLine(const std::string& text) {
  size_t end = text.find_last_not_of("\n ");
  if (end == std::string::npos) return "";
  const size_t start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1,
                     end - (start == std::string::npos ? 0 : start + 1) + 1);
}

}  // namespace

StatusOr<int64_t> ParseDurationMs(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return InvalidArgumentError("'" + std::string(text) + "' is not like 5m or 1h");
  int64_t n = 0;
  std::from_chars(text.data(), text.data() + digits, n);
  const std::string_view unit = text.substr(digits);
  int64_t scale;
  if (unit == "ms") {
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
    return InvalidArgumentError("'" + std::string(text) + "' needs a unit: ms, s, m, h or d");
  }
  if (n <= 0 || n > 3660LL * 86'400'000 / scale) {
    return InvalidArgumentError("'" + std::string(text) + "' is out of range");
  }
  return n * scale;
}

StatusOr<ScheduleConfig> ParseSchedule(std::string_view yaml, const std::string& origin,
                                       const fs::path& base_dir) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(origin + ": line " + std::to_string(e.mark.line + 1) +
                                ": invalid YAML: " + e.msg);
  }
  try {
    return ParseRoot(origin, root, base_dir);
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(origin + ": line " + std::to_string(e.mark.line + 1) + ": " +
                                e.msg);
  }
}

StatusOr<ScheduleConfig> LoadSchedule(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return InvalidArgumentError("cannot read the schedule file " + file.string());
  std::stringstream text;
  text << in.rdbuf();
  fs::path base = file.parent_path();
  if (base.empty()) base = ".";
  return ParseSchedule(text.str(), file.string(), fs::absolute(base));
}

Scheduler::Scheduler(ScheduleConfig config, Store* store, Clock* clock, StepLauncher* launcher,
                     SchedulerOptions options)
    : config_(std::move(config)),
      store_(store),
      clock_(clock),
      launcher_(launcher),
      options_(std::move(options)),
      start_wall_(clock->WallNow()) {}

StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(ScheduleConfig config, Store* store,
                                                       Clock* clock, StepLauncher* launcher,
                                                       SchedulerOptions options) {
  if (!(options.time_scale > 0) || !std::isfinite(options.time_scale)) {
    return InvalidArgumentError("the time scale must be a positive number");
  }
  std::error_code ec;
  fs::create_directories(config.work_dir, ec);
  if (ec) {
    return InvalidArgumentError("cannot create the job folder " + config.work_dir.string() + ": " +
                                ec.message());
  }
  std::unique_ptr<Scheduler> scheduler(
      new Scheduler(std::move(config), store, clock, launcher, std::move(options)));
  ASSIGN_OR_RETURN(const int64_t interrupted,
                   store->InterruptUnfinishedJobs(scheduler->RealNowMs()));
  if (interrupted > 0) {
    log::Warn("jobs left running by a stopped hub are marked interrupted", {{"jobs", interrupted}});
  }
  const int64_t now_s = scheduler->ScheduledNowMs() / 1000;
  for (const ModelSchedule& m : scheduler->config_.models) {
    ModelState state;
    state.config = m;
    for (const CronSchedule& cron : m.crons) {
      ASSIGN_OR_RETURN(int64_t next, cron.NextAfter(now_s));
      state.next_fire_s.push_back(next);
    }
    ASSIGN_OR_RETURN(std::vector<JobRecord> last, store->ListJobs(m.model, 1));
    if (!last.empty()) state.last_job_ms = last[0].created_at;
    scheduler->models_.emplace(m.model, std::move(state));
  }
  return scheduler;
}

Scheduler::~Scheduler() { Stop(); }

int64_t Scheduler::RealNowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_->WallNow().time_since_epoch())
      .count();
}

int64_t Scheduler::ScheduledNowMs() const {
  const auto elapsed = clock_->WallNow() - start_wall_;
  const auto scaled = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::duration<double, std::milli>(elapsed) * options_.time_scale);
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             (start_wall_ + scaled).time_since_epoch())
      .count();
}

void Scheduler::Tick() {
  const int64_t scheduled_s = ScheduledNowMs() / 1000;
  const int64_t real_ms = RealNowMs();
  const auto to_real = [this](int64_t ms) {
    return static_cast<int64_t>(static_cast<double>(ms) / options_.time_scale);
  };
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return;
  for (auto& [name, state] : models_) {
    std::string trigger;
    for (size_t i = 0; i < state.next_fire_s.size(); ++i) {
      if (scheduled_s < state.next_fire_s[i]) continue;
      trigger = "cron";
      auto next = state.config.crons[i].NextAfter(scheduled_s);
      state.next_fire_s[i] = next.ok() ? *next : INT64_MAX;
    }
    if (state.running) {
      if (!trigger.empty()) {
        log::Info("cron time skipped: the model's job is still running", {{"model", name}});
      }
      continue;
    }
    const ModelSchedule& c = state.config;
    const int64_t since = state.last_job_ms.value_or(0);
    const bool cooling = state.last_job_ms && real_ms - since < to_real(c.cooldown_ms);
    if (trigger.empty() && !cooling && c.drift_events > 0) {
      // Only reports after the last job count: one burst starts one job.
      const int64_t from = std::max(since + 1, real_ms - to_real(c.drift_window_ms));
      auto drift = store_->CountDriftReports(name, from);
      if (!drift.ok()) {
        log::Warn("drift trigger: store query failed",
                  {{"model", name}, {"error", drift.status()}});
      } else if (*drift >= c.drift_events) {
        trigger = "drift";
      }
    }
    if (trigger.empty() && !cooling && c.min_labels > 0) {
      auto labels = store_->CountLabels(name, since + 1);
      if (!labels.ok()) {
        log::Warn("feedback trigger: store query failed",
                  {{"model", name}, {"error", labels.status()}});
      } else if (*labels >= c.min_labels) {
        trigger = "feedback";
      }
    }
    if (trigger.empty()) continue;
    auto id = StartJobLocked(state, trigger);
    if (!id.ok()) {
      log::Warn("could not start a job", {{"model", name}, {"error", id.status()}});
    }
  }
}

StatusOr<int64_t> Scheduler::RunNow(const std::string& model) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return UnavailableError("the scheduler is stopping");
  auto it = models_.find(model);
  if (it == models_.end()) {
    return NotFoundError("model '" + model + "' is not in the schedule");
  }
  if (it->second.running) {
    return AbortedError("a job for model '" + model + "' is running; one at a time per model");
  }
  return StartJobLocked(it->second, "api");
}

StatusOr<int64_t> Scheduler::StartJobLocked(ModelState& state, const std::string& trigger) {
  JobRecord job;
  job.model = state.config.model;
  job.trigger = trigger;
  job.status = "queued";
  job.created_at = RealNowMs();
  job.details = "{}";
  ASSIGN_OR_RETURN(job.id, store_->CreateJob(job));
  state.running = true;
  state.last_job_ms = job.created_at;
  ++running_jobs_;
  log::Info("job started", {{"job", job.id}, {"model", job.model}, {"trigger", trigger}});
  job_threads_.emplace_back(
      [this, job, config = state.config]() mutable { RunJob(std::move(job), std::move(config)); });
  return job.id;
}

void Scheduler::RunJob(JobRecord job, ModelSchedule config) {
  Json details = {{"steps", Json::array()}};
  const fs::path dir = config_.work_dir / ("job-" + std::to_string(job.id));
  const fs::path log_file = dir / "log";
  auto save = [&]() {
    job.details = details.dump(-1, ' ', false, Json::error_handler_t::replace);
    job.log = ReadTail(log_file, config.max_log_bytes);
    if (Status s = store_->UpdateJob(job); !s.ok()) {
      log::Error("could not record the job", {{"job", job.id}, {"error", s}});
    }
  };
  job.status = "running";
  job.started_at = RealNowMs();
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) {
    job.status = "failed";
    job.error = "cannot create " + dir.string() + ": " + ec.message();
  }
  save();

  std::map<std::string, std::string> env;
  if (!options_.hub_url.empty()) env["EDGELOOP_HUB_URL"] = options_.hub_url;
  if (!options_.hub_token.empty()) env["EDGELOOP_HUB_TOKEN"] = options_.hub_token;

  std::vector<StepRequest> steps;
  StepRequest pipeline;
  pipeline.name = "pipeline";
  pipeline.args = {"pipeline",           "run",    config.pipeline.string(), "--lake",
                   config.lake.string(), "--json", "--no-progress"};
  steps.push_back(pipeline);
  StepRequest train;
  train.name = "train";
  train.args = {
      "train", config.train.string(),   "--lake", config.lake.string(), "--json", "--quiet",
      "--out", (dir / "model").string()};
  if (!config.champion.empty())
    train.args.insert(train.args.end(), {"--champion", config.champion});
  if (!config.push.empty()) train.args.insert(train.args.end(), {"--push", config.push});
  if (!config.key.empty()) train.args.insert(train.args.end(), {"--key", config.key.string()});
  if (!config.promote.empty()) train.args.insert(train.args.end(), {"--promote", config.promote});
  steps.push_back(train);

  for (StepRequest& step : steps) {
    if (job.status != "running") break;
    step.env = env;
    step.log_file = log_file;
    step.stdout_file = dir / (step.name + ".json");
    step.timeout = std::chrono::milliseconds(config.timeout_ms);
    {
      std::ofstream header(log_file, std::ios::app);
      header << "=== " << step.name << ": edgeloop";
      for (const std::string& a : step.args) header << ' ' << a;
      header << "\n";
    }
    auto result = launcher_->Run(step);
    job.exit_step = step.name;
    if (!result.ok()) {
      job.status = result.status().code() == StatusCode::kCancelled ? "interrupted" : "failed";
      job.error = step.name + " did not start: " + result.status().message();
      break;
    }
    details["steps"].push_back({{"name", step.name},
                                {"exit_code", result->exit_code},
                                {"seconds", std::round(result->seconds * 1000) / 1000},
                                {"timed_out", result->timed_out}});
    std::ifstream out(step.stdout_file);
    std::stringstream text;
    text << out.rdbuf();
    const Json summary = Json::parse(text.str(), nullptr, false);
    if (step.name == "pipeline" && summary.is_object()) {
      Json pipeline_summary = Json::object();
      for (const char* key :
           {"status", "table", "snapshot", "rows_read", "rows_written", "rows_rejected",
            "rows_skipped", "watermark_before", "watermark_after", "error"}) {
        if (summary.contains(key)) pipeline_summary[key] = summary[key];
      }
      details["pipeline"] = std::move(pipeline_summary);
    }
    if (step.name == "train") ReadTrainSummary(summary, &job, &details);
    if (result->cancelled) {
      job.status = "interrupted";
      job.error = step.name + " was stopped: the hub is shutting down";
    } else if (result->timed_out) {
      job.status = "failed";
      job.error = step.name + " ran longer than the timeout and was killed";
    } else if (step.name == "train" && result->exit_code == 6) {
      job.status = "rejected";
      job.error = "the gate refused the challenger; nothing was pushed or promoted";
    } else if (result->exit_code != 0) {
      job.status = "failed";
      const std::string last = LastLine(ReadTail(log_file, 4096));
      job.error = step.name + " exited with " + std::to_string(result->exit_code) +
                  (last.empty() ? "" : ": " + last);
    }
    save();
  }
  if (job.status == "running") {
    job.status = "succeeded";
    job.exit_step.clear();
  }
  job.finished_at = RealNowMs();
  save();
  log::Info("job finished", {{"job", job.id},
                             {"model", job.model},
                             {"status", job.status},
                             {"digest", job.digest},
                             {"error", job.error}});
  {
    std::lock_guard<std::mutex> lock(mu_);
    models_[job.model].running = false;
    --running_jobs_;
  }
  changed_.notify_all();
}

void Scheduler::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (ticker_.joinable() || stopping_) return;
  ticker_ = std::thread([this] {
    for (;;) {
      Tick();
      std::unique_lock<std::mutex> wait_lock(mu_);
      if (changed_.wait_for(wait_lock, options_.tick, [this] { return stopping_; })) return;
    }
  });
}

void Scheduler::Stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (ticker_.joinable()) ticker_.join();
  launcher_->Cancel();
  {
    std::lock_guard<std::mutex> lock(mu_);
    threads.swap(job_threads_);
  }
  for (std::thread& t : threads) t.join();
}

void Scheduler::WaitIdle() {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait(lock, [this] { return running_jobs_ == 0; });
}

StatusOr<std::unique_ptr<Scheduler>> CreateHubScheduler(const fs::path& schedule_file,
                                                        double time_scale,
                                                        const std::string& hub_url, Store* store,
                                                        Clock* clock, StepLauncher* launcher) {
  ASSIGN_OR_RETURN(ScheduleConfig config, LoadSchedule(schedule_file));
  const int64_t now =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock->WallNow().time_since_epoch())
          .count();
  RETURN_IF_ERROR(store->RevokeTokens("scheduler", now).status());
  ASSIGN_OR_RETURN(std::string token, NewToken());
  RETURN_IF_ERROR(store->AddToken(HashToken(token),
                                  {"scheduler", Role::kRead, "", now, std::nullopt, std::nullopt}));
  const auto models = static_cast<int64_t>(config.models.size());
  SchedulerOptions options;
  options.time_scale = time_scale;
  options.hub_url = hub_url;
  options.hub_token = token;
  if (time_scale > 1) {
    options.tick = std::max(std::chrono::milliseconds(20),
                            std::chrono::milliseconds(static_cast<int64_t>(250 / time_scale)));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> scheduler,
                   Scheduler::Create(std::move(config), store, clock, launcher, options));
  log::Info("scheduler ready",
            {{"schedule", schedule_file.string()}, {"models", models}, {"time_scale", time_scale}});
  return scheduler;
}

}  // namespace edgeloop::hub
