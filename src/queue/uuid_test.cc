#include "queue/uuid.h"

#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace edgeloop::queue {
namespace {

TEST(UuidTest, NewEventIdIsACanonicalVersion7Uuid) {
  FakeClock clock;
  const std::string id = NewEventId(clock);
  ASSERT_EQ(id.size(), 36u);
  EXPECT_TRUE(IsUuid(id));
  EXPECT_EQ(id[14], '7');                                          // version
  EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos);  // variant 10xx
  const int64_t expected_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock.WallNow().time_since_epoch())
          .count();
  EXPECT_GE(UuidV7UnixMs(id), expected_ms);
}

TEST(UuidTest, IdsIncreaseEvenWhenTheClockStandsStillOrStepsBack) {
  FakeClock clock;
  clock.Advance(std::chrono::hours(24 * 365 * 5));  // ahead of ids made by other tests
  std::string last = NewEventId(clock);
  for (int i = 0; i < 10000; ++i) {
    if (i == 5000) clock.SetWallTime(clock.WallNow() - std::chrono::hours(1));
    const std::string next = NewEventId(clock);
    ASSERT_LT(last, next) << "at " << i;
    last = next;
  }
}

TEST(UuidTest, ConcurrentIdsAreUnique) {
  std::vector<std::vector<std::string>> ids(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&ids, t] {
      for (int i = 0; i < 5000; ++i) ids[t].push_back(NewEventId());
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::string> all;
  for (const auto& list : ids) all.insert(list.begin(), list.end());
  EXPECT_EQ(all.size(), 20000u);
}

TEST(UuidTest, IsUuidRejectsMalformedText) {
  EXPECT_FALSE(IsUuid(""));
  EXPECT_FALSE(IsUuid("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5"));
  EXPECT_FALSE(IsUuid("0190a1b2xc3d4-7e5f-8a9b-0c1d2e3f4a5b"));
  EXPECT_FALSE(IsUuid("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g"));
  EXPECT_TRUE(IsUuid("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
  EXPECT_EQ(UuidV7UnixMs("0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b"), 0);  // version 4
}

}  // namespace
}  // namespace edgeloop::queue
