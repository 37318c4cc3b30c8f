// Clock: the source of time for every component, injected so that tests use FakeClock instead
// of sleeping.
#ifndef EDGELOOP_COMMON_CLOCK_H_
#define EDGELOOP_COMMON_CLOCK_H_

#include <chrono>
#include <mutex>
#include <string>

namespace edgeloop {

// Thread-safe.
class Clock {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;
  using WallTime = std::chrono::system_clock::time_point;

  virtual ~Clock() = default;
  // Monotonic time, for durations and deadlines.
  virtual SteadyTime Now() const = 0;
  // Calendar time, for timestamps shown to people and stored in records.
  virtual WallTime WallNow() const = 0;

  // The process-wide real clock; never destroyed.
  static Clock* Real();
};

// A clock that moves only when told to. Thread-safe.
class FakeClock : public Clock {
 public:
  FakeClock();
  SteadyTime Now() const override;
  WallTime WallNow() const override;
  // Moves both clocks forward by `delta` (which must not be negative).
  void Advance(std::chrono::nanoseconds delta);
  void SetWallTime(WallTime wall);

 private:
  mutable std::mutex mu_;
  SteadyTime steady_;  // GUARDED_BY(mu_)
  WallTime wall_;      // GUARDED_BY(mu_)
};

// "2026-11-27T04:50:00.123Z" (UTC, millisecond precision).
std::string FormatRfc3339(Clock::WallTime wall);

}  // namespace edgeloop

#endif  // EDGELOOP_COMMON_CLOCK_H_
