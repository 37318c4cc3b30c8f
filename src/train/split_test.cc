#include "train/split.h"

#include <gtest/gtest.h>

#include <set>

namespace edgeloop::train {
namespace {

TEST(SplitTest, RandomSplitIsSeededAndPartitionsTheRows) {
  auto a = RandomSplit(1000, {0.2, 0.1}, 7);
  auto b = RandomSplit(1000, {0.2, 0.1}, 7);
  auto c = RandomSplit(1000, {0.2, 0.1}, 8);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->test, b->test);
  EXPECT_EQ(a->validation, b->validation);
  EXPECT_NE(a->test, c->test);
  EXPECT_EQ(a->test.size(), 100u);
  EXPECT_EQ(a->validation.size(), 200u);
  EXPECT_EQ(a->train.size(), 700u);
  std::set<int64_t> all(a->train.begin(), a->train.end());
  all.insert(a->validation.begin(), a->validation.end());
  all.insert(a->test.begin(), a->test.end());
  EXPECT_EQ(all.size(), 1000u);
  EXPECT_TRUE(std::is_sorted(a->test.begin(), a->test.end()));
}

TEST(SplitTest, PermutationIsStableAcrossCalls) {
  // Pinned values: the permutation must not depend on the standard library.
  const std::vector<int64_t> p = Permutation(5, 1);
  EXPECT_EQ(p, Permutation(5, 1));
  std::set<int64_t> unique(p.begin(), p.end());
  EXPECT_EQ(unique.size(), 5u);
}

TEST(SplitTest, BadFractionsAndEmptySplitsAreRefused) {
  EXPECT_EQ(RandomSplit(100, {0.6, 0.5}, 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(RandomSplit(100, {0, 0.5}, 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(RandomSplit(2, {0.1, 0.1}, 1).status().code(), StatusCode::kInvalidArgument);
}

TEST(SplitTest, GroupSplitKeepsEveryGroupInOneSplit) {
  std::vector<std::string> groups;
  for (int i = 0; i < 2000; ++i) groups.push_back("machine-" + std::to_string(i % 40));
  auto split = GroupSplit(groups, {0.15, 0.15}, 3);
  ASSERT_TRUE(split.ok()) << split.status();
  auto keys = [&](const std::vector<int64_t>& rows) {
    std::set<std::string> out;
    for (int64_t r : rows) out.insert(groups[r]);
    return out;
  };
  const auto train = keys(split->train), valid = keys(split->validation), test = keys(split->test);
  for (const auto& k : test) {
    EXPECT_EQ(train.count(k), 0u) << k;
    EXPECT_EQ(valid.count(k), 0u) << k;
  }
  for (const auto& k : valid) EXPECT_EQ(train.count(k), 0u) << k;
  EXPECT_GE(split->test.size(), 300u);
  EXPECT_LT(split->test.size(), 400u);
  EXPECT_EQ(GroupSplit(std::vector<std::string>{"a", "b", "a"}, {0.2, 0.2}, 1).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(SplitTest, TimeSplitTrainsOnThePastAndTestsOnTheMostRecent) {
  std::vector<int64_t> times;
  for (int i = 0; i < 100; ++i) times.push_back((i * 37) % 100);  // shuffled 0..99
  auto split = TimeSplit(times, {0.2, 0.1});
  ASSERT_TRUE(split.ok()) << split.status();
  int64_t max_train = -1, min_valid = 1000, max_valid = -1, min_test = 1000;
  for (int64_t r : split->train) max_train = std::max(max_train, times[r]);
  for (int64_t r : split->validation) {
    min_valid = std::min(min_valid, times[r]);
    max_valid = std::max(max_valid, times[r]);
  }
  for (int64_t r : split->test) min_test = std::min(min_test, times[r]);
  EXPECT_LT(max_train, min_valid);
  EXPECT_LT(max_valid, min_test);
  EXPECT_EQ(split->test.size(), 10u);
  EXPECT_EQ(split->validation.size(), 20u);
  EXPECT_EQ(*split->test_start, 90);
}

TEST(SplitTest, TimeSplitNeverCutsThroughOneTimestamp) {
  std::vector<int64_t> times(50, 1);
  times.insert(times.end(), 50, 2);
  // The test cut lands on time 2, the validation cut on time 1 as well: no training rows.
  EXPECT_EQ(TimeSplit(times, {0.1, 0.2}).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgeloop::train
