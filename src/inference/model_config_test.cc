#include "inference/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace edgeloop::inference {
namespace {

using ::testing::HasSubstr;

constexpr const char* kRemove = "<remove>";

// A valid model.yaml with `changes` applied: a field set to kRemove is dropped, a new one
// appended, an existing one replaced.
std::string Yaml(const std::vector<std::pair<std::string, std::string>>& changes = {}) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"framework", "xgboost"},
      {"model_file", "model.json"},
      {"inputs", "[{name: features, datatype: FP32, shape: [-1, 3]}]"},
      {"outputs", "[{name: p, datatype: FP32, shape: [-1]}]"},
  };
  for (const auto& [key, value] : changes) {
    auto it = std::find_if(fields.begin(), fields.end(),
                           [&key](const auto& field) { return field.first == key; });
    if (it == fields.end()) {
      fields.emplace_back(key, value);
    } else if (value == kRemove) {
      fields.erase(it);
    } else {
      it->second = value;
    }
  }
  std::string text;
  for (const auto& [key, value] : fields) text += key + ": " + value + "\n";
  return text;
}

StatusOr<ModelConfig> Parse(const std::string& yaml) {
  return ParseModelConfig(yaml, "m", 3, "/models/m/3");
}

TEST(ModelConfigTest, ParsesEveryField) {
  auto config = Parse(Yaml({{"backend", "capi"},
                            {"outputs",
                             "[{name: p, datatype: FP32, shape: [-1], kind: prediction},"
                             " {name: c, datatype: FP32, shape: [-1, 4], kind: contributions}]"},
                            {"batching",
                             "{max_batch_size: 64, max_queue_delay_us: 100, "
                             "max_queue_size: 10}"},
                            {"parameters", "{nthread: 2, fast: true}"},
                            {"feature_names", "[a, b, c]"},
                            {"name", "m"},
                            {"version", "3"}}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name, "m");
  EXPECT_EQ(config->version, 3);
  EXPECT_EQ(config->framework, "xgboost");
  EXPECT_EQ(config->backend, "capi");
  EXPECT_EQ(config->model_file, std::filesystem::path("/models/m/3/model.json"));
  ASSERT_EQ(config->inputs.size(), 1u);
  EXPECT_EQ(config->inputs[0].name, "features");
  EXPECT_EQ(config->inputs[0].datatype, DataType::kFp32);
  EXPECT_EQ(config->inputs[0].shape, (Shape{-1, 3}));
  ASSERT_EQ(config->outputs.size(), 2u);
  EXPECT_EQ(config->outputs[1].kind, "contributions");
  EXPECT_EQ(config->outputs[1].shape, (Shape{-1, 4}));
  EXPECT_TRUE(config->batching_enabled());
  EXPECT_EQ(config->batching.max_batch_size, 64);
  EXPECT_EQ(config->batching.max_queue_delay_us, 100);
  EXPECT_EQ(config->batching.max_queue_size, 10);
  EXPECT_EQ(config->parameters.at("nthread"), "2");
  EXPECT_EQ(config->parameters.at("fast"), "true");
  EXPECT_EQ(config->feature_names, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(config->InputIndex("features"), 0);
  EXPECT_EQ(config->InputIndex("nope"), -1);
  EXPECT_EQ(config->OutputIndex("c"), 1);
  EXPECT_EQ(config->OutputIndex("features"), -1);
}

TEST(ModelConfigTest, OptionalFieldsDefault) {
  auto config = Parse(Yaml({{"model_file", "sub/dir/../model.ubj"}}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->backend, "");
  EXPECT_EQ(config->model_file, std::filesystem::path("/models/m/3/sub/model.ubj"));
  EXPECT_EQ(config->outputs[0].kind, "");
  EXPECT_FALSE(config->batching_enabled());
  EXPECT_EQ(config->batching.max_queue_size, 1024);
  EXPECT_TRUE(config->parameters.empty());
  EXPECT_TRUE(config->feature_names.empty());
}

TEST(ModelConfigTest, EveryErrorNamesTheProblem) {
  const std::string input = "inputs";
  const auto inputs = [](const std::string& spec) {
    return std::pair<std::string, std::string>("inputs", "[" + spec + "]");
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"framework: [", "not valid YAML"},
      {"- a\n- b\n", "must be a mapping"},
      {Yaml({{"colour", "red"}}), "unknown field 'colour'"},
      {Yaml({{"name", "other"}}), "'name' is 'other'"},
      {Yaml({{"version", "2"}}), "'version' is 2"},
      {Yaml({{"version", "two"}}), "'version' must be an integer"},
      {Yaml({{"framework", kRemove}}), "'framework' is required"},
      {Yaml({{"framework", "[a]"}}), "'framework' must be a scalar"},
      {Yaml({{"model_file", kRemove}}), "'model_file' is required"},
      {Yaml({{"model_file", "/etc/passwd"}}), "inside the version folder"},
      {Yaml({{"model_file", "../other/model.json"}}), "inside the version folder"},
      {Yaml({{"model_file", "a/../../x"}}), "inside the version folder"},
      {Yaml({{"model_file", "''"}}), "inside the version folder"},
      {Yaml({{"inputs", kRemove}}), "'inputs' must be a non-empty list"},
      {Yaml({{"inputs", "[]"}}), "'inputs' must be a non-empty list"},
      {Yaml({{"outputs", "{a: 1}"}}), "'outputs' must be a non-empty list"},
      {Yaml({inputs("5")}), "'inputs[0]' must be a mapping"},
      {Yaml({inputs("{name: f, datatype: FP32, shape: [-1], size: 3}")}),
       "'inputs[0]' has unknown field 'size'"},
      {Yaml({inputs("{name: f, datatype: FP32, shape: [-1], kind: margin}")}),
       "unknown field 'kind'"},
      {Yaml({inputs("{datatype: FP32, shape: [-1]}")}), "'inputs[0].name' is required"},
      {Yaml({inputs("{name: '', datatype: FP32, shape: [-1]}")}), "'inputs[0].name' is empty"},
      {Yaml({inputs("{name: [f], datatype: FP32, shape: [-1]}")}), "must be a scalar"},
      {Yaml({inputs("{name: f, shape: [-1]}")}), "'inputs[0].datatype' is required"},
      {Yaml({inputs("{name: f, datatype: FLOAT, shape: [-1]}")}), "not an OIP datatype"},
      {Yaml({inputs("{name: f, datatype: FP32}")}), "'inputs[0].shape' must be a non-empty"},
      {Yaml({inputs("{name: f, datatype: FP32, shape: []}")}), "must be a non-empty list"},
      {Yaml({inputs("{name: f, datatype: FP32, shape: [-1, 0]}")}), "-1 or positive"},
      {Yaml({inputs("{name: f, datatype: FP32, shape: [-1, -2]}")}), "-1 or positive"},
      {Yaml({inputs("{name: f, datatype: FP32, shape: [-1, x]}")}), "must be an integer"},
      {Yaml({inputs("{name: f, datatype: FP32, shape: [-1, 1.5]}")}), "must be an integer"},
      {Yaml({inputs("{name: f, datatype: FP32, shape: [4, 3]}")}), "must start with -1"},
      {Yaml({inputs("{name: f, datatype: FP32, shape: [-1, -1]}")}), "only in its first"},
      {Yaml({{"outputs",
              "[{name: p, datatype: FP32, shape: [-1]}, "
              "{name: p, datatype: FP32, shape: [-1, 2]}]"}}),
       "'outputs' repeats the name 'p'"},
      {Yaml({{"outputs", "[{name: p, datatype: FP32, shape: [-1], kind: [a]}]"}}),
       "'outputs[0].kind' must be a scalar"},
      {Yaml({{"batching", "5"}}), "'batching' must be a mapping"},
      {Yaml({{"batching", "{max_batch: 3}"}}), "'batching' has unknown field 'max_batch'"},
      {Yaml({{"batching", "{max_batch_size: -1}"}}), "'batching.max_batch_size' must be in"},
      {Yaml({{"batching", "{max_batch_size: 1000001}"}}), "'batching.max_batch_size' must be"},
      {Yaml({{"batching", "{max_batch_size: lots}"}}), "'batching.max_batch_size' must be an"},
      {Yaml({{"batching", "{max_queue_delay_us: 10000001}"}}), "'batching.max_queue_delay_us'"},
      {Yaml({{"batching", "{max_queue_size: 0}"}}), "'batching.max_queue_size' must be in"},
      {Yaml({{"parameters", "[1]"}}), "'parameters' must be a mapping"},
      {Yaml({{"parameters", "{a: [1]}"}}), "'parameters.a' must be a scalar"},
      {Yaml({{"feature_names", "x"}}), "'feature_names' must be a list"},
      {Yaml({{"feature_names", "[[a]]"}}), "'feature_names' must be a scalar"},
  };
  for (const auto& [yaml, expected] : cases) {
    auto config = Parse(yaml);
    ASSERT_FALSE(config.ok()) << yaml;
    EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument) << yaml;
    EXPECT_THAT(config.status().message(), HasSubstr(expected)) << yaml;
  }
}

TEST(ModelConfigTest, LoadsFromTheVersionFolder) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("edgeloop_model_config_test_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  EXPECT_EQ(LoadModelConfig(dir, "m", 1).status().code(), StatusCode::kNotFound);
  std::ofstream(dir / "model.yaml") << Yaml();
  auto config = LoadModelConfig(dir, "m", 1);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->version_dir, dir);
  EXPECT_EQ(config->model_file, dir / "model.json");
  std::ofstream(dir / "model.yaml") << Yaml({{"framework", kRemove}});
  auto broken = LoadModelConfig(dir, "m", 1);
  EXPECT_THAT(broken.status().message(), HasSubstr((dir / "model.yaml").string()));
  std::filesystem::remove_all(dir);
}

TEST(ModelConfigTest, ExampleModelYamlParses) {
  const char* source = std::getenv("EDGELOOP_SOURCE_DIR");
  const std::filesystem::path dir =
      std::filesystem::path(source ? source : ".") / "examples/models/machine-failure/1";
  if (!std::filesystem::exists(dir / "model.yaml")) GTEST_SKIP() << "no example at " << dir;
  auto config = LoadModelConfig(dir, "machine-failure", 1);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->backend, "native");
  EXPECT_EQ(config->feature_names.size(), 20u);
  EXPECT_EQ(config->batching.max_batch_size, 64);
}

}  // namespace
}  // namespace edgeloop::inference
