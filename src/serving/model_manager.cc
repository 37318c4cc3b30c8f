#include "serving/model_manager.h"

#include <algorithm>
#include <set>

#include "common/logging.h"
#include "inference/model.h"
#include "inference/model_config.h"

namespace edgeloop::serving {
namespace {

constexpr std::string_view kUnknownModel = "_unknown_";
constexpr std::array<int, 6> kCommonCodes = {200, 400, 404, 500, 501, 503};

// One zero row per input, every output: proves the model runs before anyone depends on it, and
// touches its memory so the first real request is not slower. Stateful models (streaming
// detectors) would learn the zero row as a real point, so they are not warmed up.
Status Warmup(const inference::ModelConfig& config, const inference::Model& model) {
  if (model.stateful()) return Status::Ok();
  std::vector<inference::Tensor> inputs;
  for (const inference::TensorSpec& spec : config.inputs) {
    inference::Shape shape = spec.shape;
    for (int64_t& dim : shape) {
      if (dim < 0) dim = 1;
    }
    inputs.emplace_back(spec.name, spec.datatype, shape);
  }
  std::vector<int> all_outputs(config.outputs.size());
  for (size_t i = 0; i < all_outputs.size(); ++i) all_outputs[i] = static_cast<int>(i);
  std::vector<inference::Tensor> outputs;
  RETURN_IF_ERROR(model.Predict(inputs, all_outputs, &outputs).WithContext("warm-up inference"));
  if (outputs.size() != config.outputs.size()) {
    return InternalError("warm-up inference returned " + std::to_string(outputs.size()) +
                         " outputs, expected " + std::to_string(config.outputs.size()));
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const inference::TensorSpec& spec = config.outputs[i];
    if (outputs[i].datatype() != spec.datatype || !spec.Accepts(outputs[i].shape()) ||
        outputs[i].shape().front() != 1) {
      return InternalError("warm-up inference: output '" + spec.name + "' came back as " +
                           std::string(inference::DataTypeName(outputs[i].datatype())) + " " +
                           inference::ShapeToString(outputs[i].shape()) + ", declared " +
                           std::string(inference::DataTypeName(spec.datatype)) + " " +
                           inference::ShapeToString(spec.shape));
    }
  }
  return Status::Ok();
}

}  // namespace

std::string_view VersionStateName(VersionState state) {
  switch (state) {
    case VersionState::kLoading:
      return "LOADING";
    case VersionState::kReady:
      return "READY";
    case VersionState::kUnloading:
      return "UNLOADING";
    case VersionState::kUnavailable:
      return "UNAVAILABLE";
  }
  return "UNAVAILABLE";
}

void ServableMetrics::CountRequest(const std::string& model, const std::string& version,
                                   int code) const {
  for (size_t i = 0; i < kCommonCodes.size(); ++i) {
    if (kCommonCodes[i] == code && common_codes[i]) return common_codes[i]->Increment();
  }
  if (requests) requests->With({model, version, std::to_string(code)})->Increment();
}

ModelManager::ModelManager(const ModelManagerOptions& options)
    : options_(options), serving_(std::make_shared<ServingMap>()) {
  metrics::Registry* registry = options_.registry;
  requests_ = registry->AddCounter("edgeloop_inference_requests_total",
                                   "Inference requests answered, by model, version and HTTP code.",
                                   {"model", "version", "code"});
  request_seconds_ =
      registry->AddHistogram("edgeloop_inference_request_duration_seconds",
                             "Time from a parsed inference request to its serialized response.",
                             {"model", "version"}, metrics::LatencyBuckets());
  queue_seconds_ = registry->AddHistogram("edgeloop_inference_queue_duration_seconds",
                                          "Time inference requests waited in the batch queue.",
                                          {"model", "version"}, metrics::LatencyBuckets());
  batch_rows_ = registry->AddHistogram("edgeloop_inference_batch_size",
                                       "Rows per model execution (a batch of requests).",
                                       {"model", "version"}, metrics::PowerOfTwoBuckets(4096));
  loaded_ = registry->AddGauge("edgeloop_model_loaded", "1 for every model version being served.",
                               {"model", "version"});
  load_failures_ = registry->AddCounter("edgeloop_model_load_failures_total",
                                        "Model version loads that failed.", {"model", "version"});
}

StatusOr<std::unique_ptr<ModelManager>> ModelManager::Create(const ModelManagerOptions& options) {
  if (options.registry == nullptr) return InvalidArgumentError("a metrics registry is required");
  std::error_code ec;
  if (!std::filesystem::is_directory(options.repository, ec)) {
    return NotFoundError("model repository " + options.repository.string() + " is not a directory");
  }
  return std::unique_ptr<ModelManager>(new ModelManager(options));
}

ModelManager::~ModelManager() { Stop(); }

void ModelManager::Start(std::chrono::milliseconds poll_interval) {
  control_thread_ = std::thread([this, poll_interval] { ControlLoop(poll_interval); });
}

void ModelManager::Stop() {
  {
    std::lock_guard<std::mutex> lock(control_mu_);
    stopping_ = true;
  }
  control_cv_.notify_all();
  if (control_thread_.joinable()) control_thread_.join();
}

void ModelManager::ControlLoop(std::chrono::milliseconds poll_interval) {
  auto next_poll = std::chrono::steady_clock::now() + poll_interval;
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(control_mu_);
      auto has_work = [this] { return stopping_ || !control_jobs_.empty(); };
      if (poll_interval.count() > 0) {
        control_cv_.wait_until(lock, next_poll, has_work);
      } else {
        control_cv_.wait(lock, has_work);
      }
      if (stopping_) return;
      if (!control_jobs_.empty()) {
        job = std::move(control_jobs_.front());
        control_jobs_.pop_front();
      }
    }
    if (job) {
      job();
      continue;
    }
    if (poll_interval.count() > 0 && std::chrono::steady_clock::now() >= next_poll) {
      Reconcile(false);
      next_poll = std::chrono::steady_clock::now() + poll_interval;
    }
  }
}

void ModelManager::Reconcile(bool trust_new_folders) { ReconcileImpl(trust_new_folders, ""); }

std::vector<int64_t> ModelManager::TargetVersionsLocked(const std::string& name,
                                                        const ModelEntry& entry) const {
  if (!entry.present || entry.unloaded_by_api) return {};
  std::vector<int64_t> present;
  for (const auto& [version, version_entry] : entry.versions) {
    if (version_entry.present) present.push_back(version);
  }
  std::vector<int64_t> target = entry.policy.Select(present);
  // A rollout's preferred version (the champion) stays loaded beside what the policy selects.
  if (auto preferred = preferred_.find(name); preferred != preferred_.end()) {
    const int64_t version = preferred->second;
    if (std::find(present.begin(), present.end(), version) != present.end() &&
        std::find(target.begin(), target.end(), version) == target.end()) {
      target.push_back(version);
      std::sort(target.rbegin(), target.rend());
    }
  }
  return target;
}

void ModelManager::SetPreferredVersion(const std::string& model, std::optional<int64_t> version) {
  std::lock_guard<std::mutex> lock(mu_);
  if (version) {
    preferred_[model] = *version;
  } else {
    preferred_.erase(model);
  }
  PublishLocked();
}

void ModelManager::ReconcileImpl(bool trust_all, const std::string& trust_model) {
  std::lock_guard<std::mutex> reconcile_lock(reconcile_mu_);
  auto scan = ScanRepository(options_.repository);
  if (!scan.ok()) {
    log::Error("cannot scan the model repository", {{"error", scan.status()}});
    return;
  }

  std::vector<LoadJob> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [name, entry] : models_) {
      entry.present = false;
      for (auto& [number, version] : entry.versions) version.present = false;
    }
    for (const ModelDir& dir : *scan) {
      ModelEntry& entry = models_[dir.name];
      entry.present = true;
      entry.path = dir.path;
      if (dir.policy_status.ok()) {
        entry.policy = dir.policy;
      } else if (entry.policy_status != dir.policy_status) {
        log::Error("invalid serving.yaml; keeping the previous version policy",
                   {{"model", dir.name}, {"error", dir.policy_status}});
      }
      entry.policy_status = dir.policy_status;

      const bool trusted = trust_all || dir.name == trust_model;
      std::map<int64_t, std::pair<std::string, bool>> found;  // version -> fingerprint, stable
      for (const VersionDir& version_dir : dir.versions) {
        VersionEntry& version = entry.versions[version_dir.version];
        version.present = true;
        const bool stable = trusted || version.seen_fingerprint == version_dir.fingerprint;
        version.seen_fingerprint = version_dir.fingerprint;
        found[version_dir.version] = {version_dir.fingerprint, stable};
      }
      for (auto& [number, version] : entry.versions) {
        if (!found.count(number)) version.seen_fingerprint.clear();
      }
      for (int64_t number : TargetVersionsLocked(dir.name, entry)) {
        VersionEntry& version = entry.versions[number];
        const auto& [fingerprint, stable] = found[number];
        if (version.servable && version.servable->fingerprint == fingerprint) continue;
        if (version.failed_fingerprint == fingerprint) continue;
        if (!stable) {
          if (!version.servable) {
            version.state = VersionState::kUnavailable;
            version.reason = "waiting for the version folder to stop changing";
          }
          continue;
        }
        if (!version.servable) {
          version.state = VersionState::kLoading;
          version.reason.clear();
        }
        jobs.push_back({dir.name, number, dir.path / std::to_string(number), fingerprint});
      }
    }
  }

  for (const LoadJob& job : jobs) {
    const auto started = std::chrono::steady_clock::now();
    auto loaded = LoadServable(job);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count();
    std::lock_guard<std::mutex> lock(mu_);
    ModelEntry& entry = models_[job.model];
    VersionEntry& version = entry.versions[job.version];
    const std::string version_label = std::to_string(job.version);
    if (!loaded.ok()) {
      version.failed_fingerprint = job.fingerprint;
      load_failures_->With({job.model, version_label})->Increment();
      if (version.servable) {
        version.reason =
            "reload failed, still serving the earlier load: " + loaded.status().ToString();
      } else {
        version.state = VersionState::kUnavailable;
        version.reason = loaded.status().ToString();
      }
      log::Error("model version failed to load",
                 {{"model", job.model}, {"version", job.version}, {"error", loaded.status()}});
      continue;
    }
    if (entry.unloaded_by_api) continue;  // unloaded while it loaded: drop it
    const bool reload = version.servable != nullptr;
    version.servable = std::move(*loaded);
    version.state = VersionState::kReady;
    version.reason.clear();
    version.failed_fingerprint.clear();
    loaded_->With({job.model, version_label})->Set(1);
    PublishLocked();
    log::Info(reload ? "model version reloaded" : "model version ready",
              {{"model", job.model},
               {"version", job.version},
               {"platform", version.servable->model->platform()},
               {"load_ms", ms}});
  }

  std::lock_guard<std::mutex> lock(mu_);
  ApplyUnloadsLocked();
  initial_done_ = true;
}

StatusOr<std::shared_ptr<const ServableVersion>> ModelManager::LoadServable(
    const LoadJob& job) const {
  ASSIGN_OR_RETURN(inference::ModelConfig config,
                   inference::LoadModelConfig(job.path, job.model, job.version));
  ASSIGN_OR_RETURN(std::unique_ptr<inference::Model> model, inference::LoadModel(config));
  RETURN_IF_ERROR(Warmup(config, *model));

  auto servable = std::make_shared<ServableVersion>();
  servable->version_string = std::to_string(job.version);
  servable->fingerprint = job.fingerprint;
  servable->loaded_at = options_.clock->WallNow();
  servable->model = std::move(model);
  ServableMetrics& metrics = servable->metrics;
  metrics.requests = requests_;
  for (size_t i = 0; i < kCommonCodes.size(); ++i) {
    metrics.common_codes[i] =
        requests_->With({job.model, servable->version_string, std::to_string(kCommonCodes[i])});
  }
  metrics.request_seconds = request_seconds_->With({job.model, servable->version_string});
  metrics.queue_seconds = queue_seconds_->With({job.model, servable->version_string});
  metrics.batch_rows = batch_rows_->With({job.model, servable->version_string});
  if (config.batching_enabled()) {
    if (options_.runner == nullptr && config.batching.max_queue_delay_us > 0) {
      return FailedPreconditionError("batching with a queue delay needs a task runner");
    }
    BatcherOptions batcher_options;
    batcher_options.max_batch_size = config.batching.max_batch_size;
    batcher_options.max_queue_delay_us = config.batching.max_queue_delay_us;
    batcher_options.max_queue_size = config.batching.max_queue_size;
    batcher_options.max_concurrency = std::max(1, options_.batch_concurrency);
    servable->batcher =
        std::make_shared<Batcher>(batcher_options, servable->model, options_.runner, options_.clock,
                                  metrics.queue_seconds, metrics.batch_rows);
  }
  servable->config = std::move(config);
  return std::shared_ptr<const ServableVersion>(std::move(servable));
}

void ModelManager::UnloadVersionLocked(const std::string& model, int64_t number,
                                       VersionEntry& version, const std::string& reason) {
  version.unloading = version.servable;
  version.servable.reset();
  version.state = VersionState::kUnavailable;
  version.reason = reason;
  loaded_->Remove({model, std::to_string(number)});
  log::Info("model version unloaded", {{"model", model}, {"version", number}, {"reason", reason}});
}

void ModelManager::ApplyUnloadsLocked() {
  bool changed = false;
  for (auto model_it = models_.begin(); model_it != models_.end();) {
    const std::string& name = model_it->first;
    ModelEntry& entry = model_it->second;
    if (entry.present && !entry.unloaded_by_api && !entry.policy_status.ok()) {
      ++model_it;  // an unreadable policy changes nothing
      continue;
    }
    const std::vector<int64_t> target = TargetVersionsLocked(name, entry);
    const bool all_ready = std::all_of(target.begin(), target.end(), [&](int64_t number) {
      return entry.versions[number].servable != nullptr;
    });
    for (auto it = entry.versions.begin(); it != entry.versions.end();) {
      VersionEntry& version = it->second;
      const bool wanted = std::find(target.begin(), target.end(), it->first) != target.end();
      if (version.servable && !wanted && all_ready) {
        UnloadVersionLocked(name, it->first, version,
                            entry.unloaded_by_api ? "unloaded through the repository API"
                            : version.present     ? "replaced: not in the version policy"
                                                  : "its folder was removed");
        changed = true;
      }
      if (!version.present && !version.servable && version.unloading.expired()) {
        it = entry.versions.erase(it);
      } else {
        ++it;
      }
    }
    if (!entry.present && entry.versions.empty()) {
      model_it = models_.erase(model_it);
    } else {
      ++model_it;
    }
  }
  if (changed) PublishLocked();
}

void ModelManager::PublishLocked() {
  auto map = std::make_shared<ServingMap>();
  for (const auto& [name, entry] : models_) {
    std::vector<std::shared_ptr<const ServableVersion>> ready;
    for (auto it = entry.versions.rbegin(); it != entry.versions.rend(); ++it) {
      if (it->second.servable) ready.push_back(it->second.servable);
    }
    // The preferred version, when ready, goes first: lookups naming no version take the front.
    if (auto preferred = preferred_.find(name); preferred != preferred_.end()) {
      auto it = std::find_if(ready.begin(), ready.end(), [&](const auto& servable) {
        return servable->config.version == preferred->second;
      });
      if (it != ready.end()) std::rotate(ready.begin(), it, it + 1);
    }
    if (!ready.empty()) map->emplace(name, std::move(ready));
  }
  std::lock_guard<std::mutex> lock(serving_mu_);
  serving_ = std::move(map);
}

void ModelManager::LoadAsync(const std::string& model, std::function<void(Status)> done) {
  auto job = [this, model, done = std::move(done)] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = models_.find(model);
      if (it != models_.end()) it->second.unloaded_by_api = false;
    }
    ReconcileImpl(false, model);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(model);
    if (it == models_.end() || !it->second.present) {
      return done(NotFoundError("model '" + model + "' is not in the repository"));
    }
    const ModelEntry& entry = it->second;
    if (!entry.policy_status.ok()) return done(entry.policy_status);
    std::string failures;
    for (const auto& [number, version] : entry.versions) {
      if (version.servable) return done(Status::Ok());
      if (!version.reason.empty()) {
        failures += (failures.empty() ? "" : "; ") + std::string("version ") +
                    std::to_string(number) + ": " + version.reason;
      }
    }
    done(InvalidArgumentError("model '" + model + "' has no version that loads" +
                              (failures.empty() ? "" : ": " + failures)));
  };
  {
    std::lock_guard<std::mutex> lock(control_mu_);
    control_jobs_.push_back(std::move(job));
  }
  control_cv_.notify_all();
}

Status ModelManager::Unload(const std::string& model) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(model);
  if (it == models_.end() || !it->second.present) {
    return NotFoundError("model '" + model + "' is not in the repository");
  }
  it->second.unloaded_by_api = true;
  for (auto& [number, version] : it->second.versions) {
    if (version.state == VersionState::kUnavailable && !version.servable) {
      version.reason = "unloaded through the repository API";
    }
  }
  ApplyUnloadsLocked();
  return Status::Ok();
}

StatusOr<std::shared_ptr<const ServableVersion>> ModelManager::Find(
    std::string_view model, std::optional<int64_t> version) const {
  std::shared_ptr<const ServingMap> serving;
  {
    std::lock_guard<std::mutex> lock(serving_mu_);
    serving = serving_;
  }
  auto it = serving->find(model);
  if (it != serving->end()) {
    if (!version) return it->second.front();
    for (const auto& servable : it->second) {
      if (servable->config.version == *version) return servable;
    }
  }
  // Not servable: say why.
  std::lock_guard<std::mutex> lock(mu_);
  auto entry = models_.find(std::string(model));
  if (entry == models_.end() || !entry->second.present) {
    return NotFoundError("unknown model '" + std::string(model) + "'");
  }
  if (version) {
    auto found = entry->second.versions.find(*version);
    if (found == entry->second.versions.end() || !found->second.present) {
      return NotFoundError("model '" + std::string(model) + "' has no version " +
                           std::to_string(*version));
    }
    return UnavailableError(
        "model '" + std::string(model) + "' version " + std::to_string(*version) +
        " is not ready (" + std::string(VersionStateName(found->second.state)) +
        (found->second.reason.empty() ? "" : ": " + found->second.reason) + ")");
  }
  return UnavailableError("model '" + std::string(model) + "' has no ready version" +
                          (entry->second.unloaded_by_api ? " (unloaded through the API)" : ""));
}

std::vector<std::shared_ptr<const ServableVersion>> ModelManager::ReadyVersions(
    std::string_view model) const {
  std::lock_guard<std::mutex> lock(serving_mu_);
  auto it = serving_->find(model);
  if (it == serving_->end()) return {};
  std::vector<std::shared_ptr<const ServableVersion>> versions = it->second;
  std::sort(versions.begin(), versions.end(),
            [](const auto& a, const auto& b) { return a->config.version > b->config.version; });
  return versions;
}

std::vector<IndexEntry> ModelManager::Index(bool ready_only) const {
  std::vector<IndexEntry> index;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, entry] : models_) {
    if (!entry.policy_status.ok() && !ready_only) {
      index.push_back({name, "", VersionState::kUnavailable, entry.policy_status.ToString()});
    }
    for (const auto& [number, version] : entry.versions) {
      IndexEntry item{name, std::to_string(number), version.state, version.reason};
      if (!version.servable && !version.unloading.expired()) {
        item.state = VersionState::kUnloading;
      }
      if (ready_only && item.state != VersionState::kReady) continue;
      if (!ready_only && !version.present && item.state != VersionState::kUnloading) continue;
      index.push_back(std::move(item));
    }
  }
  return index;
}

Status ModelManager::Readiness() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!initial_done_) return UnavailableError("models are still loading");
  for (const auto& [name, entry] : models_) {
    if (!entry.present || entry.unloaded_by_api) continue;
    const bool any_ready = std::any_of(entry.versions.begin(), entry.versions.end(),
                                       [](const auto& v) { return v.second.servable != nullptr; });
    if (!any_ready) return UnavailableError("model '" + name + "' has no ready version");
  }
  return Status::Ok();
}

void ModelManager::CountUnknownModelRequest(int code) const {
  requests_->With({std::string(kUnknownModel), "", std::to_string(code)})->Increment();
}

}  // namespace edgeloop::serving
