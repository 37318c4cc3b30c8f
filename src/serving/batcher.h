// Dynamic batching for one model version.
//
// Requests are queued; a batch of up to `max_batch_size` rows runs when it is full, when the
// oldest request has waited `max_queue_delay_us`, or at once when the delay is 0 (then the
// requests that arrived while the model was busy form the next batch). Batches run on the thread
// that completed them (an I/O thread) or on the TaskRunner when a delay expires, so an idle
// model answers without any thread hand-off. At most `max_concurrency` batches run at once.
//
// Thread-safe.
#ifndef EDGELOOP_SERVING_BATCHER_H_
#define EDGELOOP_SERVING_BATCHER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/task_runner.h"
#include "common/unique_function.h"
#include "inference/model.h"

namespace edgeloop::serving {

// One request's part of a batch.
struct BatchItem {
  std::vector<inference::Tensor> inputs;  // same first dimension (rows) for all
  std::vector<int> output_indices;        // into ModelConfig::outputs
  // Receives this request's rows of the requested outputs (in output_indices order), or the
  // error of the batch. Called exactly once, on the thread that ran the batch.
  UniqueFunction<void(StatusOr<std::vector<inference::Tensor>>)> done;

  int64_t rows() const { return inputs.empty() ? 0 : inputs.front().shape().front(); }
};

struct BatcherOptions {
  int64_t max_batch_size = 64;
  int64_t max_queue_delay_us = 0;
  int64_t max_queue_size = 1024;
  int max_concurrency = 1;
};

class Batcher : public std::enable_shared_from_this<Batcher> {
 public:
  // `runner` and `clock` must outlive the batcher and every task it posts; the histograms may
  // be null.
  Batcher(BatcherOptions options, std::shared_ptr<const inference::Model> model, TaskRunner* runner,
          Clock* clock, std::shared_ptr<metrics::Histogram> queue_seconds,
          std::shared_ptr<metrics::Histogram> batch_rows);

  // Queues `item` and possibly runs batches on the calling thread before returning. When
  // max_queue_size requests already wait, calls `item.done` at once with kResourceExhausted.
  void Submit(BatchItem item);

  size_t queued() const;

 private:
  bool DueLocked(Clock::SteadyTime now) const;  // REQUIRES(mu_)
  void ArmTimerLocked();                        // REQUIRES(mu_)
  void OnTimer();
  // Runs batches while some are due; the caller has incremented running_.
  void Drain();
  void Run(std::vector<BatchItem> batch);

  const BatcherOptions options_;
  std::shared_ptr<const inference::Model> model_;
  TaskRunner* runner_;
  Clock* clock_;
  std::shared_ptr<metrics::Histogram> queue_seconds_;
  std::shared_ptr<metrics::Histogram> batch_rows_;

  struct Queued {
    BatchItem item;
    Clock::SteadyTime enqueued;
  };
  mutable std::mutex mu_;
  std::deque<Queued> queue_;  // GUARDED_BY(mu_)
  int64_t queued_rows_ = 0;   // GUARDED_BY(mu_)
  int running_ = 0;           // GUARDED_BY(mu_)
  bool timer_armed_ = false;  // GUARDED_BY(mu_)
};

// Runs `model` on the concatenation of the items' inputs and hands each item its rows of the
// outputs. Exposed for tests and for the unbatched path (one item).
void RunBatch(const inference::Model& model, std::vector<BatchItem>& batch);

}  // namespace edgeloop::serving

#endif  // EDGELOOP_SERVING_BATCHER_H_
