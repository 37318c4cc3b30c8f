#include "serving/rollout.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace edgeloop::serving {
namespace {

using Action = RolloutVerdict::Action;
using std::chrono::seconds;

RolloutPolicy Canary() {
  RolloutPolicy policy;
  policy.mode = RolloutMode::kCanary;
  policy.share = 0.2;
  policy.period = seconds(60);
  policy.max_period = seconds(600);
  policy.min_requests = 50;
  return policy;
}

// Feeds `n` requests to each side: champion scores ~ N(0.3, 0.1), candidate per `shift`.
void Feed(Rollout& rollout, int n, double candidate_shift, double candidate_latency_ms,
          bool candidate_fails = false) {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> score(0.3, 0.1);
  for (int i = 0; i < n; ++i) {
    const double a = score(rng);
    const double b = score(rng) + candidate_shift;
    rollout.Observe(rollout.champion(), true, 0.002, std::vector<double>{a});
    rollout.Observe(rollout.candidate(), !candidate_fails, candidate_latency_ms / 1000.0,
                    std::vector<double>{b});
  }
}

TEST(RolloutTest, GoodCandidateIsPromotedAfterThePeriod) {
  FakeClock clock;
  Rollout rollout("m", Canary(), 1, 2, "sha256:aa", clock.Now());
  Feed(rollout, 100, 0.0, 2.0);
  EXPECT_EQ(rollout.Evaluate(clock.Now()).action, Action::kWait);  // the period is not over
  clock.Advance(seconds(61));
  const RolloutVerdict verdict = rollout.Evaluate(clock.Now());
  EXPECT_EQ(verdict.action, Action::kPromote) << verdict.reason;
  EXPECT_NE(verdict.reason.find("within limits"), std::string::npos);
  EXPECT_EQ(verdict.numbers.candidate.requests, 100);
  ASSERT_TRUE(verdict.numbers.score_psi.has_value());
  EXPECT_LT(*verdict.numbers.score_psi, 0.25);
}

TEST(RolloutTest, ErrorsRollBackWithTheReason) {
  FakeClock clock;
  Rollout rollout("m", Canary(), 1, 2, "sha256:aa", clock.Now());
  Feed(rollout, 100, 0.0, 2.0, /*candidate_fails=*/true);
  clock.Advance(seconds(61));
  const RolloutVerdict verdict = rollout.Evaluate(clock.Now());
  EXPECT_EQ(verdict.action, Action::kRollBack);
  EXPECT_EQ(verdict.reason.rfind("error_rate", 0), 0u) << verdict.reason;
  EXPECT_DOUBLE_EQ(verdict.numbers.candidate_error_rate, 1.0);
}

TEST(RolloutTest, SlowCandidateRollsBack) {
  FakeClock clock;
  Rollout rollout("m", Canary(), 1, 2, "sha256:aa", clock.Now());
  Feed(rollout, 100, 0.0, 20.0);  // champion 2 ms: limit 2 * 1.5 + 1 = 4 ms
  clock.Advance(seconds(61));
  const RolloutVerdict verdict = rollout.Evaluate(clock.Now());
  EXPECT_EQ(verdict.action, Action::kRollBack);
  EXPECT_EQ(verdict.reason.rfind("latency", 0), 0u) << verdict.reason;
  EXPECT_NEAR(*verdict.numbers.latency_limit_ms, 4.0, 1e-9);
}

TEST(RolloutTest, ShiftedScoresRollBack) {
  FakeClock clock;
  Rollout rollout("m", Canary(), 1, 2, "sha256:aa", clock.Now());
  Feed(rollout, 200, 0.4, 2.0);
  clock.Advance(seconds(61));
  const RolloutVerdict verdict = rollout.Evaluate(clock.Now());
  EXPECT_EQ(verdict.action, Action::kRollBack);
  EXPECT_EQ(verdict.reason.rfind("score_psi", 0), 0u) << verdict.reason;
  EXPECT_GT(*verdict.numbers.score_psi, 1.0);
}

TEST(RolloutTest, NotEnoughTrafficWaitsThenTimesOutPerPolicy) {
  FakeClock clock;
  RolloutPolicy policy = Canary();
  Rollout rollout("m", policy, 1, 2, "sha256:aa", clock.Now());
  Feed(rollout, 10, 0.0, 2.0);
  clock.Advance(seconds(61));
  EXPECT_EQ(rollout.Evaluate(clock.Now()).action, Action::kWait);
  clock.Advance(seconds(600));
  const RolloutVerdict verdict = rollout.Evaluate(clock.Now());
  EXPECT_EQ(verdict.action, Action::kRollBack);
  EXPECT_EQ(verdict.reason.rfind("insufficient_traffic", 0), 0u) << verdict.reason;

  policy.promote_on_timeout = true;
  Rollout lenient("m", policy, 1, 2, "sha256:aa", clock.Now());
  clock.Advance(seconds(700));
  EXPECT_EQ(lenient.Evaluate(clock.Now()).action, Action::kPromote);
}

TEST(RolloutTest, CanaryRoutingIsStickyAndNearTheShare) {
  FakeClock clock;
  Rollout rollout("m", Canary(), 1, 2, "sha256:aa", clock.Now());
  int on_candidate = 0;
  for (int i = 0; i < 10'000; ++i) {
    const std::string key = "user-" + std::to_string(i);
    const RouteDecision first = rollout.Route(key);
    EXPECT_FALSE(first.shadow.has_value());
    for (int again = 0; again < 3; ++again) EXPECT_EQ(rollout.Route(key).version, first.version);
    if (first.version == 2) ++on_candidate;
  }
  EXPECT_NEAR(on_candidate / 10'000.0, 0.2, 0.02);
  // A new rollout (another candidate digest) picks its own keys, with the same share.
  Rollout next("m", Canary(), 1, 3, "sha256:bb", clock.Now());
  int same = 0;
  for (int i = 0; i < 10'000; ++i) {
    const std::string key = "user-" + std::to_string(i);
    same += (rollout.Route(key).version == 2) == (next.Route(key).version == 3);
  }
  EXPECT_LT(same, 9'500);
}

TEST(RolloutTest, ShadowAlwaysAnswersWithTheChampion) {
  FakeClock clock;
  RolloutPolicy policy = Canary();
  policy.mode = RolloutMode::kShadow;
  Rollout rollout("m", policy, 4, 7, "sha256:aa", clock.Now());
  for (int i = 0; i < 1000; ++i) {
    const RouteDecision decision = rollout.Route("k" + std::to_string(i));
    EXPECT_EQ(decision.version, 4);
    ASSERT_TRUE(decision.shadow.has_value());
    EXPECT_EQ(*decision.shadow, 7);
  }
  EXPECT_EQ(rollout.Route("").version, 4);
}

TEST(RolloutTest, ObservationsOfOtherVersionsAreIgnored) {
  FakeClock clock;
  Rollout rollout("m", Canary(), 1, 2, "sha256:aa", clock.Now());
  rollout.Observe(9, false, 1.0, {});
  const RolloutNumbers n = rollout.Numbers(clock.Now());
  EXPECT_EQ(n.champion.requests + n.candidate.requests, 0);
}

TEST(RolloutTest, PolicyIsValidated) {
  RolloutPolicy policy = Canary();
  EXPECT_TRUE(ValidateRolloutPolicy(policy).ok());
  policy.share = 0;
  EXPECT_FALSE(ValidateRolloutPolicy(policy).ok());
  policy = Canary();
  policy.route_key = "cookie:x";
  EXPECT_FALSE(ValidateRolloutPolicy(policy).ok());
  policy = Canary();
  policy.max_period = seconds(1);
  EXPECT_FALSE(ValidateRolloutPolicy(policy).ok());
  policy = Canary();
  policy.limits.max_latency_ratio = 0.5;
  EXPECT_FALSE(ValidateRolloutPolicy(policy).ok());
}

TEST(RolloutTest, SamplePsiIsSmallForOneDistributionAndLargeForShifted) {
  std::mt19937_64 rng(1);
  std::normal_distribution<double> a(0, 1);
  std::vector<double> x, y, z;
  for (int i = 0; i < 5000; ++i) {
    x.push_back(a(rng));
    y.push_back(a(rng));
    z.push_back(a(rng) + 1.5);
  }
  EXPECT_LT(SamplePsi(x, y), 0.02);
  EXPECT_GT(SamplePsi(x, z), 1.0);
  EXPECT_EQ(SamplePsi({}, y), 0.0);
}

}  // namespace
}  // namespace edgeloop::serving
