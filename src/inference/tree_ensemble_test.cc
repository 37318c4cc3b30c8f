#include "inference/tree_ensemble.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <xgboost/c_api.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "inference/xgboost_json.h"

namespace edgeloop::inference {
namespace {

using ::testing::HasSubstr;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---- helpers: training and predicting with XGBoost's C API, the reference ----

#define XGB_CHECK(call) ASSERT_EQ((call), 0) << XGBGetLastError()

class TempDir : public edgeloop::testing::TempDir {
 public:
  TempDir() : edgeloop::testing::TempDir("edgeloop_tree_ensemble_test") {}
};

enum class Task { kBinary, kMulticlass, kRegression, kPositiveRegression };

struct Dataset {
  size_t rows = 0;
  size_t features = 0;
  std::vector<float> x;  // row-major
  std::vector<float> y;
};

// Seeded synthetic data whose label depends on a few features non-linearly. `nan_fraction` of
// the values are missing.
Dataset MakeData(size_t rows, size_t features, Task task, int classes, uint32_t seed,
                 double nan_fraction) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  Dataset data{rows, features, std::vector<float>(rows * features), std::vector<float>(rows)};
  for (size_t r = 0; r < rows; ++r) {
    float* row = &data.x[r * features];
    for (size_t f = 0; f < features; ++f) {
      // Some coarse features so that values equal to split thresholds occur.
      row[f] = f % 3 == 2 ? std::round(normal(rng) * 2.0f) : normal(rng) * (1.0f + f);
    }
    const float z = row[0] - 0.5f * row[1] + std::sin(row[2 % features]) +
                    0.3f * row[3 % features] * row[0] + 0.5f * normal(rng);
    switch (task) {
      case Task::kBinary:
        data.y[r] = z > 0.2f ? 1.0f : 0.0f;
        break;
      case Task::kMulticlass:
        data.y[r] = static_cast<float>(
            std::clamp(static_cast<int>(std::floor(z + classes / 2.0f)), 0, classes - 1));
        break;
      case Task::kRegression:
        data.y[r] = 3.0f * z + 1.0f;
        break;
      case Task::kPositiveRegression:
        data.y[r] = std::exp(0.5f * z) + (r % 7 == 0 ? 0.0f : 0.1f);
        break;
    }
    for (size_t f = 0; f < features; ++f) {
      if (uniform(rng) < nan_fraction) row[f] = kNaN;
    }
  }
  return data;
}

class Booster {
 public:
  Booster() = default;
  Booster(const Booster&) = delete;
  Booster& operator=(const Booster&) = delete;
  ~Booster() {
    if (handle_ != nullptr) XGBoosterFree(handle_);
  }
  BoosterHandle* out() { return &handle_; }
  BoosterHandle get() const { return handle_; }

 private:
  BoosterHandle handle_ = nullptr;
};

class DMatrix {
 public:
  DMatrix(const std::vector<float>& x, size_t rows, size_t features) {
    EXPECT_EQ(XGDMatrixCreateFromMat(x.data(), rows, features, kNaN, &handle_), 0)
        << XGBGetLastError();
  }
  DMatrix(const DMatrix&) = delete;
  DMatrix& operator=(const DMatrix&) = delete;
  ~DMatrix() {
    if (handle_ != nullptr) XGDMatrixFree(handle_);
  }
  DMatrixHandle get() const { return handle_; }

 private:
  DMatrixHandle handle_ = nullptr;
};

void Train(const Dataset& data, const std::map<std::string, std::string>& params, int rounds,
           Booster* booster) {
  DMatrix train(data.x, data.rows, data.features);
  XGB_CHECK(XGDMatrixSetFloatInfo(train.get(), "label", data.y.data(), data.rows));
  DMatrixHandle handles[] = {train.get()};
  XGB_CHECK(XGBoosterCreate(handles, 1, booster->out()));
  XGB_CHECK(XGBoosterSetParam(booster->get(), "nthread", "1"));
  XGB_CHECK(XGBoosterSetParam(booster->get(), "seed", "7"));
  XGB_CHECK(XGBoosterSetParam(booster->get(), "verbosity", "0"));
  for (const auto& [key, value] : params) {
    XGB_CHECK(XGBoosterSetParam(booster->get(), key.c_str(), value.c_str()));
  }
  for (int i = 0; i < rounds; ++i)
    XGB_CHECK(XGBoosterUpdateOneIter(booster->get(), i, train.get()));
}

// XGBoost's prediction through a DMatrix: type 0 = transformed, 1 = margin, 2 = contributions.
std::vector<float> XgboostPredict(const Booster& booster, const std::vector<float>& x, size_t rows,
                                  size_t features, int type) {
  DMatrix matrix(x, rows, features);
  const std::string config = "{\"type\": " + std::to_string(type) +
                             ", \"training\": false, \"iteration_begin\": 0, "
                             "\"iteration_end\": 0, \"strict_shape\": false}";
  const bst_ulong* shape = nullptr;
  bst_ulong dims = 0;
  const float* result = nullptr;
  EXPECT_EQ(XGBoosterPredictFromDMatrix(booster.get(), matrix.get(), config.c_str(), &shape, &dims,
                                        &result),
            0)
      << XGBGetLastError();
  size_t count = 1;
  for (bst_ulong d = 0; d < dims; ++d) count *= shape[d];
  return std::vector<float>(result, result + count);
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

StatusOr<std::unique_ptr<TreeEnsemble>> Compile(const std::string& data,
                                                TreeEnsemble::Layout layout) {
  ASSIGN_OR_RETURN(XgboostModel model, ParseXgboostModel(data));
  TreeEnsemble::Options options;
  options.layout = layout;
  return TreeEnsemble::Create(model, options);
}

// |a - b| <= tolerance * max(1, |b|): absolute near zero, relative for large outputs (exp).
void ExpectClose(const std::vector<float>& actual, const std::vector<float>& expected,
                 double tolerance, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  int failures = 0;
  for (size_t i = 0; i < actual.size() && failures < 5; ++i) {
    const double bound = tolerance * std::max(1.0, std::fabs(static_cast<double>(expected[i])));
    if (!(std::fabs(static_cast<double>(actual[i]) - expected[i]) <= bound)) {
      ADD_FAILURE() << what << ": value " << i << " is " << actual[i] << ", XGBoost says "
                    << expected[i];
      ++failures;
    }
  }
}

// ---- native vs XGBoost, over objectives, boosters, depths, layouts and formats ----

struct Case {
  std::string name;
  Task task;
  int classes;
  std::map<std::string, std::string> params;
  int rounds;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class MatchesXgboostTest : public ::testing::TestWithParam<Case> {};

TEST_P(MatchesXgboostTest, PredictionsMarginsAndContributions) {
  const Case& c = GetParam();
  constexpr size_t kFeatures = 7;
  const Dataset train = MakeData(600, kFeatures, c.task, c.classes, 11, 0.05);
  Booster booster;
  std::map<std::string, std::string> params = c.params;
  if (c.task == Task::kMulticlass) params["num_class"] = std::to_string(c.classes);
  ASSERT_NO_FATAL_FAILURE(Train(train, params, c.rounds, &booster));

  TempDir dir;
  for (const char* extension : {".json", ".ubj"}) {
    const std::filesystem::path file = dir.path() / (std::string("model") + extension);
    ASSERT_EQ(XGBoosterSaveModel(booster.get(), file.c_str()), 0) << XGBGetLastError();
    const std::string data = ReadFile(file);

    // Fresh rows, 10% missing; 1000 for batches, the first 9 also one at a time.
    const Dataset test = MakeData(1000, kFeatures, c.task, c.classes, 99, 0.10);
    const std::vector<float> want_prediction =
        XgboostPredict(booster, test.x, test.rows, kFeatures, 0);
    const std::vector<float> want_margin = XgboostPredict(booster, test.x, test.rows, kFeatures, 1);
    const std::vector<float> want_contributions =
        XgboostPredict(booster, test.x, test.rows, kFeatures, 2);

    for (auto layout : {TreeEnsemble::Layout::kAuto, TreeEnsemble::Layout::kGeneral,
                        TreeEnsemble::Layout::kPerfect}) {
      auto ensemble = Compile(data, layout);
      if (layout == TreeEnsemble::Layout::kPerfect && !ensemble.ok()) continue;  // too deep
      ASSERT_TRUE(ensemble.ok()) << ensemble.status();
      const TreeEnsemble& model = **ensemble;
      const std::string what =
          c.name + extension + " layout " + std::to_string(static_cast<int>(model.layout()));
      const size_t groups = static_cast<size_t>(model.num_groups());
      const size_t width = static_cast<size_t>(model.prediction_width());
      ASSERT_EQ(want_prediction.size(), test.rows * width);

      std::vector<float> prediction(test.rows * width);
      model.Predict(test.x, prediction);
      ExpectClose(prediction, want_prediction, 1e-6, what + " prediction");
      std::vector<float> margin(test.rows * groups);
      model.PredictMargin(test.x, margin);
      ExpectClose(margin, want_margin, 1e-6, what + " margin");

      // Batches of every size from 1 to 20 rows (single-row kernel, remainders, blocks).
      for (size_t rows = 1; rows <= 20; ++rows) {
        std::vector<float> x(test.x.begin() + 100 * kFeatures,
                             test.x.begin() + (100 + rows) * kFeatures);
        std::vector<float> out(rows * width);
        model.Predict(x, out);
        ExpectClose(out,
                    std::vector<float>(want_prediction.begin() + 100 * width,
                                       want_prediction.begin() + (100 + rows) * width),
                    1e-6, what + " prediction of " + std::to_string(rows) + " rows");
      }

      const size_t shap_rows = 200;  // TreeSHAP is slower; a subset is enough
      std::vector<float> x(test.x.begin(), test.x.begin() + shap_rows * kFeatures);
      std::vector<float> contributions(shap_rows * model.contribution_width());
      model.PredictContributions(x, contributions);
      ExpectClose(contributions,
                  std::vector<float>(want_contributions.begin(),
                                     want_contributions.begin() + contributions.size()),
                  1e-5, what + " contributions");
    }
  }
}

std::vector<Case> Cases() {
  using P = std::map<std::string, std::string>;
  return {
      {"binary_logistic_depth6", Task::kBinary, 0, P{{"objective", "binary:logistic"}}, 40},
      {"binary_logistic_depth2_base_score", Task::kBinary, 0,
       P{{"objective", "binary:logistic"}, {"max_depth", "2"}, {"base_score", "0.3"}}, 30},
      {"binary_logitraw_base_score", Task::kBinary, 0,
       P{{"objective", "binary:logitraw"}, {"base_score", "0.7"}}, 20},
      {"reg_logistic", Task::kBinary, 0, P{{"objective", "reg:logistic"}, {"max_depth", "4"}}, 20},
      {"multi_softprob", Task::kMulticlass, 4,
       P{{"objective", "multi:softprob"}, {"max_depth", "4"}}, 15},
      {"multi_softmax", Task::kMulticlass, 3, P{{"objective", "multi:softmax"}, {"max_depth", "5"}},
       15},
      {"squarederror_depth8", Task::kRegression, 0,
       P{{"objective", "reg:squarederror"}, {"max_depth", "8"}}, 20},
      {"squarederror_depth11_general", Task::kRegression, 0,
       P{{"objective", "reg:squarederror"}, {"max_depth", "11"}, {"min_child_weight", "0"}}, 10},
      {"squarederror_lossguide", Task::kRegression, 0,
       P{{"objective", "reg:squarederror"},
         {"tree_method", "hist"},
         {"grow_policy", "lossguide"},
         {"max_depth", "0"},
         {"max_leaves", "24"}},
       10},
      {"squarederror_exact", Task::kRegression, 0,
       P{{"objective", "reg:squarederror"}, {"tree_method", "exact"}, {"max_depth", "3"}}, 10},
      {"single_leaf_trees", Task::kRegression, 0,
       P{{"objective", "reg:squarederror"}, {"gamma", "1e12"}}, 5},
      {"pseudohubererror", Task::kRegression, 0, P{{"objective", "reg:pseudohubererror"}}, 10},
      {"absoluteerror", Task::kRegression, 0, P{{"objective", "reg:absoluteerror"}}, 10},
      {"squaredlogerror", Task::kPositiveRegression, 0, P{{"objective", "reg:squaredlogerror"}},
       10},
      {"poisson", Task::kPositiveRegression, 0, P{{"objective", "count:poisson"}}, 20},
      {"gamma", Task::kPositiveRegression, 0, P{{"objective", "reg:gamma"}}, 20},
      {"tweedie", Task::kPositiveRegression, 0,
       P{{"objective", "reg:tweedie"}, {"tweedie_variance_power", "1.3"}}, 20},
      {"dart_binary", Task::kBinary, 0,
       P{{"booster", "dart"},
         {"objective", "binary:logistic"},
         {"rate_drop", "0.3"},
         {"skip_drop", "0"},
         {"max_depth", "4"}},
       20},
      {"dart_multiclass", Task::kMulticlass, 3,
       P{{"booster", "dart"},
         {"objective", "multi:softprob"},
         {"rate_drop", "0.2"},
         {"max_depth", "3"}},
       10},
      {"random_forest", Task::kBinary, 0,
       P{{"objective", "binary:logistic"},
         {"num_parallel_tree", "4"},
         {"subsample", "0.8"},
         {"colsample_bynode", "0.8"}},
       3},
  };
}

INSTANTIATE_TEST_SUITE_P(Objectives, MatchesXgboostTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& param) {
                           return param.param.name;
                         });

// ---- the example model from the repository ----

using edgeloop::testing::ExampleModelDir;

TEST(TreeEnsembleTest, ExampleModelMatchesXgboost) {
  const std::filesystem::path file = ExampleModelDir() / "model.json";
  ASSERT_TRUE(std::filesystem::exists(file)) << file;
  auto ensemble = Compile(ReadFile(file), TreeEnsemble::Layout::kAuto);
  ASSERT_TRUE(ensemble.ok()) << ensemble.status();
  const TreeEnsemble& model = **ensemble;
  EXPECT_EQ(model.num_features(), 20);
  EXPECT_EQ(model.num_trees(), 200u);
  EXPECT_EQ(model.layout(), TreeEnsemble::Layout::kPerfect);
  EXPECT_EQ(model.objective(), XgboostObjective::kBinaryLogistic);

  Booster booster;
  XGB_CHECK(XGBoosterCreate(nullptr, 0, booster.out()));
  XGB_CHECK(XGBoosterLoadModel(booster.get(), file.c_str()));
  XGB_CHECK(XGBoosterSetParam(booster.get(), "nthread", "1"));

  // Rows around the training distribution (see scripts/make_example_model.py), some missing.
  const float means[20] = {70, 2.0, 6.0, 5.0, 1500, 12, 400, 8,  60,  0.8,
                           45, 22,  70,  30,  120,  75, 40,  20, 300, 1};
  const float scales[20] = {8,  0.6, 2.0, 0.8, 200, 3, 10, 2, 6,   0.1,
                            10, 4,   15,  5,   60,  6, 8,  4, 200, 1.5};
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t rows = 500;
  std::vector<float> x(rows * 20);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = i % 97 == 0 ? kNaN : means[i % 20] + scales[i % 20] * normal(rng);
  }
  std::vector<float> prediction(rows);
  model.Predict(x, prediction);
  ExpectClose(prediction, XgboostPredict(booster, x, rows, 20, 0), 1e-6, "example prediction");
  std::vector<float> one(1);
  for (size_t r = 0; r < 10; ++r) {
    model.Predict(std::span<const float>(x).subspan(r * 20, 20), one);
    EXPECT_EQ(one[0], prediction[r]) << "row " << r << " alone vs in a batch";
  }
  std::vector<float> contributions(50 * model.contribution_width());
  model.PredictContributions(std::span<const float>(x).first(50 * 20), contributions);
  const std::vector<float> want = XgboostPredict(booster, x, rows, 20, 2);
  ExpectClose(contributions, std::vector<float>(want.begin(), want.begin() + contributions.size()),
              1e-5, "example contributions");
}

// ---- small hand-written models ----

// A one-tree model: node 0 splits feature 0 at 0.5 (missing goes left when default_left);
// leaves 1 (left) and 2 (right) hold -1 and +1.
std::string OneSplitModel(int default_left, const std::string& objective = "reg:squarederror",
                          const std::string& extra_tree_fields = "") {
  return R"({"learner": {"learner_model_param": {"base_score": "5E-1", "num_class": "0",
    "num_feature": "2", "num_target": "1"}, "objective": {"name": ")" +
         objective + R"("}, "gradient_booster": {"name": "gbtree", "model": {
    "gbtree_model_param": {"num_trees": "1"}, "tree_info": [0], "trees": [{
      "left_children": [1, -1, -1], "right_children": [2, -1, -1],
      "split_indices": [0, 0, 0], "split_conditions": [0.5, -1.0, 1.0],
      "default_left": [)" +
         std::to_string(default_left) + R"(, 0, 0], "sum_hessian": [4.0, 1.0, 3.0],
      "split_type": [0, 0, 0], "categories_nodes": [])" +
         extra_tree_fields + R"(,
      "tree_param": {"num_nodes": "3", "size_leaf_vector": "0"}}]}}},
    "version": [1, 7, 4]})";
}

std::vector<float> PredictRows(const TreeEnsemble& model, std::vector<float> x) {
  std::vector<float> out(x.size() / model.num_features() * model.prediction_width());
  model.Predict(x, out);
  return out;
}

TEST(TreeEnsembleTest, ThresholdEqualityGoesRightAndMissingFollowsDefault) {
  for (auto layout : {TreeEnsemble::Layout::kPerfect, TreeEnsemble::Layout::kGeneral}) {
    auto left_default = Compile(OneSplitModel(1), layout);
    ASSERT_TRUE(left_default.ok()) << left_default.status();
    // base_score 0.5 + leaf. x < 0.5 → left (-1); x == 0.5 → right (+1); NaN → default.
    EXPECT_THAT(PredictRows(**left_default, {0.4f, 0, 0.5f, 0, kNaN, 0}),
                ::testing::ElementsAre(-0.5f, 1.5f, -0.5f));
    auto right_default = Compile(OneSplitModel(0), layout);
    ASSERT_TRUE(right_default.ok());
    EXPECT_THAT(PredictRows(**right_default, {kNaN, 0, -INFINITY, kNaN, INFINITY, 0}),
                ::testing::ElementsAre(1.5f, -0.5f, 1.5f));
    // 9 rows take the block kernel: the same answers.
    std::vector<float> x;
    for (int i = 0; i < 9; ++i) x.insert(x.end(), {i % 3 == 0 ? kNaN : 0.5f * (i % 3), 0});
    EXPECT_THAT(PredictRows(**left_default, x),
                ::testing::ElementsAre(-0.5f, 1.5f, 1.5f, -0.5f, 1.5f, 1.5f, -0.5f, 1.5f, 1.5f));
  }
}

TEST(TreeEnsembleTest, NonFiniteLiteralsAsXgboostWritesThem) {
  // XGBoost writes NaN/Infinity as bare words. A NaN threshold sends every present value right
  // (x < NaN is false); words inside strings are left alone.
  std::string text = OneSplitModel(1);
  text.replace(text.find("[0.5, -1.0, 1.0]"), 16, "[NaN, -Infinity, 1.0]");
  text.replace(text.find("\"version\""), 9,
               "\"feature_names\": [\"NaN\", \"x-Infinity\"], \"version\"");
  for (auto layout : {TreeEnsemble::Layout::kPerfect, TreeEnsemble::Layout::kGeneral}) {
    auto model = Compile(text, layout);
    ASSERT_TRUE(model.ok()) << model.status();
    EXPECT_THAT(PredictRows(**model, {-1e30f, 0, kNaN, 0}),
                ::testing::ElementsAre(1.5f, -INFINITY));
  }
}

TEST(TreeEnsembleTest, ContributionsOfOneSplitAreExact) {
  auto model = Compile(OneSplitModel(1), TreeEnsemble::Layout::kAuto);
  ASSERT_TRUE(model.ok());
  // Expected value 0.25 * -1 + 0.75 * 1 = 0.5; a left row moves it to -1 (feature 0: -1.5).
  std::vector<float> contributions(3);
  (*model)->PredictContributions(std::vector<float>{0.0f, 7.0f}, contributions);
  EXPECT_THAT(contributions, ::testing::ElementsAre(-1.5f, 0.0f, 1.0f));  // bias 0.5 + 0.5
}

TEST(TreeEnsembleTest, ObjectiveTransforms) {
  auto logistic = Compile(OneSplitModel(1, "binary:logistic"), TreeEnsemble::Layout::kAuto);
  ASSERT_TRUE(logistic.ok());
  // base_score 0.5 → margin 0; right leaf +1 → sigmoid(1).
  EXPECT_FLOAT_EQ(PredictRows(**logistic, {1.0f, 0})[0], 1.0f / (1.0f + std::exp(-1.0f)));
  auto poisson = Compile(OneSplitModel(1, "count:poisson"), TreeEnsemble::Layout::kAuto);
  ASSERT_TRUE(poisson.ok());
  EXPECT_FLOAT_EQ(PredictRows(**poisson, {1.0f, 0})[0], 0.5f * std::exp(1.0f));
}

// ---- parse errors: clear statuses, never a crash or a hang ----

StatusCode ParseCode(std::string_view data) { return ParseXgboostModel(data).status().code(); }

TEST(XgboostJsonTest, RejectsMalformedFiles) {
  const std::string good = OneSplitModel(1);
  ASSERT_TRUE(ParseXgboostModel(good).ok());
  EXPECT_EQ(ParseCode(""), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCode("not json at all"), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCode("[1, 2, 3]"), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCode("{\"learner\": 5}"), StatusCode::kInvalidArgument);
  for (size_t cut : {size_t{1}, good.size() / 3, good.size() / 2, good.size() - 2}) {
    auto truncated = ParseXgboostModel(good.substr(0, cut));
    EXPECT_EQ(truncated.status().code(), StatusCode::kInvalidArgument) << cut;
  }
  const auto message = [](std::string_view data) {
    return ParseXgboostModel(data).status().message();
  };
  auto replace = [&good](const std::string& from, const std::string& to) {
    std::string text = good;
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return text.replace(at, from.size(), to);
  };
  EXPECT_THAT(
      message(replace("\"right_children\": [2, -1, -1]", "\"right_children\": [7, -1, -1]")),
      HasSubstr("out of range"));
  EXPECT_THAT(message(replace("\"right_children\": [2, -1, -1]", "\"right_children\": [2, 0, -1]")),
              HasSubstr("right child but no left"));
  EXPECT_THAT(message(replace("\"left_children\": [1, -1, -1], \"right_children\": [2, -1, -1]",
                              "\"left_children\": [1, 2, -1], \"right_children\": [2, 0, -1]")),
              HasSubstr("second time"));
  EXPECT_THAT(message(replace("\"split_indices\": [0, 0, 0]", "\"split_indices\": [2, 0, 0]")),
              HasSubstr("num_feature 2"));
  EXPECT_THAT(message(replace("\"sum_hessian\": [4.0, 1.0, 3.0]", "\"sum_hessian\": [4.0, 1.0]")),
              HasSubstr("sum_hessian"));
  EXPECT_THAT(message(replace("\"num_nodes\": \"3\"", "\"num_nodes\": \"4\"")),
              HasSubstr("num_nodes"));
  EXPECT_THAT(message(replace("\"tree_info\": [0]", "\"tree_info\": [1]")), HasSubstr("tree_info"));
  EXPECT_THAT(message(replace("\"num_trees\": \"1\"", "\"num_trees\": \"2\"")),
              HasSubstr("num_trees"));
  EXPECT_THAT(message(replace("\"split_conditions\": [0.5, -1.0, 1.0]",
                              "\"split_conditions\": [0.5, \"x\", 1.0]")),
              HasSubstr("split_conditions"));
  EXPECT_THAT(message(replace("\"num_feature\": \"2\"", "\"num_feature\": \"two\"")),
              HasSubstr("num_feature"));
  EXPECT_EQ(ParseCode(replace("\"learner_model_param\"", "\"params\"")),
            StatusCode::kInvalidArgument);
}

TEST(XgboostJsonTest, UnsupportedFeaturesAreUnimplemented) {
  const std::string good = OneSplitModel(1);
  auto replace = [&good](const std::string& from, const std::string& to) {
    std::string text = good;
    return text.replace(text.find(from), from.size(), to);
  };
  EXPECT_EQ(ParseCode(replace("\"split_type\": [0, 0, 0]", "\"split_type\": [1, 0, 0]")),
            StatusCode::kUnimplemented);
  EXPECT_EQ(ParseCode(replace("\"categories_nodes\": []", "\"categories_nodes\": [0]")),
            StatusCode::kUnimplemented);
  EXPECT_EQ(ParseCode(OneSplitModel(1, "rank:pairwise")), StatusCode::kUnimplemented);
  EXPECT_EQ(ParseCode(replace("\"num_target\": \"1\"", "\"num_target\": \"2\"")),
            StatusCode::kUnimplemented);
  EXPECT_EQ(ParseCode(replace("\"name\": \"gbtree\"", "\"name\": \"gblinear\"")),
            StatusCode::kUnimplemented);
  // The header parse accepts them all.
  auto header = ParseXgboostHeader(replace("\"name\": \"gbtree\"", "\"name\": \"gblinear\""));
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->booster, "gblinear");
  EXPECT_EQ(header->num_feature, 2);
  EXPECT_EQ(header->version, (std::vector<int>{1, 7, 4}));
}

TEST(XgboostJsonTest, BaseScoreOutsideTheObjectiveDomainIsRejected) {
  std::string model = OneSplitModel(1, "binary:logistic");
  model.replace(model.find("5E-1"), 4, "1.5");
  EXPECT_THAT(ParseXgboostModel(model).status().message(), HasSubstr("base_score"));
  EXPECT_FALSE(XgboostBaseMargin(XgboostObjective::kRegGamma, 0.0f).ok());
  EXPECT_EQ(*XgboostBaseMargin(XgboostObjective::kRegSquaredError, 0.25f), 0.25f);
}

TEST(XgboostJsonTest, HostileUbjsonIsRejectedQuickly) {
  // An array declaring 2^40 nulls in 13 bytes; nlohmann alone would loop for hours.
  std::string huge = "[$Z#L";
  for (int shift = 56; shift >= 0; shift -= 8)
    huge.push_back(static_cast<char>((1ull << 40) >> shift));
  EXPECT_THAT(ParseXgboostModel(huge, XgboostFormat::kUbjson).status().message(),
              HasSubstr("more than the file has bytes"));
  // Deep nesting would overflow the stack of the recursive UBJSON reader.
  const std::string deep(100000, '[');
  EXPECT_THAT(ParseXgboostModel(deep, XgboostFormat::kUbjson).status().message(),
              HasSubstr("nesting"));
  EXPECT_EQ(ParseXgboostModel(std::string(100000, '['), XgboostFormat::kJson).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(XgboostJsonTest, TruncatedUbjsonIsRejected) {
  Booster booster;
  const Dataset data = MakeData(200, 4, Task::kBinary, 0, 5, 0.0);
  ASSERT_NO_FATAL_FAILURE(Train(data, {{"objective", "binary:logistic"}}, 5, &booster));
  TempDir dir;
  const auto file = dir.path() / "model.ubj";
  XGB_CHECK(XGBoosterSaveModel(booster.get(), file.c_str()));
  const std::string full = ReadFile(file);
  ASSERT_TRUE(ParseXgboostModel(full).ok());
  for (size_t cut = 1; cut < full.size(); cut += full.size() / 37 + 1) {
    EXPECT_EQ(ParseXgboostModel(full.substr(0, cut)).status().code(), StatusCode::kInvalidArgument)
        << "cut at " << cut;
  }
}

TEST(XgboostJsonTest, CorruptedFilesNeverCrash) {
  // Seeded random corruption (byte flips, cuts, inserted bytes) of a small model in both
  // formats. Whatever still parses must also compile and evaluate; nothing may crash or hang.
  Booster booster;
  const Dataset data = MakeData(200, 4, Task::kMulticlass, 3, 8, 0.1);
  ASSERT_NO_FATAL_FAILURE(
      Train(data, {{"objective", "multi:softprob"}, {"num_class", "3"}, {"max_depth", "3"}}, 2,
            &booster));
  TempDir dir;
  std::mt19937 rng(12345);
  const int iterations = std::getenv("EDGELOOP_FUZZ_ITERATIONS") != nullptr
                             ? std::atoi(std::getenv("EDGELOOP_FUZZ_ITERATIONS"))
                             : 300;
  for (const char* extension : {".json", ".ubj"}) {
    const auto file = dir.path() / (std::string("model") + extension);
    XGB_CHECK(XGBoosterSaveModel(booster.get(), file.c_str()));
    const std::string original = ReadFile(file);
    int parsed = 0;
    for (int i = 0; i < iterations; ++i) {
      std::string text = original;
      const int edits = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < edits; ++e) {
        const size_t at = rng() % text.size();
        switch (rng() % 4) {
          case 0:
            text[at] = static_cast<char>(rng());
            break;
          case 1:
            text.resize(at + 1);
            break;
          case 2:
            text.insert(at, 1, "0123456789-[]{},\":.eE"[rng() % 22]);
            break;
          default:
            text[at] = static_cast<char>(text[at] ^ (1 << (rng() % 8)));
            break;
        }
      }
      auto model = ParseXgboostModel(text);
      if (!model.ok()) {
        EXPECT_FALSE(model.status().message().empty());
        continue;
      }
      ++parsed;
      auto ensemble = TreeEnsemble::Create(*model);
      ASSERT_TRUE(ensemble.ok()) << ensemble.status();
      const TreeEnsemble& compiled = **ensemble;
      const size_t features = static_cast<size_t>(compiled.num_features());
      if (features > 64) continue;
      std::vector<float> x(9 * features, 0.5f);
      x[0] = kNaN;
      std::vector<float> out(9 * compiled.prediction_width());
      compiled.Predict(x, out);
      std::vector<float> contributions(2 * compiled.contribution_width());
      compiled.PredictContributions(std::span<const float>(x).first(2 * features), contributions);
    }
    RecordProperty(std::string("parsed") + extension, parsed);
  }
}

// A chain: internal node i has children 2i + 1 (internal, or a leaf at the end) and 2i + 2
// (a leaf), so the tree is `depth` levels deep.
std::string ChainModel(int depth) {
  std::string left, right, features, conditions, flags, hessians;
  const int nodes = 2 * depth + 1;
  for (int i = 0; i < nodes; ++i) {
    const bool internal = i % 2 == 0 && i < 2 * depth;
    const std::string sep = i == 0 ? "" : ",";
    left += sep + std::to_string(internal ? i + 1 : -1);
    right += sep + std::to_string(internal ? i + 2 : -1);
    features += sep + "0";
    conditions += sep + std::to_string(internal ? -i : 1);
    flags += sep + "0";
    hessians += sep + "1";
  }
  return R"({"learner": {"learner_model_param": {"base_score": "0", "num_class": "0",
    "num_feature": "1"}, "objective": {"name": "reg:squarederror"}, "gradient_booster": {
    "name": "gbtree", "model": {"tree_info": [0], "trees": [{"left_children": [)" +
         left + "], \"right_children\": [" + right + "], \"split_indices\": [" + features +
         "], \"split_conditions\": [" + conditions + "], \"default_left\": [" + flags +
         "], \"sum_hessian\": [" + hessians + "]}]}}}}";
}

TEST(XgboostJsonTest, VeryDeepTreesAreRejected) {
  auto deep_but_fine = ParseXgboostModel(ChainModel(kMaxXgboostTreeDepth));
  ASSERT_TRUE(deep_but_fine.ok()) << deep_but_fine.status();
  EXPECT_EQ(deep_but_fine->trees[0].depth, kMaxXgboostTreeDepth);
  auto compiled = TreeEnsemble::Create(*deep_but_fine);
  ASSERT_TRUE(compiled.ok());
  EXPECT_EQ((*compiled)->layout(), TreeEnsemble::Layout::kGeneral);
  // 0.5 is not below the root's threshold 0: the root's right leaf, 1.
  EXPECT_THAT(PredictRows(**compiled, {0.5f}), ::testing::ElementsAre(1.0f));
  // -1000 goes left all the way down: the deepest TreeSHAP recursion.
  std::vector<float> contributions(2);
  (*compiled)->PredictContributions(std::vector<float>{-1000.0f}, contributions);
  EXPECT_TRUE(std::isfinite(contributions[0]) && std::isfinite(contributions[1]));
  EXPECT_EQ(ParseXgboostModel(ChainModel(kMaxXgboostTreeDepth + 1)).status().code(),
            StatusCode::kUnimplemented);
}

TEST(XgboostJsonTest, ObjectiveNamesRoundTrip) {
  for (const char* name :
       {"binary:logistic", "binary:logitraw", "reg:squarederror", "reg:squaredlogerror",
        "reg:pseudohubererror", "reg:absoluteerror", "reg:logistic", "reg:tweedie", "reg:gamma",
        "count:poisson", "multi:softprob", "multi:softmax"}) {
    auto objective = XgboostObjectiveFromName(name);
    ASSERT_TRUE(objective.has_value()) << name;
    EXPECT_EQ(XgboostObjectiveName(*objective), name);
  }
  EXPECT_FALSE(XgboostObjectiveFromName("survival:cox").has_value());
}

}  // namespace
}  // namespace edgeloop::inference
