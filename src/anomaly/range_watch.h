// RangeWatch: flags a value that lies beyond the range seen so far by more than `tolerance`
// times that range's width, as Numenta's NAB detector flags a "spatial anomaly" (its default
// tolerance, 0.05, is ours). It catches level shifts and spikes into territory never visited,
// which a detector of temporal patterns or of deviations from a baseline can miss or see late.
// Tolerance 0 turns it off. Thread-compatible.
#ifndef EDGELOOP_ANOMALY_RANGE_WATCH_H_
#define EDGELOOP_ANOMALY_RANGE_WATCH_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

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

// MovingMean: the mean of the last `window` values (of all of them while fewer have come), in
// O(1) per value: a running sum, summed afresh from the kept values once per `window` values so
// that rounding cannot accumulate. Window 0 is off (Add returns its input). Thread-compatible.
class MovingMean {
 public:
  explicit MovingMean(int64_t window)
      : recent_(static_cast<size_t>(std::max<int64_t>(window, 0))) {}

  // Adds `value` (finite) and returns the mean of the last min(values so far, window) values.
  double Add(double value) {
    if (recent_.empty()) return value;
    const auto window = static_cast<int64_t>(recent_.size());
    double& slot = recent_[static_cast<size_t>(n_ % window)];
    sum_ += value - slot;  // the slot holds 0 until the ring is full
    slot = value;
    ++n_;
    if (n_ % window == 0) {
      sum_ = 0;
      for (double v : recent_) sum_ += v;
    }
    return sum_ / static_cast<double>(std::min(n_, window));
  }
  // Whether `window` values have come (always false when off).
  bool full() const { return !recent_.empty() && n_ >= static_cast<int64_t>(recent_.size()); }

  void SaveState(StateWriter* out) const {
    out->I64(n_);
    out->F64(sum_);
    out->F64s(recent_);
  }
  // kDataLoss on a truncated or inconsistent buffer (also a buffer of another window).
  Status LoadState(StateReader* in) {
    RETURN_IF_ERROR(in->I64(&n_));
    RETURN_IF_ERROR(in->F64(&sum_));
    std::vector<double> recent;
    RETURN_IF_ERROR(in->F64s(&recent, recent_.size()));
    if (recent.size() != recent_.size() || n_ < 0 || !std::isfinite(sum_) ||
        !std::all_of(recent.begin(), recent.end(), [](double v) { return std::isfinite(v); })) {
      return DataLossError("moving mean state is inconsistent");
    }
    recent_ = std::move(recent);
    return Status::Ok();
  }

 private:
  std::vector<double> recent_;  // ring buffer of the last `window` values
  int64_t n_ = 0;
  double sum_ = 0;  // of recent_
};

// MeanRangeWatch: a RangeWatch over the mean of the last `window` values (a moving average,
// starting once `window` values are in). It flags a sustained shift of the level beyond every
// earlier `window`-point average, which a spiky series hides from the plain range watch: its
// extremes are single spikes, while its averages move only when the level does. Window 0 or
// tolerance 0 turns it off. Thread-compatible.
class MeanRangeWatch {
 public:
  MeanRangeWatch(int64_t window, double tolerance) : mean_(window), watch_(tolerance) {}

  // Whether the mean of the last `window` values, `value` included, lies outside the range of
  // the earlier such means (range_watch.h); never before `window` values.
  bool Update(double value) {
    const double mean = mean_.Add(value);
    return mean_.full() && watch_.Update(mean);
  }

  void SaveState(StateWriter* out) const {
    mean_.SaveState(out);
    watch_.SaveState(out);
  }
  // kDataLoss on a truncated or inconsistent buffer.
  Status LoadState(StateReader* in) {
    RETURN_IF_ERROR(mean_.LoadState(in));
    return watch_.LoadState(in);
  }

 private:
  MovingMean mean_;
  RangeWatch watch_;
};

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_RANGE_WATCH_H_
