#include "serving/batcher.h"

#include <algorithm>
#include <cstring>

namespace edgeloop::serving {
namespace {

using inference::Tensor;

// Bytes (or strings) per row of a tensor.
int64_t RowElements(const Tensor& tensor) {
  int64_t per_row = 1;
  for (size_t i = 1; i < tensor.shape().size(); ++i) per_row *= tensor.shape()[i];
  return per_row;
}

Tensor Concatenate(const std::vector<const Tensor*>& parts, int64_t total_rows) {
  const Tensor& first = *parts.front();
  inference::Shape shape = first.shape();
  shape[0] = total_rows;
  Tensor out(first.name(), first.datatype(), shape);
  if (first.datatype() == inference::DataType::kBytes) {
    size_t at = 0;
    for (const Tensor* part : parts) {
      for (const std::string& s : part->strings()) out.strings()[at++] = s;
    }
  } else {
    std::byte* dest = out.bytes().data();
    for (const Tensor* part : parts) {
      std::memcpy(dest, part->bytes().data(), part->bytes().size());
      dest += part->bytes().size();
    }
  }
  return out;
}

Tensor SliceRows(const Tensor& tensor, int64_t first_row, int64_t rows) {
  inference::Shape shape = tensor.shape();
  shape[0] = rows;
  Tensor out(tensor.name(), tensor.datatype(), shape);
  const int64_t per_row = RowElements(tensor);
  if (tensor.datatype() == inference::DataType::kBytes) {
    std::copy_n(tensor.strings().begin() + first_row * per_row, rows * per_row,
                out.strings().begin());
  } else {
    const size_t row_bytes =
        static_cast<size_t>(per_row) * inference::DataTypeByteSize(tensor.datatype());
    std::memcpy(out.bytes().data(), tensor.bytes().data() + first_row * row_bytes,
                static_cast<size_t>(rows) * row_bytes);
  }
  return out;
}

}  // namespace

void RunBatch(const inference::Model& model, std::vector<BatchItem>& batch) {
  if (batch.size() == 1) {
    BatchItem& item = batch.front();
    std::vector<Tensor> outputs;
    Status status = model.Predict(item.inputs, item.output_indices, &outputs);
    if (status.ok()) {
      item.done(std::move(outputs));
    } else {
      item.done(std::move(status));
    }
    return;
  }
  // The union of the requested outputs, and each item's positions in it.
  std::vector<int> outputs_wanted;
  for (const BatchItem& item : batch) {
    for (int index : item.output_indices) {
      if (std::find(outputs_wanted.begin(), outputs_wanted.end(), index) == outputs_wanted.end()) {
        outputs_wanted.push_back(index);
      }
    }
  }
  std::sort(outputs_wanted.begin(), outputs_wanted.end());
  int64_t total_rows = 0;
  for (const BatchItem& item : batch) total_rows += item.rows();
  std::vector<Tensor> inputs;
  const size_t input_count = batch.front().inputs.size();
  for (size_t i = 0; i < input_count; ++i) {
    std::vector<const Tensor*> parts;
    parts.reserve(batch.size());
    for (const BatchItem& item : batch) parts.push_back(&item.inputs[i]);
    inputs.push_back(Concatenate(parts, total_rows));
  }
  std::vector<Tensor> outputs;
  Status status = model.Predict(inputs, outputs_wanted, &outputs);
  if (!status.ok()) {
    for (BatchItem& item : batch) item.done(status);
    return;
  }
  int64_t first_row = 0;
  for (BatchItem& item : batch) {
    std::vector<Tensor> mine;
    mine.reserve(item.output_indices.size());
    for (int index : item.output_indices) {
      const size_t position = static_cast<size_t>(
          std::find(outputs_wanted.begin(), outputs_wanted.end(), index) - outputs_wanted.begin());
      mine.push_back(SliceRows(outputs[position], first_row, item.rows()));
    }
    first_row += item.rows();
    item.done(std::move(mine));
  }
}

Batcher::Batcher(BatcherOptions options, std::shared_ptr<const inference::Model> model,
                 TaskRunner* runner, Clock* clock,
                 std::shared_ptr<metrics::Histogram> queue_seconds,
                 std::shared_ptr<metrics::Histogram> batch_rows)
    : options_(options),
      model_(std::move(model)),
      runner_(runner),
      clock_(clock),
      queue_seconds_(std::move(queue_seconds)),
      batch_rows_(std::move(batch_rows)) {}

size_t Batcher::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

bool Batcher::DueLocked(Clock::SteadyTime now) const {
  if (queue_.empty()) return false;
  if (options_.max_queue_delay_us == 0 || queued_rows_ >= options_.max_batch_size) return true;
  return now >= queue_.front().enqueued + std::chrono::microseconds(options_.max_queue_delay_us);
}

void Batcher::ArmTimerLocked() {
  if (timer_armed_ || queue_.empty() || options_.max_queue_delay_us == 0) return;
  timer_armed_ = true;
  const Clock::SteadyTime when =
      queue_.front().enqueued + std::chrono::microseconds(options_.max_queue_delay_us);
  runner_->PostAt(when, [self = shared_from_this()] { self->OnTimer(); });
}

void Batcher::Submit(BatchItem item) {
  const Clock::SteadyTime now = clock_->Now();
  bool run_directly = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (static_cast<int64_t>(queue_.size()) >= options_.max_queue_size) {
      lock.unlock();
      item.done(ResourceExhaustedError("the model's request queue is full (" +
                                       std::to_string(options_.max_queue_size) +
                                       " requests); retry later"));
      return;
    }
    if (running_ >= options_.max_concurrency) {
      queued_rows_ += item.rows();
      queue_.push_back({std::move(item), now});
      ArmTimerLocked();
      return;
    }
    // An idle model with nothing queued runs a request that need not wait at once, without
    // passing it through the queue.
    run_directly = queue_.empty() &&
                   (options_.max_queue_delay_us == 0 || item.rows() >= options_.max_batch_size);
    if (!run_directly) {
      queued_rows_ += item.rows();
      queue_.push_back({std::move(item), now});
      if (!DueLocked(now)) {
        ArmTimerLocked();
        return;
      }
    }
    ++running_;
  }
  if (run_directly) {
    if (queue_seconds_) queue_seconds_->Observe(0);
    std::vector<BatchItem> batch;
    batch.push_back(std::move(item));
    Run(std::move(batch));
  }
  Drain();
}

void Batcher::OnTimer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    timer_armed_ = false;
    if (running_ >= options_.max_concurrency) return;  // the running batch re-arms when done
    if (!DueLocked(clock_->Now())) {
      ArmTimerLocked();
      return;
    }
    ++running_;
  }
  Drain();
}

void Batcher::Drain() {
  for (;;) {
    std::vector<BatchItem> batch;
    const Clock::SteadyTime now = clock_->Now();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!DueLocked(now)) {
        --running_;
        ArmTimerLocked();
        return;
      }
      int64_t rows = 0;
      while (!queue_.empty()) {
        const int64_t next = queue_.front().item.rows();
        if (!batch.empty() && rows + next > options_.max_batch_size) break;
        rows += next;
        if (queue_seconds_) {
          queue_seconds_->Observe(
              std::chrono::duration<double>(now - queue_.front().enqueued).count());
        }
        batch.push_back(std::move(queue_.front().item));
        queue_.pop_front();
      }
      queued_rows_ -= rows;
    }
    Run(std::move(batch));
  }
}

void Batcher::Run(std::vector<BatchItem> batch) {
  if (batch_rows_) {
    int64_t rows = 0;
    for (const BatchItem& item : batch) rows += item.rows();
    batch_rows_->Observe(static_cast<double>(rows));
  }
  RunBatch(*model_, batch);
}

}  // namespace edgeloop::serving
