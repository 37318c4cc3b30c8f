#include "common/clock.h"

#include <gtest/gtest.h>

namespace edgeloop {
namespace {

TEST(FakeClockTest, MovesOnlyWhenAdvanced) {
  FakeClock clock;
  const auto start = clock.Now();
  const auto wall = clock.WallNow();
  EXPECT_EQ(clock.Now(), start);
  clock.Advance(std::chrono::milliseconds(1500));
  EXPECT_EQ(clock.Now() - start, std::chrono::milliseconds(1500));
  EXPECT_EQ(clock.WallNow() - wall, std::chrono::milliseconds(1500));
}

TEST(FakeClockTest, WallTimeCanBeSet) {
  FakeClock clock;
  clock.SetWallTime(std::chrono::sys_days(std::chrono::year{2026} / 11 / 27) +
                    std::chrono::hours(4) + std::chrono::milliseconds(50));
  EXPECT_EQ(FormatRfc3339(clock.WallNow()), "2026-11-27T04:00:00.050Z");
}

TEST(RealClockTest, IsMonotonic) {
  Clock* clock = Clock::Real();
  const auto a = clock->Now();
  const auto b = clock->Now();
  EXPECT_LE(a, b);
}

}  // namespace
}  // namespace edgeloop
