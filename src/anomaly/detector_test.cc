#include "anomaly/detector.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numbers>
#include <random>
#include <string>
#include <vector>

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
  auto detector = CreateDetector(Options("ewma", {{"probation", "200"}, {"suppress", "0"}}));
  std::vector<double> values = Signal(1200);
  for (size_t i = 800; i < values.size(); ++i) values[i] += 5;
  const auto scores = Feed(detector->get(), values);
  EXPECT_GE(scores[800], 0.5);
  EXPECT_GE(scores[805], 0.5);  // clipped residuals: one shifted point does not reset the mean
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
}

}  // namespace
}  // namespace edgeloop::anomaly
