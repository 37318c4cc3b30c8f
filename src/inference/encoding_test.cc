#include "inference/encoding.h"

#include <gtest/gtest.h>
#include <xgboost/c_api.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "inference/model.h"
#include "inference/model_config.h"

namespace edgeloop::inference {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
#define XGB_CHECK(call) ASSERT_EQ((call), 0) << XGBGetLastError()

// temperature (number), site (one_hot: north, south, east), grade (ordinal: low, mid, high):
// 1 + 3 + 1 = 5 features.
constexpr char kEncodingYaml[] =
    "encoding:\n"
    "  - {column: temperature}\n"
    "  - {column: site, kind: one_hot, categories: [north, south, east]}\n"
    "  - {column: grade, kind: ordinal, categories: [low, mid, high]}\n";

std::string ModelYaml(const std::string& backend, bool with_encoding) {
  return "framework: xgboost\nbackend: " + backend +
         "\nmodel_file: model.json\n"
         "inputs:\n  - {name: features, datatype: FP32, shape: [-1, 5]}\n"
         "outputs:\n  - {name: probability, datatype: FP32, shape: [-1], kind: prediction}\n" +
         (with_encoding ? std::string(kEncodingYaml) : std::string());
}

Tensor Raw(const std::vector<std::vector<std::string>>& rows) {
  Tensor raw("features", DataType::kBytes, {static_cast<int64_t>(rows.size()), 3});
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < 3; ++c) raw.strings()[r * 3 + c] = rows[r][c];
  }
  return raw;
}

InputEncoding ParsedEncoding() {
  auto config = ParseModelConfig(ModelYaml("native", true), "m", 1, "/tmp");
  EXPECT_TRUE(config.ok()) << config.status();
  return *config->encoding;
}

void ExpectFloats(std::span<const float> got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << "at " << i;
    } else {
      EXPECT_EQ(got[i], want[i]) << "at " << i;
    }
  }
}

TEST(EncodingTest, ModelYamlDeclaresTheRawInputAndKeepsTheModelInput) {
  auto config = ParseModelConfig(ModelYaml("native", true), "m", 1, "/tmp");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->inputs.size(), 1u);
  EXPECT_EQ(config->inputs[0].name, "features");
  EXPECT_EQ(config->inputs[0].datatype, DataType::kBytes);
  EXPECT_EQ(config->inputs[0].shape, (Shape{-1, 3}));
  ASSERT_TRUE(config->encoding.has_value());
  EXPECT_EQ(config->encoding->model_input.datatype, DataType::kFp32);
  EXPECT_EQ(config->encoding->model_input.shape, (Shape{-1, 5}));
  EXPECT_EQ(config->encoding->columns[1].categories,
            (std::vector<std::string>{"north", "south", "east"}));
  // ToYaml round-trips.
  auto again = ParseModelConfig(
      "framework: xgboost\nmodel_file: model.json\n"
      "inputs:\n  - {name: features, datatype: FP32, shape: [-1, 5]}\n"
      "outputs:\n  - {name: probability, datatype: FP32, shape: [-1]}\n" +
          config->encoding->ToYaml(),
      "m", 1, "/tmp");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->encoding->columns[2].categories, config->encoding->columns[2].categories);
}

TEST(EncodingTest, BadEncodingsAreRefusedNamingTheField) {
  const std::string head =
      "framework: xgboost\nmodel_file: model.json\n"
      "inputs:\n  - {name: features, datatype: FP32, shape: [-1, 4]}\n"
      "outputs:\n  - {name: p, datatype: FP32, shape: [-1]}\n";
  auto wrong_width = ParseModelConfig(head + kEncodingYaml, "m", 1, "/tmp");
  EXPECT_EQ(wrong_width.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_width.status().message().find("gives 5 features"), std::string::npos);
  auto bad_kind =
      ParseModelConfig(head + "encoding:\n  - {column: a, kind: hash}\n", "m", 1, "/tmp");
  EXPECT_NE(bad_kind.status().message().find("encoding[0].kind"), std::string::npos);
  auto no_categories =
      ParseModelConfig(head + "encoding:\n  - {column: a, kind: one_hot}\n", "m", 1, "/tmp");
  EXPECT_NE(no_categories.status().message().find("categories"), std::string::npos);
  auto repeated = ParseModelConfig(
      head + "encoding:\n  - {column: a}\n  - {column: a}\n  - {column: b}\n  - {column: c}\n", "m",
      1, "/tmp");
  EXPECT_NE(repeated.status().message().find("repeats"), std::string::npos);
}

TEST(EncodingTest, EncodesAsTrainingDid) {
  const InputEncoding encoding = ParsedEncoding();
  auto encoded = EncodeRaw(encoding, Raw({{"21.5", "south", "high"},
                                          {"", "east", "low"},
                                          {"-3e2", "west", "mid"},  // unseen site: all zeros
                                          {"7", "", "unknown"}}));  // missing site: NaN x3
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_EQ(encoded->shape(), (Shape{4, 5}));
  ExpectFloats(encoded->values<float>(), {21.5f, 0,    1,    0,    2,  //
                                          kNaN,  0,    0,    1,    0,  //
                                          -300,  0,    0,    0,    1,  //
                                          7,     kNaN, kNaN, kNaN, kNaN});
}

TEST(EncodingTest, BadRawInputsAreInvalidArguments) {
  const InputEncoding encoding = ParsedEncoding();
  auto not_number = EncodeRaw(encoding, Raw({{"hot", "north", "low"}}));
  EXPECT_EQ(not_number.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(not_number.status().message().find("column 'temperature'"), std::string::npos);
  Tensor floats("features", DataType::kFp32, {1, 5});
  EXPECT_EQ(EncodeRaw(encoding, floats).status().code(), StatusCode::kInvalidArgument);
  Tensor narrow("features", DataType::kBytes, {1, 2});
  EXPECT_EQ(EncodeRaw(encoding, narrow).status().code(), StatusCode::kInvalidArgument);
}

// A binary model on the 5 encoded features, trained here with the XGBoost C API.
void TrainModel(const std::filesystem::path& file) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  constexpr size_t kRows = 600;
  std::vector<float> x(kRows * 5);
  std::vector<float> y(kRows);
  for (size_t r = 0; r < kRows; ++r) {
    float* row = &x[r * 5];
    row[0] = normal(rng);
    const int site = static_cast<int>(rng() % 3);
    for (int k = 0; k < 3; ++k) row[1 + k] = k == site ? 1.0f : 0.0f;
    row[4] = static_cast<float>(rng() % 3);
    if (r % 17 == 0) row[0] = kNaN;
    y[r] = (row[0] + (site == 1 ? 1.0f : -0.5f) + 0.7f * row[4] + 0.3f * normal(rng)) > 0.5f;
  }
  DMatrixHandle train = nullptr;
  XGB_CHECK(XGDMatrixCreateFromMat(x.data(), kRows, 5, kNaN, &train));
  XGB_CHECK(XGDMatrixSetFloatInfo(train, "label", y.data(), kRows));
  BoosterHandle booster = nullptr;
  XGB_CHECK(XGBoosterCreate(&train, 1, &booster));
  XGB_CHECK(XGBoosterSetParam(booster, "objective", "binary:logistic"));
  XGB_CHECK(XGBoosterSetParam(booster, "nthread", "1"));
  XGB_CHECK(XGBoosterSetParam(booster, "max_depth", "3"));
  XGB_CHECK(XGBoosterSetParam(booster, "verbosity", "0"));
  for (int i = 0; i < 10; ++i) XGB_CHECK(XGBoosterUpdateOneIter(booster, i, train));
  XGB_CHECK(XGBoosterSaveModel(booster, file.c_str()));
  XGBoosterFree(booster);
  XGDMatrixFree(train);
}

std::vector<float> Predict(const Model& model, const Tensor& input) {
  std::vector<Tensor> outputs;
  const int first = 0;
  const Status status =
      model.Predict(std::span<const Tensor>(&input, 1), std::span<const int>(&first, 1), &outputs);
  EXPECT_TRUE(status.ok()) << status;
  if (!status.ok()) return {};
  auto values = outputs[0].values<float>();
  return {values.begin(), values.end()};
}

TEST(EncodingTest, RawRowsScoreLikeTheirEncodedNumbersOnBothBackends) {
  edgeloop::testing::TempDir dir("encoding_test");
  const std::filesystem::path version = dir.path() / "1";
  std::filesystem::create_directories(version);
  ASSERT_NO_FATAL_FAILURE(TrainModel(version / "model.json"));
  const Tensor raw = Raw({{"0.4", "south", "mid"},
                          {"-1.25", "north", "high"},
                          {"", "east", "low"},
                          {"2", "mars", "mid"},
                          {"0.1", "", "gold"}});
  for (const std::string backend : {"native", "capi"}) {
    std::ofstream(version / "model.yaml") << ModelYaml(backend, true);
    auto encoded_config = LoadModelConfig(version, "m", 1);
    ASSERT_TRUE(encoded_config.ok()) << encoded_config.status();
    auto encoded_model = LoadModel(*encoded_config);
    ASSERT_TRUE(encoded_model.ok()) << encoded_model.status();

    std::ofstream(version / "model.yaml") << ModelYaml(backend, false);
    auto plain_config = LoadModelConfig(version, "m", 1);
    ASSERT_TRUE(plain_config.ok()) << plain_config.status();
    auto plain_model = LoadModel(*plain_config);
    ASSERT_TRUE(plain_model.ok()) << plain_model.status();

    auto features = EncodeRaw(*encoded_config->encoding, raw);
    ASSERT_TRUE(features.ok());
    const std::vector<float> from_raw = Predict(**encoded_model, raw);
    const std::vector<float> from_numbers = Predict(**plain_model, *features);
    ASSERT_EQ(from_raw.size(), 5u) << backend;
    EXPECT_EQ(from_raw, from_numbers) << backend;
    // The rows differ, so the encoding reached the model.
    EXPECT_NE(from_raw[0], from_raw[1]) << backend;

    std::vector<Tensor> outputs;
    const int first = 0;
    Tensor bad = Raw({{"warm", "north", "low"}});
    EXPECT_EQ(
        (*encoded_model)
            ->Predict(std::span<const Tensor>(&bad, 1), std::span<const int>(&first, 1), &outputs)
            .code(),
        StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace edgeloop::inference
