#include "serving/insight_emitter.h"

#include <gtest/gtest.h>

#include <fstream>
#include <future>
#include <nlohmann/json.hpp>

#include "common/test_util.h"
#include "queue/uuid.h"

namespace edgeloop::serving {
namespace {

using Json = nlohmann::json;
using edgeloop::testing::TempDir;
using inference::DataType;
using inference::Tensor;

Tensor Fp32(const std::string& name, std::vector<int64_t> shape, std::vector<float> values) {
  Tensor tensor(name, DataType::kFp32, shape);
  std::copy(values.begin(), values.end(), tensor.values<float>().begin());
  return tensor;
}

class InsightEmitterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_.path() / "model.json") << "{\"trees\": []}";
    auto servable = std::make_shared<ServableVersion>();
    servable->config.name = "fraud";
    servable->config.version = 3;
    servable->config.model_file = dir_.path() / "model.json";
    servable->config.feature_names = {"amount", "age"};
    servable->version_string = "3";
    servable_ = servable;
    queue::QueueOptions options;
    options.url = "file://" + (dir_.path() / "queue").string();
    queue_ = std::move(*queue::Queue::Open(options));
  }

  std::unique_ptr<InsightEmitter> Make(double sample_rate, std::optional<double> threshold,
                                       double uniform = 0.5) {
    InsightOptions options;
    options.queue = queue_.get();
    options.site = "plant-7";
    options.sample_rate = sample_rate;
    options.threshold = threshold;
    options.metrics = &registry_;
    options.uniform01 = [uniform] { return uniform; };
    return std::move(*InsightEmitter::Create(options));
  }

  std::vector<Json> Drain() {
    std::vector<Json> events;
    auto leases = queue_->Lease("test", 1000, std::chrono::seconds(30));
    for (const auto& lease : *leases) {
      Json event = Json::parse(lease.event.payload);
      EXPECT_EQ(event["id"], lease.event.id);
      EXPECT_EQ(event["type"], lease.event.type);
      events.push_back(event);
    }
    return events;
  }

  TempDir dir_;
  metrics::Registry registry_;
  std::shared_ptr<const ServableVersion> servable_;
  std::unique_ptr<queue::Queue> queue_;
};

TEST_F(InsightEmitterTest, EmitsEveryAnomalyAndASampleOfNormalRows) {
  auto emitter = Make(/*sample_rate=*/0.4, /*threshold=*/0.8, /*uniform=*/0.5);
  // Three rows: probabilities 0.9 (anomaly), 0.1 and 0.2 (normal; 0.5 >= 0.4 so not sampled).
  std::vector<Tensor> inputs = {Fp32("x", {3, 2}, {100, 30, 5, 40, 7, 50})};
  std::vector<Tensor> outputs = {Fp32("probability", {3}, {0.9f, 0.1f, 0.2f})};
  emitter->OnPrediction(servable_, "req-1", inputs, outputs, 0.002);
  emitter->Stop(std::chrono::seconds(10));
  auto events = Drain();
  ASSERT_EQ(events.size(), 1u);
  const Json& event = events[0];
  EXPECT_EQ(event["type"], "anomaly");
  EXPECT_EQ(event["site"], "plant-7");
  EXPECT_EQ(event["model"]["name"], "fraud");
  EXPECT_EQ(event["model"]["version"], "3");
  EXPECT_EQ(event["model"]["digest"].get<std::string>().rfind("sha256:", 0), 0u);
  EXPECT_EQ(event["request_id"], "req-1");
  EXPECT_EQ(event["row"], 0);
  EXPECT_EQ(event["inputs"], Json::parse(R"({"amount": 100.0, "age": 30.0})"));
  EXPECT_NEAR(event["outputs"]["probability"].get<double>(), 0.9, 1e-6);
  EXPECT_EQ(event["anomaly"]["verdict"], true);
  EXPECT_NEAR(event["anomaly"]["score"].get<double>(), 0.9, 1e-6);
  EXPECT_NEAR(event["latency_ms"].get<double>(), 2.0, 1e-9);
  EXPECT_TRUE(queue::IsUuid(event["id"].get<std::string>()));
  EXPECT_FALSE(event["timestamp"].get<std::string>().empty());
}

TEST_F(InsightEmitterTest, SampledNormalRowsAndAnAnomalyOutputDecide) {
  auto emitter = Make(/*sample_rate=*/0.6, std::nullopt, /*uniform=*/0.5);
  Tensor flags("anomaly", DataType::kBool, {2});
  flags.values<uint8_t>()[1] = 1;
  std::vector<Tensor> inputs = {Fp32("x", {2, 2}, {1, 2, 3, 4})};
  std::vector<Tensor> outputs = {flags, Fp32("score", {2}, {0.1f, 0.7f})};
  emitter->OnPrediction(servable_, "req-2", inputs, outputs, 0.001);
  emitter->Stop(std::chrono::seconds(10));
  auto events = Drain();
  ASSERT_EQ(events.size(), 2u);  // the normal row is sampled (0.5 < 0.6), the anomaly always
  std::map<int, Json> by_row;
  for (const Json& event : events) by_row[event["row"].get<int>()] = event;
  EXPECT_EQ(by_row[0]["type"], "insight");
  EXPECT_EQ(by_row[0]["anomaly"]["verdict"], false);
  EXPECT_EQ(by_row[1]["type"], "anomaly");
  EXPECT_EQ(by_row[1]["inputs"], Json::parse(R"({"amount": 3.0, "age": 4.0})"));
  EXPECT_NE(registry_.Render().find("edgeloop_insight_events_total{type=\"anomaly\"} 1"),
            std::string::npos);
}

TEST_F(InsightEmitterTest, EventsCarryThePredictedLabelTheCardDefines) {
  // A binary card with a threshold of 0.3: probability 0.35 predicts "1", 0.1 predicts "0".
  auto binary = std::make_shared<ServableVersion>(*servable_);
  binary->config.version_dir = dir_.path();
  std::ofstream(dir_.path() / "card.json")
      << R"({"task": "binary", "classes": ["0", "1"], "threshold": {"value": 0.3}})";
  auto emitter = Make(/*sample_rate=*/1.0, /*threshold=*/0.9, /*uniform=*/0.5);
  std::vector<Tensor> inputs = {Fp32("x", {2, 2}, {1, 2, 3, 4})};
  emitter->OnPrediction(binary, "req-b", inputs, {Fp32("probability", {2}, {0.35f, 0.1f})}, 0.001);
  // A multi-class card: the class of the largest probability, by name.
  TempDir multi_dir;
  std::ofstream(multi_dir.path() / "card.json")
      << R"({"task": "multiclass", "classes": ["red", "green", "blue"]})";
  auto multi = std::make_shared<ServableVersion>(*servable_);
  multi->config.version_dir = multi_dir.path();
  multi->fingerprint = "other";
  emitter->OnPrediction(multi, "req-m", {Fp32("x", {1, 2}, {1, 2})},
                        {Fp32("probability", {1, 3}, {0.2f, 0.1f, 0.7f})}, 0.001);
  // A regression card, and no card at all: no prediction field.
  TempDir regression_dir;
  std::ofstream(regression_dir.path() / "card.json") << R"({"task": "regression"})";
  auto regression = std::make_shared<ServableVersion>(*servable_);
  regression->config.version_dir = regression_dir.path();
  emitter->OnPrediction(regression, "req-r", {Fp32("x", {1, 2}, {1, 2})},
                        {Fp32("probability", {1}, {12.5f})}, 0.001);
  emitter->OnPrediction(servable_, "req-n", {Fp32("x", {1, 2}, {1, 2})},
                        {Fp32("probability", {1}, {0.5f})}, 0.001);
  emitter->Stop(std::chrono::seconds(10));
  std::map<std::string, std::vector<Json>> by_request;
  for (const Json& event : Drain()) by_request[event["request_id"]].push_back(event);
  ASSERT_EQ(by_request["req-b"].size(), 2u);
  for (const Json& event : by_request["req-b"]) {
    EXPECT_EQ(event["prediction"], event["row"] == 0 ? "1" : "0");
  }
  ASSERT_EQ(by_request["req-m"].size(), 1u);
  EXPECT_EQ(by_request["req-m"][0]["prediction"], "blue");
  ASSERT_EQ(by_request["req-r"].size(), 1u);
  EXPECT_FALSE(by_request["req-r"][0].contains("prediction"));
  ASSERT_EQ(by_request["req-n"].size(), 1u);
  EXPECT_FALSE(by_request["req-n"][0].contains("prediction"));
}

TEST_F(InsightEmitterTest, FeedbackIsAcknowledgedOnceDurable) {
  auto emitter = Make(0, std::nullopt);
  std::promise<StatusOr<std::string>> done;
  emitter->OnFeedback("fraud", "3", "req-1", R"({"fraud": false})", "checked by hand",
                      [&](StatusOr<std::string> id) { done.set_value(std::move(id)); });
  auto id = done.get_future().get();
  ASSERT_TRUE(id.ok()) << id.status();
  auto events = Drain();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["id"], *id);
  EXPECT_EQ(events[0]["type"], "feedback");
  EXPECT_EQ(events[0]["request_id"], "req-1");
  EXPECT_EQ(events[0]["label"], Json::parse(R"({"fraud": false})"));
  EXPECT_EQ(events[0]["comment"], "checked by hand");
}

TEST_F(InsightEmitterTest, UnreachableQueueKeepsABoundedBufferAndCountsTheLoss) {
  InsightOptions options;
  options.queue_url = "redis://127.0.0.1:1/insights";  // nothing listens on port 1
  options.capacity = 2;
  options.sample_rate = 1;
  options.metrics = &registry_;
  auto emitter = InsightEmitter::Create(options);
  ASSERT_TRUE(emitter.ok()) << emitter.status();
  std::vector<Tensor> inputs = {Fp32("x", {1, 2}, {1, 2})};
  std::vector<Tensor> outputs = {Fp32("probability", {1}, {0.1f})};
  for (int i = 0; i < 5; ++i) (*emitter)->OnPrediction(servable_, "r", inputs, outputs, 0.001);
  const std::string text = registry_.Render();
  EXPECT_NE(text.find("edgeloop_insight_events_dropped_total{reason=\"queue_unavailable\"} 3"),
            std::string::npos)
      << text;
  (*emitter)->Stop(std::chrono::milliseconds(0));
  EXPECT_NE(registry_.Render().find("edgeloop_insight_events_dropped_total{reason=\"shutdown\"} 2"),
            std::string::npos);
}

TEST_F(InsightEmitterTest, BadOptionsAreRefused) {
  InsightOptions options;
  options.queue_url = "ftp://nowhere";
  EXPECT_EQ(InsightEmitter::Create(options).status().code(), StatusCode::kInvalidArgument);
  options.queue = queue_.get();
  options.sample_rate = 1.5;
  EXPECT_FALSE(InsightEmitter::Create(options).ok());
}

}  // namespace
}  // namespace edgeloop::serving
