#include "anomaly/likelihood.h"

#include <algorithm>
#include <cmath>

namespace edgeloop::anomaly {
namespace {

// The published floors: without them a series whose raw scores are almost always 0 would turn
// the slightest blip into a certain anomaly.
constexpr double kMeanFloor = 0.03;
constexpr double kVarianceFloor = 0.0003;
// The published log scale: log(1 - L + kEpsilon) / log(kEpsilon).
constexpr double kEpsilon = 1e-10;

}  // namespace

AnomalyLikelihood::AnomalyLikelihood(int64_t window, double alpha, int64_t learning)
    : alpha_(alpha),
      learning_(learning),
      recent_(static_cast<size_t>(std::max<int64_t>(window, 1))) {}

double AnomalyLikelihood::Update(double raw) {
  const auto window = static_cast<int64_t>(recent_.size());
  recent_[static_cast<size_t>(n_ % window)] = raw;
  ++n_;
  // Summed afresh (window is small): a running sum would drift and break exact restores.
  double sum = 0;
  const int64_t filled = std::min(n_, window);
  for (int64_t i = 0; i < filled; ++i) sum += recent_[static_cast<size_t>(i)];
  const double average = sum / static_cast<double>(filled);

  double score = 0;
  if (n_ > learning_) {
    const double mean = std::max(mean_, kMeanFloor);
    const double sigma = std::sqrt(std::max(var_, kVarianceFloor));
    const double z = (average - mean) / sigma;
    const double tail = 0.5 * std::erfc(z / std::sqrt(2.0));  // Q(z) = 1 - L
    score = std::clamp(std::log(tail + kEpsilon) / std::log(kEpsilon), 0.0, 1.0);
  }
  const double a = n_ <= learning_ ? std::max(alpha_, 1.0 / static_cast<double>(n_)) : alpha_;
  const double d = average - mean_;
  mean_ += a * d;
  var_ = (1 - a) * (var_ + a * d * d);
  return score;
}

void AnomalyLikelihood::SaveState(StateWriter* out) const {
  out->I64(n_);
  out->F64(mean_);
  out->F64(var_);
  out->F64s(recent_);
}

Status AnomalyLikelihood::LoadState(StateReader* in) {
  RETURN_IF_ERROR(in->I64(&n_));
  RETURN_IF_ERROR(in->F64(&mean_));
  RETURN_IF_ERROR(in->F64(&var_));
  std::vector<double> recent;
  RETURN_IF_ERROR(in->F64s(&recent, recent_.size()));
  if (recent.size() != recent_.size() || n_ < 0 || !std::isfinite(mean_) || !(var_ >= 0)) {
    return DataLossError("likelihood state is inconsistent");
  }
  recent_ = std::move(recent);
  return Status::Ok();
}

}  // namespace edgeloop::anomaly
