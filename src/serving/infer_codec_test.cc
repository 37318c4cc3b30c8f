#include "serving/infer_codec.h"

#include <gtest/gtest.h>

#include <cmath>

namespace edgeloop::serving {
namespace {

using inference::DataType;

inference::ModelConfig Config() {
  inference::ModelConfig config;
  config.name = "m";
  config.version = 1;
  config.inputs = {{"x", DataType::kFp32, {-1, 3}, ""}};
  config.outputs = {{"p", DataType::kFp32, {-1}, "prediction"},
                    {"c", DataType::kFp32, {-1, 4}, "contributions"}};
  return config;
}

StatusOr<InferRequest> Parse(std::string body, const inference::ModelConfig& config = Config()) {
  return ParseInferRequest(body, config);
}

TEST(InferCodecTest, ParsesFlatAndNestedData) {
  for (
      const char* body :
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[2,3],"data":[1,2,3,4,5,6.5]}]})",
       R"({"inputs":[{"data":[[1,2,3],[4,5,6.5]],"shape":[2,3],"datatype":"FP32","name":"x"}]})"}) {
    auto request = Parse(body);
    ASSERT_TRUE(request.ok()) << request.status();
    ASSERT_EQ(request->inputs.size(), 1u);
    EXPECT_EQ(request->inputs[0].shape(), (inference::Shape{2, 3}));
    EXPECT_FLOAT_EQ(request->inputs[0].values<float>()[5], 6.5f);
    EXPECT_EQ(request->output_indices, (std::vector<int>{0}));  // contributions only on request
  }
}

// Regression: the row check compared against the first input after it had been moved out, which
// crashed the server on any model with two or more inputs.
TEST(InferCodecTest, SeveralInputsInConfigOrder) {
  inference::ModelConfig config = Config();
  config.inputs = {{"t", DataType::kInt64, {-1}, ""},
                   {"v", DataType::kFp64, {-1}, ""},
                   {"s", DataType::kBytes, {-1}, ""}};
  auto request = Parse(R"({"inputs":[{"name":"s","datatype":"BYTES","shape":[2],"data":["a","b"]},)"
                       R"({"name":"v","datatype":"FP64","shape":[2],"data":[1.5,2]},)"
                       R"({"name":"t","datatype":"INT64","shape":[2],"data":[10,20]}]})",
                       config);
  ASSERT_TRUE(request.ok()) << request.status();
  ASSERT_EQ(request->inputs.size(), 3u);
  EXPECT_EQ(request->inputs[0].values<int64_t>()[1], 20);
  EXPECT_EQ(request->inputs[1].values<double>()[0], 1.5);
  EXPECT_EQ(request->inputs[2].strings()[1], "b");

  auto mismatched = Parse(R"({"inputs":[{"name":"s","datatype":"BYTES","shape":[1],"data":["a"]},)"
                          R"({"name":"v","datatype":"FP64","shape":[2],"data":[1.5,2]},)"
                          R"({"name":"t","datatype":"INT64","shape":[2],"data":[10,20]}]})",
                          config);
  ASSERT_FALSE(mismatched.ok());
  EXPECT_NE(mismatched.status().message().find("different numbers of rows"), std::string::npos);
}

TEST(InferCodecTest, NullIsMissing) {
  auto request =
      Parse(R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[1,null,3]}]})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_TRUE(std::isnan(request->inputs[0].values<float>()[1]));
}

TEST(InferCodecTest, IdAndOutputSelection) {
  auto request = Parse(R"({"id":"r1","inputs":[{"name":"x","datatype":"FP32","shape":[1,3],)"
                       R"("data":[1,2,3]}],"outputs":[{"name":"c"},{"name":"p"}]})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->id, "r1");
  EXPECT_EQ(request->output_indices, (std::vector<int>{1, 0}));
}

TEST(InferCodecTest, RejectsBadRequests) {
  const std::string ok_input = R"({"name":"x","datatype":"FP32","shape":[1,3],"data":[1,2,3]})";
  struct Case {
    std::string body;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {"", "empty"},
      {"{", "not valid JSON"},
      {"[1,2]", "must be a JSON object"},
      {"{}", "no 'inputs'"},
      {R"({"inputs":{}})", "'inputs' must be an array"},
      {R"({"inputs":[1]})", "must be an object"},
      {R"({"inputs":[{"name":"y","datatype":"FP32","shape":[1,3],"data":[1,2,3]}]})",
       "unknown input 'y'"},
      {R"({"inputs":[{"name":"x","datatype":"FP64","shape":[1,3],"data":[1,2,3]}]})",
       "expects FP32"},
      {R"({"inputs":[{"name":"x","datatype":"FLOAT","shape":[1,3],"data":[1,2,3]}]})",
       "unknown datatype"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[1,2]}]})",
       "has 2 data elements"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[1,2,3,4]}]})",
       "has 4 data elements"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]})",
       "expects [-1, 3]"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[3],"data":[1,2,3]}]})",
       "expects [-1, 3]"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[-1,3],"data":[1,2,3]}]})",
       "non-negative integers"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[0,3],"data":[]}]})", "no rows"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[100000000000,3],"data":[1]}]})",
       "more elements"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[1,"2",3]}]})",
       "is a string"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[1,true,3]}]})",
       "is a boolean"},
      {R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,3]}]})", "no 'data'"},
      {R"({"inputs":[{"datatype":"FP32","shape":[1,3],"data":[1,2,3]}]})", "no 'name'"},
      {R"({"inputs":[)" + ok_input + "," + ok_input + "]}", "more than once"},
      {R"({"inputs":[)" + ok_input + R"(],"outputs":[{"name":"z"}]})", "unknown output 'z'"},
      {R"({"inputs":[)" + ok_input + R"(],"outputs":[{"name":"p"},{"name":"p"}]})",
       "more than once"},
      {R"({"id":7,"inputs":[)" + ok_input + "]}", "'id' must be a string"},
      {R"({"inputs":[)" + ok_input + "]} trailing", "not valid JSON"},
  };
  for (const Case& c : cases) {
    auto request = Parse(c.body);
    ASSERT_FALSE(request.ok()) << c.body;
    EXPECT_EQ(request.status().code(), StatusCode::kInvalidArgument) << c.body;
    EXPECT_NE(request.status().message().find(c.message_part), std::string::npos)
        << c.body << " -> " << request.status().message();
  }
}

TEST(InferCodecTest, IntegerRangesAreChecked) {
  inference::ModelConfig config = Config();
  config.inputs = {{"x", DataType::kInt8, {-1, 1}, ""}};
  EXPECT_TRUE(
      Parse(R"({"inputs":[{"name":"x","datatype":"INT8","shape":[1,1],"data":[-128]}]})", config)
          .ok());
  EXPECT_FALSE(
      Parse(R"({"inputs":[{"name":"x","datatype":"INT8","shape":[1,1],"data":[128]}]})", config)
          .ok());
  EXPECT_FALSE(
      Parse(R"({"inputs":[{"name":"x","datatype":"INT8","shape":[1,1],"data":[1.5]}]})", config)
          .ok());
}

TEST(InferCodecTest, Fp16IsUnimplementedInJson) {
  inference::ModelConfig config = Config();
  config.inputs = {{"x", DataType::kFp16, {-1, 1}, ""}};
  auto request =
      Parse(R"({"inputs":[{"name":"x","datatype":"FP16","shape":[1,1],"data":[1]}]})", config);
  EXPECT_EQ(request.status().code(), StatusCode::kUnimplemented);
}

TEST(InferCodecTest, SerializesResponses) {
  inference::Tensor p("p", DataType::kFp32, {2});
  p.values<float>()[0] = 0.25f;
  p.values<float>()[1] = std::nanf("");
  inference::Tensor b("b", DataType::kBytes, {1});
  b.strings()[0] = "a\"b";
  EXPECT_EQ(SerializeInferResponse("m", "3", std::string("r\n1"), {p, b}),
            R"({"model_name":"m","model_version":"3","id":"r\n1","outputs":[)"
            R"({"name":"p","datatype":"FP32","shape":[2],"data":[0.25,null]},)"
            R"({"name":"b","datatype":"BYTES","shape":[1],"data":["a\"b"]}]})");
  EXPECT_EQ(SerializeInferResponse("m", "1", std::nullopt, {}),
            R"({"model_name":"m","model_version":"1","outputs":[]})");
}

TEST(InferCodecTest, FloatsRoundTripExactly) {
  inference::Tensor p("p", DataType::kFp32, {1});
  p.values<float>()[0] = 0.1234567f;
  const std::string json = SerializeInferResponse("m", "1", std::nullopt, {p});
  const size_t at = json.find("\"data\":[") + 8;
  EXPECT_EQ(std::stof(json.substr(at)), 0.1234567f);
}

}  // namespace
}  // namespace edgeloop::serving
