// Worker: runs functions triggered by queue events, in batches, with a concurrency limit.
//
// Each of `concurrency` threads loops: lease up to `batch_size` events, run them through the
// chain of functions (function.h), ack what finished (passed every stage, or was finished by
// one) and nack the rest with its reason (retried after a backoff; the queue moves an event to
// its dead-letter queue after max attempts, with its history).
//
// Store-and-forward: when a stage reports kUnavailable (the destination is down, the policy
// does not load), the worker hands the batch back and holds back: it leases nothing, and probes
// every stage (Function::Probe) after a delay that doubles from probe_initial to probe_max,
// resuming as soon as all probes pass. The data waits in the queue, and the batches in flight
// when the outage began are released (Queue::Release), so an outage costs no delivery attempts.
//
// Drain (SIGTERM): Drain() stops leasing, lets batches in flight finish until the timeout, then
// cancels them (functions stop their subprocess or request), releases their events (no attempt
// spent), and returns. Thread-safe.
#ifndef EDGELOOP_FUNCTIONS_WORKER_H_
#define EDGELOOP_FUNCTIONS_WORKER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "functions/function.h"
#include "queue/queue.h"

namespace edgeloop::functions {

struct WorkerOptions {
  queue::Queue* queue = nullptr;  // not owned; must outlive the worker
  std::string consumer = "worker";
  std::vector<std::unique_ptr<Function>> chain;
  int batch_size = 100;
  int concurrency = 1;
  // How long a leased batch may take before the queue hands it to someone else.
  std::chrono::milliseconds visibility{60'000};
  // How long one Lease call waits for events to arrive (real time).
  std::chrono::milliseconds lease_wait{500};
  std::chrono::milliseconds probe_initial{1'000};
  std::chrono::milliseconds probe_max{60'000};
  Clock* clock = Clock::Real();
  metrics::Registry* metrics = nullptr;  // may be null
};

class Worker {
 public:
  static StatusOr<std::unique_ptr<Worker>> Create(WorkerOptions options);
  ~Worker();  // Drains with a zero timeout if still running.

  // One cycle on the calling thread (tests drive the worker this way, with a FakeClock): while
  // held back, probes when due and returns 0; otherwise leases one batch (waiting up to `wait`
  // for events), runs it and acks/nacks it. Returns how many events it leased, or the queue's
  // error.
  StatusOr<int> RunOnce(std::chrono::milliseconds wait);

  // Starts `concurrency` threads that loop over RunOnce. Call once.
  void Start();
  // Stops leasing; waits up to `timeout` for batches in flight, then cancels them (their events
  // are handed back). Returns true when every batch finished on its own. Idempotent.
  bool Drain(std::chrono::milliseconds timeout);

  // Refreshes the backlog metrics from the queue (backlog, oldest unsent age, drain rate, DLQ
  // size). The threads started by Start() call it every few seconds.
  Status UpdateStats();

  // True while a stage is unavailable and the worker leases nothing.
  bool held_back() const;

 private:
  explicit Worker(WorkerOptions options);
  void Loop();
  void StatsLoop();
  // Probes every stage; OK resumes leasing.
  void ProbeIfDue();
  void HoldBack(const Status& why);
  void ProcessBatch(std::vector<queue::Lease>& leases);

  WorkerOptions options_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> cancelled_{false};

  mutable std::mutex mu_;
  std::condition_variable changed_;
  bool held_back_ = false;                // GUARDED_BY(mu_)
  Clock::SteadyTime probe_at_;            // GUARDED_BY(mu_)
  std::chrono::milliseconds backoff_{0};  // GUARDED_BY(mu_)
  int in_flight_ = 0;                     // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;      // GUARDED_BY(mu_)
  std::thread stats_thread_;
  bool drained_ = false;  // GUARDED_BY(mu_)

  std::atomic<uint64_t> acked_total_{0};
  uint64_t last_acked_ = 0;          // stats thread only
  Clock::SteadyTime last_stats_at_;  // stats thread only

  std::shared_ptr<metrics::Counter> acked_, retried_, failed_, stale_, batches_;
  std::shared_ptr<metrics::Histogram> batch_seconds_;
  std::shared_ptr<metrics::Gauge> backlog_, oldest_age_, drain_rate_, dlq_, held_back_gauge_,
      in_flight_gauge_;
};

}  // namespace edgeloop::functions

#endif  // EDGELOOP_FUNCTIONS_WORKER_H_
