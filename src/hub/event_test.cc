#include "hub/event.h"

#include <gtest/gtest.h>

namespace edgeloop::hub {
namespace {

constexpr const char* kGood =
    R"({"id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","type":"insight","site":"north",)"
    R"("timestamp":"2026-11-27T08:00:00.123Z","model":{"name":"m","version":3,"digest":"sha256:ab"},)"
    R"("request_id":"r1","latency_ms":1.5,"inputs":{"a": [1, 2]},"outputs":{"y":0.9},)"
    R"("anomaly":{"verdict":false,"score":0.25},"prediction":"ok"})";

TEST(ParseRfc3339Test, ParsesZuluOffsetsAndFractions) {
  EXPECT_EQ(*ParseRfc3339Ms("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseRfc3339Ms("1970-01-01T00:00:01.5Z"), 1500);
  EXPECT_EQ(*ParseRfc3339Ms("1970-01-01T01:00:00+01:00"), 0);
  EXPECT_EQ(*ParseRfc3339Ms("2026-11-27T08:00:00.123456Z"), 1795766400123);
  EXPECT_FALSE(ParseRfc3339Ms("2026-11-27").ok());
  EXPECT_FALSE(ParseRfc3339Ms("2026-13-27T08:00:00Z").ok());
  EXPECT_FALSE(ParseRfc3339Ms("2026-11-27T08:00:00").ok());
  EXPECT_FALSE(ParseRfc3339Ms("2026-11-27T08:00:00Zjunk").ok());
}

TEST(ParseBatchTest, ParsesEveryField) {
  auto batch = ParseBatch(kGood, "north", {});
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->events.size(), 1u);
  ASSERT_TRUE(batch->rejected.empty());
  const Event& e = batch->events[0];
  EXPECT_EQ(e.id, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(e.site, "north");
  EXPECT_EQ(e.ts_ms, 1795766400123);
  EXPECT_EQ(e.model, "m");
  EXPECT_EQ(e.model_version, "3");
  EXPECT_EQ(e.model_digest, "sha256:ab");
  EXPECT_EQ(e.anomaly, 0);
  EXPECT_EQ(e.score, 0.25);
  EXPECT_EQ(e.latency_ms, 1.5);
  EXPECT_EQ(e.inputs, R"({"a":[1,2]})");
  EXPECT_EQ(e.prediction, "ok");
}

TEST(ParseBatchTest, RejectsBadEventsOneByOneAndKeepsTheRest) {
  std::string body =
      std::string(kGood) + "\n\n" + "not json\n" + R"({"id":"nope","type":"insight"})" + "\n" +
      R"({"id":"0190a1b2-c3d4-7e5f-8a9b-000000000002","type":"other","timestamp":0,"model":{"name":"m"}})" +
      "\n" + R"({"id":"0190a1b2-c3d4-7e5f-8a9b-000000000003","type":"insight","timestamp":0})" +
      "\n" + R"({"id":"0190a1b2-c3d4-7e5f-8a9b-000000000004","type":"feedback","timestamp":0})" +
      "\n" + R"([1,2])" + "\n";
  auto batch = ParseBatch(body, "north", {});
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->events.size(), 1u);
  ASSERT_EQ(batch->rejected.size(), 6u);
  EXPECT_EQ(batch->rejected[0].line, 3);
  EXPECT_NE(batch->rejected[0].error.find("invalid JSON"), std::string::npos);
  EXPECT_EQ(batch->rejected[1].id, "nope");
  EXPECT_NE(batch->rejected[2].error.find("'type'"), std::string::npos);
  EXPECT_EQ(batch->rejected[2].id, "0190a1b2-c3d4-7e5f-8a9b-000000000002");
  EXPECT_NE(batch->rejected[3].error.find("model.name"), std::string::npos);
  EXPECT_NE(batch->rejected[4].error.find("feedback"), std::string::npos);
  EXPECT_NE(batch->rejected[5].error.find("object"), std::string::npos);
}

TEST(ParseBatchTest, ControlCharactersInTextFieldsAreRejected) {
  auto batch = ParseBatch(
      R"({"id":"0190a1b2-c3d4-7e5f-8a9b-000000000001","type":"insight","timestamp":5,"model":{"name":"m\u0000x"}})",
      "north", {});
  ASSERT_TRUE(batch.ok());
  EXPECT_TRUE(batch->events.empty());
  ASSERT_EQ(batch->rejected.size(), 1u);
  EXPECT_NE(batch->rejected[0].error.find("control"), std::string::npos);
}

TEST(ParseBatchTest, AnotherSitesEventFailsTheWholeBatch) {
  std::string body = std::string(kGood) + "\n";
  auto batch = ParseBatch(body, "south", {});
  EXPECT_EQ(batch.status().code(), StatusCode::kPermissionDenied);
}

TEST(ParseBatchTest, MissingSiteTakesTheTokensSite) {
  auto batch = ParseBatch(
      R"({"id":"0190a1b2-c3d4-7e5f-8a9b-000000000001","type":"anomaly","timestamp":5,"model":{"name":"m"}})",
      "south", {});
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch->events.size(), 1u);
  EXPECT_EQ(batch->events[0].site, "south");
  EXPECT_EQ(batch->events[0].anomaly, 1);  // anomaly events are anomalous unless told otherwise
}

TEST(ParseBatchTest, TooManyEventsIsOutOfRange) {
  std::string body;
  for (int i = 0; i < 4; ++i) body += std::string(kGood) + "\n";
  EXPECT_EQ(ParseBatch(body, "north", {.max_events = 3}).status().code(), StatusCode::kOutOfRange);
}

TEST(ParseBatchTest, FeedbackNeedsATargetAndALabel) {
  auto batch = ParseBatch(
      R"({"id":"0190a1b2-c3d4-7e5f-8a9b-000000000009","type":"feedback","timestamp":5,)"
      R"("feedback":{"event_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","label":"fail","correct":false}})",
      "north", {});
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch->events.size(), 1u);
  EXPECT_EQ(batch->events[0].target_id, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(batch->events[0].label, "fail");
  EXPECT_EQ(batch->events[0].correct, 0);
}

}  // namespace
}  // namespace edgeloop::hub
