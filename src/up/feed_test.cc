#include "up/feed.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/test_util.h"

namespace edgeloop::up {
namespace {

TEST(FeedStatsTest, AucMatchesTheRankDefinition) {
  EXPECT_DOUBLE_EQ(FeedStats::Auc({{0.1, 0}, {0.2, 0}, {0.8, 1}, {0.9, 1}}), 1.0);
  EXPECT_DOUBLE_EQ(FeedStats::Auc({{0.9, 0}, {0.8, 0}, {0.2, 1}, {0.1, 1}}), 0.0);
  EXPECT_DOUBLE_EQ(FeedStats::Auc({{0.5, 0}, {0.5, 1}}), 0.5);  // a tie counts half
  // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
  EXPECT_DOUBLE_EQ(FeedStats::Auc({{0.1, 0}, {0.4, 0}, {0.35, 1}, {0.8, 1}}), 0.75);
  EXPECT_TRUE(std::isnan(FeedStats::Auc({{0.1, 0}, {0.2, 0}})));
}

TEST(FeedStatsTest, AccuracyPerVersionAndPhaseAndRollingWindow) {
  FeedStats stats(/*rolling_window=*/4, /*threshold=*/0.5);
  EXPECT_TRUE(std::isnan(stats.RollingAccuracy()));
  stats.Add("1", 0, 1, 0.9);  // correct
  stats.Add("1", 0, 0, 0.1);  // correct
  stats.Add("1", 1, 0, 0.9);  // wrong
  stats.Add("1", 1, 1, 0.2);  // wrong
  EXPECT_DOUBLE_EQ(stats.RollingAccuracy(), 0.5);
  stats.Add("2", 1, 0, 0.1);  // correct; pushes out the first row
  stats.Add("2", 1, 1, 0.7);  // correct; pushes out the second
  EXPECT_DOUBLE_EQ(stats.RollingAccuracy(), 0.5);
  stats.Add("2", 1, 1, 0.6);
  stats.Add("2", 1, 0, 0.4);
  EXPECT_DOUBLE_EQ(stats.RollingAccuracy(), 1.0);
  auto json = nlohmann::json::parse(stats.ToJson());
  EXPECT_EQ(json["versions"]["1"]["0"]["rows"], 2);
  EXPECT_DOUBLE_EQ(json["versions"]["1"]["0"]["accuracy"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(json["versions"]["1"]["1"]["accuracy"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(json["versions"]["2"]["1"]["accuracy"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(json["versions"]["2"]["1"]["auc"].get<double>(), 1.0);
}

TEST(FeedTest, SavedPositionIsZeroWithoutAState) {
  testing::TempDir dir;
  EXPECT_EQ(SavedFeedPosition(dir.path() / "feed.json"), 0u);
  {
    std::ofstream out(dir.path() / "feed.json");
    out << R"({"position": 1234, "total": 5000})";
  }
  EXPECT_EQ(SavedFeedPosition(dir.path() / "feed.json"), 1234u);
  {
    std::ofstream out(dir.path() / "feed.json");
    out << "garbage";
  }
  EXPECT_EQ(SavedFeedPosition(dir.path() / "feed.json"), 0u);
}

}  // namespace
}  // namespace edgeloop::up
