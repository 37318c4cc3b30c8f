#include "anomaly/nab.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "anomaly/nab_test_util.h"

namespace edgeloop::anomaly::nab {
namespace {

TEST(ParseTimestampMsTest, AcceptsNabAndRfc3339Forms) {
  EXPECT_EQ(*ParseTimestampMs("1970-01-01 00:00:00"), 0);
  EXPECT_EQ(*ParseTimestampMs("1970-01-02 00:00:01.5"), 86401500);
  EXPECT_EQ(*ParseTimestampMs("2014-04-10T07:15:00.000000Z"),
            *ParseTimestampMs("2014-04-10 07:15:00"));
  EXPECT_EQ(*ParseTimestampMs("2000-03-01 00:00:00"), 951868800000);
  EXPECT_FALSE(ParseTimestampMs("2014-13-10 07:15:00").ok());
  EXPECT_FALSE(ParseTimestampMs("yesterday").ok());
  EXPECT_FALSE(ParseTimestampMs("2014-04-10 07:15:00 junk").ok());
}

// A file of 100 rows one minute apart with one window over rows 40..49.
DataFile SmallFile() {
  DataFile file;
  file.name = "synthetic/one_window.csv";
  for (int i = 0; i < 100; ++i) {
    file.timestamps.push_back(int64_t{60000} * i);
    file.values.push_back(0);
  }
  file.windows.push_back({60000 * 40, 60000 * 49});
  return file;
}

TEST(ScorerTest, NullDetectorScoresMinusFnPerWindowAndPerfectScoresTp) {
  const DataFile file = SmallFile();
  Scorer scorer(DefaultProfiles()[2]);  // fn weight 2
  std::vector<double> scores(100, 0.0);
  ASSERT_TRUE(scorer.AddFile(file, scores).ok());
  EXPECT_EQ(scorer.window_count(), 1);
  EXPECT_DOUBLE_EQ(scorer.At(0.5).score, -2.0);
  EXPECT_DOUBLE_EQ(scorer.NullScore(), -2.0);
  EXPECT_DOUBLE_EQ(scorer.Normalize(-2.0), 0.0);

  Scorer perfect(DefaultProfiles()[2]);
  scores[40] = 1.0;  // the first row of the window
  ASSERT_TRUE(perfect.AddFile(file, scores).ok());
  EXPECT_NEAR(perfect.At(0.5).score, 1.0, 1e-12);
  EXPECT_NEAR(perfect.Normalize(perfect.Best().score), 100.0, 1e-9);
  EXPECT_EQ(perfect.Best().tp, 1);
  EXPECT_EQ(perfect.Best().fp, 0);
}

TEST(ScorerTest, EarlierDetectionScoresMoreAndOnlyTheBestCounts) {
  const DataFile file = SmallFile();
  std::vector<double> early(100, 0.0), late(100, 0.0);
  early[42] = 1.0;
  early[48] = 1.0;  // a second detection in the same window adds nothing
  late[48] = 1.0;
  Scorer a(DefaultProfiles()[0]), b(DefaultProfiles()[0]);
  ASSERT_TRUE(a.AddFile(file, early).ok());
  ASSERT_TRUE(b.AddFile(file, late).ok());
  // position of row 42: -(49-42+1)/10 = -0.8
  const double s = [](double x) { return 2.0 / (1.0 + std::exp(5.0 * x)) - 1.0; }(-0.8);
  const double s1 = 2.0 / (1.0 + std::exp(-5.0)) - 1.0;
  EXPECT_NEAR(a.At(0.5).score, s / s1, 1e-12);
  EXPECT_GT(a.At(0.5).score, b.At(0.5).score);
  EXPECT_GT(b.At(0.5).score, 0.0);  // even a late detection beats a miss
}

TEST(ScorerTest, FalsePositivesCostLessJustAfterAWindowAndNothingInProbation) {
  const DataFile file = SmallFile();
  std::vector<double> before(100, 0.0), after(100, 0.0), probation(100, 0.0);
  before[30] = 1.0;    // no window before it: -A_FP
  after[51] = 1.0;     // just after the window: a small (positive) weight
  probation[5] = 1.0;  // first 15 rows are not scored
  Scorer a(DefaultProfiles()[0]), b(DefaultProfiles()[0]), c(DefaultProfiles()[0]);
  ASSERT_TRUE(a.AddFile(file, before).ok());
  ASSERT_TRUE(b.AddFile(file, after).ok());
  ASSERT_TRUE(c.AddFile(file, probation).ok());
  EXPECT_NEAR(a.At(0.5).score, -1.0 - 0.11, 1e-12);
  EXPECT_EQ(a.At(0.5).fp, 1);
  // distance 2 rows past the window's last row, width 10: position 2/9.
  const double s = 2.0 / (1.0 + std::exp(5.0 * 2.0 / 9.0)) - 1.0;
  EXPECT_NEAR(b.At(0.5).score, -1.0 + 0.11 * s, 1e-12);
  EXPECT_NEAR(c.At(0.5).score, -1.0, 1e-12);
  EXPECT_EQ(c.At(0.5).fp, 0);
}

TEST(ScorerTest, SweepMatchesFixedThresholdsAndRejectsBadInput) {
  const DataFile file = SmallFile();
  std::vector<double> scores(100);
  for (int i = 0; i < 100; ++i) scores[i] = std::fmod(i * 0.37, 1.0);
  Scorer scorer(DefaultProfiles()[0]);
  ASSERT_TRUE(scorer.AddFile(file, scores).ok());
  for (const ThresholdScore& t : scorer.Sweep()) {
    if (std::isinf(t.threshold)) continue;
    const ThresholdScore fixed = scorer.At(t.threshold);
    EXPECT_NEAR(fixed.score, t.score, 1e-9) << t.threshold;
    EXPECT_EQ(fixed.fp, t.fp);
    EXPECT_EQ(fixed.tp, t.tp);
  }
  EXPECT_FALSE(scorer.AddFile(file, std::vector<double>(99, 0.0)).ok());
  std::vector<double> nan(100, 0.0);
  nan[3] = std::nan("");
  EXPECT_FALSE(scorer.AddFile(file, nan).ok());
}

// The check that this scorer is NAB's: KNN CAD's published raw outputs must score
// 57.99 / 43.41 / 64.81 (NAB's scoreboard) within 0.05.
TEST(NabCorpusTest, ReproducesKnnCadPublishedScores) {
  const auto root = testing::NabRoot();
  if (root.empty()) GTEST_SKIP() << "NAB corpus not found (set EDGELOOP_NAB_DIR)";
  auto corpus = LoadCorpus(root);
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  ASSERT_EQ(corpus->size(), 58u);
  std::vector<std::vector<double>> scores;
  for (const DataFile& file : *corpus) {
    const auto slash = file.name.find('/');
    const auto path = root / "results" / "knncad" / file.name.substr(0, slash) /
                      ("knncad_" + file.name.substr(slash + 1));
    auto s = ReadResultScores(path);
    ASSERT_TRUE(s.ok()) << s.status();
    scores.push_back(std::move(*s));
  }
  auto profiles = LoadProfiles(root / "config" / "profiles.json");
  ASSERT_TRUE(profiles.ok()) << profiles.status();
  auto result = ScoreCorpus(*corpus, scores, *profiles, 0.5);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->size(), 3u);
  const double expected[] = {57.99, 43.41, 64.81};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR((*result)[i].normalized_best, expected[i], 0.05) << (*result)[i].profile;
    std::printf("knncad %s: %.4f (threshold %.4f, tp %lld fp %lld fn %lld)\n",
                (*result)[i].profile.c_str(), (*result)[i].normalized_best,
                (*result)[i].best.threshold, static_cast<long long>((*result)[i].best.tp),
                static_cast<long long>((*result)[i].best.fp),
                static_cast<long long>((*result)[i].best.fn));
  }
}

}  // namespace
}  // namespace edgeloop::anomaly::nab
