// Drift monitoring at the edge: live inputs against the reference statistics in a model's card.
//
// `edgeloop train` writes, per feature, a histogram of the training rows into card.json
// (reference_statistics.features.<name>.histogram: interior `edges` and the `fractions` of the
// bins they delimit). A DriftWindow bins every live row with those edges and keeps the latest
// rows (by count and optionally by age); its report gives per feature
//   psi = Σ (live − ref) · ln(live / ref), fractions floored at kPsiFloor, and
//   ks  = max over the edges of |live CDF − ref CDF| (a Kolmogorov–Smirnov-type distance on the
//         binned data),
// and `drifted` when the window holds at least min_rows rows and psi > psi_threshold or
// ks > ks_threshold. Missing values (NaN) are left out, as in the reference.
//
// A DriftMonitor keeps one window per served version (created on the version's first request,
// from <version_dir>/card.json), evaluates every kEvaluateEveryRows rows, exports metrics, and
// calls `on_drift` when a feature crosses its threshold, at most once per model per
// event_interval. See docs/serve.md, "Drift monitoring".
#ifndef EDGELOOP_SERVING_DRIFT_H_
#define EDGELOOP_SERVING_DRIFT_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "inference/tensor.h"
#include "serving/servable.h"

namespace edgeloop::serving {

inline constexpr double kPsiFloor = 1e-4;
inline constexpr int64_t kEvaluateEveryRows = 100;
inline constexpr int64_t kMaxDriftWindowRows = 1'000'000;

struct DriftSettings {
  int64_t window_rows = 1000;           // rows kept; 0 turns monitoring off
  std::chrono::milliseconds window{0};  // when positive, rows older than this leave too
  int64_t min_rows = 200;               // fewer rows in the window: nothing is drifted
  double psi_threshold = 0.2;
  double ks_threshold = 0.2;
  std::chrono::milliseconds event_interval{600'000};  // at most one drift event per model per
};
// kInvalidArgument naming the field when a value is out of range.
Status ValidateDriftSettings(const DriftSettings& settings);

// One monitored feature: its column in the model's input row and the card's histogram.
struct FeatureReference {
  std::string name;
  int64_t column = 0;
  std::vector<double> edges;      // ascending, at most 254
  std::vector<double> fractions;  // edges.size() + 1, summing to ~1
};

// The features of `feature_names` that card.json (its text) has a histogram for, in column order.
// An empty list when the card has no reference statistics; kInvalidArgument for a card that is
// not JSON or whose histograms are malformed.
StatusOr<std::vector<FeatureReference>> ParseDriftReference(
    std::string_view card_json, const std::vector<std::string>& feature_names);

struct FeatureDrift {
  std::string name;
  double psi = 0;
  double ks = 0;
  bool drifted = false;
  int64_t rows = 0;     // present values in the window
  int64_t missing = 0;  // NaN values in the window
};

struct DriftReport {
  int64_t window_rows = 0;  // rows in the window
  bool drifted = false;     // any feature
  std::vector<FeatureDrift> features;
};

// Element `i` of a numeric tensor as a double; NaN for BYTES, FP16 and BF16.
double NumericElement(const inference::Tensor& tensor, size_t i);

// PSI and KS of live bin counts against reference fractions (same length). Exposed for tests.
double PopulationStabilityIndex(const std::vector<int64_t>& live,
                                const std::vector<double>& reference);
double BinnedKs(const std::vector<int64_t>& live, const std::vector<double>& reference);

// The `drift` object of a drift event: {window_rows, features: [{name, psi, ks, drifted}]}.
std::string DriftEventJson(const DriftReport& report);

// The sliding window of one model version. Thread-safe.
class DriftWindow {
 public:
  DriftWindow(std::vector<FeatureReference> reference, DriftSettings settings, Clock* clock);

  // Adds the rows of `input` (row-major, one row per leading index; its row width must cover
  // every reference column, else the call is ignored). Returns the rows added.
  int64_t Observe(const inference::Tensor& input);
  // Adds one row given as values per column (NaN for missing). For tests and callers with rows.
  void ObserveRow(const std::vector<double>& row);

  DriftReport Report();
  const std::vector<FeatureReference>& reference() const { return reference_; }
  const DriftSettings& settings() const { return settings_; }

 private:
  void AddLocked(const std::vector<uint8_t>& bins);  // REQUIRES(mu_)
  void EvictLocked();                                // REQUIRES(mu_)

  const std::vector<FeatureReference> reference_;
  const DriftSettings settings_;
  Clock* const clock_;

  mutable std::mutex mu_;
  // Per row: one bin per feature (kMissing for NaN), flattened; and the time it arrived.
  std::deque<uint8_t> bins_;                  // GUARDED_BY(mu_)
  std::deque<Clock::SteadyTime> times_;       // GUARDED_BY(mu_)
  std::vector<std::vector<int64_t>> counts_;  // GUARDED_BY(mu_): per feature, per bin
  std::vector<int64_t> missing_;              // GUARDED_BY(mu_)
};

struct DriftMonitorOptions {
  DriftSettings defaults;                          // for models without their own settings
  std::map<std::string, DriftSettings> per_model;  // from the deployment file
  Clock* clock = Clock::Real();
  metrics::Registry* metrics = nullptr;  // may be null
  // Called (on the request thread, without locks held) when a model's drift crosses its
  // threshold, at most once per model per event_interval.
  std::function<void(const std::shared_ptr<const ServableVersion>&, const DriftReport&)> on_drift;
};

// Per served version drift windows. Thread-safe.
class DriftMonitor {
 public:
  explicit DriftMonitor(DriftMonitorOptions options);

  // Adds a request's inputs to the window of `servable` (the model's one input whose row width
  // equals its feature_names; otherwise nothing is monitored).
  void Observe(const std::shared_ptr<const ServableVersion>& servable,
               const std::vector<inference::Tensor>& inputs);

  // The JSON document of GET /v2/models/{m}/drift for `servable`.
  std::string ReportJson(const std::shared_ptr<const ServableVersion>& servable);

 private:
  struct Entry {
    std::weak_ptr<const ServableVersion> servable;
    std::shared_ptr<DriftWindow> window;  // null: nothing to monitor
    int64_t since_evaluation = 0;
    bool drifted = false;
  };
  const DriftSettings& SettingsFor(const std::string& model) const;
  // The entry of `servable`, created (reading card.json) on first use. REQUIRES(mu_)
  Entry& EntryLocked(const std::shared_ptr<const ServableVersion>& servable);
  void Publish(const std::string& model, const DriftReport& report);

  const DriftMonitorOptions options_;
  metrics::Family<metrics::Gauge>* psi_ = nullptr;
  metrics::Family<metrics::Gauge>* ks_ = nullptr;
  metrics::Family<metrics::Gauge>* drifted_ = nullptr;
  metrics::Family<metrics::Gauge>* window_rows_ = nullptr;
  metrics::Family<metrics::Counter>* events_ = nullptr;

  std::mutex mu_;
  std::map<const ServableVersion*, Entry> entries_;      // GUARDED_BY(mu_)
  std::map<std::string, Clock::SteadyTime> last_event_;  // GUARDED_BY(mu_): per model
};

}  // namespace edgeloop::serving

#endif  // EDGELOOP_SERVING_DRIFT_H_
