// Deployment: an edge server that follows models in a registry (or an OCI layout directory).
//
// A deployment file (YAML, see docs/serve.md) lists models by reference (`oci://HOST/REPO:TAG`
// or `layout://DIR:TAG`, usually an alias such as `:champion`) and the public keys the site
// trusts. The Deployer checks each model once per poll interval with one Resolve (one HEAD for a
// registry). When the reference points at a manifest other than the current one, it
//
//   1. verifies its signature (a trusted key, the model's repository, not expired, a counter not
//      below the highest counter already accepted for the model) before any model blob is
//      downloaded: a model that does not verify never reaches the model repository;
//   2. records the acceptance in <cache_dir>/state.json (written atomically): the rollback floor
//      and the new local version number, which only grows;
//   3. pulls the model through the content-addressed blob cache <cache_dir>/blobs (only missing
//      blobs are downloaded) into a hidden staging folder renamed to <repository>/<name>/<N>;
//   4. asks the ModelManager to load it: the manager hot-swaps it in, or keeps the old version
//      serving when it fails to load (the deployer then removes the folder again and refuses
//      that manifest until the reference moves);
//   5. marks the version loaded in the state and deletes local versions beyond keep_versions
//      (never one that is serving), and cached blobs no kept version uses.
//
// Refusals (unsigned, untrusted key, bad signature, wrong repository or subject, expired,
// rollback, blob digest or size mismatch, not a model, load failure) are logged and counted once
// per (model, manifest, reason) and shown in Report(); the server keeps serving what it has.
// An unreachable store is reported and retried at the next interval.
//
// Start-up never contacts the store: Create() only reconciles the cache with the state file
// (removing staging leftovers and version folders that were never recorded as loaded), so that
// after a kill -9 at any point the repository holds only verified versions that loaded, and the
// server starts and serves from the cache with the registry unreachable.
#ifndef EDGELOOP_SERVING_DEPLOYMENT_H_
#define EDGELOOP_SERVING_DEPLOYMENT_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "registry/reference.h"
#include "registry/signing.h"
#include "registry/store.h"
#include "serving/drift.h"
#include "serving/model_manager.h"
#include "serving/rollout.h"

namespace edgeloop::serving {

// One entry of the deployment file's `models:` list.
struct DeployedModel {
  std::string name;                     // the served model name (its folder in the repository)
  ::edgeloop::registry::Reference ref;  // what to follow: a tag (alias) or a digest
  std::string repository;               // the repository signatures must name; default ref's
  int keep_versions = 2;                // local versions kept on disk (at least 1)
  RolloutPolicy rollout;                // `rollout:`; mode kImmediate without one
  std::optional<DriftSettings> drift;   // `drift:`; the serve flags' settings without one
};

// A parsed and validated deployment file. Paths are absolute.
struct DeploymentConfig {
  std::filesystem::path cache_dir;
  std::chrono::milliseconds poll_interval{60'000};
  std::vector<std::filesystem::path> trusted_key_files;
  std::vector<::edgeloop::registry::PublicKey> trusted_keys;  // never empty
  ::edgeloop::registry::StoreOptions store_options;  // the `registry:` section; holds the password
  std::vector<DeployedModel> models;                 // never empty; names unique
};

// Reads and validates a deployment file: unknown keys, missing or invalid fields, unreadable key
// or password files are kInvalidArgument (kNotFound when the file itself is missing), with a
// message naming the file and the field. Relative paths in the file (cache_dir, trusted_keys,
// ca_file, password_file, layout:// directories) are relative to the file's folder.
StatusOr<DeploymentConfig> LoadDeploymentFile(const std::filesystem::path& path);
// The same for YAML text, with relative paths resolved against `base_dir`.
StatusOr<DeploymentConfig> ParseDeployment(std::string_view yaml,
                                           const std::filesystem::path& base_dir);

// Opens the store a reference points at; must not contact it (see registry::OpenStore).
using StoreOpener = std::function<StatusOr<std::unique_ptr<::edgeloop::registry::Store>>(
    const ::edgeloop::registry::Reference&, const ::edgeloop::registry::StoreOptions&)>;

struct DeployerOptions {
  DeploymentConfig config;
  // The model repository the ModelManager serves; the deployer owns <repository>/<name> of every
  // deployed model.
  std::filesystem::path repository;
  ModelManager* manager = nullptr;       // required; must outlive the deployer
  metrics::Registry* metrics = nullptr;  // required
  Clock* clock = Clock::Real();          // wall time for signature expiry and reports
  StoreOpener open_store;                // empty: registry::OpenStore
};

// The outcome of one check of one model.
enum class CheckResult {
  kNone,         // not checked yet
  kUnchanged,    // the reference still points at the current version
  kUpdated,      // a new version was verified, pulled and loaded
  kRefused,      // the reference points at a manifest that was refused (see last_refusal)
  kUnreachable,  // the store could not be reached or failed while reading
  kFailed,       // anything else: tag not found, access denied, local disk errors
};
std::string_view CheckResultName(CheckResult result);  // "unchanged", "updated", ...

struct LocalVersionReport {
  int64_t version = 0;
  std::string digest;
  int64_t counter = 0;
  std::string accepted_at;  // RFC 3339
  bool loaded = false;      // it loaded at least once (kept across restarts only then)
};

struct RefusalReport {
  std::string digest;
  std::string reason;  // "unsigned", "untrusted_key", "bad_signature", "wrong_subject",
                       // "expired", "rollback", "blob_mismatch", "invalid_artifact",
                       // "load_failed"
  std::string message;
  std::string at;  // RFC 3339
};

// What the deployer knows about one deployed model.
struct ModelDeploymentReport {
  std::string name;
  std::string ref;
  std::string repository;
  std::string digest;         // the current (newest accepted) version's manifest; "" when none
  int64_t local_version = 0;  // 0 when none
  int64_t counter = 0;        // the current version's signature counter
  int64_t counter_floor = 0;  // signatures below this are refused as rollbacks
  std::vector<LocalVersionReport> local_versions;  // ascending
  std::string last_check;                          // RFC 3339; "" before the first check
  std::string last_contact;                        // the last time the store answered
  CheckResult last_result = CheckResult::kNone;
  std::string last_error;  // of the last check when it was kUnreachable or kFailed, else ""
  std::optional<RefusalReport> last_refusal;
  int64_t checks = 0;
  // The rollout in progress (JSON object, "null" when none) and the past ones (JSON array), as
  // kept in state.json; ReportJson() adds the live counts.
  std::string rollout_json = "null";
  std::string rollout_history_json = "[]";
};

// Keeps the deployed models in line with their references. Thread-safe: CheckOnce() calls run
// one after the other (a check holds the check lock across its I/O; Report() never waits for
// it). Start() runs the checks on the deployer's own thread; tests call CheckOnce() instead.
class Deployer {
 public:
  // Takes the cache (<cache_dir>/.lock: a second server on the same cache fails with
  // kFailedPrecondition), creates <cache_dir>, <repository> and <repository>/<name> for every
  // model (an empty model folder keeps the server unready until a version loads), and
  // reconciles the cache with state.json as the file comment says. Never contacts a store.
  // Fails on an unreadable state file rather than forget the rollback floor.
  static StatusOr<std::unique_ptr<Deployer>> Create(DeployerOptions options);
  ~Deployer();  // Stops the thread.
  Deployer(const Deployer&) = delete;
  Deployer& operator=(const Deployer&) = delete;

  // Starts the thread: a check at once, then one every poll interval. Call at most once.
  void Start();
  // Stops the thread, after the check in progress (a download in progress is finished).
  void Stop();

  // Checks every model once (blocking).
  void CheckOnce();

  std::chrono::milliseconds poll_interval() const { return options_.config.poll_interval; }
  // The rollouts in progress, for the request path (owned by the deployer).
  RolloutRouter* router() const { return router_.get(); }
  std::vector<ModelDeploymentReport> Report() const;
  // Report() as the JSON document of GET /v2/deployment.
  std::string ReportJson() const;

 private:
  struct Runtime;
  struct State;
  struct Outcome {
    CheckResult result = CheckResult::kNone;
    std::string error;
  };

  explicit Deployer(DeployerOptions options);

  Status Recover();                 // REQUIRES(check_mu_)
  Status SaveState();               // REQUIRES(check_mu_)
  void CheckModel(Runtime& model);  // REQUIRES(check_mu_)
  Outcome Check(Runtime& model);    // REQUIRES(check_mu_)
  Outcome Refuse(Runtime& model, const std::string& digest, std::string_view reason,
                 const std::string& message);  // REQUIRES(check_mu_)
  // Rollouts (rollout.h). REQUIRES(check_mu_) for all.
  void ResumeRollouts();                // at Create: resume or end what state.json holds
  void AdvanceRollout(Runtime& model);  // promote or roll back when the rollout is decided
  void StartRollout(Runtime& model, int64_t champion, int64_t candidate, const std::string& digest);
  // Ends the rollout in the state (history, metrics, log); does not touch versions.
  void EndRollout(Runtime& model, std::string_view outcome, const std::string& reason,
                  const std::optional<RolloutNumbers>& numbers);
  // Unloads and removes a candidate version (rollback, superseded, restart).
  void DropVersion(Runtime& model, int64_t version);
  void CollectGarbage(Runtime& model);      // REQUIRES(check_mu_)
  void CollectBlobs();                      // REQUIRES(check_mu_)
  void PublishState(const Runtime& model);  // REQUIRES(check_mu_)
  void Loop();
  // The `rollout` object of one model in ReportJson() (a nlohmann::json).
  nlohmann::json RolloutJson(const ModelDeploymentReport& report) const;

  const DeployerOptions options_;
  int lock_fd_ = -1;

  metrics::Family<metrics::Counter>* checks_;
  metrics::Family<metrics::Counter>* refusals_;
  metrics::Family<metrics::Gauge>* local_version_;
  metrics::Family<metrics::Gauge>* last_contact_;
  metrics::Family<metrics::Gauge>* rollout_active_;
  metrics::Family<metrics::Gauge>* rollout_requests_;
  metrics::Family<metrics::Gauge>* rollout_score_psi_;
  metrics::Family<metrics::Counter>* rollout_outcomes_;
  std::unique_ptr<RolloutRouter> router_;

  std::mutex check_mu_;                           // one check at a time
  std::vector<std::unique_ptr<Runtime>> models_;  // GUARDED_BY(check_mu_)
  std::unique_ptr<State> state_;                  // GUARDED_BY(check_mu_)
  bool hard_links_ = false;  // blobs and repository share a file system; GUARDED_BY(check_mu_)

  mutable std::mutex report_mu_;
  std::vector<ModelDeploymentReport> report_;  // GUARDED_BY(report_mu_); one per model

  std::mutex thread_mu_;
  std::condition_variable thread_cv_;
  bool stopping_ = false;  // GUARDED_BY(thread_mu_)
  std::thread thread_;
};

}  // namespace edgeloop::serving

#endif  // EDGELOOP_SERVING_DEPLOYMENT_H_
