// ContextDetector: the method of CAD OSE (Smirnov & Marinin's Contextual Anomaly Detector, open
// source edition, the best non-AGPL-free entry on NAB), written from its published description
// and NAB submission; not a copy of its code.
//
// Each value is quantised into 2^value_bits levels across the sensor range (configured, or the
// range seen during the probation period) and encoded as "facts", one per bit of its level
// (bit index, bit value); levels beyond the range widen with the distance from it. The detector
// learns "contexts": pairs (left facts, right facts) meaning "after the left facts were seen, the
// right facts came". The left side of the step's own (zero-level) context is everything active
// at the previous step: the previous value's facts plus up to `max_active` "neurons", the most
// often confirmed contexts that were active then. When that zero-level context is new, the
// detector also remembers the intersections of it with the zero-level contexts it partly
// matches (left sides of at most `max_left` facts), which generalises what it has seen.
// Each context counts the facts it predicted and how many of them came. The raw score of a
// value whose facts were not all predicted is (1 − share of the selected contexts, those whose
// left side was fully active, that were fully confirmed + share of the candidate new contexts
// that were really new) / 2, and 0 for a predicted value. A value beyond the range seen so far
// by more than `range_tolerance` of its width scores 1 (range_watch.h); `likelihood` 1 reports
// the anomaly likelihood of the raw scores instead (likelihood.h). After a raw score >=
// `threshold`, the next `suppress` points (default probation/5) report 0, as in CAD OSE.
// Memory is bounded by `max_contexts` (beyond it, no new contexts are learned).
//
// Cost per point: the left sides fully contained in the active facts and their contexts, found
// through an index by each left side's largest fact; when the zero-level context is new, also
// every left side sharing a fact with the previous active facts. Both are bounded by the memory
// (max_contexts); in practice a few hundred operations. Thread-compatible.
#ifndef EDGELOOP_ANOMALY_CONTEXT_DETECTOR_H_
#define EDGELOOP_ANOMALY_CONTEXT_DETECTOR_H_

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <utility>
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
  using Facts = std::vector<uint32_t>;  // sorted, distinct
  struct FactsHash {
    size_t operator()(const Facts& facts) const;
  };
  struct Context {
    uint32_t left = 0;
    uint32_t right = 0;
    bool zero_level = false;  // ever seen as a step's own context (only these are generalised)
    uint64_t predicted = 0;   // facts it predicted while its left side was fully active
    uint64_t confirmed = 0;   // of those, facts that came
    uint64_t activations = 0; // times it was fully confirmed
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

  bool ranged_ = false;
  double min_ = 0;
  double step_ = 1;
  std::vector<double> warmup_;  // values seen before the range is known
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
