#include "inference/streaming_backend.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/test_util.h"

namespace edgeloop::inference {
namespace {

namespace fs = std::filesystem;

class StreamingBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_.path() / "detector.yaml") << "detector: ewma\nprobation: 20\n";
  }

  ModelConfig Config(std::map<std::string, std::string> params = {}) {
    ModelConfig config;
    config.name = "sensor";
    config.version = 1;
    config.version_dir = dir_.path();
    config.framework = "streaming_anomaly";
    config.model_file = dir_.path() / "detector.yaml";
    config.inputs = {{"timestamp", DataType::kInt64, {-1}, ""},
                     {"value", DataType::kFp64, {-1}, ""},
                     {"series", DataType::kBytes, {-1}, ""}};
    config.outputs = {{"score", DataType::kFp64, {-1}, ""}, {"anomaly", DataType::kBool, {-1}, ""}};
    params.emplace("state_dir", (dir_.path() / "state").string());
    config.parameters = params;
    return config;
  }

  // Sends rows (series, ts, value); returns the scores.
  StatusOr<std::vector<double>> Send(const Model& model, const std::vector<std::string>& keys,
                                     const std::vector<int64_t>& ts,
                                     const std::vector<double>& values) {
    const int64_t n = static_cast<int64_t>(ts.size());
    std::vector<Tensor> inputs;
    inputs.emplace_back("timestamp", DataType::kInt64, Shape{n});
    inputs.emplace_back("value", DataType::kFp64, Shape{n});
    inputs.emplace_back("series", DataType::kBytes, Shape{n});
    for (int64_t i = 0; i < n; ++i) {
      inputs[0].values<int64_t>()[static_cast<size_t>(i)] = ts[static_cast<size_t>(i)];
      inputs[1].values<double>()[static_cast<size_t>(i)] = values[static_cast<size_t>(i)];
    }
    inputs[2].strings() = keys;
    std::vector<Tensor> outputs;
    const int indices[] = {0, 1};
    RETURN_IF_ERROR(model.Predict(inputs, indices, &outputs));
    EXPECT_EQ(outputs.size(), 2u);
    auto scores = outputs[0].values<double>();
    return std::vector<double>(scores.begin(), scores.end());
  }

  StatusOr<std::vector<double>> Wave(const Model& model, const std::string& key, int64_t t0, int n,
                                     double shift = 0) {
    std::vector<std::string> keys(static_cast<size_t>(n), key);
    std::vector<int64_t> ts;
    std::vector<double> values;
    for (int i = 0; i < n; ++i) {
      ts.push_back(t0 + i * 1000);
      values.push_back(std::sin(i / 4.0) + shift);
    }
    return Send(model, keys, ts, values);
  }

  fs::path Checkpoint() const { return dir_.path() / "state" / "sensor" / "1.ckpt"; }

  testing::TempDir dir_;
  FakeClock clock_;
};

TEST_F(StreamingBackendTest, UnloadWritesACheckpointThatTheNextLoadContinuesFrom) {
  std::vector<double> continued, fresh;
  {
    auto model = LoadStreamingModel(Config(), &clock_);
    ASSERT_TRUE(model.ok()) << model.status();
    ASSERT_TRUE(Wave(**model, "a", 0, 200).ok());
  }
  ASSERT_TRUE(fs::exists(Checkpoint()));
  {
    auto model = LoadStreamingModel(Config(), &clock_);
    ASSERT_TRUE(model.ok());
    auto scores = Wave(**model, "a", 1000000, 10, 5.0);  // a shifted level: anomalous
    ASSERT_TRUE(scores.ok()) << scores.status();
    continued = *scores;
    // The restored series remembers its last timestamp.
    EXPECT_FALSE(Wave(**model, "a", 0, 1).ok());
  }
  fs::remove(Checkpoint());
  auto model = LoadStreamingModel(Config(), &clock_);
  ASSERT_TRUE(model.ok());
  fresh = *Wave(**model, "a", 1000000, 10, 5.0);
  EXPECT_GT(continued[0], 0.5);
  EXPECT_EQ(fresh[0], 0.0);  // a fresh series is still in its probation period
}

TEST_F(StreamingBackendTest, CheckpointsAfterNPointsOrTSeconds) {
  auto model = LoadStreamingModel(
      Config({{"checkpoint_points", "100"}, {"checkpoint_interval_s", "30"}}), &clock_);
  ASSERT_TRUE(model.ok());
  ASSERT_TRUE(Wave(**model, "a", 0, 50).ok());
  EXPECT_FALSE(fs::exists(Checkpoint()));
  ASSERT_TRUE(Wave(**model, "a", 100000, 60).ok());  // 110 points: due
  ASSERT_TRUE(fs::exists(Checkpoint()));
  const auto size = fs::file_size(Checkpoint());
  ASSERT_TRUE(Wave(**model, "b", 0, 5).ok());
  EXPECT_EQ(fs::file_size(Checkpoint()), size);  // 5 points, no time passed: not due
  clock_.Advance(std::chrono::seconds(31));
  ASSERT_TRUE(Wave(**model, "b", 100000, 1).ok());
  EXPECT_NE(fs::file_size(Checkpoint()), size);  // time passed: due
}

TEST_F(StreamingBackendTest, CorruptCheckpointStartsFresh) {
  fs::create_directories(Checkpoint().parent_path());
  std::ofstream(Checkpoint()) << "not a checkpoint";
  auto model = LoadStreamingModel(Config(), &clock_);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE(Wave(**model, "a", 0, 10).ok());
}

TEST_F(StreamingBackendTest, BadInputsAndConfigurationsAreInvalidArgument) {
  auto model = LoadStreamingModel(Config(), &clock_);
  ASSERT_TRUE(model.ok());
  auto nan = Send(**model, {"a"}, {1}, {std::nan("")});
  EXPECT_EQ(nan.status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(Send(**model, {"a"}, {10}, {1.0}).ok());
  EXPECT_EQ(Send(**model, {"a"}, {9}, {1.0}).status().code(), StatusCode::kInvalidArgument);

  auto unknown = LoadStreamingModel(Config({{"colour", "blue"}}), &clock_);
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("colour"), std::string::npos);
  auto bad_value = LoadStreamingModel(Config({{"alpha", "2"}}), &clock_);
  EXPECT_EQ(bad_value.status().code(), StatusCode::kInvalidArgument);
  ModelConfig wrong = Config();
  wrong.inputs[1].datatype = DataType::kFp32;
  EXPECT_EQ(LoadStreamingModel(wrong, &clock_).status().code(), StatusCode::kInvalidArgument);
  ModelConfig extra = Config();
  extra.outputs.push_back({"other", DataType::kFp64, {-1}, ""});
  EXPECT_EQ(LoadStreamingModel(extra, &clock_).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgeloop::inference
