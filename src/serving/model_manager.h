// ModelManager: keeps the loaded model versions in line with the model repository.
//
// Lifecycle of a version (reported by Index()):
//   (found) -> LOADING -> READY -> UNLOADING (requests still hold it) -> (gone)
//                     \-> UNAVAILABLE (load failed, or waiting for its folder to settle, or
//                                      unloaded through the API); retried when its folder changes
//
// Hot swap: a new version is loaded and warmed beside the old ones and published only once
// ready; versions that left the policy are unloaded only when every version the policy wants is
// ready, so a version that fails to load leaves the old one serving. Readers get versions from
// an immutable snapshot (copy-on-write), so requests never wait for loading.
//
// Thread-safe. Loads run on the caller of Reconcile() or on the manager's control thread.
#ifndef EDGELOOP_SERVING_MODEL_MANAGER_H_
#define EDGELOOP_SERVING_MODEL_MANAGER_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/task_runner.h"
#include "serving/repository.h"
#include "serving/servable.h"

namespace edgeloop::serving {

struct ModelManagerOptions {
  std::filesystem::path repository;
  Clock* clock = Clock::Real();
  metrics::Registry* registry = nullptr;  // required
  TaskRunner* runner = nullptr;           // required for models with a batching delay
  int batch_concurrency = 1;              // batches of one model that may run at once
};

enum class VersionState { kLoading, kReady, kUnloading, kUnavailable };
std::string_view VersionStateName(VersionState state);  // "READY", ...

struct IndexEntry {
  std::string name;
  std::string version;  // empty for a model-level problem (invalid serving.yaml)
  VersionState state = VersionState::kUnavailable;
  std::string reason;
};

class ModelManager {
 public:
  // Fails when the repository is not a readable directory.
  static StatusOr<std::unique_ptr<ModelManager>> Create(const ModelManagerOptions& options);
  ~ModelManager();  // Stops the control thread.

  // Scans the repository and brings the loaded versions in line with it (see the class
  // comment). Blocks while it loads. `trust_new_folders`: take version folders as complete on
  // first sight instead of waiting until their fingerprint holds still across two scans (start-up
  // does this). Concurrent calls run one after the other.
  void Reconcile(bool trust_new_folders);

  // Starts the control thread: it runs the repository API's loads and, when `poll_interval` is
  // positive, calls Reconcile(false) at that interval. Call at most once.
  void Start(std::chrono::milliseconds poll_interval);
  void Stop();

  // Repository API. LoadAsync clears an earlier Unload, rescans and loads the model per its
  // policy (new folders trusted), then calls `done` on the control thread: OK when the model has
  // a ready version, kNotFound when it is not in the repository, otherwise the load failure.
  void LoadAsync(const std::string& model, std::function<void(Status)> done);
  // Unloads every version; scans do not load the model again until LoadAsync. kNotFound when the
  // model is not in the repository.
  Status Unload(const std::string& model);

  // The version to serve: `version`, or the highest ready one. kNotFound for an unknown model
  // or a version that is not in the repository, kUnavailable for one that is not ready.
  StatusOr<std::shared_ptr<const ServableVersion>> Find(std::string_view model,
                                                        std::optional<int64_t> version) const;
  // Ready versions of `model`, highest first (empty when none).
  std::vector<std::shared_ptr<const ServableVersion>> ReadyVersions(std::string_view model) const;

  // For rollouts (rollout.h): keeps `version` of `model` loaded whatever its version policy says
  // and makes it the version that lookups naming no version get while it is ready (otherwise
  // they get the highest ready one, as without). nullopt ends that. Lookups see the change at
  // once; loads and unloads it implies happen at the next Reconcile.
  void SetPreferredVersion(const std::string& model, std::optional<int64_t> version);

  // Every model and version the manager knows, sorted; `ready_only` keeps READY ones.
  std::vector<IndexEntry> Index(bool ready_only) const;
  // OK once the first Reconcile finished and every model in the repository (not unloaded through
  // the API) has a ready version; otherwise kUnavailable saying what is missing.
  Status Readiness() const;

  // Counts a request that named no known model (label model="_unknown_").
  void CountUnknownModelRequest(int code) const;

 private:
  struct VersionEntry {
    VersionState state = VersionState::kUnavailable;
    std::string reason;
    bool present = false;                             // its folder exists
    std::string seen_fingerprint;                     // at the previous scan
    std::string failed_fingerprint;                   // folder content whose load failed
    std::shared_ptr<const ServableVersion> servable;  // set while READY
    std::weak_ptr<const ServableVersion> unloading;   // until requests let go of it
  };
  struct ModelEntry {
    bool present = false;
    bool unloaded_by_api = false;
    std::filesystem::path path;
    VersionPolicy policy;
    Status policy_status;
    std::map<int64_t, VersionEntry> versions;
  };
  struct LoadJob {
    std::string model;
    int64_t version;
    std::filesystem::path path;
    std::string fingerprint;
  };
  using ServingMap =
      std::map<std::string, std::vector<std::shared_ptr<const ServableVersion>>, std::less<>>;

  explicit ModelManager(const ModelManagerOptions& options);

  void ReconcileImpl(bool trust_all, const std::string& trust_model);
  StatusOr<std::shared_ptr<const ServableVersion>> LoadServable(const LoadJob& job) const;
  std::vector<int64_t> TargetVersionsLocked(const std::string& name,
                                            const ModelEntry& entry) const;  // REQUIRES(mu_)
  void ApplyUnloadsLocked();                                                 // REQUIRES(mu_)
  void UnloadVersionLocked(const std::string& model, int64_t version, VersionEntry& entry,
                           const std::string& reason);  // REQUIRES(mu_)
  void PublishLocked();                                 // REQUIRES(mu_)
  void ControlLoop(std::chrono::milliseconds poll_interval);

  const ModelManagerOptions options_;

  // Metric families.
  metrics::Family<metrics::Counter>* requests_;
  metrics::Family<metrics::Histogram>* request_seconds_;
  metrics::Family<metrics::Histogram>* queue_seconds_;
  metrics::Family<metrics::Histogram>* batch_rows_;
  metrics::Family<metrics::Gauge>* loaded_;
  metrics::Family<metrics::Counter>* load_failures_;

  std::mutex reconcile_mu_;  // one Reconcile at a time

  mutable std::mutex mu_;
  std::map<std::string, ModelEntry> models_;  // GUARDED_BY(mu_)
  bool initial_done_ = false;                 // GUARDED_BY(mu_)
  std::map<std::string, int64_t> preferred_;  // GUARDED_BY(mu_): SetPreferredVersion

  mutable std::mutex serving_mu_;
  std::shared_ptr<const ServingMap> serving_;  // GUARDED_BY(serving_mu_)

  std::mutex control_mu_;
  std::condition_variable control_cv_;
  std::deque<std::function<void()>> control_jobs_;  // GUARDED_BY(control_mu_)
  bool stopping_ = false;                           // GUARDED_BY(control_mu_)
  std::thread control_thread_;
};

}  // namespace edgeloop::serving

#endif  // EDGELOOP_SERVING_MODEL_MANAGER_H_
