#include "inference/outlier_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "anomaly/tabular.h"
#include "common/test_util.h"
#include "inference/model.h"

namespace edgeloop::inference {
namespace {

constexpr char kYaml[] = R"(framework: outlier
model_file: detector.json
inputs:  [{name: features, datatype: FP32, shape: [-1, 3]}]
outputs: [{name: score, datatype: FP64, shape: [-1], kind: prediction},
          {name: anomaly, datatype: BOOL, shape: [-1]}]
parameters: {threshold: "0.6"}
)";

std::vector<float> Rows(int64_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal;
  std::vector<float> rows(static_cast<size_t>(n) * 3);
  for (float& v : rows) v = normal(gen);
  return rows;
}

class OutlierBackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  // Fits a detector of the test's kind on 500 rows and writes it to the version folder.
  void SetUp() override {
    const std::vector<float> train = Rows(500, 1);
    auto fitted = anomaly::FitTabularDetector(train.data(), 500, 3, {GetParam(), 7, {}});
    ASSERT_TRUE(fitted.ok()) << fitted.status();
    detector_ = std::move(fitted).value();
    Write("detector.json", detector_->Serialize());
  }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_.path() / name, std::ios::binary | std::ios::trunc) << text;
  }

  StatusOr<std::unique_ptr<Model>> Load(const std::string& yaml) {
    auto config = ParseModelConfig(yaml, "detector", 1, dir_.path());
    if (!config.ok()) return config.status();
    return LoadModel(*config);
  }

  testing::TempDir dir_{"edgeloop_outlier_backend_test"};
  std::unique_ptr<anomaly::TabularDetector> detector_;
};

INSTANTIATE_TEST_SUITE_P(Kinds, OutlierBackendTest, ::testing::Values("isolation_forest", "ecod"),
                         [](const auto& param_info) { return param_info.param; });

TEST_P(OutlierBackendTest, ScoresMatchTheLibraryAndVerdictsFollowTheThreshold) {
  auto model = Load(kYaml);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->platform(), "outlier_" + GetParam());

  std::vector<float> rows = Rows(200, 2);
  rows[0] = rows[1] = rows[2] = 40.0f;  // an outlier
  rows[4] = std::numeric_limits<float>::quiet_NaN();
  rows[8] = std::numeric_limits<float>::infinity();
  Tensor input("features", DataType::kFp32, {200, 3});
  std::copy(rows.begin(), rows.end(), input.values<float>().begin());
  std::vector<double> expected(200);
  detector_->Score(rows.data(), 200, expected.data());

  std::vector<Tensor> outputs;
  const std::vector<int> both = {1, 0};
  ASSERT_TRUE((*model)->Predict({&input, 1}, both, &outputs).ok());
  ASSERT_EQ(outputs.size(), 2u);
  EXPECT_EQ(outputs[0].name(), "anomaly");
  EXPECT_EQ(outputs[1].name(), "score");
  EXPECT_EQ(outputs[1].shape(), (Shape{200}));
  int flagged = 0;
  for (size_t r = 0; r < 200; ++r) {
    EXPECT_EQ(outputs[1].values<double>()[r], expected[r]) << "row " << r;
    EXPECT_EQ(outputs[0].values<uint8_t>()[r] != 0, expected[r] >= 0.6) << "row " << r;
    flagged += outputs[0].values<uint8_t>()[r];
  }
  EXPECT_EQ(outputs[0].values<uint8_t>()[0], 1);
  EXPECT_LT(flagged, 100);

  // The verdict alone still scores; zero rows give empty outputs.
  const std::vector<int> verdict_only = {1};
  ASSERT_TRUE((*model)->Predict({&input, 1}, verdict_only, &outputs).ok());
  ASSERT_EQ(outputs.size(), 1u);
  EXPECT_EQ(outputs[0].values<uint8_t>()[0], 1);
  Tensor empty("features", DataType::kFp32, {0, 3});
  ASSERT_TRUE((*model)->Predict({&empty, 1}, both, &outputs).ok());
  EXPECT_EQ(outputs[0].shape(), (Shape{0}));
}

TEST_P(OutlierBackendTest, Fp32ScoreAndColumnShapes) {
  auto model = Load(R"(framework: outlier
model_file: detector.json
inputs:  [{name: x, datatype: FP32, shape: [-1, 3]}]
outputs: [{name: s, datatype: FP32, shape: [-1, 1]}, {name: v, datatype: BOOL, shape: [-1, 1]}]
parameters: {threshold: "0"}
)");
  ASSERT_TRUE(model.ok()) << model.status();
  std::vector<float> rows = Rows(5, 3);
  Tensor input("x", DataType::kFp32, {5, 3});
  std::copy(rows.begin(), rows.end(), input.values<float>().begin());
  std::vector<double> expected(5);
  detector_->Score(rows.data(), 5, expected.data());
  std::vector<Tensor> outputs;
  const std::vector<int> both = {0, 1};
  ASSERT_TRUE((*model)->Predict({&input, 1}, both, &outputs).ok());
  EXPECT_EQ(outputs[0].shape(), (Shape{5, 1}));
  for (size_t r = 0; r < 5; ++r) {
    EXPECT_EQ(outputs[0].values<float>()[r], static_cast<float>(expected[r]));
    EXPECT_EQ(outputs[1].values<uint8_t>()[r], 1);  // threshold 0 flags everything
  }
}

TEST_P(OutlierBackendTest, RejectsDeclarationsThatDoNotFit) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"(framework: outlier
model_file: detector.json
inputs: [{name: features, datatype: FP32, shape: [-1, 4]}]
outputs: [{name: score, datatype: FP64, shape: [-1]}]
)",
       "must have shape [-1, 3] (the detector in detector.json has 3 features)"},
      {R"(framework: outlier
model_file: detector.json
inputs: [{name: features, datatype: FP64, shape: [-1, 3]}]
outputs: [{name: score, datatype: FP64, shape: [-1]}]
)",
       "must be FP32"},
      {R"(framework: outlier
model_file: detector.json
inputs: [{name: features, datatype: FP32, shape: [-1, 3]}]
outputs: [{name: anomaly, datatype: BOOL, shape: [-1]}]
)",
       "parameters.threshold is required"},
      {R"(framework: outlier
model_file: detector.json
inputs: [{name: features, datatype: FP32, shape: [-1, 3]}]
outputs: [{name: anomaly, datatype: BOOL, shape: [-1]}]
parameters: {threshold: "high"}
)",
       "parameters.threshold must be a number in [0, 1], got 'high'"},
      {R"(framework: outlier
model_file: detector.json
inputs: [{name: features, datatype: FP32, shape: [-1, 3]}]
outputs: [{name: score, datatype: INT32, shape: [-1]}]
)",
       "must be FP64 or FP32"},
      {R"(framework: outlier
model_file: detector.json
inputs: [{name: features, datatype: FP32, shape: [-1, 3]}]
outputs: [{name: score, datatype: FP64, shape: [-1], kind: anomaly}]
parameters: {threshold: "0.5"}
)",
       "must be BOOL"},
      {R"(framework: outlier
model_file: detector.json
inputs: [{name: features, datatype: FP32, shape: [-1, 3]}]
outputs: [{name: score, datatype: FP64, shape: [-1], kind: margin}]
)",
       "unknown kind 'margin'"},
      {R"(framework: outlier
model_file: detector.json
inputs: [{name: features, datatype: FP32, shape: [-1, 3]}]
outputs: [{name: score, datatype: FP64, shape: [-1, 2]}]
)",
       "must have shape [-1] or [-1, 1]"},
  };
  for (const auto& [yaml, message] : cases) {
    auto model = Load(yaml);
    ASSERT_FALSE(model.ok()) << yaml;
    EXPECT_EQ(model.status().code(), StatusCode::kInvalidArgument) << model.status();
    EXPECT_NE(model.status().message().find(message), std::string::npos) << model.status();
  }
}

TEST_P(OutlierBackendTest, BadModelFilesGiveClearErrors) {
  const std::string good = detector_->Serialize();
  Write("detector.json", good.substr(0, good.size() / 2));
  auto truncated = Load(kYaml);
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(truncated.status().message().find("detector.json: tabular detector file is not "
                                              "valid JSON"),
            std::string::npos)
      << truncated.status();

  Write("detector.json", R"({"format": "edgeloop.tabular_detector", "version": 1,
                             "kind": ")" +
                             GetParam() + R"(", "num_features": 3})");
  auto incomplete = Load(kYaml);
  ASSERT_FALSE(incomplete.ok());
  EXPECT_EQ(incomplete.status().code(), StatusCode::kDataLoss) << incomplete.status();

  std::filesystem::remove(dir_.path() / "detector.json");
  auto missing = Load(kYaml);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status();
}

TEST_P(OutlierBackendTest, RejectsInputsOfTheWrongShape) {
  auto model = Load(kYaml);
  ASSERT_TRUE(model.ok()) << model.status();
  Tensor input("features", DataType::kFp32, {2, 4});
  std::vector<Tensor> outputs;
  const std::vector<int> score = {0};
  const Status status = (*model)->Predict({&input, 1}, score, &outputs);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("must be FP32 with shape [rows, 3]"), std::string::npos);
}

}  // namespace
}  // namespace edgeloop::inference
