#include "anomaly/context_detector.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace edgeloop::anomaly {
namespace {

uint64_t Mix(uint64_t h, uint64_t v) {
  // splitmix64 finaliser over the running hash: cheap and well spread.
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

}  // namespace

ContextDetector::ContextDetector(const DetectorOptions& options)
    : bins_(options.bins),
      max_order_(options.max_order),
      resolutions_(options.resolutions),
      calm_(options.calm),
      max_contexts_(options.max_contexts),
      probation_(options.probation),
      suppress_(options.suppress >= 0 ? options.suppress : options.probation / 5),
      threshold_(options.threshold),
      range_(options.range_tolerance) {
  if (options.likelihood > 0) {
    likelihood_.emplace(options.likelihood_window, options.likelihood_alpha, options.probation);
  }
  if (options.input_min && options.input_max) {
    ranged_ = true;
    min_ = *options.input_min;
    step_ = (*options.input_max - *options.input_min) / static_cast<double>(bins_);
    if (!(step_ > 0)) step_ = 1;
  }
}

int64_t ContextDetector::Symbol(double value, int64_t resolution) const {
  // Resolution r splits each level into 2^r.
  const double level =
      std::floor((value - min_) / step_ * static_cast<double>(int64_t{1} << resolution));
  constexpr double kLimit = 1e15;
  // Outside the range, level widths double with each step away from it: the k-th level above
  // the range covers 2^k - 1 .. 2^(k+1) - 2 plain levels beyond it (likewise below).
  const double top = static_cast<double>(bins_ * (int64_t{1} << resolution));
  if (level >= top) {
    return static_cast<int64_t>(top + std::floor(std::log2(1 + std::min(level - top, kLimit))));
  }
  if (level < 0) {
    return static_cast<int64_t>(-1 - std::floor(std::log2(std::min(-level, kLimit))));
  }
  return static_cast<int64_t>(level);
}

double ContextDetector::Step(double value) {
  const bool room = static_cast<int64_t>(patterns_.size()) < max_contexts_;
  const int64_t orders = static_cast<int64_t>(history_.size());
  double score_sum = 0;
  int64_t scored = 0;
  for (int64_t r = 0; r < resolutions_; ++r) {
    const int64_t symbol = Symbol(value, r);
    int64_t known = 0;
    int64_t novel = 0;
    uint64_t ctx = Mix(0x51ed27, static_cast<uint64_t>(r));
    for (int64_t order = 1; order <= orders; ++order) {
      ctx =
          Mix(ctx, static_cast<uint64_t>(Symbol(history_[static_cast<size_t>(orders - order)], r)));
      const uint64_t pattern = Mix(ctx, static_cast<uint64_t>(symbol) ^ 0x5bd1e995ull);
      if (contexts_.contains(ctx)) {
        ++known;
        if (!patterns_.contains(pattern)) ++novel;
      }
      if (room) {
        contexts_.insert(ctx);
        patterns_.insert(pattern);
      }
    }
    if (known > 0) {
      score_sum += static_cast<double>(novel) / static_cast<double>(known);
      ++scored;
    }
  }
  history_.push_back(value);
  if (static_cast<int64_t>(history_.size()) > max_order_) history_.pop_front();
  return scored == 0 ? 0.0 : score_sum / static_cast<double>(scored);
}

double ContextDetector::Update(double value) {
  ++n_;
  const bool outside = range_.Update(value);
  if (!ranged_) {
    warmup_.push_back(value);
    if (n_ < probation_) return 0;
    const auto [lo, hi] = std::minmax_element(warmup_.begin(), warmup_.end());
    min_ = *lo;
    const double span = *hi - *lo;
    step_ = span > 0 ? span / static_cast<double>(bins_)
                     : std::max(std::abs(*lo) * 1e-3, std::numeric_limits<double>::min());
    ranged_ = true;
    for (double v : warmup_) Step(v);
    warmup_.clear();
    warmup_.shrink_to_fit();
    return 0;
  }
  double score = Step(value);
  if (calm_ > 0) {
    // A novelty after a long calm is more surprising than one in a series that keeps
    // producing them.
    const double weight = 1.0 - std::exp(-static_cast<double>(since_novel_) / calm_);
    since_novel_ = score > 0 ? 0 : since_novel_ + 1;
    score *= weight;
  }
  if (likelihood_) score = likelihood_->Update(score);
  if (outside) score = 1;
  if (n_ <= probation_) return 0;
  if (quiet_left_ > 0) {
    --quiet_left_;
    return 0;
  }
  if (score >= threshold_) quiet_left_ = suppress_;
  return score;
}

void ContextDetector::SaveState(StateWriter* out) const {
  out->I64(n_);
  out->I64(quiet_left_);
  out->I64(since_novel_);
  out->U8(ranged_ ? 1 : 0);
  range_.SaveState(out);
  if (likelihood_) likelihood_->SaveState(out);
  out->F64(min_);
  out->F64(step_);
  out->F64s(warmup_);
  out->F64s(std::vector<double>(history_.begin(), history_.end()));
  // Sorted, so that the same state always encodes to the same bytes.
  for (const auto* set : {&contexts_, &patterns_}) {
    std::vector<uint64_t> keys(set->begin(), set->end());
    std::sort(keys.begin(), keys.end());
    out->U64(keys.size());
    for (uint64_t k : keys) out->U64(k);
  }
}

Status ContextDetector::LoadState(StateReader* in) {
  uint8_t ranged = 0;
  RETURN_IF_ERROR(in->I64(&n_));
  RETURN_IF_ERROR(in->I64(&quiet_left_));
  RETURN_IF_ERROR(in->I64(&since_novel_));
  RETURN_IF_ERROR(in->U8(&ranged));
  RETURN_IF_ERROR(range_.LoadState(in));
  if (likelihood_) RETURN_IF_ERROR(likelihood_->LoadState(in));
  RETURN_IF_ERROR(in->F64(&min_));
  RETURN_IF_ERROR(in->F64(&step_));
  RETURN_IF_ERROR(in->F64s(&warmup_, static_cast<uint64_t>(std::max<int64_t>(probation_, 0))));
  ranged_ = ranged != 0;
  uint64_t count = 0;
  std::vector<double> history;
  RETURN_IF_ERROR(in->F64s(&history, static_cast<uint64_t>(max_order_)));
  history_.assign(history.begin(), history.end());
  for (auto* set : {&contexts_, &patterns_}) {
    RETURN_IF_ERROR(in->Count(
        &count, std::min<uint64_t>(in->remaining() / 8, static_cast<uint64_t>(max_contexts_) *
                                                            static_cast<uint64_t>(max_order_))));
    set->clear();
    set->reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t k = 0;
      RETURN_IF_ERROR(in->U64(&k));
      set->insert(k);
    }
  }
  if (n_ < 0 || quiet_left_ < 0 || !(step_ > 0) || !std::isfinite(min_)) {
    return DataLossError("context state is inconsistent");
  }
  return Status::Ok();
}

}  // namespace edgeloop::anomaly
