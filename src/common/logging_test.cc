#include "common/logging.h"

#include <gtest/gtest.h>

#include "common/json_util.h"

namespace edgeloop::log {
namespace {

TEST(LoggingTest, TextFormatQuotesOnlyWhenNeeded) {
  EXPECT_EQ(FormatText("model loaded", {{"model", "fraud"}, {"version", 3}, {"ms", 12.5}}),
            "model loaded model=fraud version=3 ms=12.5");
  EXPECT_EQ(FormatText("x", {{"path", "/a b"}, {"empty", ""}}), R"(x path="/a b" empty="")");
  EXPECT_EQ(FormatText("x", {{"ok", true}}), "x ok=true");
}

TEST(LoggingTest, JsonFormatIsOneObjectWithEscapes) {
  EXPECT_EQ(FormatJson("2026-01-01T00:00:00.000Z", "info", "say \"hi\"\n",
                       {{"n", 1}, {"s", "a\\b"}, {"f", false}}),
            R"({"ts":"2026-01-01T00:00:00.000Z","level":"info","msg":"say \"hi\"\n",)"
            R"("n":1,"s":"a\\b","f":false})");
}

TEST(LoggingTest, RedactedValuesNeverAppear) {
  const std::string line = FormatText("token set", {{"token", Redacted{"s3cr3t"}}});
  EXPECT_EQ(line.find("s3cr3t"), std::string::npos);
  EXPECT_NE(line.find("<redacted>"), std::string::npos);
}

TEST(LoggingTest, StatusFieldsRenderAsText) {
  EXPECT_EQ(FormatText("failed", {{"error", NotFoundError("gone")}}),
            R"(failed error="NOT_FOUND: gone")");
}

TEST(LoggingTest, NonFiniteDoublesAreStrings) {
  EXPECT_EQ(FormatJson("t", "info", "m", {{"x", std::numeric_limits<double>::quiet_NaN()}}),
            R"({"ts":"t","level":"info","msg":"m","x":"NaN"})");
}

TEST(LoggingTest, ParsesFormatsAndLevels) {
  EXPECT_EQ(*ParseFormat("json"), Format::kJson);
  EXPECT_FALSE(ParseFormat("xml").ok());
  EXPECT_EQ(*ParseLevel("warn"), Level::kWarn);
  EXPECT_EQ(*ParseLevel("warning"), Level::kWarn);
  EXPECT_FALSE(ParseLevel("loud").ok());
}

TEST(LoggingTest, LevelFiltering) {
  Init(Format::kText, Level::kWarn);
  EXPECT_FALSE(Enabled(Level::kInfo));
  EXPECT_TRUE(Enabled(Level::kError));
  Init(Format::kText, Level::kInfo);
  EXPECT_TRUE(Enabled(Level::kInfo));
}

TEST(JsonUtilTest, EscapesControlCharactersAndInvalidUtf8) {
  EXPECT_EQ(json::Quote(std::string("a\x01z", 3)), "\"a\\u0001z\"");
  EXPECT_EQ(json::Quote("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
  EXPECT_EQ(json::Quote("bad\xff"), "\"bad\\ufffd\"");
  EXPECT_EQ(json::Quote("cut\xc3"), "\"cut\\ufffd\"");
  EXPECT_EQ(json::ErrorBody("no \"model\""), R"({"error":"no \"model\""})");
}

}  // namespace
}  // namespace edgeloop::log
