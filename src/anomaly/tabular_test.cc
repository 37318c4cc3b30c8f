#include "anomaly/tabular.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "anomaly/isolation_forest.h"

namespace edgeloop::anomaly {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// A Gaussian cluster of `inliers` rows in `d` features followed by `outliers` rows whose every
// feature lies 5 to 8 standard deviations out, on either side.
struct Dataset {
  int64_t d = 0;
  int64_t inliers = 0;
  int64_t outliers = 0;
  std::vector<float> rows;
  int64_t n() const { return inliers + outliers; }
  const float* row(int64_t i) const { return rows.data() + i * d; }
};

Dataset MakeDataset(int64_t inliers, int64_t outliers, int64_t d, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> far(5.0f, 8.0f);
  Dataset data{d, inliers, outliers, {}};
  for (int64_t i = 0; i < inliers; ++i) {
    for (int64_t f = 0; f < d; ++f) data.rows.push_back(normal(gen));
  }
  for (int64_t i = 0; i < outliers; ++i) {
    for (int64_t f = 0; f < d; ++f) {
      const float sign = (gen() % 2 == 0) ? 1.0f : -1.0f;
      data.rows.push_back(sign * far(gen));
    }
  }
  return data;
}

// ROC-AUC of `scores` where the last `positives` entries are the positives (ties count half).
double Auc(const std::vector<double>& scores, int64_t positives) {
  const int64_t negatives = static_cast<int64_t>(scores.size()) - positives;
  double wins = 0;
  for (int64_t p = negatives; p < static_cast<int64_t>(scores.size()); ++p) {
    for (int64_t q = 0; q < negatives; ++q) {
      const double a = scores[static_cast<size_t>(p)];
      const double b = scores[static_cast<size_t>(q)];
      wins += a > b ? 1.0 : (a == b ? 0.5 : 0.0);
    }
  }
  return wins / static_cast<double>(positives * negatives);
}

std::unique_ptr<TabularDetector> Fit(const Dataset& data, const std::string& kind,
                                     uint64_t seed = 1,
                                     std::map<std::string, std::string> params = {}) {
  auto detector =
      FitTabularDetector(data.rows.data(), data.n(), data.d, {kind, seed, std::move(params)});
  EXPECT_TRUE(detector.ok()) << detector.status();
  return detector.ok() ? std::move(detector).value() : nullptr;
}

std::vector<double> ScoreAll(const TabularDetector& detector, const std::vector<float>& rows) {
  std::vector<double> scores(rows.size() / static_cast<size_t>(detector.num_features()));
  detector.Score(rows.data(), static_cast<int64_t>(scores.size()), scores.data());
  return scores;
}

double ScoreOne(const TabularDetector& detector, std::vector<float> row) {
  double score = -1;
  detector.Score(row.data(), 1, &score);
  return score;
}

class TabularKindTest : public ::testing::TestWithParam<std::string> {};

INSTANTIATE_TEST_SUITE_P(Kinds, TabularKindTest, ::testing::Values("isolation_forest", "ecod"),
                         [](const auto& param_info) { return param_info.param; });

TEST_P(TabularKindTest, FindsPlantedOutliers) {
  const Dataset data = MakeDataset(2000, 20, 5, 42);
  auto detector = Fit(data, GetParam());
  ASSERT_NE(detector, nullptr);
  EXPECT_EQ(detector->kind(), GetParam());
  EXPECT_EQ(detector->num_features(), 5);
  const std::vector<double> scores = ScoreAll(*detector, data.rows);
  for (double s : scores) {
    EXPECT_GE(s, 0.0);
    EXPECT_LE(s, 1.0);
  }
  EXPECT_GT(Auc(scores, data.outliers), 0.98);
  // The planted rows rank above the median inlier by a wide margin.
  std::vector<double> inlier(scores.begin(), scores.begin() + data.inliers);
  std::nth_element(inlier.begin(), inlier.begin() + data.inliers / 2, inlier.end());
  const double median = inlier[static_cast<size_t>(data.inliers / 2)];
  for (int64_t i = data.inliers; i < data.n(); ++i) {
    EXPECT_GT(scores[static_cast<size_t>(i)], median + 0.1) << "row " << i;
  }
}

TEST_P(TabularKindTest, ScoresUnseenRowsTheSameWayAsTrainingRows) {
  const Dataset train = MakeDataset(1000, 0, 3, 7);
  auto detector = Fit(train, GetParam());
  ASSERT_NE(detector, nullptr);
  const double centre = ScoreOne(*detector, {0.0f, 0.0f, 0.0f});
  const double edge = ScoreOne(*detector, {3.0f, 0.0f, 0.0f});
  const double beyond = ScoreOne(*detector, {50.0f, 50.0f, 50.0f});
  EXPECT_LT(centre, edge);
  EXPECT_LT(edge, beyond);
  EXPECT_GT(beyond, 0.65);
}

TEST_P(TabularKindTest, SameSeedGivesIdenticalBytes) {
  const Dataset data = MakeDataset(3000, 10, 4, 3);
  auto a = Fit(data, GetParam(), 99, {});
  auto b = Fit(data, GetParam(), 99, {});
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->Serialize(), b->Serialize());
}

TEST_P(TabularKindTest, SerializationRoundTripGivesIdenticalScoresAndBytes) {
  const Dataset data = MakeDataset(1500, 15, 6, 11);
  auto detector = Fit(data, GetParam(), 5);
  ASSERT_NE(detector, nullptr);
  const std::string bytes = detector->Serialize();
  auto loaded = LoadTabularDetector(bytes);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->kind(), GetParam());
  EXPECT_EQ((*loaded)->num_features(), 6);
  EXPECT_EQ((*loaded)->Serialize(), bytes);
  // Bit-identical scores, including for rows with missing and infinite values.
  std::vector<float> rows = data.rows;
  rows[3] = kNaN;
  rows[10] = kInf;
  rows[20] = -kInf;
  const std::vector<double> original = ScoreAll(*detector, rows);
  const std::vector<double> reloaded = ScoreAll(**loaded, rows);
  ASSERT_EQ(original.size(), reloaded.size());
  for (size_t i = 0; i < original.size(); ++i) EXPECT_EQ(original[i], reloaded[i]) << "row " << i;
}

TEST_P(TabularKindTest, NanScoresAsTheTrainingMedian) {
  Dataset data = MakeDataset(501, 0, 2, 5);
  // Feature 0 is 0..500 shuffled in; its lower median is 250.
  for (int64_t i = 0; i < data.n(); ++i)
    data.rows[static_cast<size_t>(i * 2)] = float((i * 37) % 501);
  auto detector = Fit(data, GetParam());
  ASSERT_NE(detector, nullptr);
  for (float other : {-2.0f, 0.0f, 0.7f, 9.0f}) {
    EXPECT_EQ(ScoreOne(*detector, {kNaN, other}), ScoreOne(*detector, {250.0f, other}));
  }
}

TEST_P(TabularKindTest, InfinityScoresAsMostExtreme) {
  const Dataset data = MakeDataset(800, 0, 3, 9);
  auto detector = Fit(data, GetParam());
  ASSERT_NE(detector, nullptr);
  const double inf = ScoreOne(*detector, {kInf, 0.0f, 0.0f});
  const double minus_inf = ScoreOne(*detector, {-kInf, 0.0f, 0.0f});
  EXPECT_TRUE(std::isfinite(inf));
  EXPECT_LE(inf, 1.0);
  // Beyond every training value, a huge finite value scores as infinity does.
  EXPECT_EQ(inf, ScoreOne(*detector, {1e30f, 0.0f, 0.0f}));
  EXPECT_EQ(minus_inf, ScoreOne(*detector, {-1e30f, 0.0f, 0.0f}));
  EXPECT_GT(inf, ScoreOne(*detector, {0.0f, 0.0f, 0.0f}));
}

TEST_P(TabularKindTest, NonFiniteTrainingValuesAreCleanedNotFatal) {
  Dataset data = MakeDataset(400, 4, 3, 13);
  for (int64_t i = 0; i < data.n(); i += 7) data.rows[static_cast<size_t>(i * 3)] = kNaN;
  data.rows[4] = kInf;
  data.rows[8] = -kInf;
  // Feature 2 has no finite value at all: its median is 0 and it cannot split or rank.
  for (int64_t i = 0; i < data.n(); ++i) data.rows[static_cast<size_t>(i * 3 + 2)] = kNaN;
  auto detector = Fit(data, GetParam());
  ASSERT_NE(detector, nullptr);
  const std::vector<double> scores = ScoreAll(*detector, data.rows);
  for (double s : scores) {
    ASSERT_TRUE(std::isfinite(s));
    EXPECT_GE(s, 0.0);
    EXPECT_LE(s, 1.0);
  }
  EXPECT_EQ(ScoreOne(*detector, {0.1f, 0.2f, kNaN}), ScoreOne(*detector, {0.1f, 0.2f, 0.0f}));
  EXPECT_GT(Auc(scores, data.outliers), 0.9);
}

TEST_P(TabularKindTest, ConcurrentScoringAgrees) {
  const Dataset data = MakeDataset(1000, 10, 4, 17);
  auto detector = Fit(data, GetParam());
  ASSERT_NE(detector, nullptr);
  const std::vector<double> expected = ScoreAll(*detector, data.rows);
  std::vector<std::vector<double>> results(4);
  std::vector<std::thread> threads;
  for (auto& result : results) {
    threads.emplace_back([&] { result = ScoreAll(*detector, data.rows); });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& result : results) EXPECT_EQ(result, expected);
}

TEST(IsolationForestTest, AveragePathLengthMatchesThePaper) {
  EXPECT_EQ(IsolationForest::AveragePathLength(1), 0.0);
  EXPECT_EQ(IsolationForest::AveragePathLength(2), 1.0);
  // 2 H(n-1) - 2 (n-1)/n with H(i) ~ ln(i) + 0.5772156649.
  EXPECT_NEAR(IsolationForest::AveragePathLength(256),
              2 * (std::log(255.0) + 0.5772156649015329) - 2 * 255.0 / 256, 1e-12);
  EXPECT_NEAR(IsolationForest::AveragePathLength(3),
              2 * (std::log(2.0) + 0.5772156649015329) - 4.0 / 3, 1e-12);
}

TEST(IsolationForestTest, ConstantDataScoresOneHalf) {
  // Nothing can be split: every tree is one leaf of psi rows, E[h] = c(psi), s = 2^-1.
  std::vector<float> rows(300 * 2, 4.0f);
  auto detector = FitTabularDetector(rows.data(), 300, 2, {"isolation_forest", 0, {}});
  ASSERT_TRUE(detector.ok()) << detector.status();
  EXPECT_NEAR(ScoreOne(**detector, {4.0f, 4.0f}), 0.5, 1e-12);
  EXPECT_NEAR(ScoreOne(**detector, {-100.0f, 7.0f}), 0.5, 1e-12);
}

TEST(IsolationForestTest, HonoursParameters) {
  const Dataset data = MakeDataset(1000, 0, 4, 21);
  auto detector = FitTabularDetector(
      data.rows.data(), data.n(), data.d,
      {"isolation_forest", 3, {{"n_trees", "7"}, {"sample_size", "64"}, {"max_features", "0.5"}}});
  ASSERT_TRUE(detector.ok()) << detector.status();
  auto* forest = dynamic_cast<IsolationForest*>(detector->get());
  ASSERT_NE(forest, nullptr);
  EXPECT_EQ(forest->num_trees(), 7);
  EXPECT_EQ(forest->sample_size(), 64);
  EXPECT_NE(forest->Serialize().find("\"features_per_tree\":2"), std::string::npos);
  // sample_size is capped at the training rows.
  auto small = FitTabularDetector(data.rows.data(), 10, data.d, {"isolation_forest", 3, {}});
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(dynamic_cast<IsolationForest*>(small->get())->sample_size(), 10);
  // An integer max_features is a count.
  auto one = FitTabularDetector(data.rows.data(), data.n(), data.d,
                                {"isolation_forest", 3, {{"max_features", "1"}}});
  ASSERT_TRUE(one.ok());
  EXPECT_NE((*one)->Serialize().find("\"features_per_tree\":1"), std::string::npos);
}

TEST(IsolationForestTest, DifferentSeedsGiveDifferentForests) {
  const Dataset data = MakeDataset(500, 5, 3, 2);
  EXPECT_NE(Fit(data, "isolation_forest", 1)->Serialize(),
            Fit(data, "isolation_forest", 2)->Serialize());
}

TEST(EcodTest, ConstantDataScoresOneHalfAndAnythingElseOne) {
  std::vector<float> rows(50 * 3, -1.5f);
  auto detector = FitTabularDetector(rows.data(), 50, 3, {"ecod", 0, {}});
  ASSERT_TRUE(detector.ok()) << detector.status();
  EXPECT_EQ(ScoreOne(**detector, {-1.5f, -1.5f, -1.5f}), 0.5);
  EXPECT_EQ(ScoreOne(**detector, {-1.5f, 2.0f, -1.5f}), 1.0);
}

// ECOD's raw score and normalisation computed the slow, obvious way: count the training values
// at or below / at or above each value (after the fit and scoring rules) with a linear scan.
std::vector<double> BruteForceEcod(const std::vector<float>& train, int64_t n, int64_t d,
                                   const std::vector<float>& rows) {
  std::vector<std::vector<float>> columns(static_cast<size_t>(d));
  std::vector<float> median(static_cast<size_t>(d));
  std::vector<bool> left_skewed(static_cast<size_t>(d));
  for (int64_t f = 0; f < d; ++f) {
    std::vector<float> finite;
    for (int64_t i = 0; i < n; ++i) {
      const float v = train[static_cast<size_t>(i * d + f)];
      if (std::isfinite(v)) finite.push_back(v);
    }
    std::sort(finite.begin(), finite.end());
    median[static_cast<size_t>(f)] = finite[(finite.size() - 1) / 2];
    auto& column = columns[static_cast<size_t>(f)];
    for (int64_t i = 0; i < n; ++i) {
      float v = train[static_cast<size_t>(i * d + f)];
      if (std::isnan(v)) v = median[static_cast<size_t>(f)];
      if (v == kInf) v = finite.back();
      if (v == -kInf) v = finite.front();
      column.push_back(v);
    }
    double mean = 0;
    for (float v : column) mean += v;
    mean /= static_cast<double>(n);
    double m3 = 0;
    for (float v : column) m3 += (v - mean) * (v - mean) * (v - mean);
    left_skewed[static_cast<size_t>(f)] = m3 < 0;
  }
  auto raw = [&](const float* row) {
    double left = 0, right = 0, automatic = 0;
    for (int64_t f = 0; f < d; ++f) {
      float v = row[f];
      if (std::isnan(v)) v = median[static_cast<size_t>(f)];
      int64_t at_most = 0, at_least = 0;
      for (float t : columns[static_cast<size_t>(f)]) {
        at_most += t <= v ? 1 : 0;
        at_least += t >= v ? 1 : 0;
      }
      const double l = -std::log(static_cast<double>(at_most + 1) / static_cast<double>(n + 1));
      const double r = -std::log(static_cast<double>(at_least + 1) / static_cast<double>(n + 1));
      left += l;
      right += r;
      automatic += left_skewed[static_cast<size_t>(f)] ? l : r;
    }
    return std::max({left, right, automatic});
  };
  std::vector<float> clean(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t f = 0; f < d; ++f) {
      clean[static_cast<size_t>(i * d + f)] =
          columns[static_cast<size_t>(f)][static_cast<size_t>(i)];
    }
  }
  double sum = 0, squares = 0;
  std::vector<double> train_raw;
  for (int64_t i = 0; i < n; ++i) train_raw.push_back(raw(&clean[static_cast<size_t>(i * d)]));
  for (double r : train_raw) sum += r;
  const double mean = sum / static_cast<double>(n);
  for (double r : train_raw) squares += (r - mean) * (r - mean);
  const double std = std::sqrt(squares / static_cast<double>(n));
  std::vector<double> scores;
  for (size_t i = 0; i < rows.size() / static_cast<size_t>(d); ++i) {
    scores.push_back(
        0.5 * std::erfc(-(raw(&rows[i * static_cast<size_t>(d)]) - mean) / (std * std::sqrt(2.0))));
  }
  return scores;
}

TEST(EcodTest, IndexedScoresMatchABruteForceEcdf) {
  // Features with ties (small integers), heavy skew both ways, a wide range, and non-finite
  // training values; scored on values equal to training values, between them, beyond both
  // ends, NaN and infinities.
  constexpr int64_t kRows = 600;
  constexpr int64_t kFeatures = 4;
  std::mt19937 gen(11);
  std::exponential_distribution<float> exponential(1.0f);
  std::vector<float> train;
  for (int64_t i = 0; i < kRows; ++i) {
    train.push_back(static_cast<float>(gen() % 5));
    train.push_back(exponential(gen));
    train.push_back(-1e6f * exponential(gen));
    train.push_back(i % 97 == 0 ? kNaN : (i % 89 == 0 ? kInf : static_cast<float>(gen() % 1000)));
  }
  std::vector<float> rows(train.begin(), train.begin() + 50 * kFeatures);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int i = 0; i < 200 * kFeatures; ++i) rows.push_back(normal(gen) * (i % 3 == 0 ? 1e6f : 1));
  for (float special : {kNaN, kInf, -kInf, -1.0f, 4.5f, 1e9f}) {
    for (int64_t f = 0; f < kFeatures; ++f) rows.push_back(special);
  }
  auto detector = FitTabularDetector(train.data(), kRows, kFeatures, {"ecod", 3, {}});
  ASSERT_TRUE(detector.ok()) << detector.status();
  const std::vector<double> expected = BruteForceEcod(train, kRows, kFeatures, rows);
  const std::vector<double> got = ScoreAll(**detector, rows);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-9) << "row " << i;
}

TEST(EcodTest, SubsamplesWithMaxSamples) {
  const Dataset data = MakeDataset(5000, 20, 3, 8);
  auto detector = Fit(data, "ecod", 4, {{"max_samples", "1000"}});
  ASSERT_NE(detector, nullptr);
  EXPECT_NE(detector->Serialize().find("\"rows\":1000"), std::string::npos);
  EXPECT_GT(Auc(ScoreAll(*detector, data.rows), data.outliers), 0.98);
}

TEST(TabularFitTest, RejectsBadOptionsAndData) {
  const Dataset data = MakeDataset(100, 0, 3, 1);
  auto fit = [&](std::string kind, std::map<std::string, std::string> params, int64_t n = 100,
                 int64_t d = 3) {
    return FitTabularDetector(data.rows.data(), n, d, {std::move(kind), 0, std::move(params)})
        .status();
  };
  const std::vector<std::pair<Status, std::string>> cases = {
      {fit("lof", {}), "unknown tabular detector kind"},
      {fit("isolation_forest", {{"trees", "5"}}),
       "unknown parameter(s) for isolation_forest: trees"},
      {fit("isolation_forest", {{"n_trees", "0"}}), "n_trees must be in"},
      {fit("isolation_forest", {{"n_trees", "ten"}}), "n_trees must be an integer"},
      {fit("isolation_forest", {{"sample_size", "1"}}), "sample_size must be in"},
      {fit("isolation_forest", {{"max_features", "0.0"}}), "max_features"},
      {fit("isolation_forest", {{"max_features", "1.5"}}), "max_features must be in"},
      {fit("isolation_forest", {{"max_features", "4"}}), "max_features must be in"},
      {fit("isolation_forest", {}, 1), "at least 2 training rows"},
      {fit("ecod", {{"max_samples", "-3"}}), "max_samples must be in"},
      {fit("ecod", {{"n_trees", "3"}}), "unknown parameter(s) for ecod"},
      {fit("ecod", {}, 0), "no training rows"},
      {fit("ecod", {}, 10, 0), "num_features must be in"},
  };
  for (const auto& [status, message] : cases) {
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status;
    EXPECT_NE(status.message().find(message), std::string::npos) << status;
  }
  const std::vector<float> many(100000, 0.0f);
  const Status huge =
      FitTabularDetector(many.data(), 100000, 1,
                         {"isolation_forest", 0, {{"n_trees", "10000"}, {"sample_size", "100000"}}})
          .status();
  EXPECT_EQ(huge.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(huge.message().find("n_trees * sample_size is too large"), std::string::npos) << huge;
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(TabularLoadTest, RejectsFilesThatAreNotDetectors) {
  const std::string good = Fit(MakeDataset(50, 0, 2, 1), "isolation_forest")->Serialize();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "not valid JSON"},
      {good.substr(0, good.size() / 2), "not valid JSON"},
      {"[1, 2]", "not a JSON object"},
      {"{\"kind\": \"ecod\"}", "not a tabular detector file"},
      {Replace(good, "\"version\":1", "\"version\":2"), "unsupported tabular detector format"},
      {Replace(good, "\"kind\":\"isolation_forest\"", "\"kind\":\"lof\""),
       "unknown tabular detector kind \"lof\""},
  };
  for (const auto& [text, message] : cases) {
    auto loaded = LoadTabularDetector(text);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.status().code(), StatusCode::kInvalidArgument) << loaded.status();
    EXPECT_NE(loaded.status().message().find(message), std::string::npos) << loaded.status();
  }
}

TEST(TabularLoadTest, RejectsCorruptedForests) {
  const std::string good =
      Fit(MakeDataset(50, 0, 2, 1), "isolation_forest", 1, {{"n_trees", "1"}})->Serialize();
  // The one tree starts with its root split; its children are at 1 and 2.
  const size_t trees = good.find("\"trees\":[[[");
  ASSERT_NE(trees, std::string::npos);
  const std::string prefix = good.substr(0, trees);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {Replace(good, "\"num_features\":2", "\"num_features\":0"), "out of range"},
      {Replace(good, "\"sample_size\":50", "\"sample_size\":\"50\""), "isolation_forest:"},
      {Replace(good, "\"medians\":", "\"median\":"), "medians"},
      {prefix + "\"trees\":[]}", "non-empty array"},
      {prefix + "\"trees\":[[[0,0.5,1],[3]]]}", "child 1 out of range"},
      {prefix + "\"trees\":[[[0,0.5,1],[3],[4],[5]]]}", "unreachable"},
      {prefix + "\"trees\":[[[7,0.5,1],[3],[4]]]}", "feature 7 out of range"},
      {prefix + "\"trees\":[[[0,0.5,1],[0],[4]]]}", "size 0 out of range"},
      {prefix + "\"trees\":[[[0,0.5,1],[1,0.5,1],[4]]]}", "child"},
      {prefix + "\"trees\":[[[0,0.5,1,2],[3],[4]]]}", "a node must be"},
      {prefix + "\"trees\":[[[0,1e300,1],[3],[4]]]}", "threshold is not finite"},
  };
  for (const auto& [text, message] : cases) {
    auto loaded = LoadTabularDetector(text);
    ASSERT_FALSE(loaded.ok()) << text;
    EXPECT_EQ(loaded.status().code(), StatusCode::kDataLoss) << loaded.status();
    EXPECT_NE(loaded.status().message().find(message), std::string::npos) << loaded.status();
  }
  // A well-formed hand-written tree loads and scores by the formula: depth 1 + c(3) or c(4)
  // over c(50).
  auto hand = LoadTabularDetector(prefix + "\"trees\":[[[0,0.5,1],[3],[4]]]}");
  ASSERT_TRUE(hand.ok()) << hand.status();
  const double c50 = IsolationForest::AveragePathLength(50);
  EXPECT_DOUBLE_EQ(ScoreOne(**hand, {0.0f, 0.0f}),
                   std::exp2(-(1 + IsolationForest::AveragePathLength(3)) / c50));
  EXPECT_DOUBLE_EQ(ScoreOne(**hand, {0.5f, 0.0f}),
                   std::exp2(-(1 + IsolationForest::AveragePathLength(4)) / c50));
}

TEST(TabularLoadTest, RejectsCorruptedEcod) {
  const std::string good = Fit(MakeDataset(3, 0, 2, 1), "ecod")->Serialize();
  const size_t values = good.find("\"sorted_values\":");
  ASSERT_NE(values, std::string::npos);
  const std::string prefix = good.substr(0, values);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {prefix + "\"sorted_values\":[[1,2,3],[3,2,1]]}", "not finite and ascending"},
      {prefix + "\"sorted_values\":[[1,2,3],[1,2]]}", "has 2 values, expected 3"},
      {prefix + "\"sorted_values\":[[1,2,3]]}", "one entry per feature"},
      {prefix + "\"sorted_values\":[[1,2,3],[1,2,1e300]]}", "not finite and ascending"},
      {prefix + "\"sorted_values\":\"x\"}", "ecod:"},
      {Replace(good, "\"rows\":3", "\"rows\":0"), "out of range"},
      {Replace(good, "\"score_std\":", "\"score_std\":-1,\"x\":"), "score_std"},
  };
  for (const auto& [text, message] : cases) {
    auto loaded = LoadTabularDetector(text);
    ASSERT_FALSE(loaded.ok()) << text;
    EXPECT_EQ(loaded.status().code(), StatusCode::kDataLoss) << loaded.status();
    EXPECT_NE(loaded.status().message().find(message), std::string::npos) << loaded.status();
  }
  EXPECT_TRUE(LoadTabularDetector(prefix + "\"sorted_values\":[[1,2,3],[1,1,1]]}").ok());
}

}  // namespace
}  // namespace edgeloop::anomaly
