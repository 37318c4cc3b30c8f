// TaskRunner: where components run short tasks now or at a time, without owning threads.
//
// The HTTP server implements it over its I/O threads, so that work scheduled by the serving
// layer (a batch whose queue delay expired) runs beside request handling without a thread
// hand-off; tests use ManualTaskRunner with a FakeClock to run tasks deterministically.
#ifndef EDGELOOP_COMMON_TASK_RUNNER_H_
#define EDGELOOP_COMMON_TASK_RUNNER_H_

#include <functional>
#include <map>
#include <mutex>

#include "common/clock.h"

namespace edgeloop {

// Thread-safe.
class TaskRunner {
 public:
  using Task = std::function<void()>;
  virtual ~TaskRunner() = default;
  // Runs `task` soon, on some thread of the runner.
  virtual void Post(Task task) = 0;
  // Runs `task` at or after `when` (on the runner's clock).
  virtual void PostAt(Clock::SteadyTime when, Task task) = 0;
};

// Runs tasks only when told to; time comes from the given clock. Thread-safe.
class ManualTaskRunner : public TaskRunner {
 public:
  explicit ManualTaskRunner(Clock* clock) : clock_(clock) {}
  void Post(Task task) override { PostAt(Clock::SteadyTime::min(), std::move(task)); }
  void PostAt(Clock::SteadyTime when, Task task) override {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.emplace(when, std::move(task));
  }
  // Runs every task that is due at the clock's current time (including tasks they post that
  // are due); returns how many ran.
  int RunDue() {
    int ran = 0;
    for (;;) {
      Task task;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = tasks_.begin();
        if (it == tasks_.end() || it->first > clock_->Now()) return ran;
        task = std::move(it->second);
        tasks_.erase(it);
      }
      task();
      ++ran;
    }
  }
  size_t pending() const {
    std::lock_guard<std::mutex> lock(mu_);
    return tasks_.size();
  }

 private:
  Clock* clock_;
  mutable std::mutex mu_;
  std::multimap<Clock::SteadyTime, Task> tasks_;  // GUARDED_BY(mu_)
};

}  // namespace edgeloop

#endif  // EDGELOOP_COMMON_TASK_RUNNER_H_
