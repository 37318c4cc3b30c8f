#include "serving/rollout.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "serving/drift.h"

namespace edgeloop::serving {
namespace {

constexpr double kFloor = 1e-4;

// FNV-1a, 64 bits: stable across processes and builds, so a key keeps its version after a
// restart that resumes the rollout.
uint64_t Fnv1a(std::string_view a, std::string_view b) {
  uint64_t hash = 1469598103934665603ull;
  for (std::string_view part : {a, std::string_view("\n"), b}) {
    for (unsigned char c : part) {
      hash ^= c;
      hash *= 1099511628211ull;
    }
  }
  // Mix the low bits up (FNV's are weak for short keys).
  hash ^= hash >> 33;
  hash *= 0xff51afd7ed558ccdull;
  hash ^= hash >> 33;
  return hash;
}

double Quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  const double position = q * static_cast<double>(values.size() - 1);
  const auto lower = static_cast<size_t>(std::floor(position));
  std::nth_element(values.begin(), values.begin() + static_cast<ptrdiff_t>(lower), values.end());
  const double low = values[lower];
  if (lower + 1 >= values.size()) return low;
  const double high =
      *std::min_element(values.begin() + static_cast<ptrdiff_t>(lower) + 1, values.end());
  return low + (high - low) * (position - static_cast<double>(lower));
}

std::string Fixed(double value, int digits = 3) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", digits, value);
  return buffer;
}

}  // namespace

std::string_view RolloutModeName(RolloutMode mode) {
  switch (mode) {
    case RolloutMode::kImmediate:
      return "immediate";
    case RolloutMode::kCanary:
      return "canary";
    case RolloutMode::kShadow:
      return "shadow";
  }
  return "immediate";
}

Status ValidateRolloutPolicy(const RolloutPolicy& p) {
  if (!(p.share > 0) || p.share > 1) return InvalidArgumentError("rollout.share must be in (0, 1]");
  const std::string_view key = p.route_key;
  const auto has_name = [&](std::string_view prefix) {
    return key.substr(0, prefix.size()) == prefix && key.size() > prefix.size();
  };
  if (key != "request_id" && !has_name("header:") && !has_name("input:")) {
    return InvalidArgumentError(
        "rollout.route_key must be header:NAME, input:NAME or request_id, not '" + p.route_key +
        "'");
  }
  if (p.period.count() < 0) return InvalidArgumentError("rollout.period_s must not be negative");
  if (p.min_requests < 1) return InvalidArgumentError("rollout.min_requests must be at least 1");
  if (p.max_period < p.period) {
    return InvalidArgumentError("rollout.max_period_s must not be below period_s");
  }
  const RolloutLimits& l = p.limits;
  if (!(l.max_error_rate >= 0) || l.max_error_rate > 1) {
    return InvalidArgumentError("rollout.limits.max_error_rate must be in [0, 1]");
  }
  if (!(l.max_latency_ratio >= 1) || !std::isfinite(l.max_latency_ratio)) {
    return InvalidArgumentError("rollout.limits.max_latency_ratio must be a number >= 1");
  }
  if (!(l.latency_slack_ms >= 0) || !std::isfinite(l.latency_slack_ms)) {
    return InvalidArgumentError("rollout.limits.latency_slack_ms must be a number >= 0");
  }
  if (!(l.max_score_psi > 0) || !std::isfinite(l.max_score_psi)) {
    return InvalidArgumentError("rollout.limits.max_score_psi must be a positive number");
  }
  return Status::Ok();
}

double SamplePsi(std::span<const double> expected, std::span<const double> actual) {
  if (expected.empty() || actual.empty()) return 0;
  std::vector<double> sorted(expected.begin(), expected.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<double> edges;
  for (int d = 1; d <= 9; ++d) {
    const double edge = Quantile(sorted, d / 10.0);
    if (edges.empty() || edge > edges.back()) edges.push_back(edge);
  }
  const auto fractions = [&](std::span<const double> values) {
    std::vector<double> counts(edges.size() + 1, 0.0);
    for (double v : values) {
      counts[static_cast<size_t>(std::lower_bound(edges.begin(), edges.end(), v) -
                                 edges.begin())] += 1;
    }
    for (double& c : counts) c /= static_cast<double>(values.size());
    return counts;
  };
  const std::vector<double> e = fractions(expected);
  const std::vector<double> a = fractions(actual);
  double psi = 0;
  for (size_t i = 0; i < e.size(); ++i) {
    const double x = std::max(a[i], kFloor);
    const double y = std::max(e[i], kFloor);
    psi += (x - y) * std::log(x / y);
  }
  return psi;
}

std::vector<double> RowScores(const std::vector<inference::Tensor>& outputs) {
  const inference::Tensor* chosen = nullptr;
  for (const inference::Tensor& output : outputs) {
    if (output.name() == "score") chosen = &output;
  }
  for (const inference::Tensor& output : outputs) {
    if (chosen == nullptr && output.name() == "probability") chosen = &output;
  }
  if (chosen == nullptr && !outputs.empty()) chosen = &outputs.front();
  std::vector<double> scores;
  if (chosen == nullptr || chosen->element_count() == 0) return scores;
  const int64_t rows = chosen->shape().empty() ? 1 : chosen->shape().front();
  if (rows <= 0) return scores;
  const int64_t per_row = chosen->element_count() / rows;
  for (int64_t r = 0; r < rows; ++r) {
    const double value = NumericElement(*chosen, static_cast<size_t>(r * per_row));
    if (std::isnan(value)) return {};  // not a numeric output
    scores.push_back(value);
  }
  return scores;
}

Rollout::Rollout(std::string model, RolloutPolicy policy, int64_t champion, int64_t candidate,
                 std::string candidate_digest, Clock::SteadyTime started)
    : model_(std::move(model)),
      policy_(std::move(policy)),
      champion_(champion),
      candidate_(candidate),
      candidate_digest_(std::move(candidate_digest)),
      started_(started) {}

RouteDecision Rollout::Route(std::string_view key) const {
  if (policy_.mode == RolloutMode::kShadow) return {champion_, candidate_};
  double u = 0;
  if (key.empty()) {
    thread_local std::mt19937_64 generator{std::random_device{}()};
    u = std::uniform_real_distribution<double>(0.0, 1.0)(generator);
  } else {
    // The candidate's digest salts the hash: each rollout picks its own keys.
    u = static_cast<double>(Fnv1a(candidate_digest_, key) >> 11) * 0x1.0p-53;
  }
  return {u < policy_.share ? candidate_ : champion_, std::nullopt};
}

void Rollout::Push(std::vector<double>& ring, size_t& next, double value) {
  if (ring.size() < kMaxRolloutSamples) {
    ring.push_back(value);
    return;
  }
  ring[next] = value;
  next = (next + 1) % kMaxRolloutSamples;
}

void Rollout::Observe(int64_t version, bool ok, double latency_seconds,
                      std::span<const double> scores) {
  if (version != champion_ && version != candidate_) return;
  std::lock_guard<std::mutex> lock(mu_);
  Side& side = version == candidate_ ? candidate_side_ : champion_side_;
  ++side.counts.requests;
  if (!ok) {
    ++side.counts.errors;
    return;
  }
  Push(side.latencies_ms, side.latency_next, latency_seconds * 1000.0);
  for (double score : scores) {
    if (std::isfinite(score)) Push(side.scores, side.score_next, score);
  }
  side.counts.rows += static_cast<int64_t>(scores.size());
}

RolloutNumbers Rollout::Numbers(Clock::SteadyTime now) const {
  RolloutNumbers n;
  n.elapsed_s = std::chrono::duration<double>(now - started_).count();
  std::lock_guard<std::mutex> lock(mu_);
  n.champion = champion_side_.counts;
  n.candidate = candidate_side_.counts;
  const auto rate = [](const RolloutSideCounts& c) {
    return c.requests == 0 ? 0.0 : static_cast<double>(c.errors) / static_cast<double>(c.requests);
  };
  n.champion_error_rate = rate(n.champion);
  n.candidate_error_rate = rate(n.candidate);
  if (!champion_side_.latencies_ms.empty()) {
    n.champion_p99_ms = Quantile(champion_side_.latencies_ms, 0.99);
    n.latency_limit_ms =
        *n.champion_p99_ms * policy_.limits.max_latency_ratio + policy_.limits.latency_slack_ms;
  }
  if (!candidate_side_.latencies_ms.empty()) {
    n.candidate_p99_ms = Quantile(candidate_side_.latencies_ms, 0.99);
  }
  if (champion_side_.scores.size() >= 10 && candidate_side_.scores.size() >= 10) {
    n.score_psi = SamplePsi(champion_side_.scores, candidate_side_.scores);
  }
  return n;
}

RolloutVerdict Rollout::Evaluate(Clock::SteadyTime now) const {
  RolloutVerdict verdict;
  verdict.numbers = Numbers(now);
  const RolloutNumbers& n = verdict.numbers;
  const auto elapsed = now - started_;
  if (elapsed < policy_.period) return verdict;
  const bool enough =
      n.candidate.requests >= policy_.min_requests &&
      (policy_.mode == RolloutMode::kShadow || n.champion.requests >= kMinChampionRequests);
  if (!enough) {
    if (elapsed < policy_.max_period) return verdict;
    verdict.action = policy_.promote_on_timeout ? RolloutVerdict::Action::kPromote
                                                : RolloutVerdict::Action::kRollBack;
    verdict.reason = "insufficient_traffic: the candidate scored " +
                     std::to_string(n.candidate.requests) + " of " +
                     std::to_string(policy_.min_requests) + " requests (champion " +
                     std::to_string(n.champion.requests) + ") within max_period_s";
    return verdict;
  }
  const RolloutLimits& limits = policy_.limits;
  verdict.action = RolloutVerdict::Action::kRollBack;
  if (n.candidate_error_rate - n.champion_error_rate > limits.max_error_rate) {
    verdict.reason = "error_rate: " + Fixed(n.candidate_error_rate, 4) +
                     " against the champion's " + Fixed(n.champion_error_rate, 4) + " (at most " +
                     Fixed(limits.max_error_rate, 4) + " more)";
    return verdict;
  }
  if (n.candidate_p99_ms && n.latency_limit_ms && *n.candidate_p99_ms > *n.latency_limit_ms) {
    verdict.reason = "latency: p99 " + Fixed(*n.candidate_p99_ms) + " ms > limit " +
                     Fixed(*n.latency_limit_ms) + " ms (champion p99 " + Fixed(*n.champion_p99_ms) +
                     " ms)";
    return verdict;
  }
  if (n.score_psi && *n.score_psi > limits.max_score_psi) {
    verdict.reason = "score_psi: " + Fixed(*n.score_psi) + " > " + Fixed(limits.max_score_psi);
    return verdict;
  }
  verdict.action = RolloutVerdict::Action::kPromote;
  verdict.reason = "within limits: error rate " + Fixed(n.candidate_error_rate, 4) +
                   (n.candidate_p99_ms ? ", p99 " + Fixed(*n.candidate_p99_ms) + " ms" : "") +
                   (n.score_psi ? ", score_psi " + Fixed(*n.score_psi) : "") + " over " +
                   std::to_string(n.candidate.requests) + " requests";
  return verdict;
}

std::shared_ptr<Rollout> RolloutRouter::Find(std::string_view model) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = rollouts_.find(model);
  return it == rollouts_.end() ? nullptr : it->second;
}

void RolloutRouter::Set(const std::string& model, std::shared_ptr<Rollout> rollout) {
  std::lock_guard<std::mutex> lock(mu_);
  rollouts_[model] = std::move(rollout);
}

void RolloutRouter::Clear(const std::string& model) {
  std::lock_guard<std::mutex> lock(mu_);
  rollouts_.erase(model);
}

}  // namespace edgeloop::serving
