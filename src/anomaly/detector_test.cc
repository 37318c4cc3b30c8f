#include "anomaly/detector.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "anomaly/likelihood.h"
#include "anomaly/range_watch.h"
#include "anomaly/series.h"

namespace edgeloop::anomaly {
namespace {

// A daily-like sine with noise (period 100), deterministic.
std::vector<double> Signal(int n, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(0.0, 0.1);
  std::vector<double> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    v[static_cast<size_t>(i)] = 10 + std::sin(2 * std::numbers::pi * i / 100.0) + noise(rng);
  }
  return v;
}

DetectorOptions Options(const std::string& detector,
                        std::map<std::string, std::string> params = {}) {
  params["detector"] = detector;
  auto options = DetectorOptions::Parse(&params);
  EXPECT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(params.empty());
  return *options;
}

std::vector<double> Feed(Detector* detector, const std::vector<double>& values) {
  std::vector<double> scores;
  for (double v : values) scores.push_back(detector->Update(v));
  return scores;
}

class EveryDetectorTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryDetectorTest, FlagsASpikeAndStaysQuietBeforeIt) {
  const DetectorOptions options = Options(GetParam(), {{"probation", "300"}});
  auto detector = CreateDetector(options);
  ASSERT_TRUE(detector.ok()) << detector.status();
  std::vector<double> values = Signal(1500);
  values[1200] += 8;  // a spike far outside the normal range
  const auto scores = Feed(detector->get(), values);
  for (double s : scores) {
    ASSERT_GE(s, 0.0);
    ASSERT_LE(s, 1.0);
  }
  // Probation (KNN CAD, as in NAB, scores from its last point on).
  for (int i = 0; i < 299; ++i) EXPECT_EQ(scores[static_cast<size_t>(i)], 0.0) << i;
  double max_after = 0;
  for (int i = 1200; i < 1205; ++i) max_after = std::max(max_after, scores[static_cast<size_t>(i)]);
  EXPECT_GE(max_after, options.threshold) << GetParam();
  int alerts_before = 0;
  for (int i = 300; i < 1200; ++i)
    alerts_before += scores[static_cast<size_t>(i)] >= options.threshold;
  EXPECT_LE(alerts_before, 3) << GetParam();
}

TEST_P(EveryDetectorTest, SavedStateRestoresTheSameScores) {
  const DetectorOptions options = Options(GetParam(), {{"probation", "200"}});
  const std::vector<double> values = Signal(900);
  auto a = CreateDetector(options);
  ASSERT_TRUE(a.ok());
  const std::vector<double> first(values.begin(), values.begin() + 500);
  const std::vector<double> rest(values.begin() + 500, values.end());
  Feed(a->get(), first);
  StateWriter w;
  (*a)->SaveState(&w);
  auto b = CreateDetector(options);
  ASSERT_TRUE(b.ok());
  StateReader r(w.data());
  ASSERT_TRUE((*b)->LoadState(&r).ok());
  EXPECT_TRUE(r.done());
  EXPECT_EQ(Feed(a->get(), rest), Feed(b->get(), rest));
  // The same state encodes to the same bytes.
  StateWriter wa, wb;
  (*a)->SaveState(&wa);
  (*b)->SaveState(&wb);
  EXPECT_EQ(wa.data(), wb.data());
}

TEST_P(EveryDetectorTest, TruncatedStateIsDataLossNotACrash) {
  const DetectorOptions options = Options(GetParam(), {{"probation", "200"}});
  auto a = CreateDetector(options);
  ASSERT_TRUE(a.ok());
  Feed(a->get(), Signal(400));
  StateWriter w;
  (*a)->SaveState(&w);
  const std::string& full = w.data();
  for (size_t cut : {size_t{0}, size_t{7}, full.size() / 3, full.size() / 2, full.size() - 1}) {
    auto b = CreateDetector(options);
    StateReader r(std::string_view(full).substr(0, cut));
    const Status status = (*b)->LoadState(&r);
    EXPECT_EQ(status.code(), StatusCode::kDataLoss) << GetParam() << " cut at " << cut;
  }
}

INSTANTIATE_TEST_SUITE_P(Detectors, EveryDetectorTest,
                         ::testing::Values("ewma", "knn_cad", "context"));

TEST(EwmaDetectorTest, LevelShiftIsFlaggedAndTheBaselineAdaptsSlowly) {
  // The raw z-score alone (no likelihood, no range watch).
  auto detector = CreateDetector(Options(
      "ewma",
      {{"probation", "200"}, {"suppress", "0"}, {"likelihood", "0"}, {"range_tolerance", "0"}}));
  std::vector<double> values = Signal(1200);
  for (size_t i = 800; i < values.size(); ++i) values[i] += 5;
  const auto scores = Feed(detector->get(), values);
  EXPECT_GE(scores[800], 0.5);
  EXPECT_GE(scores[805], 0.5);  // clipped residuals: one shifted point does not reset the mean
}

TEST(EwmaDetectorTest, ByDefaultALevelShiftRaisesOneAlert) {
  const DetectorOptions options = Options("ewma", {{"probation", "200"}});
  EXPECT_EQ(options.likelihood, 1);
  auto detector = CreateDetector(options);
  std::vector<double> values = Signal(1200);
  for (size_t i = 800; i < values.size(); ++i) values[i] += 5;
  const auto scores = Feed(detector->get(), values);
  EXPECT_EQ(scores[800], 1.0);  // beyond the range seen so far: the range watch fires at once
  int before = 0;
  int after = 0;
  for (size_t i = 200; i < scores.size(); ++i) {
    (i < 800 ? before : after) += scores[i] >= options.threshold ? 1 : 0;
  }
  EXPECT_EQ(before, 0);
  EXPECT_LE(after, 3);  // the alert and, while the baseline catches up, a reminder or two
}

TEST(LikelihoodTest, TheSameBurstIsLessLikelyInAQuietSeries) {
  AnomalyLikelihood quiet(10, 1.0 / 4320, 500);
  AnomalyLikelihood noisy(10, 1.0 / 4320, 500);
  std::mt19937 rng(5);
  std::bernoulli_distribution surprise(0.1);
  for (int i = 0; i < 2000; ++i) {
    const double q = quiet.Update(0.05);
    const double n = noisy.Update(surprise(rng) ? 0.9 : 0.05);
    if (i < 500) {
      ASSERT_EQ(q, 0.0);
      ASSERT_EQ(n, 0.0);
    }
  }
  double q = 0;
  double n = 0;
  for (int i = 0; i < 3; ++i) {
    q = quiet.Update(0.9);
    n = noisy.Update(0.9);
    ASSERT_GE(n, 0.0);
    ASSERT_LE(q, 1.0);
  }
  EXPECT_GE(q, 0.5);  // three surprises in a row in a series that never surprises
  EXPECT_LT(n, 0.5);  // the same in one that surprises at every tenth point on average
  EXPECT_LT(n, q);
}

TEST(LikelihoodTest, InconsistentStateIsDataLoss) {
  AnomalyLikelihood likelihood(3, 0.01, 5);
  StateWriter w;
  w.I64(4);
  w.F64(0.1);
  w.F64(-1);  // a negative variance
  w.F64s({0, 0, 0});
  StateReader r(w.data());
  EXPECT_EQ(likelihood.LoadState(&r).code(), StatusCode::kDataLoss);
  StateWriter short_ring;
  short_ring.I64(4);
  short_ring.F64(0.1);
  short_ring.F64(0.01);
  short_ring.F64s({0, 0});  // the window is 3
  StateReader r2(short_ring.data());
  EXPECT_EQ(likelihood.LoadState(&r2).code(), StatusCode::kDataLoss);
}

TEST(RangeWatchTest, FlagsValuesBeyondTheSeenRangeByMoreThanTheTolerance) {
  RangeWatch watch(0.1);
  EXPECT_FALSE(watch.Update(0));     // the first value has no range to leave
  EXPECT_TRUE(watch.Update(10));     // any step away from a single point leaves its empty range
  EXPECT_FALSE(watch.Update(10.9));  // within 10% of the width (10) above the range
  EXPECT_TRUE(watch.Update(12.1));   // beyond 10.9 + 1.09
  EXPECT_FALSE(watch.Update(5));
  EXPECT_TRUE(watch.Update(-1.3));  // below 0 - 1.21
  RangeWatch off(0);
  EXPECT_FALSE(off.Update(0));
  EXPECT_FALSE(off.Update(1e9));

  StateWriter w;
  watch.SaveState(&w);
  RangeWatch copy(0.1);
  StateReader r(w.data());
  ASSERT_TRUE(copy.LoadState(&r).ok());
  EXPECT_EQ(copy.Update(13.5), watch.Update(13.5));
  StateWriter bad;
  bad.U8(1);
  bad.F64(3);
  bad.F64(1);  // min > max
  StateReader rb(bad.data());
  EXPECT_EQ(copy.LoadState(&rb).code(), StatusCode::kDataLoss);
}

TEST(MovingMeanTest, AveragesTheLastWindowValuesAndRestoresExactly) {
  MovingMean mean(3);
  EXPECT_EQ(mean.Add(1), 1.0);
  EXPECT_EQ(mean.Add(2), 1.5);
  EXPECT_FALSE(mean.full());
  EXPECT_EQ(mean.Add(3), 2.0);
  EXPECT_TRUE(mean.full());
  EXPECT_EQ(mean.Add(7), 4.0);
  MovingMean off(0);
  EXPECT_EQ(off.Add(5), 5.0);
  EXPECT_FALSE(off.full());

  // The running sum stays within rounding of a fresh sum over a long, badly scaled series, and a
  // restored copy continues bit for bit.
  MovingMean long_mean(16);
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> noise(-1, 1);
  std::vector<double> recent;
  for (int i = 0; i < 100000; ++i) {
    const double v = (i % 1000 == 0 ? 1e12 : 1.0) + noise(rng);
    recent.push_back(v);
    if (recent.size() > 16) recent.erase(recent.begin());
    const double got = long_mean.Add(v);
    double sum = 0;
    for (double x : recent) sum += x;
    ASSERT_NEAR(got, sum / static_cast<double>(recent.size()), 1e-3 * std::abs(got) + 1e-3) << i;
  }
  StateWriter w;
  long_mean.SaveState(&w);
  MovingMean copy(16);
  StateReader r(w.data());
  ASSERT_TRUE(copy.LoadState(&r).ok());
  for (int i = 0; i < 40; ++i) EXPECT_EQ(copy.Add(i * 0.1), long_mean.Add(i * 0.1));
}

TEST(MeanRangeWatchTest, FlagsASustainedShiftThatSpikesHideFromThePlainRange) {
  // Spikes to 40 on a level of 0..1 give the plain range watch a wide range, so a shift of the
  // level to 20 stays inside it; the 4-point average leaves the averages' range within 4 points.
  RangeWatch plain(0.05);
  MeanRangeWatch mean(4, 0.05);
  std::vector<double> values;
  for (int i = 0; i < 400; ++i) values.push_back(i % 50 == 0 ? 40.0 : (i % 3) * 0.5);
  for (int i = 0; i < 10; ++i) values.push_back(20 + (i % 3) * 0.5);
  std::vector<size_t> plain_alerts;
  std::vector<size_t> mean_alerts;
  for (size_t i = 0; i < values.size(); ++i) {
    if (plain.Update(values[i]) && i >= 100) plain_alerts.push_back(i);
    if (mean.Update(values[i]) && i >= 100) mean_alerts.push_back(i);
  }
  EXPECT_TRUE(plain_alerts.empty());
  ASSERT_FALSE(mean_alerts.empty());
  EXPECT_GE(mean_alerts.front(), 400u);
  EXPECT_LT(mean_alerts.front(), 404u);

  MeanRangeWatch off(0, 0.05);
  EXPECT_FALSE(off.Update(0));
  EXPECT_FALSE(off.Update(1e9));

  StateWriter w;
  mean.SaveState(&w);
  MeanRangeWatch copy(4, 0.05);
  StateReader r(w.data());
  ASSERT_TRUE(copy.LoadState(&r).ok());
  for (double v : {25.0, 30.0, -50.0, 40.0}) EXPECT_EQ(copy.Update(v), mean.Update(v));
  MeanRangeWatch other_window(3, 0.05);
  StateReader r3(w.data());
  EXPECT_EQ(other_window.LoadState(&r3).code(), StatusCode::kDataLoss);
}

TEST(KnnCadDetectorTest, ScoresAreConformalPValues) {
  // On stationary data the p-values spread over [0, 1]: neither stuck at 0 nor at 1.
  auto detector = CreateDetector(Options("knn_cad", {{"probation", "150"}, {"suppress", "0"}}));
  const auto scores = Feed(detector->get(), Signal(1000));
  double sum = 0;
  for (size_t i = 300; i < scores.size(); ++i) sum += scores[i];
  const double mean = sum / static_cast<double>(scores.size() - 300);
  EXPECT_GT(mean, 0.2);
  EXPECT_LT(mean, 0.8);
}

TEST(ContextDetectorTest, NovelPatternScoresHighRepeatedPatternScoresZero) {
  // A square wave: once learned, it never surprises; a new shape does.
  auto detector = CreateDetector(
      Options("context", {{"probation", "100"}, {"input_min", "0"}, {"input_max", "10"}}));
  std::vector<double> values;
  for (int i = 0; i < 1000; ++i) values.push_back((i / 10) % 2 == 0 ? 2.0 : 8.0);
  values[900] = 5.0;
  const auto scores = Feed(detector->get(), values);
  for (int i = 300; i < 900; ++i) ASSERT_EQ(scores[static_cast<size_t>(i)], 0.0) << i;
  EXPECT_GE(scores[900], 0.5);
}

TEST(ContextDetectorTest, ContextsAreTheLevelsOfFractionalValues) {
  // Three levels of a 0..1 range in a cycle low, middle, high: a jump from low straight to high
  // is new. (The history once kept values truncated to integers, so every context here was
  // level 0 and the jump looked familiar.)
  auto detector = CreateDetector(Options("context", {{"probation", "100"},
                                                     {"input_min", "0"},
                                                     {"input_max", "1"},
                                                     {"bins", "4"},
                                                     {"resolutions", "1"},
                                                     {"mean_window", "0"},
                                                     {"range_tolerance", "0"}}));
  std::vector<double> values;
  for (int i = 0; i < 900; ++i) values.push_back(std::array{0.1, 0.5, 0.9}[(i / 3) % 3]);
  values.push_back(0.1);
  values.push_back(0.9);
  const auto scores = Feed(detector->get(), values);
  for (size_t i = 300; i < 901; ++i) ASSERT_EQ(scores[i], 0.0) << i;
  EXPECT_GE(scores.back(), 0.5);
}

TEST(ContextDetectorTest, TheMovingAverageStreamSeesAChangeOfMixThatSingleValuesHide) {
  // 0, 0, 10, 10 repeated, then 0, 10, 10, 10: every step of the new pattern is a familiar one,
  // but its average moves from 5 to 7.5, a level the average never had.
  std::vector<double> values;
  for (int i = 0; i < 1000; ++i) values.push_back(i % 4 < 2 ? 0.0 : 10.0);
  for (int i = 0; i < 200; ++i) values.push_back(i % 4 < 1 ? 0.0 : 10.0);
  for (const char* window : {"0", "16"}) {
    auto detector = CreateDetector(Options("context", {{"probation", "100"},
                                                       {"input_min", "0"},
                                                       {"input_max", "10"},
                                                       {"mean_window", window},
                                                       {"range_tolerance", "0"}}));
    const auto scores = Feed(detector->get(), values);
    for (size_t i = 300; i < 1000; ++i) ASSERT_EQ(scores[i], 0.0) << window << " " << i;
    const double peak = *std::max_element(scores.begin() + 1000, scores.begin() + 1020);
    if (std::string(window) == "0") {
      EXPECT_EQ(peak, 0.0);
    } else {
      EXPECT_GE(peak, 0.5);
    }
  }
}

TEST(ContextDetectorTest, ExcursionsBeyondTheRangeOfVaryingHeightBecomeFamiliar) {
  // Outside the range, levels widen with the distance: spikes to 30..60 above a 0..10 range
  // share a few levels, so after some of them a spike is a known pattern. A spike far beyond
  // them (1000) is new again.
  auto detector = CreateDetector(Options("context", {{"probation", "100"},
                                                     {"input_min", "0"},
                                                     {"input_max", "10"},
                                                     {"suppress", "0"},
                                                     {"range_tolerance", "0"}}));
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> height(30, 60);
  std::vector<double> values;
  std::vector<size_t> spikes;
  for (int i = 0; i < 3000; ++i) {
    if (i % 50 == 25) {
      spikes.push_back(values.size());
      values.push_back(height(rng));
    } else {
      values.push_back((i / 10) % 2 == 0 ? 2.0 : 8.0);
    }
  }
  values.push_back(1000);
  const auto scores = Feed(detector->get(), values);
  for (size_t k = 20; k < spikes.size(); ++k) {
    EXPECT_LT(scores[spikes[k]], 0.5) << "spike " << k << " at " << values[spikes[k]];
  }
  EXPECT_GE(scores.back(), 0.5);
}

TEST(ContextDetectorTest, WithLikelihoodSavedStateRestoresTheSameScores) {
  const DetectorOptions options = Options("context", {{"probation", "200"}, {"likelihood", "1"}});
  const std::vector<double> values = Signal(1500);
  auto a = CreateDetector(options);
  auto b = CreateDetector(options);
  Feed(a->get(), std::vector<double>(values.begin(), values.begin() + 700));
  StateWriter w;
  (*a)->SaveState(&w);
  StateReader r(w.data());
  ASSERT_TRUE((*b)->LoadState(&r).ok());
  EXPECT_TRUE(r.done());
  const std::vector<double> rest(values.begin() + 700, values.end());
  EXPECT_EQ(Feed(a->get(), rest), Feed(b->get(), rest));
}

TEST(ContextDetectorTest, CadOseLearnsASquareWaveAndFlagsANewLevel) {
  const DetectorOptions options = Options(
      "context", {{"cad_ose", "1"}, {"probation", "100"}, {"input_min", "0"}, {"input_max", "10"}});
  EXPECT_EQ(options.threshold, 0.75);  // CAD OSE's own
  auto detector = CreateDetector(options);
  ASSERT_TRUE(detector.ok());
  std::vector<double> values;
  for (int i = 0; i < 1000; ++i) values.push_back((i / 10) % 2 == 0 ? 2.0 : 8.0);
  values[900] = 5.0;
  const auto scores = Feed(detector->get(), values);
  // The switches between the levels stay partly uncertain (a ten-point count is beyond the
  // contexts' reach), but never alarming.
  for (int i = 300; i < 900; ++i) ASSERT_LT(scores[static_cast<size_t>(i)], 0.5) << i;
  EXPECT_GE(scores[900], 0.75);
}

TEST(ContextDetectorTest, CadOseSavedStateRestoresTheSameScoresAndBytes) {
  const DetectorOptions options = Options("context", {{"cad_ose", "1"}, {"probation", "200"}});
  std::vector<double> values = Signal(1500);
  values[1100] += 3;
  auto a = CreateDetector(options);
  auto b = CreateDetector(options);
  Feed(a->get(), std::vector<double>(values.begin(), values.begin() + 700));
  StateWriter w;
  (*a)->SaveState(&w);
  StateReader r(w.data());
  ASSERT_TRUE((*b)->LoadState(&r).ok());
  EXPECT_TRUE(r.done());
  const std::vector<double> rest(values.begin() + 700, values.end());
  const auto scores = Feed(a->get(), rest);
  EXPECT_EQ(scores, Feed(b->get(), rest));
  EXPECT_GT(*std::max_element(scores.begin(), scores.end()), 0.0);
  StateWriter wa, wb;
  (*a)->SaveState(&wa);
  (*b)->SaveState(&wb);
  EXPECT_EQ(wa.data(), wb.data());
  const std::string& full = w.data();
  for (size_t cut : {size_t{0}, full.size() / 3, full.size() / 2, full.size() - 1}) {
    auto c = CreateDetector(options);
    StateReader truncated(std::string_view(full).substr(0, cut));
    EXPECT_EQ((*c)->LoadState(&truncated).code(), StatusCode::kDataLoss) << "cut at " << cut;
  }
}

TEST(DetectorOptionsTest, RejectsBadValuesNamingTheKeyAndLeavesUnknownKeys) {
  std::map<std::string, std::string> params = {{"detector", "knn_cad"}, {"state_dir", "/x"}};
  auto options = DetectorOptions::Parse(&params);
  ASSERT_TRUE(options.ok());
  EXPECT_EQ(options->threshold, 0.9965);  // knn_cad's own default
  EXPECT_EQ(params.size(), 1u);
  EXPECT_TRUE(params.contains("state_dir"));

  for (const auto& [key, value] : std::map<std::string, std::string>{{"detector", "magic"},
                                                                     {"threshold", "1.5"},
                                                                     {"alpha", "abc"},
                                                                     {"probation", "-3"},
                                                                     {"dim", "0"},
                                                                     {"likelihood", "2"},
                                                                     {"range_tolerance", "-1"},
                                                                     {"time_scales", "5"},
                                                                     {"input_min", "nan"}}) {
    std::map<std::string, std::string> bad = {{key, value}};
    auto parsed = DetectorOptions::Parse(&bad);
    ASSERT_FALSE(parsed.ok()) << key;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(key), std::string::npos) << parsed.status();
  }
  std::map<std::string, std::string> half = {{"input_min", "0"}};
  EXPECT_FALSE(DetectorOptions::Parse(&half).ok());
  std::map<std::string, std::string> small = {{"detector", "knn_cad"}, {"probation", "30"}};
  EXPECT_FALSE(DetectorOptions::Parse(&small).ok());  // window must exceed dim + k
  // The longest moving average (mean_window^(time_scales - 1) points) is bounded.
  std::map<std::string, std::string> huge = {
      {"detector", "context"}, {"mean_window", "1000"}, {"time_scales", "4"}};
  auto refused = DetectorOptions::Parse(&huge);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("time_scales"), std::string::npos);
}

}  // namespace
}  // namespace edgeloop::anomaly
