#include "inference/xgboost_backend.h"

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
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/test_util.h"
#include "inference/model.h"

namespace edgeloop::inference {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

#define XGB_CHECK(call) ASSERT_EQ((call), 0) << XGBGetLastError()

class TempDir : public edgeloop::testing::TempDir {
 public:
  TempDir() : edgeloop::testing::TempDir("edgeloop_xgboost_backend_test") {}
};

using edgeloop::testing::SourceDir;

std::filesystem::path ExampleDir() { return edgeloop::testing::ExampleModelDir(); }

// The rows of examples/data/machine_failure_sample.csv plus `extra` noisy copies of them.
std::vector<float> ExampleRows(size_t extra) {
  std::ifstream in(SourceDir() / "examples/data/machine_failure_sample.csv");
  std::string line;
  std::getline(in, line);  // header
  std::vector<float> rows;
  while (std::getline(in, line)) {
    std::stringstream fields(line);
    std::string field;
    while (std::getline(fields, field, ',')) rows.push_back(std::strtof(field.c_str(), nullptr));
  }
  const size_t base = rows.size() / 20;
  std::mt19937 rng(17);
  std::normal_distribution<float> noise(0.0f, 0.15f);
  for (size_t r = 0; r < extra; ++r) {
    for (size_t f = 0; f < 20; ++f) {
      const float value = rows[(r % base) * 20 + f];
      rows.push_back(r % 11 == f ? kNaN : value * (1.0f + noise(rng)));
    }
  }
  return rows;
}

Tensor Features(const std::vector<float>& values, int64_t features) {
  Tensor tensor("features", DataType::kFp32,
                {static_cast<int64_t>(values.size()) / features, features});
  std::copy(values.begin(), values.end(), tensor.values<float>().begin());
  return tensor;
}

std::vector<float> Values(const Tensor& tensor) {
  auto values = tensor.values<float>();
  return {values.begin(), values.end()};
}

void ExpectClose(const std::vector<float>& actual, const std::vector<float>& expected,
                 double tolerance, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  int failures = 0;
  for (size_t i = 0; i < actual.size() && failures < 5; ++i) {
    const double bound = tolerance * std::max(1.0, std::fabs(static_cast<double>(expected[i])));
    if (!(std::fabs(static_cast<double>(actual[i]) - expected[i]) <= bound)) {
      ADD_FAILURE() << what << ": value " << i << " is " << actual[i] << " vs " << expected[i];
      ++failures;
    }
  }
}

// Runs `model` on `rows` and returns the outputs `indices` (default: every configured output).
std::vector<std::vector<float>> RunAll(const Model& model, const ModelConfig& config,
                                       const std::vector<float>& rows,
                                       std::vector<int> indices = {}) {
  const int64_t features = config.inputs[0].shape[1];
  std::vector<Tensor> inputs;
  inputs.push_back(Features(rows, features));
  if (indices.empty()) {
    for (size_t i = 0; i < config.outputs.size(); ++i) indices.push_back(static_cast<int>(i));
  }
  std::vector<Tensor> outputs;
  Status status = model.Predict(inputs, indices, &outputs);
  EXPECT_TRUE(status.ok()) << status;
  std::vector<std::vector<float>> values;
  for (const Tensor& output : outputs) values.push_back(Values(output));
  return values;
}

ModelConfig ExampleConfig(const std::string& backend) {
  auto config = LoadModelConfig(ExampleDir(), "machine-failure", 1);
  EXPECT_TRUE(config.ok()) << config.status();
  if (!config.ok()) return ModelConfig();
  ModelConfig result = *config;
  result.backend = backend;
  return result;
}

// ---- the example model: both backends, same answers ----

TEST(XgboostBackendTest, ExampleModelBackendsAgree) {
  const ModelConfig native_config = ExampleConfig("native");
  auto native = LoadModel(native_config);
  ASSERT_TRUE(native.ok()) << native.status();
  auto capi = LoadModel(ExampleConfig("capi"));
  ASSERT_TRUE(capi.ok()) << capi.status();
  EXPECT_EQ((*native)->platform(), "xgboost_native");
  EXPECT_EQ((*capi)->platform(), "xgboost");
  auto defaulted = LoadModel(ExampleConfig(""));
  ASSERT_TRUE(defaulted.ok());
  EXPECT_EQ((*defaulted)->platform(), "xgboost_native");

  const std::vector<float> rows = ExampleRows(300);
  const auto want = RunAll(**capi, native_config, rows);
  const auto got = RunAll(**native, native_config, rows);
  ASSERT_EQ(got.size(), 2u);
  ASSERT_EQ(want.size(), 2u);
  ExpectClose(got[0], want[0], 1e-6, "probability");
  ExpectClose(got[1], want[1], 1e-5, "contributions");
  // One row at a time.
  for (size_t r = 0; r < 20; ++r) {
    std::vector<float> row(rows.begin() + r * 20, rows.begin() + (r + 1) * 20);
    ExpectClose(RunAll(**native, native_config, row)[0], {want[0][r]}, 1e-6, "one row");
  }
}

// ---- other objectives through the Model interface ----

void Train(size_t rows, size_t features, const std::map<std::string, std::string>& params,
           int rounds, const std::vector<const char*>& feature_types,
           const std::filesystem::path& file) {
  std::mt19937 rng(23);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(rows * features);
  std::vector<float> y(rows);
  const int classes = params.count("num_class") ? std::stoi(params.at("num_class")) : 2;
  for (size_t r = 0; r < rows; ++r) {
    for (size_t f = 0; f < features; ++f) {
      x[r * features + f] = f < feature_types.size() && feature_types[f][0] == 'c'
                                ? static_cast<float>(rng() % 6)
                                : normal(rng);
    }
    const float z = x[r * features] + x[r * features + 1] * x[r * features + 2];
    y[r] = params.at("objective") == "count:poisson"
               ? std::floor(std::exp(0.5f * z))
               : static_cast<float>(std::clamp(static_cast<int>(z + 1.5f), 0, classes - 1));
  }
  DMatrixHandle train = nullptr;
  XGB_CHECK(XGDMatrixCreateFromMat(x.data(), rows, features, kNaN, &train));
  XGB_CHECK(XGDMatrixSetFloatInfo(train, "label", y.data(), rows));
  if (!feature_types.empty()) {
    std::vector<const char*> types = feature_types;
    XGB_CHECK(XGDMatrixSetStrFeatureInfo(train, "feature_type", types.data(), types.size()));
  }
  BoosterHandle booster = nullptr;
  XGB_CHECK(XGBoosterCreate(&train, 1, &booster));
  XGB_CHECK(XGBoosterSetParam(booster, "nthread", "1"));
  XGB_CHECK(XGBoosterSetParam(booster, "seed", "3"));
  XGB_CHECK(XGBoosterSetParam(booster, "verbosity", "0"));
  for (const auto& [key, value] : params) {
    XGB_CHECK(XGBoosterSetParam(booster, key.c_str(), value.c_str()));
  }
  for (int i = 0; i < rounds; ++i) XGB_CHECK(XGBoosterUpdateOneIter(booster, i, train));
  XGB_CHECK(XGBoosterSaveModel(booster, file.c_str()));
  XGBoosterFree(booster);
  XGDMatrixFree(train);
}

ModelConfig MakeConfig(const std::filesystem::path& file, const std::string& backend,
                       int64_t features, std::vector<TensorSpec> outputs) {
  ModelConfig config;
  config.name = "test";
  config.version = 1;
  config.version_dir = file.parent_path();
  config.framework = "xgboost";
  config.backend = backend;
  config.model_file = file;
  config.inputs = {{"features", DataType::kFp32, {-1, features}, ""}};
  config.outputs = std::move(outputs);
  return config;
}

std::vector<float> RandomRows(size_t rows, size_t features, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.2f);
  std::vector<float> x(rows * features);
  for (size_t i = 0; i < x.size(); ++i) x[i] = i % 13 == 5 ? kNaN : normal(rng);
  return x;
}

void ExpectBackendsAgree(const ModelConfig& config, size_t rows) {
  ModelConfig capi_config = config;
  capi_config.backend = "capi";
  auto native = LoadModel(config);
  ASSERT_TRUE(native.ok()) << native.status();
  auto capi = LoadModel(capi_config);
  ASSERT_TRUE(capi.ok()) << capi.status();
  const std::vector<float> x = RandomRows(rows, config.inputs[0].shape[1], 41);
  const auto got = RunAll(**native, config, x);
  const auto want = RunAll(**capi, config, x);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const bool contributions = config.outputs[i].kind == "contributions";
    ExpectClose(got[i], want[i], contributions ? 1e-5 : 1e-6, config.outputs[i].name);
  }
}

TEST(XgboostBackendTest, MulticlassShapesAndValues) {
  TempDir dir;
  const auto softprob = dir.path() / "softprob.ubj";
  ASSERT_NO_FATAL_FAILURE(
      Train(400, 5, {{"objective", "multi:softprob"}, {"num_class", "3"}}, 8, {}, softprob));
  ExpectBackendsAgree(MakeConfig(softprob, "native", 5,
                                 {{"probabilities", DataType::kFp32, {-1, 3}, "prediction"},
                                  {"margins", DataType::kFp32, {-1, 3}, "margin"},
                                  {"contributions", DataType::kFp32, {-1, 3, 6}, "contributions"}}),
                      300);
  const auto softmax = dir.path() / "softmax.json";
  ASSERT_NO_FATAL_FAILURE(
      Train(400, 5, {{"objective", "multi:softmax"}, {"num_class", "4"}}, 8, {}, softmax));
  ExpectBackendsAgree(MakeConfig(softmax, "native", 5,
                                 {{"class", DataType::kFp32, {-1}, ""},
                                  {"margins", DataType::kFp32, {-1, 4}, "margin"}}),
                      300);
}

TEST(XgboostBackendTest, RegressionAndDartAgree) {
  TempDir dir;
  const auto poisson = dir.path() / "poisson.json";
  ASSERT_NO_FATAL_FAILURE(Train(400, 4, {{"objective", "count:poisson"}}, 10, {}, poisson));
  ExpectBackendsAgree(MakeConfig(poisson, "native", 4,
                                 {{"rate", DataType::kFp32, {-1, 1}, "prediction"},
                                  {"log_rate", DataType::kFp32, {-1}, "margin"},
                                  {"why", DataType::kFp32, {-1, 5}, "contributions"}}),
                      200);
  const auto dart = dir.path() / "dart.json";
  ASSERT_NO_FATAL_FAILURE(Train(400, 4,
                                {{"objective", "binary:logistic"},
                                 {"booster", "dart"},
                                 {"rate_drop", "0.3"},
                                 {"skip_drop", "0"}},
                                10, {}, dart));
  ExpectBackendsAgree(MakeConfig(dart, "native", 4,
                                 {{"p", DataType::kFp32, {-1}, ""},
                                  {"why", DataType::kFp32, {-1, 5}, "contributions"}}),
                      200);
}

TEST(XgboostBackendTest, PredictionAfterMarginInOneCall) {
  const ModelConfig config = MakeConfig(
      ExampleDir() / "model.json", "native", 20,
      {{"margin", DataType::kFp32, {-1}, "margin"}, {"probability", DataType::kFp32, {-1, 1}, ""}});
  auto model = LoadModel(config);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<float> rows = ExampleRows(50);
  const auto both = RunAll(**model, config, rows);
  ASSERT_EQ(both.size(), 2u);
  std::vector<Tensor> inputs;
  inputs.push_back(Features(rows, 20));
  std::vector<Tensor> outputs;
  ASSERT_TRUE((*model)->Predict(inputs, std::vector<int>{1}, &outputs).ok());
  EXPECT_EQ(Values(outputs[0]), both[1]);
  for (size_t i = 0; i < both[0].size(); ++i) {
    EXPECT_FLOAT_EQ(both[1][i], 1.0f / (1.0f + std::exp(-both[0][i])));
  }
}

TEST(XgboostBackendTest, ZeroRowsGiveEmptyOutputs) {
  for (const char* backend : {"native", "capi"}) {
    auto model = LoadModel(ExampleConfig(backend));
    ASSERT_TRUE(model.ok()) << model.status();
    std::vector<Tensor> inputs;
    inputs.emplace_back("features", DataType::kFp32, Shape{0, 20});
    std::vector<Tensor> outputs;
    ASSERT_TRUE((*model)->Predict(inputs, std::vector<int>{0, 1}, &outputs).ok()) << backend;
    ASSERT_EQ(outputs.size(), 2u);
    EXPECT_EQ(outputs[0].shape(), (Shape{0}));
    EXPECT_EQ(outputs[1].shape(), (Shape{0, 21}));
    EXPECT_EQ(outputs[1].name(), "contributions");
  }
}

TEST(XgboostBackendTest, ConcurrentPredictionsMatchSequentialOnes) {
  for (const char* backend : {"native", "capi"}) {
    const ModelConfig config = ExampleConfig(backend);
    auto loaded = LoadModel(config);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const Model& model = **loaded;
    constexpr int kThreads = 4;
    std::vector<std::vector<float>> rows;  // per thread, for predictions
    std::vector<std::vector<float>> few;   // per thread, for all outputs (contributions)
    std::vector<std::vector<float>> expected_predictions;
    std::vector<std::vector<std::vector<float>>> expected_all;
    for (int t = 0; t < kThreads; ++t) {
      rows.push_back(ExampleRows(static_cast<size_t>(30 * t)));
      few.emplace_back(rows.back().end() - 3 * 20, rows.back().end());
      expected_predictions.push_back(RunAll(model, config, rows.back(), {0})[0]);
      expected_all.push_back(RunAll(model, config, few.back()));
    }
    std::vector<int> mismatches(kThreads, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 40; ++i) {
          if (RunAll(model, config, rows[t], {0})[0] != expected_predictions[t]) ++mismatches[t];
          // Contributions too (XGBoost's DMatrix path), on a few rows.
          if (i % 4 == 0 && RunAll(model, config, few[t]) != expected_all[t]) ++mismatches[t];
        }
      });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(mismatches, std::vector<int>(kThreads, 0)) << backend;
  }
}

TEST(XgboostBackendTest, PredictRejectsBadRequests) {
  auto model = LoadModel(ExampleConfig("native"));
  ASSERT_TRUE(model.ok());
  std::vector<Tensor> inputs;
  inputs.emplace_back("features", DataType::kFp32, Shape{2, 19});
  std::vector<Tensor> outputs;
  EXPECT_EQ((*model)->Predict(inputs, std::vector<int>{0}, &outputs).code(),
            StatusCode::kInvalidArgument);
  inputs[0] = Tensor("features", DataType::kFp32, Shape{2, 20});
  EXPECT_EQ((*model)->Predict(inputs, std::vector<int>{2}, &outputs).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ((*model)->Predict({}, std::vector<int>{0}, &outputs).code(),
            StatusCode::kInvalidArgument);
}

// ---- load errors ----

Status LoadStatus(const ModelConfig& config) {
  auto model = LoadModel(config);
  return model.ok() ? Status::Ok() : model.status();
}

TEST(XgboostBackendTest, ConfigMustFitTheModel) {
  for (const char* backend : {"native", "capi"}) {
    SCOPED_TRACE(backend);
    ModelConfig config = ExampleConfig(backend);
    config.inputs[0].shape = {-1, 19};
    Status status = LoadStatus(config);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), AllOf(HasSubstr("'features'"), HasSubstr("[-1, 20]")));

    config = ExampleConfig(backend);
    config.outputs[0].shape = {-1, 2};
    status = LoadStatus(config);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), AllOf(HasSubstr("'probability'"), HasSubstr("[-1] or [-1, 1]")));

    config = ExampleConfig(backend);
    config.outputs[1].shape = {-1, 20};
    EXPECT_THAT(LoadStatus(config).message(),
                AllOf(HasSubstr("'contributions'"), HasSubstr("[-1, 21]")));

    config = ExampleConfig(backend);
    config.outputs[0].kind = "probability";
    EXPECT_THAT(LoadStatus(config).message(), HasSubstr("unknown kind 'probability'"));

    config = ExampleConfig(backend);
    config.outputs[0].datatype = DataType::kFp64;
    EXPECT_EQ(LoadStatus(config).code(), StatusCode::kInvalidArgument);

    config = ExampleConfig(backend);
    config.inputs[0].datatype = DataType::kInt64;
    EXPECT_EQ(LoadStatus(config).code(), StatusCode::kInvalidArgument);

    config = ExampleConfig(backend);
    config.inputs.push_back({"more", DataType::kFp32, {-1, 20}, ""});
    EXPECT_THAT(LoadStatus(config).message(), HasSubstr("exactly one input"));
  }
}

TEST(XgboostBackendTest, UnknownBackendIsInvalid) {
  ModelConfig config = ExampleConfig("onnx");
  Status status = LoadStatus(config);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'onnx'"));
}

TEST(XgboostBackendTest, BadParametersAreInvalid) {
  ModelConfig config = ExampleConfig("capi");
  config.parameters["nthread"] = "many";
  EXPECT_THAT(LoadStatus(config).message(), HasSubstr("nthread"));
  config.parameters["nthread"] = "2";
  EXPECT_TRUE(LoadStatus(config).ok());
}

TEST(XgboostBackendTest, BrokenFilesGiveClearErrors) {
  TempDir dir;
  std::ifstream in(ExampleDir() / "model.json", std::ios::binary);
  const std::string full((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto write = [&dir](const std::string& name, const std::string& content) {
    std::ofstream(dir.path() / name, std::ios::binary) << content;
    return dir.path() / name;
  };
  const auto truncated = write("truncated.json", full.substr(0, full.size() * 2 / 3));
  const auto garbage = write("garbage.json", "\x89PNG\r\n\x1a\n not a model");
  const auto empty = write("empty.json", "");
  for (const char* backend : {"native", "capi"}) {
    for (const auto& file : {truncated, garbage, empty}) {
      ModelConfig config = ExampleConfig(backend);
      config.model_file = file;
      Status status = LoadStatus(config);
      EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << backend << " " << file << status;
      EXPECT_THAT(status.message(), HasSubstr(file.filename().string()));
    }
  }
  ModelConfig config = ExampleConfig("native");
  config.model_file = dir.path() / "missing.json";
  EXPECT_EQ(LoadStatus(config).code(), StatusCode::kNotFound);
  config = ExampleConfig("capi");
  config.model_file = write("model.bin", full);
  EXPECT_THAT(LoadStatus(config).message(), HasSubstr(".json or .ubj"));
}

TEST(XgboostBackendTest, LinearBoosterRunsOnCapiOnly) {
  TempDir dir;
  const auto file = dir.path() / "linear.json";
  ASSERT_NO_FATAL_FAILURE(
      Train(300, 4, {{"objective", "count:poisson"}, {"booster", "gblinear"}}, 5, {}, file));
  ModelConfig config = MakeConfig(file, "native", 4,
                                  {{"margin", DataType::kFp32, {-1}, "margin"},
                                   {"why", DataType::kFp32, {-1, 5}, "contributions"}});
  EXPECT_EQ(LoadStatus(config).code(), StatusCode::kUnimplemented);
  config.backend = "capi";
  auto capi = LoadModel(config);
  ASSERT_TRUE(capi.ok()) << capi.status();
  const auto out = RunAll(**capi, config, RandomRows(6, 4, 2));
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(out[0].size(), 6u);
  for (size_t r = 0; r < 6; ++r) {  // a linear model's contributions add up to its margin
    float total = 0.0f;
    for (size_t c = 0; c < 5; ++c) total += out[1][r * 5 + c];
    EXPECT_NEAR(total, out[0][r], 1e-5) << r;
  }
}

TEST(XgboostBackendTest, CategoricalModelsNeedTheCapiBackend) {
  TempDir dir;
  const auto file = dir.path() / "categorical.json";
  ASSERT_NO_FATAL_FAILURE(
      Train(400, 4,
            {{"objective", "binary:logistic"}, {"tree_method", "hist"}, {"max_cat_to_onehot", "1"}},
            5, {"c", "q", "q", "q"}, file));
  ModelConfig config = MakeConfig(file, "native", 4, {{"p", DataType::kFp32, {-1}, "prediction"}});
  Status status = LoadStatus(config);
  EXPECT_EQ(status.code(), StatusCode::kUnimplemented);
  EXPECT_THAT(status.message(), AllOf(HasSubstr("categorical"), HasSubstr("capi")));
  config.backend = "capi";
  auto capi = LoadModel(config);
  ASSERT_TRUE(capi.ok()) << capi.status();
  const auto out = RunAll(**capi, config, RandomRows(5, 4, 1));
  ASSERT_EQ(out[0].size(), 5u);
}

}  // namespace
}  // namespace edgeloop::inference
