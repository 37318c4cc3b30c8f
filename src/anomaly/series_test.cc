#include "anomaly/series.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace edgeloop::anomaly {
namespace {

std::unique_ptr<SeriesTable> Table(int64_t max_series = 100, std::string detector = "ewma") {
  std::map<std::string, std::string> params = {{"detector", detector}, {"probation", "50"}};
  SeriesTableOptions options;
  options.detector = *DetectorOptions::Parse(&params);
  options.max_series = max_series;
  options.shards = 4;
  auto table = SeriesTable::Create(options);
  EXPECT_TRUE(table.ok()) << table.status();
  return std::move(*table);
}

// Feeds `n` points of a gentle sine to `key`, one request per point, starting at `t0`.
void Feed(SeriesTable* table, const std::string& key, int64_t t0, int n) {
  for (int i = 0; i < n; ++i) {
    std::vector<Verdict> out;
    const std::string keys[] = {key};
    const int64_t ts[] = {t0 + i * 1000};
    const double values[] = {std::sin(i / 5.0)};
    ASSERT_TRUE(table->Observe(keys, ts, values, &out).ok());
  }
}

Status ObserveOne(SeriesTable* table, const std::string& key, int64_t ts, double value,
                  Verdict* verdict = nullptr) {
  std::vector<Verdict> out;
  const std::string keys[] = {key};
  const int64_t t[] = {ts};
  const double v[] = {value};
  Status status = table->Observe(keys, t, v, &out);
  if (status.ok() && verdict) *verdict = out[0];
  return status;
}

TEST(SeriesTableTest, RejectsNanInfAndOutOfOrderWithoutChangingState) {
  auto table = Table();
  Feed(table.get(), "a", 0, 10);
  const int64_t points = table->points();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double bad : {nan, inf, -inf}) {
    const Status status = ObserveOne(table.get(), "a", 100000, bad);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(status.message().find("finite"), std::string::npos) << status;
  }
  const Status late = ObserveOne(table.get(), "a", 5000, 1.0);
  EXPECT_EQ(late.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(late.message().find("out of order"), std::string::npos) << late;
  EXPECT_EQ(table->points(), points);
  // Other series are independent: an early timestamp is fine there.
  EXPECT_TRUE(ObserveOne(table.get(), "b", 5, 1.0).ok());
}

TEST(SeriesTableTest, DuplicateTimestampIsARedeliveryOrAnError) {
  auto table = Table();
  Feed(table.get(), "a", 0, 100);
  Verdict first, again;
  ASSERT_TRUE(ObserveOne(table.get(), "a", 200000, 50.0, &first).ok());
  const int64_t points = table->points();
  ASSERT_TRUE(ObserveOne(table.get(), "a", 200000, 50.0, &again).ok());
  EXPECT_EQ(again.score, first.score);
  EXPECT_EQ(again.anomaly, first.anomaly);
  EXPECT_EQ(table->points(), points);  // not learned twice
  const Status other = ObserveOne(table.get(), "a", 200000, 51.0);
  EXPECT_EQ(other.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(other.message().find("duplicate"), std::string::npos) << other;
}

TEST(SeriesTableTest, BatchIsAllOrNothingAndRowsAreCheckedInOrder) {
  auto table = Table();
  std::vector<Verdict> out;
  const std::vector<std::string> keys = {"a", "b", "a"};
  const std::vector<int64_t> ts = {10, 10, 5};  // row 2 goes back in time for "a"
  const std::vector<double> values = {1, 2, 3};
  const Status status = table->Observe(keys, ts, values, &out);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("row 2"), std::string::npos) << status;
  EXPECT_EQ(table->size(), 0);
  EXPECT_EQ(table->points(), 0);
  const std::vector<int64_t> good = {10, 10, 11};
  ASSERT_TRUE(table->Observe(keys, good, values, &out).ok());
  EXPECT_EQ(out.size(), 3u);
  EXPECT_EQ(table->size(), 2);
  EXPECT_EQ(table->points(), 3);
  const std::vector<double> short_values = {1, 2};
  EXPECT_FALSE(table->Observe(keys, good, short_values, &out).ok());
  const std::vector<std::string> empty_key = {""};
  const std::vector<int64_t> one_ts = {1};
  const std::vector<double> one_value = {1};
  ASSERT_TRUE(table->Observe(empty_key, one_ts, one_value, &out).ok());  // a probe
  EXPECT_EQ(out[0].score, 0.0);
  EXPECT_EQ(table->size(), 2);
  EXPECT_EQ(table->points(), 3);
}

TEST(SeriesTableTest, LeastRecentlyUsedSeriesAreEvictedAndCounted) {
  auto table = Table(/*max_series=*/4);  // 4 shards of one series each
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(ObserveOne(table.get(), "s" + std::to_string(i), 1, 1).ok());
  EXPECT_LE(table->size(), 4);
  EXPECT_EQ(table->evictions(), 20 - table->size());
}

TEST(SeriesTableTest, CheckpointRoundTripContinuesWithTheSameScores) {
  for (const char* detector : {"ewma", "knn_cad", "context"}) {
    auto a = Table(100, detector);
    Feed(a.get(), "x", 0, 300);
    Feed(a.get(), "y", 0, 120);
    const std::string checkpoint = a->Encode();
    auto b = Table(100, detector);
    ASSERT_TRUE(b->Decode(checkpoint).ok()) << detector;
    EXPECT_EQ(b->size(), 2);
    EXPECT_EQ(b->Encode(), checkpoint);
    for (int i = 0; i < 50; ++i) {
      Verdict va, vb;
      const double v = std::sin(i / 3.0) * 2;
      ASSERT_TRUE(ObserveOne(a.get(), "x", 1000000 + i, v, &va).ok());
      ASSERT_TRUE(ObserveOne(b.get(), "x", 1000000 + i, v, &vb).ok());
      EXPECT_EQ(va.score, vb.score) << detector << " " << i;
    }
    // The restored series remembers its last timestamp.
    EXPECT_FALSE(ObserveOne(b.get(), "y", 0, 1.0).ok());
  }
}

TEST(SeriesTableTest, CorruptOrForeignCheckpointIsRefusedAndLeavesTheTableEmpty) {
  auto a = Table();
  Feed(a.get(), "x", 0, 100);
  std::string checkpoint = a->Encode();
  auto b = Table();
  std::string flipped = checkpoint;
  flipped[flipped.size() / 2] ^= 0x40;
  EXPECT_EQ(b->Decode(flipped).code(), StatusCode::kDataLoss);
  EXPECT_EQ(b->size(), 0);
  EXPECT_EQ(b->Decode(checkpoint.substr(0, checkpoint.size() / 2)).code(), StatusCode::kDataLoss);
  EXPECT_EQ(b->Decode("").code(), StatusCode::kDataLoss);
  auto other = Table(100, "context");
  EXPECT_EQ(other->Decode(checkpoint).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(other->size(), 0);
}

TEST(SeriesTableTest, CheckpointOfAnOlderStateLayoutIsRefusedNamingItsVersion) {
  auto a = Table(100, "context");
  Feed(a.get(), "x", 0, 100);
  std::string checkpoint = a->Encode();
  // The version follows the magic string (a length and its bytes); version 1 had no mean
  // range watch in the context detector's state.
  uint64_t magic_size = 0;
  std::memcpy(&magic_size, checkpoint.data(), sizeof magic_size);
  const uint32_t old_version = 1;
  std::memcpy(checkpoint.data() + sizeof magic_size + magic_size, &old_version, sizeof old_version);
  const std::string body = checkpoint.substr(0, checkpoint.size() - 8);
  const uint64_t checksum = Fnv1a64(body);
  std::memcpy(checkpoint.data() + body.size(), &checksum, sizeof checksum);
  auto b = Table(100, "context");
  const Status status = b->Decode(checkpoint);
  EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(status.ToString().find("checkpoint version 1 is not supported"), std::string::npos)
      << status;
  EXPECT_EQ(b->size(), 0);
}

}  // namespace
}  // namespace edgeloop::anomaly
