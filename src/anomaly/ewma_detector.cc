#include "anomaly/ewma_detector.h"

#include <algorithm>
#include <cmath>

namespace edgeloop::anomaly {

EwmaDetector::EwmaDetector(const DetectorOptions& options)
    : alpha_(options.alpha),
      z_threshold_(options.z_threshold),
      huber_(options.huber),
      decay_(options.peak_halflife > 0 ? std::exp(-std::log(2.0) / options.peak_halflife) : 0.0),
      threshold_(options.threshold),
      probation_(options.probation),
      suppress_(options.suppress < 0 ? options.probation / 3 : options.suppress),
      range_(options.range_tolerance) {
  if (options.likelihood > 0) {
    likelihood_.emplace(options.likelihood_window, options.likelihood_alpha, options.probation);
  }
}

double EwmaDetector::Update(double value) {
  ++n_;
  if (n_ == 1) {
    mean_ = value;
    var_ = 0;
    range_.Update(value);
    return 0;
  }
  const bool outside = range_.Update(value);
  // A floor on sigma relative to the level: a perfectly flat signal still has a finite z for a
  // change, and a tiny wobble on a large level is not an anomaly.
  const double floor = 1e-3 * (std::abs(mean_) + 1e-3);
  const double sigma = std::sqrt(var_ + floor * floor);
  const double residual = value - mean_;
  const double z = std::abs(residual / sigma);
  // Relative to the largest recent deviation (decaying with the configured half-life): an
  // alert needs a deviation both large (z_threshold) and unusual for this series.
  const double reference = std::max(z_threshold_, peak_);
  const double ratio = z / reference;
  const double raw = std::isfinite(ratio) ? ratio * ratio / (1 + ratio * ratio) : 1.0;
  double score = likelihood_ ? likelihood_->Update(raw) : raw;
  if (outside) score = 1;
  if (n_ <= probation_) score = 0;
  if (decay_ > 0 && std::isfinite(z)) peak_ = std::max(z, peak_ * decay_);
  const bool warming = n_ <= probation_;
  const double a = warming ? std::max(alpha_, 1.0 / static_cast<double>(n_)) : alpha_;
  const double limit = huber_ * sigma;
  const double r = warming ? residual : std::clamp(residual, -limit, limit);
  mean_ += a * r;
  var_ = (1 - a) * (var_ + a * r * r);

  if (quiet_left_ > 0) {
    --quiet_left_;
    return 0;
  }
  if (score >= threshold_ && suppress_ > 0) quiet_left_ = suppress_;
  return score;
}

void EwmaDetector::SaveState(StateWriter* out) const {
  out->I64(n_);
  out->F64(mean_);
  out->F64(var_);
  out->I64(quiet_left_);
  out->F64(peak_);
  range_.SaveState(out);
  if (likelihood_) likelihood_->SaveState(out);
}

Status EwmaDetector::LoadState(StateReader* in) {
  RETURN_IF_ERROR(in->I64(&n_));
  RETURN_IF_ERROR(in->F64(&mean_));
  RETURN_IF_ERROR(in->F64(&var_));
  RETURN_IF_ERROR(in->I64(&quiet_left_));
  RETURN_IF_ERROR(in->F64(&peak_));
  RETURN_IF_ERROR(range_.LoadState(in));
  if (likelihood_) RETURN_IF_ERROR(likelihood_->LoadState(in));
  if (n_ < 0 || quiet_left_ < 0 || !std::isfinite(mean_) || !(var_ >= 0)) {
    return DataLossError("ewma state is inconsistent");
  }
  return Status::Ok();
}

}  // namespace edgeloop::anomaly
