#include "serving/oip_handler.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "serving/test_repository.h"

namespace edgeloop::serving {
namespace {

using Json = nlohmann::json;
using testing::TestRepository;

const char* kRow =
    "[72.8,2.49,6.66,3.96,1681,13.3,394.6,9.16,62.2,0.83,45.3,24.2,58.9,29.2,91.1,78.6,40.3,18.8,"
    "143.6,1]";

class OipHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_.AddVersion("m", 1);
    ModelManagerOptions options;
    options.repository = repo_.root();
    options.registry = &registry_;
    options.clock = &clock_;
    options.runner = &runner_;
    manager_ = std::move(*ModelManager::Create(options));
    manager_->Reconcile(true);
    handler_ = std::make_unique<OipHandler>(manager_.get(), &registry_, &clock_, &draining_,
                                            ControlAccess{"", true});
  }

  http::Response Call(http::Method method, const std::string& target, std::string body = "",
                      std::string authorization = "") {
    http::Request request;
    request.method = method;
    request.target = target;
    request.body = std::move(body);
    if (!authorization.empty()) request.headers.emplace_back("Authorization", authorization);
    http::Response response;
    bool answered = false;
    handler_->Handle(std::move(request), http::Responder::FromCallback([&](http::Response r) {
                       response = std::move(r);
                       answered = true;
                     }));
    EXPECT_TRUE(answered) << target;
    return response;
  }
  Json CallJson(http::Method method, const std::string& target, int expected_status,
                std::string body = "") {
    http::Response response = Call(method, target, std::move(body));
    EXPECT_EQ(response.status, expected_status) << target << " " << response.body;
    return Json::parse(response.body, nullptr, false);
  }

  TestRepository repo_;
  metrics::Registry registry_;
  FakeClock clock_;
  ManualTaskRunner runner_{&clock_};
  std::atomic<bool> draining_{false};
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<OipHandler> handler_;
};

using http::Method;

TEST_F(OipHandlerTest, HealthAndServerMetadata) {
  EXPECT_EQ(CallJson(Method::kGet, "/v2/health/live", 200)["live"], true);
  EXPECT_EQ(CallJson(Method::kGet, "/v2/health/ready", 200)["ready"], true);
  Json server = CallJson(Method::kGet, "/v2", 200);
  EXPECT_EQ(server["name"], "edgeloop");
  EXPECT_EQ(server["extensions"][0], "model_repository");
  draining_ = true;
  EXPECT_EQ(CallJson(Method::kGet, "/v2/health/ready", 503)["ready"], false);
}

TEST_F(OipHandlerTest, ModelMetadataAndReadiness) {
  Json metadata = CallJson(Method::kGet, "/v2/models/m", 200);
  EXPECT_EQ(metadata["name"], "m");
  EXPECT_EQ(metadata["versions"], Json::array({"1"}));
  EXPECT_EQ(metadata["platform"], "xgboost_native");
  EXPECT_EQ(metadata["inputs"][0]["shape"], Json::array({-1, 20}));
  EXPECT_EQ(metadata["outputs"][1]["name"], "contributions");
  EXPECT_EQ(CallJson(Method::kGet, "/v2/models/m/versions/1", 200)["versions"], Json::array({"1"}));
  EXPECT_EQ(CallJson(Method::kGet, "/v2/models/m/ready", 200)["ready"], true);
  EXPECT_EQ(CallJson(Method::kGet, "/v2/models/m/versions/1/ready", 200)["version"], "1");
  CallJson(Method::kGet, "/v2/models/nope", 404);
  CallJson(Method::kGet, "/v2/models/nope/ready", 404);
  CallJson(Method::kGet, "/v2/models/m/versions/7", 404);
  CallJson(Method::kGet, "/v2/models/m/versions/abc", 404);
}

TEST_F(OipHandlerTest, InferReturnsTheModelsPrediction) {
  Json response = CallJson(Method::kPost, "/v2/models/m/infer", 200,
                           std::string(R"({"id":"abc","inputs":[{"name":"features",)") +
                               R"("datatype":"FP32","shape":[1,20],"data":)" + kRow + "}]}");
  EXPECT_EQ(response["model_name"], "m");
  EXPECT_EQ(response["model_version"], "1");
  EXPECT_EQ(response["id"], "abc");
  ASSERT_EQ(response["outputs"].size(), 1u);
  EXPECT_EQ(response["outputs"][0]["name"], "probability");
  EXPECT_EQ(response["outputs"][0]["shape"], Json::array({1}));
  const double p = response["outputs"][0]["data"][0];
  EXPECT_GT(p, 0.0);
  EXPECT_LT(p, 1.0);

  Json versioned = CallJson(
      Method::kPost, "/v2/models/m/versions/1/infer", 200,
      std::string(R"({"inputs":[{"name":"features","datatype":"FP32","shape":[1,20],"data":)") +
          kRow + R"(}],"outputs":[{"name":"contributions"}]})");
  ASSERT_EQ(versioned["outputs"].size(), 1u);
  EXPECT_EQ(versioned["outputs"][0]["shape"], Json::array({1, 21}));
  EXPECT_FALSE(versioned.contains("id"));
}

TEST_F(OipHandlerTest, ErrorsHaveTheRightStatusAndAJsonBody) {
  const std::string good_input =
      std::string(R"({"name":"features","datatype":"FP32","shape":[1,20],"data":)") + kRow + "}";
  struct Case {
    Method method;
    std::string target;
    std::string body;
    int status;
  };
  const std::vector<Case> cases = {
      {Method::kPost, "/v2/models/m/infer", "not json", 400},
      {Method::kPost, "/v2/models/m/infer", "", 400},
      {Method::kPost, "/v2/models/nope/infer", "{}", 404},
      {Method::kPost, "/v2/models/m/versions/9/infer", "{\"inputs\":[" + good_input + "]}", 404},
      {Method::kGet, "/v2/models/m/infer", "", 405},
      {Method::kPost, "/v2/health/live", "", 405},
      {Method::kPost, "/v2/models/m/infer",
       R"({"inputs":[{"name":"features","datatype":"INT32","shape":[1,20],"data":[1]}]})", 400},
      {Method::kGet, "/v3/models", "", 404},
      {Method::kGet, "/v2/models/m/explain", "", 404},
      {Method::kGet, "/v2/models/m%zz", "", 400},
      {Method::kPost, "/v2/repository/models/m/load", R"({"parameters":{"config":"{}"}})", 501},
  };
  for (const Case& c : cases) {
    http::Response response = Call(c.method, c.target, c.body);
    EXPECT_EQ(response.status, c.status) << c.target << " " << c.body << " -> " << response.body;
    Json body = Json::parse(response.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << response.body;
    EXPECT_TRUE(body["error"].is_string()) << response.body;
  }
  http::Response wrong_verb = Call(Method::kDelete, "/v2/models/m/infer");
  ASSERT_EQ(wrong_verb.headers.size(), 1u);
  EXPECT_EQ(wrong_verb.headers[0], (std::pair<std::string, std::string>{"Allow", "POST"}));
}

TEST_F(OipHandlerTest, RepositoryIndexUnloadAndMetrics) {
  Json index = CallJson(Method::kPost, "/v2/repository/index", 200);
  ASSERT_EQ(index.size(), 1u);
  EXPECT_EQ(index[0]["name"], "m");
  EXPECT_EQ(index[0]["state"], "READY");
  CallJson(Method::kPost, "/v2/repository/index", 400, "{\"ready\": 3}");
  CallJson(Method::kPost, "/v2/repository/models/m/unload", 200);
  CallJson(Method::kPost, "/v2/repository/models/nope/unload", 404);
  EXPECT_EQ(CallJson(Method::kPost, "/v2/repository/index", 200, R"({"ready":true})").size(), 0u);
  CallJson(Method::kGet, "/v2/models/m", 503);

  http::Response metrics = Call(Method::kGet, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(metrics.body.find("edgeloop_inference_requests_total"), std::string::npos);
}

TEST_F(OipHandlerTest, ControlEndpointsNeedTheTokenWhenOneIsSet) {
  handler_ = std::make_unique<OipHandler>(manager_.get(), &registry_, &clock_, &draining_,
                                          ControlAccess{"s3cret-token-0123456789", false});
  http::Response missing = Call(Method::kPost, "/v2/repository/models/m/unload");
  EXPECT_EQ(missing.status, 401);
  ASSERT_EQ(missing.headers.size(), 1u);
  EXPECT_EQ(missing.headers[0].first, "WWW-Authenticate");
  EXPECT_EQ(Call(Method::kPost, "/v2/repository/models/m/unload", "", "Bearer wrong").status, 401);
  EXPECT_EQ(
      Call(Method::kPost, "/v2/repository/models/m/unload", "", "Bearer s3cret-token-012345678")
          .status,
      401);
  EXPECT_EQ(
      Call(Method::kPost, "/v2/repository/models/m/unload", "", "Basic s3cret-token-0123456789")
          .status,
      401);
  EXPECT_EQ(CallJson(Method::kGet, "/v2/models/m/ready", 200)["ready"], true);  // still loaded
  EXPECT_EQ(
      Call(Method::kPost, "/v2/repository/models/m/unload", "", "Bearer s3cret-token-0123456789")
          .status,
      200);
  // Reading stays open.
  CallJson(Method::kPost, "/v2/repository/index", 200);
}

TEST_F(OipHandlerTest, ControlEndpointsAreClosedWithoutTokenBeyondLoopback) {
  handler_ = std::make_unique<OipHandler>(manager_.get(), &registry_, &clock_, &draining_,
                                          ControlAccess{"", false});
  EXPECT_EQ(Call(Method::kPost, "/v2/repository/models/m/unload").status, 403);
  EXPECT_EQ(CallJson(Method::kGet, "/v2/models/m/ready", 200)["ready"], true);
}

TEST_F(OipHandlerTest, RequestsAreCountedByModelVersionAndCode) {
  const std::string body =
      std::string(R"({"inputs":[{"name":"features","datatype":"FP32","shape":[1,20],"data":)") +
      kRow + "}]}";
  for (int i = 0; i < 3; ++i) Call(Method::kPost, "/v2/models/m/infer", body);
  Call(Method::kPost, "/v2/models/m/infer", "{}");
  Call(Method::kPost, "/v2/models/ghost/infer", body);
  const std::string text = registry_.Render();
  EXPECT_NE(text.find(R"(edgeloop_inference_requests_total{model="m",version="1",code="200"} 3)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(edgeloop_inference_requests_total{model="m",version="1",code="400"} 1)"),
            std::string::npos);
  EXPECT_NE(
      text.find(R"(edgeloop_inference_requests_total{model="_unknown_",version="",code="404"} 1)"),
      std::string::npos);
}

}  // namespace
}  // namespace edgeloop::serving
