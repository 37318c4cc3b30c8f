// RangeWatch: flags a value that lies beyond the range seen so far by more than `tolerance`
// times that range's width, as Numenta's NAB detector flags a "spatial anomaly" (its default
// tolerance, 0.05, is ours). It catches level shifts and spikes into territory never visited,
// which a detector of temporal patterns or of deviations from a baseline can miss or see late.
// Tolerance 0 turns it off. Thread-compatible.
#ifndef EDGELOOP_ANOMALY_RANGE_WATCH_H_
#define EDGELOOP_ANOMALY_RANGE_WATCH_H_

#include <algorithm>
#include <cmath>

#include "anomaly/state_io.h"
#include "common/status.h"

namespace edgeloop::anomaly {

class RangeWatch {
 public:
  explicit RangeWatch(double tolerance) : tolerance_(tolerance) {}

  // Whether `value` (finite) lies outside the range seen before it (never for the first
  // value); then widens the range to include it.
  bool Update(double value) {
    if (!(tolerance_ > 0)) return false;
    if (!seen_) {
      seen_ = true;
      min_ = max_ = value;
      return false;
    }
    const double margin = tolerance_ * (max_ - min_);
    const bool outside = value > max_ + margin || value < min_ - margin;
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
    return outside;
  }

  void SaveState(StateWriter* out) const {
    out->U8(seen_ ? 1 : 0);
    out->F64(min_);
    out->F64(max_);
  }
  // kDataLoss on a truncated or inconsistent buffer.
  Status LoadState(StateReader* in) {
    uint8_t seen = 0;
    RETURN_IF_ERROR(in->U8(&seen));
    RETURN_IF_ERROR(in->F64(&min_));
    RETURN_IF_ERROR(in->F64(&max_));
    seen_ = seen != 0;
    if (seen > 1 || !std::isfinite(min_) || !std::isfinite(max_) || min_ > max_) {
      return DataLossError("range state is inconsistent");
    }
    return Status::Ok();
  }

 private:
  const double tolerance_;
  bool seen_ = false;
  double min_ = 0;
  double max_ = 0;
};

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_RANGE_WATCH_H_
