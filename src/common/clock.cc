#include "common/clock.h"

#include <cstdio>
#include <ctime>
#include <string>

namespace edgeloop {
namespace {

class RealClock final : public Clock {
 public:
  SteadyTime Now() const override { return std::chrono::steady_clock::now(); }
  WallTime WallNow() const override { return std::chrono::system_clock::now(); }
};

}  // namespace

Clock* Clock::Real() {
  static RealClock* clock = new RealClock();
  return clock;
}

FakeClock::FakeClock()
    : steady_(std::chrono::hours(1000)),
      wall_(std::chrono::sys_days(std::chrono::year{2026} / 1 / 1)) {}

Clock::SteadyTime FakeClock::Now() const {
  std::lock_guard<std::mutex> lock(mu_);
  return steady_;
}

Clock::WallTime FakeClock::WallNow() const {
  std::lock_guard<std::mutex> lock(mu_);
  return wall_;
}

void FakeClock::Advance(std::chrono::nanoseconds delta) {
  std::lock_guard<std::mutex> lock(mu_);
  steady_ += delta;
  wall_ += std::chrono::duration_cast<WallTime::duration>(delta);
}

void FakeClock::SetWallTime(WallTime wall) {
  std::lock_guard<std::mutex> lock(mu_);
  wall_ = wall;
}

std::string FormatRfc3339(Clock::WallTime wall) {
  const auto since_epoch = wall.time_since_epoch();
  const auto seconds = std::chrono::floor<std::chrono::seconds>(since_epoch);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
  const std::time_t t = static_cast<std::time_t>(seconds.count());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buf;
}

}  // namespace edgeloop
