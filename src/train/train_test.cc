#include "train/train.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "common/test_util.h"
#include "inference/model.h"
#include "train/metrics.h"
#include "train/xgboost_trainer.h"

namespace edgeloop::train {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using edgeloop::testing::TempDir;

// Rows with 4 numeric sensors, a site (a, b, c), a machine id, a time and a binary label that
// depends on the sensors and the site.
RawTable MakeTable(int64_t n, unsigned seed, bool site_c_uses_f3 = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  std::uniform_real_distribution<float> uniform(0, 1);
  RawTable t;
  t.num_rows = n;
  for (const char* name : {"f0", "f1", "f2", "f3"}) {
    t.columns.push_back({name, RawColumn::Kind::kNumber, {}, {}, {}, {}});
  }
  t.columns.push_back({"site", RawColumn::Kind::kText, {}, {}, {}, {}});
  t.columns.push_back({"machine", RawColumn::Kind::kText, {}, {}, {}, {}});
  t.columns.push_back({"ts", RawColumn::Kind::kTime, {}, {}, {}, {}});
  t.columns.push_back({"y", RawColumn::Kind::kNumber, {}, {}, {}, {}});
  t.columns.push_back({"amount", RawColumn::Kind::kNumber, {}, {}, {}, {}});
  const char* sites[] = {"a", "b", "c"};
  for (int64_t i = 0; i < n; ++i) {
    float f[4];
    for (int k = 0; k < 4; ++k) {
      f[k] = normal(rng);
      t.columns[k].numbers.push_back(k == 3 && i % 17 == 0 ? NAN : f[k]);
    }
    const int site = static_cast<int>(rng() % 3);
    t.columns[4].texts.push_back(sites[site]);
    t.columns[4].valid.push_back(1);
    t.columns[5].texts.push_back("m" + std::to_string(rng() % 50));
    t.columns[5].valid.push_back(1);
    t.columns[6].times.push_back(i * 1'000'000);
    t.columns[6].valid.push_back(1);
    float z = 1.5f * f[0] - 1.0f * f[1] + 0.8f * f[2] * f[0] + (site == 2 ? 1.0f : -0.5f);
    if (site_c_uses_f3 && site == 2) z = 3.0f * f[3];
    t.columns[7].numbers.push_back(uniform(rng) < 1 / (1 + std::exp(-z)) ? 1.0f : 0.0f);
    t.columns[8].numbers.push_back(3 * f[0] + f[1] * f[1] + 0.1f * normal(rng));
  }
  return t;
}

TrainSpec BinarySpec() {
  auto spec = ParseTrainSpec(R"(
name: failure
table: readings
task: binary
label: y
features: [f0, f1, f2, f3, site]
categorical: {site: {encoding: one_hot}}
slice_column: site
split: {method: random, seed: 1}
trainer: {rounds: 60, early_stopping_rounds: 10, params: {max_depth: 4, eta: 0.3, nthread: 1}}
gate: {metric: roc_auc, min_improvement: 0.005, slice_tolerance: 0.02, floors: {roc_auc: 0.7}}
)");
  EXPECT_TRUE(spec.ok()) << spec.status();
  return *spec;
}

Lineage TestLineage() { return {"/lake", "readings", 3, "2026-11-27T00:00:00Z", "sha256:00"}; }

std::string Read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(TrainTest, TrainsABinaryModelAndWritesAServableFolder) {
  TempDir dir;
  const RawTable table = MakeTable(4000, 1);
  int rounds_seen = 0;
  TrainOptions options{dir.path() / "model", std::nullopt, "test", [&](const RoundReport& r) {
                         EXPECT_EQ(r.round, rounds_seen);
                         ++rounds_seen;
                       }};
  auto result = TrainOnTable(BinarySpec(), table, TestLineage(), options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(rounds_seen, 0);
  const Json& card = result->card;
  EXPECT_GT(card["metrics"]["test"]["roc_auc"].get<double>(), 0.8);
  EXPECT_EQ(card["lineage"]["snapshot"], 3);
  EXPECT_EQ(card["created"], "2026-11-27T00:00:00Z");
  EXPECT_EQ(card["encoding"]["feature_names"].size(), 7u);  // 4 + one-hot a, b, c
  EXPECT_EQ(card["encoding"]["feature_names"][4], "site=a");
  EXPECT_TRUE(card["metrics"]["test"]["slices"].contains("site=c"));
  EXPECT_TRUE(card["reference_statistics"]["features"]["f3"]["missing_rate"].get<double>() > 0.03);
  EXPECT_EQ(card["reference_statistics"]["features"]["f0"]["quantiles"]["values"].size(), 11u);
  EXPECT_TRUE(card["feature_importance"]["values"].contains("f0"));
  EXPECT_GT(card["feature_importance"]["values"]["f0"].get<double>(),
            card["feature_importance"]["values"]["f3"].get<double>());
  EXPECT_TRUE(card["gate"]["passed"].get<bool>());
  EXPECT_TRUE(result->gate_passed);

  // The folder loads with the serving backend and predicts what the card says.
  auto config = inference::LoadModelConfig(dir.path() / "model", "failure", 1);
  ASSERT_TRUE(config.ok()) << config.status();
  auto model = inference::LoadModel(*config);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(config->feature_names.size(), 7u);
}

TEST(TrainTest, SameSpecAndDataGiveTheSameBytes) {
  TempDir dir;
  const RawTable table = MakeTable(3000, 2);
  TrainSpec spec = BinarySpec();
  spec.params["nthread"] = "2";
  for (const char* out : {"a", "b"}) {
    TrainOptions options{dir.path() / out, std::nullopt, "test", nullptr};
    ASSERT_TRUE(TrainOnTable(spec, table, TestLineage(), options).ok());
  }
  for (const char* file : {"model.json", "model.yaml", "card.json"}) {
    EXPECT_EQ(Read(dir.path() / "a" / file), Read(dir.path() / "b" / file)) << file;
  }
  // Another split seed gives another model.
  spec.split_seed = 2;
  TrainOptions options{dir.path() / "c", std::nullopt, "test", nullptr};
  ASSERT_TRUE(TrainOnTable(spec, table, TestLineage(), options).ok());
  EXPECT_NE(Read(dir.path() / "a" / "model.json"), Read(dir.path() / "c" / "model.json"));
}

TEST(TrainTest, ReportedMetricsMatchTheSavedModelsPredictions) {
  TempDir dir;
  const RawTable table = MakeTable(2000, 3);
  TrainOptions options{dir.path() / "m", std::nullopt, "test", nullptr};
  auto result = TrainOnTable(BinarySpec(), table, TestLineage(), options);
  ASSERT_TRUE(result.ok()) << result.status();
  // Recompute the test AUC from the saved model on the same split.
  auto split = RandomSplit(table.num_rows, {0.15, 0.15}, 1);
  ASSERT_TRUE(split.ok());
  auto plan = PlanFromJson(result->card["encoding"]);
  ASSERT_TRUE(plan.ok());
  const std::vector<float> x = EncodeRows(table, split->test, *plan);
  auto booster = Booster::FromJson(Read(dir.path() / "m" / "model.json"), 1);
  ASSERT_TRUE(booster.ok());
  int per_row = 0;
  auto p = (*booster)->Predict(
      {x.data(), static_cast<int64_t>(split->test.size()), plan->num_features(), nullptr},
      &per_row);
  ASSERT_TRUE(p.ok());
  std::vector<double> y;
  for (int64_t r : split->test) y.push_back(table.Find("y")->numbers[r]);
  EXPECT_DOUBLE_EQ(*RocAuc(y, *p), result->card["metrics"]["test"]["roc_auc"].get<double>());
}

TEST(TrainTest, ValidationPredictionsFromTrainingEqualAFreshPredictionOfTheSavedModel) {
  // TrainBooster keeps the best round's validation predictions from XGBoost's cache instead of
  // predicting again; they must be exactly what the saved (sliced) model predicts.
  const RawTable table = MakeTable(3000, 5);
  FeaturePlan plan;
  for (const char* f : {"f0", "f1", "f2", "f3"}) {
    plan.columns.push_back({f, EncodingKind::kNone, {}, false});
  }
  std::vector<int64_t> train_rows, valid_rows;
  for (int64_t i = 0; i < table.num_rows; ++i) (i % 4 == 0 ? valid_rows : train_rows).push_back(i);
  const std::vector<float> x_train = EncodeRows(table, train_rows, plan);
  const std::vector<float> x_valid = EncodeRows(table, valid_rows, plan);
  for (const bool multiclass : {false, true}) {
    for (const int early : {0, 5}) {
      std::vector<float> y_train, y_valid;
      auto label = [&](int64_t r) {
        const float y = table.Find("y")->numbers[r];
        return multiclass ? y + (table.Find("f2")->numbers[r] > 0 ? 1.0f : 0.0f) : y;
      };
      for (int64_t r : train_rows) y_train.push_back(label(r));
      for (int64_t r : valid_rows) y_valid.push_back(label(r));
      BoosterOptions options;
      options.params = {{"tree_method", "hist"},
                        {"max_depth", "4"},
                        {"eta", "0.3"},
                        {"nthread", "2"},
                        {"seed", "0"}};
      if (multiclass) {
        options.params["objective"] = "multi:softprob";
        options.params["num_class"] = "3";
        options.params["eval_metric"] = "mlogloss";
      } else {
        options.params["objective"] = "binary:logistic";
        options.params["eval_metric"] = "logloss";
      }
      options.rounds = 40;
      options.early_stopping_rounds = early;
      const MatrixView train{x_train.data(), static_cast<int64_t>(train_rows.size()), 4,
                             y_train.data()};
      const MatrixView valid{x_valid.data(), static_cast<int64_t>(valid_rows.size()), 4,
                             y_valid.data()};
      auto trained = TrainBooster(train, valid, options, nullptr);
      ASSERT_TRUE(trained.ok()) << trained.status();
      auto booster = Booster::FromJson(trained->model_json, 1);
      ASSERT_TRUE(booster.ok());
      int per_row = 0;
      auto fresh = (*booster)->Predict(valid, &per_row);
      ASSERT_TRUE(fresh.ok());
      EXPECT_EQ(per_row, multiclass ? 3 : 1);
      ASSERT_EQ(trained->validation_predictions.size(), fresh->size());
      EXPECT_EQ(trained->validation_predictions, *fresh)
          << "multiclass " << multiclass << ", early stopping " << early;
    }
  }
}

TEST(TrainTest, ReferenceStatisticsMatchASortedComputationOnAnyThreadCount) {
  // Selected order statistics (nth_element) must give what sorting gives, with NaNs (missing),
  // ties and a constant column; and the result must not depend on the thread count.
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0, 1);
  constexpr int64_t kRows = 5001;
  constexpr int64_t kWidth = 3;
  std::vector<float> matrix(kRows * kWidth);
  for (int64_t i = 0; i < kRows; ++i) {
    matrix[i * kWidth] = i % 13 == 0 ? NAN : normal(rng);
    matrix[i * kWidth + 1] = static_cast<float>(rng() % 7);  // many ties
    matrix[i * kWidth + 2] = 2.5f;                           // constant
  }
  const std::vector<std::string> names = {"a", "b", "c"};
  FeaturePlan plan;
  for (const std::string& n : names) plan.columns.push_back({n, EncodingKind::kNone, {}, false});
  const RawTable table;
  const Json one = ReferenceStatistics(matrix, kRows, names, table, {}, plan, 1);
  const Json three = ReferenceStatistics(matrix, kRows, names, table, {}, plan, 3);
  EXPECT_EQ(one.dump(), three.dump());
  for (int64_t f = 0; f < kWidth; ++f) {
    std::vector<float> sorted;
    for (int64_t i = 0; i < kRows; ++i) {
      if (!std::isnan(matrix[i * kWidth + f])) sorted.push_back(matrix[i * kWidth + f]);
    }
    std::sort(sorted.begin(), sorted.end());
    auto quantile = [&](double q) {  // numpy's linear rule
      const double pos = q * static_cast<double>(sorted.size() - 1);
      const size_t lo = static_cast<size_t>(std::floor(pos));
      const size_t hi = std::min(lo + 1, sorted.size() - 1);
      return static_cast<double>(sorted[lo]) +
             (pos - static_cast<double>(lo)) *
                 (static_cast<double>(sorted[hi]) - static_cast<double>(sorted[lo]));
    };
    const Json& stats = one["features"][names[f]];
    EXPECT_EQ(stats["min"].get<double>(), sorted.front()) << f;
    EXPECT_EQ(stats["max"].get<double>(), sorted.back()) << f;
    const Json& values = stats["quantiles"]["values"];
    size_t k = 0;
    for (double q : kQuantileLevels)
      EXPECT_EQ(values[k++].get<double>(), quantile(q)) << f << " " << q;
    std::vector<double> edges;
    for (int d = 1; d <= 9; ++d) {
      if (edges.empty() || quantile(d / 10.0) > edges.back()) edges.push_back(quantile(d / 10.0));
    }
    EXPECT_EQ(stats["histogram"]["edges"].get<std::vector<double>>(), edges) << f;
    double total = 0;
    for (const Json& fraction : stats["histogram"]["fractions"]) total += fraction.get<double>();
    EXPECT_NEAR(total, 1.0, 1e-12);
    EXPECT_NEAR(stats["missing_rate"].get<double>(),
                static_cast<double>(kRows - sorted.size()) / kRows, 1e-15);
  }
}

TEST(TrainTest, ClearErrorsForUnusableData) {
  TempDir dir;
  auto error = [&](const TrainSpec& spec, const RawTable& table) {
    TrainOptions options{dir.path() / "x", std::nullopt, "test", nullptr};
    auto result = TrainOnTable(spec, table, TestLineage(), options);
    EXPECT_FALSE(result.ok());
    EXPECT_FALSE(fs::exists(dir.path() / "x"));
    return result.ok() ? std::string() : result.status().message();
  };
  RawTable empty = MakeTable(0, 1);
  EXPECT_NE(error(BinarySpec(), empty).find("is empty at snapshot 3"), std::string::npos);

  RawTable one_class = MakeTable(500, 1);
  for (float& v : one_class.columns[7].numbers) v = 1;
  EXPECT_NE(error(BinarySpec(), one_class).find("only one class"), std::string::npos);

  TrainSpec no_encoding = BinarySpec();
  no_encoding.categorical.clear();
  EXPECT_NE(error(no_encoding, MakeTable(500, 1)).find("declare an encoding"), std::string::npos);

  TrainSpec missing = BinarySpec();
  missing.features.push_back("pressure");
  EXPECT_NE(error(missing, MakeTable(500, 1)).find("missing column 'pressure'"), std::string::npos);

  RawTable bad_label = MakeTable(500, 1);
  bad_label.columns[7].numbers[5] = 2;
  EXPECT_NE(error(BinarySpec(), bad_label).find("must be 0 or 1"), std::string::npos);
}

TEST(TrainTest, RefusesANonEmptyOutputFolder) {
  TempDir dir;
  fs::create_directories(dir.path() / "m");
  std::ofstream(dir.path() / "m" / "keep.txt") << "x";
  TrainOptions options{dir.path() / "m", std::nullopt, "test", nullptr};
  auto result = TrainOnTable(BinarySpec(), MakeTable(500, 1), TestLineage(), options);
  EXPECT_EQ(result.status().code(), StatusCode::kAlreadyExists);
}

TEST(TrainTest, GateComparesWithTheChampionOnTheSameTestRows) {
  TempDir dir;
  const RawTable table = MakeTable(4000, 4);
  // A weak champion: two shallow rounds.
  TrainSpec weak = BinarySpec();
  weak.rounds = 2;
  weak.params["max_depth"] = "1";
  weak.has_gate = false;
  ASSERT_TRUE(
      TrainOnTable(weak, table, TestLineage(), {dir.path() / "weak", std::nullopt, "test", nullptr})
          .ok());
  // Better challenger: promoted.
  auto better = TrainOnTable(
      BinarySpec(), table, TestLineage(),
      {dir.path() / "strong", ChampionSource{dir.path() / "weak", "weak", ""}, "test", nullptr});
  ASSERT_TRUE(better.ok()) << better.status();
  EXPECT_TRUE(better->gate_passed) << better->card["gate"].dump();
  EXPECT_TRUE(better->card["gate"]["champion"]["metrics"].contains("roc_auc"));

  // Worse challenger against the strong champion: refused.
  auto worse = TrainOnTable(
      weak, table, TestLineage(),
      {dir.path() / "worse", ChampionSource{dir.path() / "strong", "strong", ""}, "test", nullptr});
  ASSERT_TRUE(worse.ok()) << worse.status();
  EXPECT_FALSE(worse->gate_passed);
  EXPECT_FALSE(worse->card["gate"]["passed"].get<bool>());
}

TEST(TrainTest, SliceRegressionIsRefusedEvenWhenOverallImproves) {
  TempDir dir;
  // At site c the label depends on f3 only; elsewhere on f0..f2. The champion sees only f3 (good
  // at c, poor elsewhere); the challenger only f0..f2: better overall, much worse at site c.
  const RawTable table = MakeTable(6000, 5, /*site_c_uses_f3=*/true);
  TrainSpec champion = BinarySpec();
  champion.features = {"f3", "site"};
  champion.has_gate = false;
  ASSERT_TRUE(TrainOnTable(champion, table, TestLineage(),
                           {dir.path() / "champion", std::nullopt, "t", nullptr})
                  .ok());
  TrainSpec challenger = BinarySpec();
  challenger.features = {"f0", "f1", "f2", "site"};
  auto result =
      TrainOnTable(challenger, table, TestLineage(),
                   {dir.path() / "challenger",
                    ChampionSource{dir.path() / "champion", "champion", ""}, "t", nullptr});
  ASSERT_TRUE(result.ok()) << result.status();
  const Json& gate = result->card["gate"];
  EXPECT_FALSE(result->gate_passed) << gate.dump();
  bool beats_overall = false;
  for (const auto& check : gate["checks"]) {
    if (check["check"] == "beats champion on roc_auc") beats_overall = check["passed"];
  }
  EXPECT_TRUE(beats_overall) << gate.dump();
  ASSERT_EQ(gate["failures"].size(), 1u) << gate.dump();
  EXPECT_NE(gate["failures"][0].get<std::string>().find("site=c"), std::string::npos);
}

TEST(TrainTest, TimeAndGroupSplitsAreRecorded) {
  TempDir dir;
  TrainSpec spec = BinarySpec();
  spec.split_method = SplitMethod::kTime;
  spec.time_column = "ts";
  auto result = TrainOnTable(spec, MakeTable(2000, 6), TestLineage(),
                             {dir.path() / "t", std::nullopt, "t", nullptr});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->card["split"]["method"], "time");
  EXPECT_EQ(result->card["split"]["test_start_us"], 1700 * 1'000'000LL);

  spec = BinarySpec();
  spec.split_method = SplitMethod::kGroup;
  spec.group_column = "machine";
  result = TrainOnTable(spec, MakeTable(2000, 6), TestLineage(),
                        {dir.path() / "g", std::nullopt, "t", nullptr});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->card["split"]["group_column"], "machine");
}

TEST(TrainTest, RegressionAndMulticlass) {
  TempDir dir;
  auto regression = ParseTrainSpec(R"(
name: amount
table: readings
task: regression
label: amount
features: [f0, f1, f2]
trainer: {rounds: 80, params: {nthread: 1}}
)");
  ASSERT_TRUE(regression.ok()) << regression.status();
  auto result = TrainOnTable(*regression, MakeTable(3000, 7), TestLineage(),
                             {dir.path() / "r", std::nullopt, "t", nullptr});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(result->card["metrics"]["test"]["r2"].get<double>(), 0.8);
  EXPECT_TRUE(result->card["metrics"]["test"].contains("rmse"));

  auto multiclass = ParseTrainSpec(R"(
name: site
table: readings
task: multiclass
label: site
features: [f0, f1, f2, y]
trainer: {rounds: 10, params: {nthread: 1}}
)");
  ASSERT_TRUE(multiclass.ok()) << multiclass.status();
  result = TrainOnTable(*multiclass, MakeTable(1500, 8), TestLineage(),
                        {dir.path() / "mc", std::nullopt, "t", nullptr});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->card["classes"], Json({"a", "b", "c"}));
  EXPECT_EQ(result->card["metrics"]["test"]["confusion_matrix"].size(), 3u);
  auto config = inference::LoadModelConfig(dir.path() / "mc", "site", 1);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(inference::LoadModel(*config).ok());
}

TEST(TrainTest, AnomalyDetectorsWriteOutlierFolders) {
  TempDir dir;
  for (const char* task : {"isolation_forest", "ecod"}) {
    auto spec = ParseTrainSpec(std::string("name: det\ntable: readings\ntask: ") + task +
                               "\nlabel: y\nfeatures: [f0, f1, f2]\n"
                               "trainer: {contamination: 0.05, params: {seed: 3}}\n");
    ASSERT_TRUE(spec.ok()) << spec.status();
    auto result = TrainOnTable(*spec, MakeTable(1000, 9), TestLineage(),
                               {dir.path() / task, std::nullopt, "t", nullptr});
    ASSERT_TRUE(result.ok()) << result.status();
    const std::string yaml = Read(dir.path() / task / "model.yaml");
    EXPECT_NE(yaml.find("framework: outlier"), std::string::npos);
    EXPECT_NE(yaml.find("model_file: detector.json"), std::string::npos);
    EXPECT_TRUE(fs::exists(dir.path() / task / "detector.json"));
    EXPECT_TRUE(result->card["metrics"]["test"].contains("roc_auc"));
    EXPECT_GT(result->card["threshold"]["value"].get<double>(), 0);
  }
}

}  // namespace
}  // namespace edgeloop::train
