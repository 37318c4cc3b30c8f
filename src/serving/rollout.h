// Canary and shadow rollouts of a new model version (the candidate) against the version that
// served before it (the champion). See docs/serve.md, "Canary rollout and automatic rollback".
//
// The Deployer starts a Rollout when a followed reference moves to a version that verified and
// loaded, and publishes it in a RolloutRouter. The OIP handler asks the router, for every request
// that names no version, which version answers (canary: a share of the route keys, sticky by a
// stable hash; shadow: the champion, with a copy for the candidate) and reports each outcome
// back with Observe(). At each deployment check the Deployer asks Evaluate() whether to wait,
// promote the candidate or roll it back, and with what reason.
//
// Lifecycle of a rollout (kept by the Deployer in state.json):
//   (candidate loaded) -> RUNNING -> PROMOTED     (limits held after the period)
//                                \-> ROLLED_BACK  (a limit failed, or not enough traffic)
//                                \-> SUPERSEDED   (the reference moved again)
#ifndef EDGELOOP_SERVING_ROLLOUT_H_
#define EDGELOOP_SERVING_ROLLOUT_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "inference/tensor.h"

namespace edgeloop::serving {

enum class RolloutMode { kImmediate, kCanary, kShadow };
std::string_view RolloutModeName(RolloutMode mode);  // "immediate", "canary", "shadow"

struct RolloutLimits {
  double max_error_rate = 0.01;    // candidate error rate minus the champion's, at most
  double max_latency_ratio = 1.5;  // candidate p99 <= champion p99 * ratio + slack
  double latency_slack_ms = 1.0;
  double max_score_psi = 0.25;  // PSI of the candidate's scores against the champion's
};

// The `rollout:` section of one deployed model.
struct RolloutPolicy {
  RolloutMode mode = RolloutMode::kImmediate;  // without a `rollout:` section
  double share = 0.1;                          // canary: fraction of route keys on the candidate
  // "header:NAME", "input:NAME" or "request_id".
  std::string route_key = "header:X-Edgeloop-Route-Key";
  std::chrono::milliseconds period{600'000};
  int64_t min_requests = 200;
  std::chrono::milliseconds max_period{86'400'000};
  bool promote_on_timeout = false;  // `on_timeout: promote`
  RolloutLimits limits;
};
// kInvalidArgument naming the field when a value is out of range.
Status ValidateRolloutPolicy(const RolloutPolicy& policy);

// The champion needs this many routed requests in canary mode before a decision.
inline constexpr int64_t kMinChampionRequests = 10;
// Latencies and scores kept per side (the most recent).
inline constexpr size_t kMaxRolloutSamples = 20'000;

struct RouteDecision {
  int64_t version = 0;            // answers the request
  std::optional<int64_t> shadow;  // also scores a copy (never returned)
};

struct RolloutSideCounts {
  int64_t requests = 0;
  int64_t errors = 0;
  int64_t rows = 0;
};

// The numbers a decision looks at (NaN-free; absent ones are nullopt).
struct RolloutNumbers {
  RolloutSideCounts champion;
  RolloutSideCounts candidate;
  double champion_error_rate = 0;
  double candidate_error_rate = 0;
  std::optional<double> champion_p99_ms;
  std::optional<double> candidate_p99_ms;
  std::optional<double> latency_limit_ms;
  std::optional<double> score_psi;
  double elapsed_s = 0;
};

struct RolloutVerdict {
  enum class Action { kWait, kPromote, kRollBack };
  Action action = Action::kWait;
  std::string reason;  // for promote and roll back: what decided it, with the numbers
  RolloutNumbers numbers;
};

// PSI of `actual` against `expected` samples, on the deciles of `expected` (distinct edges),
// fractions floored at 1e-4. 0 when either is empty.
double SamplePsi(std::span<const double> expected, std::span<const double> actual);

// The score of each row of a model's answer: the first element of the row of the output named
// `score`, else `probability`, else the first output. Empty when there is no numeric output.
std::vector<double> RowScores(const std::vector<inference::Tensor>& outputs);

// One rollout of one model. Thread-safe.
class Rollout {
 public:
  Rollout(std::string model, RolloutPolicy policy, int64_t champion, int64_t candidate,
          std::string candidate_digest, Clock::SteadyTime started);

  // Where a request with route key `key` goes (an empty key: at random).
  RouteDecision Route(std::string_view key) const;
  // The outcome of one routed request on `version` (the champion or the candidate; others are
  // ignored): whether the model ran, how long it took, one score per row (may be empty).
  void Observe(int64_t version, bool ok, double latency_seconds, std::span<const double> scores);

  RolloutNumbers Numbers(Clock::SteadyTime now) const;
  RolloutVerdict Evaluate(Clock::SteadyTime now) const;

  const std::string& model() const { return model_; }
  const RolloutPolicy& policy() const { return policy_; }
  int64_t champion() const { return champion_; }
  int64_t candidate() const { return candidate_; }
  const std::string& candidate_digest() const { return candidate_digest_; }
  Clock::SteadyTime started() const { return started_; }

 private:
  struct Side {
    RolloutSideCounts counts;
    std::vector<double> latencies_ms;  // ring of the latest kMaxRolloutSamples
    size_t latency_next = 0;
    std::vector<double> scores;  // ring of the latest kMaxRolloutSamples
    size_t score_next = 0;
  };
  static void Push(std::vector<double>& ring, size_t& next, double value);

  const std::string model_;
  const RolloutPolicy policy_;
  const int64_t champion_;
  const int64_t candidate_;
  const std::string candidate_digest_;
  const Clock::SteadyTime started_;

  mutable std::mutex mu_;
  Side champion_side_;   // GUARDED_BY(mu_)
  Side candidate_side_;  // GUARDED_BY(mu_)
};

// The rollouts in progress, by model name. Thread-safe; lookups copy a shared_ptr.
class RolloutRouter {
 public:
  std::shared_ptr<Rollout> Find(std::string_view model) const;
  void Set(const std::string& model, std::shared_ptr<Rollout> rollout);
  void Clear(const std::string& model);

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Rollout>, std::less<>> rollouts_;  // GUARDED_BY(mu_)
};

}  // namespace edgeloop::serving

#endif  // EDGELOOP_SERVING_ROLLOUT_H_
