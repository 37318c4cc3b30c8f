// ContextDetector: a context-based novelty detector in the spirit of CAD OSE (Smirnov &
// Marinin's Contextual Anomaly Detector, the best non-AGPL entry on NAB).
//
// Values are quantised into `bins` levels across the sensor range (configured, or the range seen
// during the probation period; never clipped). Values outside that range get levels of their
// own whose width doubles with each step away from it, so bigger excursions stay distinct while
// a series that drifts or spikes beyond its early range does not keep inventing new levels. The
// detector remembers which symbol followed each context of the last 1..max_order symbols. A
// point's raw score is the share of the contexts already known that have never been followed by
// its symbol: 0 for a familiar pattern, 1 for a pattern never seen in any known context. A value
// beyond the range seen so far by more than `range_tolerance` of its width scores 1
// (range_watch.h); `likelihood` 1 reports the anomaly likelihood of the raw scores instead
// (likelihood.h). After an alert the next `suppress` points (default probation/5) report 0.
// Memory is bounded by `max_contexts` (beyond it, no new patterns are learned).
//
// Cost per point: O(max_order) hash look-ups. Thread-compatible.
#ifndef EDGELOOP_ANOMALY_CONTEXT_DETECTOR_H_
#define EDGELOOP_ANOMALY_CONTEXT_DETECTOR_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <unordered_set>
#include <vector>

#include "anomaly/detector.h"
#include "anomaly/likelihood.h"
#include "anomaly/range_watch.h"

namespace edgeloop::anomaly {

class ContextDetector : public Detector {
 public:
  explicit ContextDetector(const DetectorOptions& options);

  std::string_view type() const override { return "context"; }
  double Update(double value) override;
  void SaveState(StateWriter* out) const override;
  Status LoadState(StateReader* in) override;

 private:
  // Learns from and scores one value once the range is known.
  double Step(double value);
  int64_t Symbol(double value, int64_t resolution) const;

  const int64_t bins_;
  const int64_t max_order_;
  const int64_t resolutions_;
  const double calm_;
  const int64_t max_contexts_;
  const int64_t probation_;
  const int64_t suppress_;
  const double threshold_;

  bool ranged_ = false;
  double min_ = 0;
  double step_ = 1;
  std::vector<double> warmup_;             // values seen before the range is known
  std::deque<int64_t> history_;            // the last max_order symbols, newest last
  std::unordered_set<uint64_t> contexts_;  // hashes of known contexts
  std::unordered_set<uint64_t> patterns_;  // hashes of (context, next symbol)
  int64_t n_ = 0;
  int64_t quiet_left_ = 0;
  int64_t since_novel_ = 0;  // points since the last novel pattern
  RangeWatch range_;
  std::optional<AnomalyLikelihood> likelihood_;  // when options.likelihood > 0
};

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_CONTEXT_DETECTOR_H_
