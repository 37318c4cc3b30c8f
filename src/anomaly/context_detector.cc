#include "anomaly/context_detector.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <iterator>
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

LevelRange::LevelRange(const DetectorOptions& options, double levels) : levels_(levels) {
  if (options.input_min && options.input_max) {
    known_ = true;
    min_ = *options.input_min;
    step_ = (*options.input_max - *options.input_min) / levels_;
    if (!(step_ > 0)) step_ = 1;
  }
}

std::optional<std::vector<double>> LevelRange::Learn(double value, int64_t n, int64_t probation) {
  warmup_.push_back(value);
  if (n < probation) return std::nullopt;
  const auto [lo, hi] = std::minmax_element(warmup_.begin(), warmup_.end());
  min_ = *lo;
  const double span = *hi - *lo;
  step_ = span > 0 ? span / levels_
                   : std::max(std::abs(*lo) * 1e-3, std::numeric_limits<double>::min());
  known_ = true;
  std::vector<double> kept = std::move(warmup_);
  warmup_ = {};
  return kept;
}

Status LevelRange::LoadKnown(StateReader* in) {
  uint8_t known = 0;
  RETURN_IF_ERROR(in->U8(&known));
  known_ = known != 0;
  return Status::Ok();
}

void LevelRange::SaveRest(StateWriter* out) const {
  out->F64(min_);
  out->F64(step_);
  out->F64s(warmup_);
}

Status LevelRange::LoadRest(StateReader* in, int64_t probation) {
  RETURN_IF_ERROR(in->F64(&min_));
  RETURN_IF_ERROR(in->F64(&step_));
  return in->F64s(&warmup_, static_cast<uint64_t>(std::max<int64_t>(probation, 0)));
}

ContextDetector::ContextDetector(const DetectorOptions& options)
    : bins_(options.bins),
      max_order_(options.max_order),
      resolutions_(options.resolutions),
      calm_(options.calm),
      max_contexts_(options.max_contexts),
      probation_(options.probation),
      suppress_(options.suppress >= 0 ? options.suppress : options.probation / 5),
      threshold_(options.threshold),
      range_levels_(options, static_cast<double>(bins_)),
      range_(options.range_tolerance),
      mean_range_(options.mean_window, options.range_tolerance) {
  const int64_t scales = options.mean_window > 1 ? options.time_scales : 1;
  int64_t window = 0;
  for (int64_t k = 0; k < scales; ++k) {
    streams_.push_back(Stream{MovingMean(window), {}});
    window = window == 0 ? options.mean_window : window * options.mean_window;
  }
  if (options.likelihood > 0) {
    likelihood_.emplace(options.likelihood_window, options.likelihood_alpha, options.probation);
  }
}

int64_t ContextDetector::Symbol(double value, int64_t resolution) const {
  // Resolution r splits each level into 2^r.
  const double level = std::floor((value - range_levels_.min()) / range_levels_.step() *
                                  static_cast<double>(int64_t{1} << resolution));
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
  // A change can show at one time scale and hide in the noise of another: the point's raw score
  // is that of the stream that finds it most novel.
  double score = 0;
  for (size_t s = 0; s < streams_.size(); ++s) {
    score = std::max(score, Novelty(streams_[s].mean.Add(value), s));
  }
  return score;
}

double ContextDetector::Novelty(double value, size_t s) {
  std::deque<double>* history = &streams_[s].history;
  const bool room = static_cast<int64_t>(patterns_.size()) < max_contexts_;
  const int64_t orders = static_cast<int64_t>(history->size());
  double score_sum = 0;
  int64_t scored = 0;
  for (int64_t r = 0; r < resolutions_; ++r) {
    const int64_t symbol = Symbol(value, r);
    int64_t known = 0;
    int64_t novel = 0;
    uint64_t ctx = Mix(Mix(0x51ed27, static_cast<uint64_t>(r)), s);
    for (int64_t order = 1; order <= orders; ++order) {
      ctx = Mix(ctx,
                static_cast<uint64_t>(Symbol((*history)[static_cast<size_t>(orders - order)], r)));
      const uint64_t pattern = Mix(ctx, static_cast<uint64_t>(symbol) ^ 0x5bd1e995ull);
      // One hash look-up per set: an insertion tells whether the key was new.
      const bool ctx_known = room ? !contexts_.insert(ctx).second : contexts_.contains(ctx);
      if (ctx_known) {
        ++known;
        if (room ? patterns_.insert(pattern).second : !patterns_.contains(pattern)) ++novel;
      } else if (room) {
        patterns_.insert(pattern);
      }
    }
    if (known > 0) {
      score_sum += static_cast<double>(novel) / static_cast<double>(known);
      ++scored;
    }
  }
  history->push_back(value);
  if (static_cast<int64_t>(history->size()) > max_order_) history->pop_front();
  return scored == 0 ? 0.0 : score_sum / static_cast<double>(scored);
}

double ContextDetector::Update(double value) {
  ++n_;
  const bool outside = range_.Update(value);
  const bool mean_outside = mean_range_.Update(value);
  if (!range_levels_.known()) {
    if (auto kept = range_levels_.Learn(value, n_, probation_)) {
      for (double v : *kept) Step(v);
    }
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
  if (outside || mean_outside) score = 1;
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
  range_levels_.SaveKnown(out);
  range_.SaveState(out);
  mean_range_.SaveState(out);
  if (likelihood_) likelihood_->SaveState(out);
  range_levels_.SaveRest(out);
  for (const Stream& stream : streams_) {
    stream.mean.SaveState(out);
    out->F64s(std::vector<double>(stream.history.begin(), stream.history.end()));
  }
  // Sorted, so that the same state always encodes to the same bytes.
  for (const auto* set : {&contexts_, &patterns_}) {
    std::vector<uint64_t> keys(set->begin(), set->end());
    std::sort(keys.begin(), keys.end());
    out->U64(keys.size());
    for (uint64_t k : keys) out->U64(k);
  }
}

Status ContextDetector::LoadState(StateReader* in) {
  RETURN_IF_ERROR(in->I64(&n_));
  RETURN_IF_ERROR(in->I64(&quiet_left_));
  RETURN_IF_ERROR(in->I64(&since_novel_));
  RETURN_IF_ERROR(range_levels_.LoadKnown(in));
  RETURN_IF_ERROR(range_.LoadState(in));
  RETURN_IF_ERROR(mean_range_.LoadState(in));
  if (likelihood_) RETURN_IF_ERROR(likelihood_->LoadState(in));
  RETURN_IF_ERROR(range_levels_.LoadRest(in, probation_));
  uint64_t count = 0;
  std::vector<double> history;
  for (Stream& stream : streams_) {
    RETURN_IF_ERROR(stream.mean.LoadState(in));
    RETURN_IF_ERROR(in->F64s(&history, static_cast<uint64_t>(max_order_)));
    stream.history.assign(history.begin(), history.end());
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
  if (n_ < 0 || quiet_left_ < 0 || !range_levels_.consistent()) {
    return DataLossError("context state is inconsistent");
  }
  return Status::Ok();
}

namespace cad {

// Fact ids: a level's bits are 2·bit + value (below the range: kBelow + ...); a neuron, an
// active context fed back as a fact, is kNeuron + its id. Sorted fact lists therefore put the
// value's facts first.
constexpr uint32_t kBelow = 256;
constexpr uint32_t kNeuron = uint32_t{1} << 20;

void Intersect(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b,
               std::vector<uint32_t>* out) {
  out->clear();
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(*out));
}

}  // namespace cad

size_t CadOseDetector::FactsHash::operator()(const Facts& facts) const {
  uint64_t h = 0x51ed270b27a9ull ^ facts.size();
  for (uint32_t f : facts) {
    h ^= f + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
  }
  return static_cast<size_t>(h ^ (h >> 31));
}

CadOseDetector::CadOseDetector(const DetectorOptions& options)
    : value_bits_(options.value_bits),
      max_left_(options.max_left),
      max_active_(options.max_active),
      max_contexts_(std::min<int64_t>(options.max_contexts, kNone - cad::kNeuron - 1)),
      probation_(options.probation),
      suppress_(options.suppress >= 0 ? options.suppress : options.probation / 5),
      threshold_(options.threshold),
      range_levels_(options, static_cast<double>((int64_t{1} << value_bits_) - 1)),
      range_(options.range_tolerance) {
  if (options.likelihood > 0) {
    likelihood_.emplace(options.likelihood_window, options.likelihood_alpha, options.probation);
  }
}

CadOseDetector::Facts CadOseDetector::Encode(double value) const {
  // As in CAD OSE the range's width is split into 2^bits − 1 steps, so its maximum is the top
  // level. Outside the range, level widths double with each step away from it: the k-th level
  // above covers 2^k − 1 .. 2^(k+1) − 2 plain levels beyond it (likewise below), so a spike is
  // never clipped onto the edge level, yet a series that drifts does not keep inventing levels.
  constexpr double kLimit = 1e15;
  const double level = std::floor((value - range_levels_.min()) / range_levels_.step());
  const double top = static_cast<double>(int64_t{1} << value_bits_);
  uint64_t code = 0;
  uint32_t base = 0;
  if (level >= top) {
    code = static_cast<uint64_t>(top + std::floor(std::log2(1 + std::min(level - top, kLimit))));
  } else if (level < 0) {
    code = static_cast<uint64_t>(1 + std::floor(std::log2(std::min(-level, kLimit))));
    base = cad::kBelow;
  } else {
    code = static_cast<uint64_t>(level);
  }
  const int bits = std::max<int>(static_cast<int>(value_bits_), std::bit_width(code));
  Facts facts;
  facts.reserve(static_cast<size_t>(bits));
  for (int b = 0; b < bits; ++b) {
    facts.push_back(base + 2 * static_cast<uint32_t>(b) + static_cast<uint32_t>((code >> b) & 1));
  }
  return facts;
}

uint32_t CadOseDetector::FindOrAddSide(const Facts& facts, bool left) {
  auto& ids = left ? left_ids_ : right_ids_;
  auto& sides = left ? left_ : right_;
  const auto [it, added] = ids.try_emplace(facts, static_cast<uint32_t>(sides.size()));
  if (added) {
    sides.push_back(Side{facts, {}});
    if (left) {
      for (uint32_t f : facts) left_by_fact_[f].push_back(it->second);
      left_by_top_[facts.back()].push_back(it->second);
    }
  }
  return it->second;
}

std::pair<uint32_t, bool> CadOseDetector::FindOrAdd(const Facts& left, const Facts& right,
                                                    bool zero_level) {
  const auto l = left_ids_.find(left);
  const auto r = right_ids_.find(right);
  if (l != left_ids_.end() && r != right_ids_.end()) {
    for (const auto& [rid, cid] : left_[l->second].contexts) {
      if (rid != r->second) continue;
      if (zero_level) contexts_[cid].zero_level = true;
      return {cid, false};
    }
  }
  if (static_cast<int64_t>(contexts_.size()) >= max_contexts_) return {kNone, false};
  const uint32_t lid = FindOrAddSide(left, true);
  const uint32_t rid = FindOrAddSide(right, false);
  const auto cid = static_cast<uint32_t>(contexts_.size());
  contexts_.push_back(Context{lid, rid, zero_level, 0, 0, 0});
  left_[lid].contexts.emplace_back(rid, cid);
  return {cid, true};
}

void CadOseDetector::Cross() {
  full_.clear();
  for (uint32_t f : left_group_) {
    const auto it = left_by_top_.find(f);
    if (it == left_by_top_.end()) continue;
    for (uint32_t lid : it->second) {
      const Facts& facts = left_[lid].facts;
      if (std::includes(left_group_.begin(), left_group_.end(), facts.begin(), facts.end())) {
        full_.push_back(lid);
      }
    }
  }
  // The prediction: the right sides of the contexts with the best record (confirmed facts per
  // predicted fact) among those whose left side is active; all of them while none has a record.
  double best = 0;
  predicted_.clear();
  for (uint32_t lid : full_) {
    for (const auto& [rid, cid] : left_[lid].contexts) {
      const Context& c = contexts_[cid];
      const double weight =
          c.predicted > 0 ? static_cast<double>(c.confirmed) / static_cast<double>(c.predicted)
                          : 0.0;
      if (weight > best) {
        best = weight;
        predicted_.clear();
      }
      if (weight == best) {
        predicted_.insert(predicted_.end(), right_[rid].facts.begin(), right_[rid].facts.end());
      }
    }
  }
  std::sort(predicted_.begin(), predicted_.end());
  predicted_.erase(std::unique(predicted_.begin(), predicted_.end()), predicted_.end());
}

double CadOseDetector::Step(double value) {
  const Facts facts = Encode(value);
  bool surprise = false;
  for (uint32_t f : facts) {
    surprise |= !std::binary_search(predicted_.begin(), predicted_.end(), f);
  }

  // The step's own context: what was active before, then this value.
  const auto known_left = static_cast<uint32_t>(left_.size());
  uint32_t zero = kNone;
  bool zero_new = false;
  candidates_.clear();
  if (!left_group_.empty()) {
    std::tie(zero, zero_new) = FindOrAdd(left_group_, facts, true);
    if (zero_new) candidates_.emplace_back(left_group_, facts);
    if (!zero_new) zero = kNone;
  }

  right_hits_.assign(right_.size(), 0);
  for (size_t i = 0; i < right_.size(); ++i) {
    const Facts& r = right_[i].facts;
    uint32_t hits = 0;
    for (uint32_t f : r) hits += std::binary_search(facts.begin(), facts.end(), f);
    right_hits_[i] = hits;
  }

  // Contexts whose left side was fully active: selected; those whose right side came in full:
  // active (confirmed once more). A new zero-level context also proposes generalisations: the
  // parts of older zero-level contexts that this transition shares with them.
  int64_t selected = 0;
  active_.clear();
  Facts part;
  for (uint32_t lid : full_) {
    for (const auto& [rid, cid] : left_[lid].contexts) {
      if (cid == zero) continue;
      Context& c = contexts_[cid];
      ++selected;
      const uint32_t hits = right_hits_[rid];
      c.predicted += right_[rid].facts.size();
      if (hits == 0) continue;
      c.confirmed += hits;
      if (hits == right_[rid].facts.size()) {
        ++c.activations;
        active_.push_back(cid);
      } else if (c.zero_level && zero_new &&
                 static_cast<int64_t>(left_[lid].facts.size()) <= max_left_) {
        cad::Intersect(right_[rid].facts, facts, &part);
        candidates_.emplace_back(left_[lid].facts, part);
      }
    }
  }
  if (zero_new) {
    // Left sides that shared some but not all facts with the previous active facts.
    left_hits_.resize(left_.size(), 0);
    touched_.clear();
    for (uint32_t f : left_group_) {
      const auto it = left_by_fact_.find(f);
      if (it == left_by_fact_.end()) continue;
      for (uint32_t lid : it->second) {
        if (lid >= known_left) break;  // ids ascend; later ones are this step's
        if (left_hits_[lid]++ == 0) touched_.push_back(lid);
      }
    }
    std::sort(touched_.begin(), touched_.end());
    Facts shared;
    for (uint32_t lid : touched_) {
      const uint32_t hits = left_hits_[lid];
      left_hits_[lid] = 0;
      if (hits == left_[lid].facts.size() || hits > max_left_) continue;
      bool intersected = false;
      for (const auto& [rid, cid] : left_[lid].contexts) {
        if (cid == zero || !contexts_[cid].zero_level || right_hits_[rid] == 0) continue;
        if (!intersected) {
          cad::Intersect(left_[lid].facts, left_group_, &shared);
          intersected = true;
        }
        cad::Intersect(right_[rid].facts, facts, &part);
        candidates_.emplace_back(shared, part);
      }
    }
  }
  const double active_share =
      selected > 0 ? static_cast<double>(active_.size()) / static_cast<double>(selected) : 0.0;

  // Neurons: the most often confirmed active contexts (ties: the oldest).
  const auto by_record = [this](uint32_t a, uint32_t b) {
    const uint64_t ca = contexts_[a].activations, cb = contexts_[b].activations;
    return ca != cb ? ca > cb : a < b;
  };
  const size_t neurons = std::min(active_.size(), static_cast<size_t>(max_active_));
  std::partial_sort(active_.begin(), active_.begin() + static_cast<std::ptrdiff_t>(neurons),
                    active_.end(), by_record);
  Facts group = facts;
  for (size_t i = 0; i < neurons; ++i) group.push_back(cad::kNeuron + active_[i]);
  std::sort(group.begin(), group.end());

  // Learn the candidates; the share that was really new measures how unfamiliar the step was.
  double new_share = 0;
  if (zero_new) {
    std::sort(candidates_.begin(), candidates_.end());
    candidates_.erase(std::unique(candidates_.begin(), candidates_.end()), candidates_.end());
    int64_t added = 1;  // the zero-level context
    for (const auto& [l, r] : candidates_) {
      if (l.empty() || r.empty()) continue;
      added += FindOrAdd(l, r, false).second ? 1 : 0;
    }
    new_share = static_cast<double>(added) / static_cast<double>(candidates_.size());
  }

  left_group_ = std::move(group);
  Cross();
  return surprise ? (1.0 - active_share + new_share) / 2.0 : 0.0;
}

double CadOseDetector::Update(double value) {
  ++n_;
  const bool outside = range_.Update(value);
  if (!range_levels_.known()) {
    if (auto kept = range_levels_.Learn(value, n_, probation_)) {
      for (double v : *kept) Step(v);
    }
    return 0;
  }
  double score = Step(value);
  if (likelihood_) score = likelihood_->Update(score);
  if (outside) score = 1;
  // CAD OSE's rest: a raw score at or above the threshold silences the next `suppress` points,
  // whether or not it was itself reported.
  const bool quiet = quiet_left_ > 0;
  if (quiet) --quiet_left_;
  if (score >= threshold_) quiet_left_ = suppress_;
  if (n_ <= probation_ || quiet) return 0;
  return score;
}

void CadOseDetector::SaveState(StateWriter* out) const {
  out->I64(n_);
  out->I64(quiet_left_);
  range_levels_.SaveKnown(out);
  range_.SaveState(out);
  if (likelihood_) likelihood_->SaveState(out);
  range_levels_.SaveRest(out);
  const auto write_facts = [out](const Facts& facts) {
    out->U64(facts.size());
    for (uint32_t f : facts) out->U32(f);
  };
  for (const auto* sides : {&left_, &right_}) {
    out->U64(sides->size());
    for (const Side& side : *sides) write_facts(side.facts);
  }
  out->U64(contexts_.size());
  for (const Context& c : contexts_) {
    out->U32(c.left);
    out->U32(c.right);
    out->U8(c.zero_level ? 1 : 0);
    out->U64(c.predicted);
    out->U64(c.confirmed);
    out->U64(c.activations);
  }
  write_facts(left_group_);
}

Status CadOseDetector::LoadState(StateReader* in) {
  RETURN_IF_ERROR(in->I64(&n_));
  RETURN_IF_ERROR(in->I64(&quiet_left_));
  RETURN_IF_ERROR(range_levels_.LoadKnown(in));
  RETURN_IF_ERROR(range_.LoadState(in));
  if (likelihood_) RETURN_IF_ERROR(likelihood_->LoadState(in));
  RETURN_IF_ERROR(range_levels_.LoadRest(in, probation_));
  const auto read_facts = [in](Facts* facts) -> Status {
    uint64_t count = 0;
    RETURN_IF_ERROR(in->Count(&count, in->remaining() / 4));
    facts->resize(count);
    for (uint32_t& f : *facts) RETURN_IF_ERROR(in->U32(&f));
    if (!std::is_sorted(facts->begin(), facts->end()) ||
        std::adjacent_find(facts->begin(), facts->end()) != facts->end()) {
      return DataLossError("context state holds an unsorted fact list");
    }
    return Status::Ok();
  };
  left_ids_.clear();
  right_ids_.clear();
  left_by_fact_.clear();
  left_by_top_.clear();
  for (auto* sides : {&left_, &right_}) {
    uint64_t count = 0;
    RETURN_IF_ERROR(in->Count(
        &count, std::min<uint64_t>(in->remaining() / 8, static_cast<uint64_t>(max_contexts_))));
    sides->assign(count, Side{});
    for (Side& side : *sides) {
      RETURN_IF_ERROR(read_facts(&side.facts));
      if (side.facts.empty()) return DataLossError("context state holds an empty side");
    }
  }
  uint64_t count = 0;
  RETURN_IF_ERROR(in->Count(
      &count, std::min<uint64_t>(in->remaining() / 33, static_cast<uint64_t>(max_contexts_))));
  contexts_.assign(count, Context{});
  for (Context& c : contexts_) {
    uint8_t zero_level = 0;
    RETURN_IF_ERROR(in->U32(&c.left));
    RETURN_IF_ERROR(in->U32(&c.right));
    RETURN_IF_ERROR(in->U8(&zero_level));
    RETURN_IF_ERROR(in->U64(&c.predicted));
    RETURN_IF_ERROR(in->U64(&c.confirmed));
    RETURN_IF_ERROR(in->U64(&c.activations));
    if (c.left >= left_.size() || c.right >= right_.size() || zero_level > 1) {
      return DataLossError("context state holds a context with unknown sides");
    }
    c.zero_level = zero_level != 0;
  }
  RETURN_IF_ERROR(read_facts(&left_group_));
  if (n_ < 0 || quiet_left_ < 0 || !range_levels_.consistent()) {
    return DataLossError("context state is inconsistent");
  }
  // Rebuild the indexes in creation order, so that iteration orders, and so scores, are those of
  // the saved detector.
  for (auto [ids, sides] : {std::pair{&left_ids_, &left_}, std::pair{&right_ids_, &right_}}) {
    for (uint32_t id = 0; id < sides->size(); ++id) {
      if (!ids->emplace((*sides)[id].facts, id).second) {
        return DataLossError("context state holds a side twice");
      }
    }
  }
  for (uint32_t lid = 0; lid < left_.size(); ++lid) {
    for (uint32_t f : left_[lid].facts) left_by_fact_[f].push_back(lid);
    left_by_top_[left_[lid].facts.back()].push_back(lid);
  }
  for (uint32_t cid = 0; cid < contexts_.size(); ++cid) {
    left_[contexts_[cid].left].contexts.emplace_back(contexts_[cid].right, cid);
  }
  Cross();
  return Status::Ok();
}

}  // namespace edgeloop::anomaly
