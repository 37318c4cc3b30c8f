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
      max_contexts_(options.max_contexts),
      probation_(options.probation),
      suppress_(options.suppress >= 0 ? options.suppress : options.probation / 5),
      threshold_(options.threshold) {
  if (options.input_min && options.input_max) {
    ranged_ = true;
    min_ = *options.input_min;
    step_ = (*options.input_max - *options.input_min) / static_cast<double>(bins_);
    if (!(step_ > 0)) step_ = 1;
  }
}

int64_t ContextDetector::Symbol(double value) const {
  const double level = std::floor((value - min_) / step_);
  constexpr double kLimit = 1e15;
  return static_cast<int64_t>(std::clamp(level, -kLimit, kLimit));
}

double ContextDetector::Step(double value) {
  const int64_t symbol = Symbol(value);
  int64_t known = 0;
  int64_t novel = 0;
  uint64_t ctx = 0x51ed27;
  const int64_t orders = static_cast<int64_t>(history_.size());
  const bool room = static_cast<int64_t>(patterns_.size()) < max_contexts_;
  for (int64_t order = 1; order <= orders; ++order) {
    ctx = Mix(ctx, static_cast<uint64_t>(history_[static_cast<size_t>(orders - order)]));
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
  history_.push_back(symbol);
  if (static_cast<int64_t>(history_.size()) > max_order_) history_.pop_front();
  return known == 0 ? 0.0 : static_cast<double>(novel) / static_cast<double>(known);
}

double ContextDetector::Update(double value) {
  ++n_;
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
  const double score = Step(value);
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
  out->U8(ranged_ ? 1 : 0);
  out->F64(min_);
  out->F64(step_);
  out->F64s(warmup_);
  out->U64(history_.size());
  for (int64_t s : history_) out->I64(s);
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
  RETURN_IF_ERROR(in->U8(&ranged));
  RETURN_IF_ERROR(in->F64(&min_));
  RETURN_IF_ERROR(in->F64(&step_));
  RETURN_IF_ERROR(in->F64s(&warmup_, static_cast<uint64_t>(std::max<int64_t>(probation_, 0))));
  ranged_ = ranged != 0;
  uint64_t count = 0;
  RETURN_IF_ERROR(in->Count(&count, static_cast<uint64_t>(max_order_)));
  history_.clear();
  for (uint64_t i = 0; i < count; ++i) {
    int64_t s = 0;
    RETURN_IF_ERROR(in->I64(&s));
    history_.push_back(s);
  }
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
