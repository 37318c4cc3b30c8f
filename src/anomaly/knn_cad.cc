#include "anomaly/knn_cad.h"

#include <algorithm>
#include <cmath>

namespace edgeloop::anomaly {
KnnCadDetector::KnnCadDetector(const DetectorOptions& options)
    : dim_(options.dim),
      k_(options.k),
      alert_(options.threshold),
      window_(options.window > 0 ? options.window : options.probation),
      suppress_(options.suppress >= 0
                    ? options.suppress
                    : (options.window > 0 ? options.window : options.probation) / 5) {
  soa_.assign(static_cast<size_t>(dim_ * window_), 0.0);
}

void KnnCadDetector::RefreshMetric() {
  const size_t d = static_cast<size_t>(dim_);
  Vec a(d * d, 0.0);
  for (const Vec& x : training_) {
    for (size_t i = 0; i < d; ++i) {
      const double xi = x[i];
      for (size_t j = 0; j <= i; ++j) a[i * d + j] += xi * x[j];
    }
  }
  // Cholesky, A = L L^T. A (numerically) singular matrix keeps the previous metric, as KNN CAD
  // keeps its previous inverse when the inversion fails.
  double trace = 0;
  for (size_t i = 0; i < d; ++i) trace += a[i * d + i];
  Vec l(d * d, 0.0);
  for (size_t j = 0; j < d; ++j) {
    double s = a[j * d + j];
    for (size_t p = 0; p < j; ++p) s -= l[j * d + p] * l[j * d + p];
    if (!(s > 1e-12 * trace)) return;
    const double ljj = std::sqrt(s);
    l[j * d + j] = ljj;
    for (size_t i = j + 1; i < d; ++i) {
      double t = a[i * d + j];
      for (size_t p = 0; p < j; ++p) t -= l[i * d + p] * l[j * d + p];
      l[i * d + j] = t / ljj;
    }
  }
  chol_ = std::move(l);
  RebuildWhitened();
}

void KnnCadDetector::RebuildWhitened() {
  const size_t cap = static_cast<size_t>(window_);
  soa_.assign(static_cast<size_t>(dim_) * cap, 0.0);
  head_ = 0;
  for (size_t t = 0; t < training_.size(); ++t) PutWhitened(t, training_[t]);
}

void KnnCadDetector::PutWhitened(size_t slot, const Vec& raw) {
  const Vec y = Whiten(raw);
  const size_t cap = static_cast<size_t>(window_);
  for (size_t i = 0; i < y.size(); ++i) soa_[i * cap + slot] = y[i];
}

KnnCadDetector::Vec KnnCadDetector::Whiten(const Vec& x) const {
  if (chol_.empty()) return x;
  const size_t d = static_cast<size_t>(dim_);
  Vec y(d);
  for (size_t i = 0; i < d; ++i) {
    double s = x[i];
    for (size_t p = 0; p < i; ++p) s -= chol_[i * d + p] * y[p];
    y[i] = s / chol_[i * d + i];
  }
  return y;
}

double KnnCadDetector::NonConformity(const Vec& whitened, bool self_included) {
  // Structure of arrays: one contiguous row per coordinate, so the inner loop runs over the
  // training vectors and vectorises.
  const size_t d = static_cast<size_t>(dim_);
  const size_t n = training_.size();
  const size_t cap = static_cast<size_t>(window_);
  scratch_.assign(n, 0.0);
  double* acc = scratch_.data();
  for (size_t i = 0; i < d; ++i) {
    const double* row = soa_.data() + i * cap;
    const double w = whitened[i];
    for (size_t t = 0; t < n; ++t) {
      const double diff = row[t] - w;
      acc[t] += diff * diff;
    }
  }
  const size_t take = std::min(scratch_.size(), static_cast<size_t>(k_ + (self_included ? 1 : 0)));
  if (take == 0) return 0;
  std::nth_element(scratch_.begin(), scratch_.begin() + static_cast<ptrdiff_t>(take - 1),
                   scratch_.end());
  double sum = 0;
  for (size_t i = 0; i < take; ++i) sum += scratch_[i];
  return sum;
}

double KnnCadDetector::Update(double value) {
  // Every value counts as a record, also those that only fill the first lag vector (as in
  // NAB's KNN CAD: training holds window - dim + 1 vectors).
  ++records_;
  lags_.push_back(value);
  if (static_cast<int64_t>(lags_.size()) > dim_) lags_.pop_front();
  if (static_cast<int64_t>(lags_.size()) < dim_) return 0;
  Vec item(lags_.begin(), lags_.end());
  if (records_ < window_) {
    PutWhitened(training_.size(), item);
    training_.push_back(std::move(item));
    return 0;
  }
  const int64_t phase = records_ % window_;
  if (phase == 0 || phase == window_ / 2) RefreshMetric();
  if (scores_.empty()) {
    for (const Vec& x : training_) scores_.push_back(NonConformity(Whiten(x), true));
  }
  const double score = NonConformity(Whiten(item), false);
  int64_t below = 0;
  for (double s : scores_) below += s < score ? 1 : 0;
  const double p = static_cast<double>(below) / static_cast<double>(scores_.size());
  if (records_ >= 2 * window_) {
    // The oldest training vector's slot takes the newest one.
    const size_t n = training_.size();
    training_.pop_front();
    PutWhitened(head_, calibration_.front());
    head_ = (head_ + 1) % n;
    training_.push_back(std::move(calibration_.front()));
    calibration_.pop_front();
  }
  scores_.pop_front();
  calibration_.push_back(std::move(item));
  scores_.push_back(score);
  if (quiet_left_ > 0) {
    --quiet_left_;
    return 0;
  }
  if (p >= alert_) quiet_left_ = suppress_;
  return p;
}

void KnnCadDetector::SaveState(StateWriter* out) const {
  out->I64(records_);
  out->I64(quiet_left_);
  out->F64s(Vec(lags_.begin(), lags_.end()));
  out->F64s(chol_);
  out->F64s(Vec(scores_.begin(), scores_.end()));
  out->U64(training_.size());
  for (const Vec& v : training_) out->F64s(v);
  out->U64(calibration_.size());
  for (const Vec& v : calibration_) out->F64s(v);
}

Status KnnCadDetector::LoadState(StateReader* in) {
  const uint64_t d = static_cast<uint64_t>(dim_);
  const uint64_t w = static_cast<uint64_t>(window_);
  RETURN_IF_ERROR(in->I64(&records_));
  RETURN_IF_ERROR(in->I64(&quiet_left_));
  Vec v;
  RETURN_IF_ERROR(in->F64s(&v, d));
  lags_.assign(v.begin(), v.end());
  RETURN_IF_ERROR(in->F64s(&chol_, d * d));
  RETURN_IF_ERROR(in->F64s(&v, w));
  scores_.assign(v.begin(), v.end());
  uint64_t n = 0;
  RETURN_IF_ERROR(in->Count(&n, w));
  training_.clear();
  for (uint64_t i = 0; i < n; ++i) {
    RETURN_IF_ERROR(in->F64s(&v, d));
    if (v.size() != d) return DataLossError("knn_cad state: bad lag vector");
    training_.push_back(v);
  }
  RETURN_IF_ERROR(in->Count(&n, w));
  calibration_.clear();
  for (uint64_t i = 0; i < n; ++i) {
    RETURN_IF_ERROR(in->F64s(&v, d));
    if (v.size() != d) return DataLossError("knn_cad state: bad lag vector");
    calibration_.push_back(v);
  }
  if (records_ < 0 || quiet_left_ < 0 || (!chol_.empty() && chol_.size() != d * d)) {
    return DataLossError("knn_cad state is inconsistent");
  }
  if (training_.size() >= static_cast<size_t>(window_)) {
    return DataLossError("knn_cad state: training set larger than the window");
  }
  RebuildWhitened();
  return Status::Ok();
}

}  // namespace edgeloop::anomaly
