// ContextDetector: a context-based novelty detector in the spirit of CAD OSE (Smirnov &
// Marinin's Contextual Anomaly Detector, the best non-AGPL entry on NAB).
//
// Values are quantised into `bins` levels across the sensor range (configured, or the range seen
// during the probation period; never clipped). Values outside that range get levels of their
// own whose width doubles with each step away from it, so bigger excursions stay distinct while
// a series that drifts or spikes beyond its early range does not keep inventing new levels. The
// detector remembers which symbol followed each context of the last 1..max_order symbols, at
// `resolutions` resolutions (bins, 2 bins, ...), and it does so for `time_scales` streams: the
// values and their moving averages over mean_window, mean_window^2, ... points, since a change
// can hide in the noise of the single values (a shifted mix of spikes) or in a slow drift that
// no single step shows (a level held too long) and still be new at a longer time scale. A
// stream's raw score is the share of its contexts already known that have never been followed by
// its symbol (averaged over the resolutions): 0 for a familiar pattern, 1 for a pattern never
// seen in any known context; the point's raw score is the largest of the streams'. A value
// beyond the range seen so far by more than `range_tolerance` of its width scores 1
// (range_watch.h), and so does a mean_window-point average beyond the range of the earlier
// averages (a sustained level shift in a spiky series); `likelihood` 1 reports the anomaly
// likelihood of the raw scores instead (likelihood.h). After an alert the next `suppress` points
// (default probation/5) report 0. Memory is bounded by `max_contexts` (beyond it, no new
// patterns are learned).
//
// Cost per point: O(resolutions * max_order) hash look-ups per stream, O(1) for the moving
// averages, which keep mean_window + mean_window^2 + ... values. Thread-compatible.
#ifndef EDGELOOP_ANOMALY_CONTEXT_DETECTOR_H_
#define EDGELOOP_ANOMALY_CONTEXT_DETECTOR_H_

#include <cmath>
#include <cstdint>
#include <deque>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "anomaly/detector.h"
#include "anomaly/likelihood.h"
#include "anomaly/range_watch.h"

namespace edgeloop::anomaly {

// The value range that both context detectors quantise over: configured (input_min/input_max),
// or learnt from the values of the probation period, which are kept until then and replayed.
// `levels` is how many steps of `step` span the range.
class LevelRange {
 public:
  LevelRange(const DetectorOptions& options, double levels);

  bool known() const { return known_; }
  double min() const { return min_; }
  double step() const { return step_; }
  // Before the range is known: keeps `value` (the n-th); at the probation's end fixes the range
  // and returns the kept values for the detector to learn from, in order.
  std::optional<std::vector<double>> Learn(double value, int64_t n, int64_t probation);

  // State: the "known" flag and the rest are written apart (the detectors' byte layout).
  void SaveKnown(StateWriter* out) const { out->U8(known_ ? 1 : 0); }
  Status LoadKnown(StateReader* in);
  void SaveRest(StateWriter* out) const;
  Status LoadRest(StateReader* in, int64_t probation);
  bool consistent() const { return step_ > 0 && std::isfinite(min_); }

 private:
  double levels_;
  bool known_ = false;
  double min_ = 0;
  double step_ = 1;
  std::vector<double> warmup_;  // values seen before the range is known
};

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
  // One time scale: the values (window 0) or their moving average, and its last max_order
  // values, newest last.
  struct Stream {
    MovingMean mean;
    std::deque<double> history;
  };
  // Learns `value` as the next of stream `s` and returns its raw score.
  double Novelty(double value, size_t s);
  int64_t Symbol(double value, int64_t resolution) const;

  const int64_t bins_;
  const int64_t max_order_;
  const int64_t resolutions_;
  const double calm_;
  const int64_t max_contexts_;
  const int64_t probation_;
  const int64_t suppress_;
  const double threshold_;

  LevelRange range_levels_;
  // Stream k averages mean_window^k values (stream 0: the values themselves); fed in Step, so
  // that the probation's replay feeds them too.
  std::vector<Stream> streams_;
  std::unordered_set<uint64_t> contexts_;  // hashes of known contexts
  std::unordered_set<uint64_t> patterns_;  // hashes of (context, next symbol)
  int64_t n_ = 0;
  int64_t quiet_left_ = 0;
  int64_t since_novel_ = 0;  // points since the last novel pattern
  RangeWatch range_;
  MeanRangeWatch mean_range_;
  std::optional<AnomalyLikelihood> likelihood_;  // when options.likelihood > 0
};

// CadOseDetector (`context` with `cad_ose: 1`): the method of CAD OSE (Smirnov & Marinin's
// Contextual Anomaly Detector, open source edition, as submitted to NAB), written from its
// published description and source, not copied.
//
// Each value is quantised into 2^value_bits levels across the range (configured, or the
// probation range; beyond it levels widen with the distance, as above) and encoded as "facts",
// one per bit of its level. The detector learns "contexts": pairs (left facts, right facts),
// "after the left facts the right facts came". The left side of the step's own (zero-level)
// context is what was active at the previous step: the previous value's facts plus up to
// `max_active` "neurons", the most often confirmed contexts then active. When that zero-level
// context is new, the detector also learns its intersections with the older zero-level
// contexts it partly matches (left sides of at most `max_left` facts). Each context counts the
// facts it predicted and how many came; the prediction for the next value is the right sides of
// the active-left contexts with the best record. A value whose facts were not all predicted
// scores (1 − share of the selected contexts (left side fully active) that were fully confirmed
// + share of the candidate new contexts that were really new) / 2; a predicted one scores 0.
// The range watch and `likelihood` apply as above. After a raw score >= `threshold` (default
// 0.75, CAD OSE's), the next `suppress` points report 0, whether or not it was reported.
//
// Cost per point: the left sides contained in the active facts (found by their largest fact)
// and their contexts; when the zero-level context is new, every left side sharing a fact with
// the previous active facts. Bounded by `max_contexts`, but it grows with what was learned: tens
// of thousands of points per second, not millions. Thread-compatible.
class CadOseDetector : public Detector {
 public:
  explicit CadOseDetector(const DetectorOptions& options);

  std::string_view type() const override { return "context"; }
  double Update(double value) override;
  void SaveState(StateWriter* out) const override;
  Status LoadState(StateReader* in) override;

 private:
  using Facts = std::vector<uint32_t>;  // sorted, distinct
  struct FactsHash {
    size_t operator()(const Facts& facts) const;
  };
  struct Context {
    uint32_t left = 0;
    uint32_t right = 0;
    bool zero_level = false;   // ever seen as a step's own context (only these are generalised)
    uint64_t predicted = 0;    // facts it predicted while its left side was fully active
    uint64_t confirmed = 0;    // of those, facts that came
    uint64_t activations = 0;  // times it was fully confirmed
  };
  struct Side {
    Facts facts;
    std::vector<std::pair<uint32_t, uint32_t>> contexts;  // left sides: (right side, context)
  };
  static constexpr uint32_t kNone = UINT32_MAX;

  // Learns from and scores one value once the range is known.
  double Step(double value);
  Facts Encode(double value) const;
  // The context (left, right): its id and whether it was created now; kNone when it is unknown
  // and memory is full.
  std::pair<uint32_t, bool> FindOrAdd(const Facts& left, const Facts& right, bool zero_level);
  uint32_t FindOrAddSide(const Facts& facts, bool left);
  // Left sides contained in left_group_ (full_) and the facts they predict (predicted_).
  void Cross();

  const int64_t value_bits_;
  const int64_t max_left_;
  const int64_t max_active_;
  const int64_t max_contexts_;
  const int64_t probation_;
  const int64_t suppress_;
  const double threshold_;

  LevelRange range_levels_;
  int64_t n_ = 0;
  int64_t quiet_left_ = 0;
  RangeWatch range_;
  std::optional<AnomalyLikelihood> likelihood_;  // when options.likelihood > 0

  // The learned memory (saved); ids are creation order.
  std::vector<Side> left_;
  std::vector<Side> right_;
  std::vector<Context> contexts_;
  Facts left_group_;  // the facts active after the previous value (its facts + neurons)
  Facts predicted_;   // the facts predicted for the next value

  // Derived from the memory (rebuilt on load).
  std::unordered_map<Facts, uint32_t, FactsHash> left_ids_;
  std::unordered_map<Facts, uint32_t, FactsHash> right_ids_;
  std::unordered_map<uint32_t, std::vector<uint32_t>> left_by_fact_;  // every left side with it
  std::unordered_map<uint32_t, std::vector<uint32_t>> left_by_top_;   // by its largest fact
  std::vector<uint32_t> full_;  // left sides contained in left_group_

  // Scratch, kept to avoid allocations.
  std::vector<uint32_t> right_hits_;
  std::vector<uint32_t> left_hits_;
  std::vector<uint32_t> touched_;
  std::vector<uint32_t> active_;
  std::vector<std::pair<Facts, Facts>> candidates_;
};

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_CONTEXT_DETECTOR_H_
