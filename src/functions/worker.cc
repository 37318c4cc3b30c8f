#include "functions/worker.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/logging.h"

namespace edgeloop::functions {

using Json = nlohmann::json;

Worker::Worker(WorkerOptions options) : options_(std::move(options)) {
  last_stats_at_ = options_.clock->Now();
  metrics::Registry* registry = options_.metrics;
  if (registry == nullptr) return;
  auto* events = registry->AddCounter(
      "edgeloop_worker_events_total",
      "Leased events by outcome: acked (done), retried (handed back), failed (handed back as a "
      "failure; the DLQ after max attempts), stale (the lease was lost before the ack)",
      {"outcome"});
  acked_ = events->With({"acked"});
  retried_ = events->With({"retried"});
  failed_ = events->With({"failed"});
  stale_ = events->With({"stale"});
  batches_ = registry->AddCounter("edgeloop_worker_batches_total", "Batches processed")->With({});
  batch_seconds_ =
      registry
          ->AddHistogram("edgeloop_worker_batch_seconds", "Time to run one batch through the chain",
                         {}, metrics::LatencyBuckets())
          ->With({});
  backlog_ = registry
                 ->AddGauge("edgeloop_worker_backlog_events",
                            "Events waiting in the queue (ready, leased, or waiting to retry)")
                 ->With({});
  oldest_age_ = registry
                    ->AddGauge("edgeloop_worker_oldest_unsent_age_seconds",
                               "Age of the oldest event not yet sent (queue time)")
                    ->With({});
  drain_rate_ = registry
                    ->AddGauge("edgeloop_worker_drain_rate_events_per_second",
                               "Events acked per second since the previous stats update")
                    ->With({});
  dlq_ = registry->AddGauge("edgeloop_worker_dead_letter_events", "Events in the dead-letter queue")
             ->With({});
  held_back_gauge_ = registry
                         ->AddGauge("edgeloop_worker_held_back",
                                    "1 while a destination or policy is unavailable and the "
                                    "worker leases nothing (store-and-forward)")
                         ->With({});
  in_flight_gauge_ =
      registry->AddGauge("edgeloop_worker_batches_in_flight", "Batches being processed")->With({});
}

StatusOr<std::unique_ptr<Worker>> Worker::Create(WorkerOptions options) {
  if (options.queue == nullptr) return InvalidArgumentError("worker: a queue is required");
  if (options.chain.empty())
    return InvalidArgumentError("worker: at least one function is required");
  if (options.batch_size < 1 || options.batch_size > 10'000) {
    return InvalidArgumentError("worker: batch size must be 1 to 10000");
  }
  if (options.concurrency < 1 || options.concurrency > 256) {
    return InvalidArgumentError("worker: concurrency must be 1 to 256");
  }
  if (options.visibility.count() <= 0) {
    return InvalidArgumentError("worker: the visibility timeout must be positive");
  }
  if (options.probe_initial.count() <= 0 || options.probe_max < options.probe_initial) {
    return InvalidArgumentError("worker: probe delays must be positive, initial <= max");
  }
  if (options.consumer.empty()) return InvalidArgumentError("worker: a consumer name is required");
  return std::unique_ptr<Worker>(new Worker(std::move(options)));
}

Worker::~Worker() { Drain(std::chrono::milliseconds(0)); }

bool Worker::held_back() const {
  std::lock_guard<std::mutex> lock(mu_);
  return held_back_;
}

void Worker::HoldBack(const Status& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!held_back_) {
    held_back_ = true;
    backoff_ = options_.probe_initial;
    log::Warn("holding back: a stage is unavailable; events wait in the queue",
              {{"error", why}, {"probe_in_ms", static_cast<int64_t>(backoff_.count())}});
  }
  probe_at_ = options_.clock->Now() + backoff_;
  if (held_back_gauge_) held_back_gauge_->Set(1);
}

void Worker::ProbeIfDue() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!held_back_ || options_.clock->Now() < probe_at_) return;
    // One prober at a time: push the next probe out while this one runs.
    probe_at_ = options_.clock->Now() + options_.probe_max;
  }
  Status status;
  for (const auto& function : options_.chain) {
    status = function->Probe();
    if (!status.ok()) break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (status.ok()) {
    held_back_ = false;
    if (held_back_gauge_) held_back_gauge_->Set(0);
    log::Info("resuming: every stage is available again");
    changed_.notify_all();
    return;
  }
  backoff_ = std::min(backoff_ * 2, options_.probe_max);
  probe_at_ = options_.clock->Now() + backoff_;
  log::Debug("still unavailable",
             {{"error", status}, {"next_probe_ms", static_cast<int64_t>(backoff_.count())}});
}

StatusOr<int> Worker::RunOnce(std::chrono::milliseconds wait) {
  if (held_back()) {
    ProbeIfDue();
    if (held_back()) return 0;
  }
  ASSIGN_OR_RETURN(
      std::vector<queue::Lease> leases,
      options_.queue->Lease(options_.consumer, options_.batch_size, options_.visibility, wait));
  if (leases.empty()) return 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++in_flight_;
    if (in_flight_gauge_) in_flight_gauge_->Set(in_flight_);
  }
  ProcessBatch(leases);
  {
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
    if (in_flight_gauge_) in_flight_gauge_->Set(in_flight_);
    changed_.notify_all();
  }
  return static_cast<int>(leases.size());
}

void Worker::ProcessBatch(std::vector<queue::Lease>& leases) {
  const Clock::SteadyTime started = options_.clock->Now();
  std::vector<Record> records(leases.size());
  std::vector<Result> results(leases.size());
  for (size_t i = 0; i < leases.size(); ++i) {
    const queue::Lease& lease = leases[i];
    Record& record = records[i];
    record.id = lease.event.id;
    record.type = lease.event.type;
    record.priority = lease.event.priority;
    record.attempt = lease.attempt;
    record.age_ms = lease.age_ms;
    record.body = Json::parse(lease.event.payload, nullptr, false);
    if (record.body.is_discarded() || !record.body.is_object()) {
      record.body = Json::object();
      results[i] = {Disposition::kFail, "the event payload is not a JSON object", std::nullopt};
    }
  }
  Context context;
  context.clock = options_.clock;
  context.cancelled = &cancelled_;
  // Records handed back without spending an attempt: the stage could not run at all (its
  // destination or policy unavailable, or the drain cancelled the batch).
  std::vector<bool> release(leases.size(), false);
  for (const auto& function : options_.chain) {
    const Status status = function->Run(records, results, context);
    if (status.ok()) continue;
    const bool unavailable = status.code() == StatusCode::kUnavailable;
    const bool cancelled = status.code() == StatusCode::kCancelled;
    for (size_t i = 0; i < results.size(); ++i) {
      Result& result = results[i];
      if (result.disposition == Disposition::kContinue ||
          (unavailable && result.disposition == Disposition::kRetry)) {
        // Handed back at once: the hold-back paces the retries, not the queue's backoff.
        result = {
            Disposition::kRetry, function->name() + ": " + status.message(),
            unavailable || cancelled ? std::optional(std::chrono::milliseconds(0)) : std::nullopt};
        release[i] = unavailable || cancelled;
      }
    }
    if (unavailable) HoldBack(status);
    if (!unavailable && !cancelled) {
      log::Warn("function failed", {{"function", function->name()}, {"error", status}});
    }
    break;
  }
  // Records absorbed into another end as it did (aggregates without an upload stage).
  for (size_t i = 0; i < records.size(); ++i) {
    const int leader = records[i].absorbed_into;
    if (leader >= 0 && results[i].disposition == Disposition::kContinue) {
      results[i] = results[static_cast<size_t>(leader)];
    }
  }

  std::vector<queue::Lease> to_ack;
  for (size_t i = 0; i < leases.size(); ++i) {
    const Result& result = results[i];
    if (result.disposition == Disposition::kContinue || result.disposition == Disposition::kDone) {
      to_ack.push_back(leases[i]);
      continue;
    }
    if (release[i]) {
      const Status released = options_.queue->Release(leases[i]);
      if (queue::IsStaleLease(released)) {
        if (stale_) stale_->Increment();
      } else if (!released.ok()) {
        log::Warn("release failed; the lease will expire instead",
                  {{"id", leases[i].event.id}, {"error", released}});
      } else if (retried_) {
        retried_->Increment();
      }
      continue;
    }
    auto outcome = options_.queue->Nack(
        leases[i], result.reason,
        result.disposition == Disposition::kRetry ? result.retry_after : std::nullopt);
    if (!outcome.ok()) {
      if (queue::IsStaleLease(outcome.status())) {
        if (stale_) stale_->Increment();
      } else {
        log::Warn("nack failed; the lease will expire instead",
                  {{"id", leases[i].event.id}, {"error", outcome.status()}});
      }
      continue;
    }
    if (*outcome == queue::NackOutcome::kDeadLettered) {
      log::Warn(
          "event moved to the dead-letter queue",
          {{"id", leases[i].event.id}, {"attempts", leases[i].attempt}, {"reason", result.reason}});
    }
    if (result.disposition == Disposition::kRetry) {
      if (retried_) retried_->Increment();
    } else if (failed_) {
      failed_->Increment();
    }
  }
  if (!to_ack.empty()) {
    auto acked = options_.queue->AckBatch(to_ack);
    if (!acked.ok()) {
      log::Warn("ack failed; the events will be delivered again", {{"error", acked.status()}});
    } else {
      for (const Status& status : *acked) {
        if (status.ok()) {
          acked_total_.fetch_add(1, std::memory_order_relaxed);
          if (acked_) acked_->Increment();
        } else if (stale_) {
          stale_->Increment();
        }
      }
    }
  }
  if (batches_) {
    batches_->Increment();
    batch_seconds_->Observe(std::chrono::duration<double>(options_.clock->Now() - started).count());
  }
}

Status Worker::UpdateStats() {
  ASSIGN_OR_RETURN(queue::QueueStats stats, options_.queue->Stats());
  const Clock::SteadyTime now = options_.clock->Now();
  const uint64_t acked = acked_total_.load(std::memory_order_relaxed);
  const double seconds = std::chrono::duration<double>(now - last_stats_at_).count();
  if (backlog_) {
    backlog_->Set(static_cast<double>(stats.ready + stats.leased + stats.retry));
    oldest_age_->Set(static_cast<double>(stats.oldest_age_ms) / 1000.0);
    dlq_->Set(static_cast<double>(stats.dlq_size));
    if (seconds > 0) drain_rate_->Set(static_cast<double>(acked - last_acked_) / seconds);
  }
  last_acked_ = acked;
  last_stats_at_ = now;
  return Status::Ok();
}

void Worker::Loop() {
  while (!stopping_.load()) {
    auto leased = RunOnce(options_.lease_wait);
    if (!leased.ok()) {
      log::Warn("lease failed", {{"error", leased.status()}});
      std::unique_lock<std::mutex> lock(mu_);
      changed_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_.load(); });
      continue;
    }
    if (*leased == 0 && held_back()) {
      // Held back: wait for the next probe (or the drain).
      std::unique_lock<std::mutex> lock(mu_);
      changed_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping_.load(); });
    }
  }
}

void Worker::StatsLoop() {
  while (!stopping_.load()) {
    if (Status status = UpdateStats(); !status.ok()) {
      log::Debug("queue stats failed", {{"error", status}});
    }
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_for(lock, std::chrono::seconds(2), [&] { return stopping_.load(); });
  }
}

void Worker::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  for (int i = 0; i < options_.concurrency; ++i) threads_.emplace_back([this] { Loop(); });
  stats_thread_ = std::thread([this] { StatsLoop(); });
}

bool Worker::Drain(std::chrono::milliseconds timeout) {
  std::vector<std::thread> threads;
  bool finished = true;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (drained_) return true;
    drained_ = true;
    stopping_.store(true);
    changed_.notify_all();
    // Real time: a drain is about the process's own shutdown, not the queue's clock.
    finished = changed_.wait_for(lock, timeout, [&] { return in_flight_ == 0; });
    if (!finished) {
      log::Warn("drain timeout: cancelling batches in flight; their events go back to the queue",
                {{"batches", in_flight_}});
      cancelled_.store(true);
    }
    threads = std::move(threads_);
  }
  for (std::thread& thread : threads) thread.join();
  if (stats_thread_.joinable()) stats_thread_.join();
  return finished;
}

}  // namespace edgeloop::functions
