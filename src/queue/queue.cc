#include "queue/queue.h"

#include <algorithm>
#include <cmath>

#include "queue/internal.h"
#include "queue/redis_queue.h"
#include "queue/sqlite_queue.h"

namespace edgeloop::queue {

int DefaultPriority(std::string_view type) {
  return type == "anomaly" ? kPriorityAnomaly : kPriorityRoutine;
}

int64_t Event::StoredBytes() const {
  return static_cast<int64_t>(payload.size() + id.size() + type.size()) + 64;
}

std::chrono::milliseconds RetryPolicy::Backoff(int failed_attempts, double uniform01) const {
  const double base = static_cast<double>(initial_backoff.count()) *
                      std::pow(multiplier, std::max(0, failed_attempts - 1));
  const double cap = static_cast<double>(max_backoff.count());
  double delay = std::min(base, cap);
  delay *= 1.0 - jitter + 2.0 * jitter * std::clamp(uniform01, 0.0, 1.0);
  delay = std::clamp(delay, 0.0, cap);
  return std::chrono::milliseconds(static_cast<int64_t>(delay));
}

Status RetryPolicy::Validate() const {
  if (max_attempts < 1) return InvalidArgumentError("retry: max_attempts must be at least 1");
  if (initial_backoff.count() < 0 || max_backoff.count() < 0) {
    return InvalidArgumentError("retry: backoffs must not be negative");
  }
  if (!(multiplier >= 1.0)) return InvalidArgumentError("retry: multiplier must be >= 1");
  if (!(jitter >= 0.0 && jitter <= 1.0)) {
    return InvalidArgumentError("retry: jitter must be in [0, 1]");
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<Queue>> Queue::Open(const QueueOptions& options) {
  RETURN_IF_ERROR(options.retry.Validate());
  if (options.max_bytes < 0) return InvalidArgumentError("max_bytes must not be negative");
  if (!(options.low_watermark > 0 && options.low_watermark <= options.high_watermark &&
        options.high_watermark <= 1.0)) {
    return InvalidArgumentError("watermarks must satisfy 0 < low <= high <= 1");
  }
  if (options.max_event_bytes <= 0) return InvalidArgumentError("max_event_bytes must be > 0");
  if (options.default_visibility.count() <= 0) {
    return InvalidArgumentError("default_visibility must be > 0");
  }
  if (options.clock == nullptr) return InvalidArgumentError("clock must not be null");
  const std::string& url = options.url;
  if (url.empty())
    return InvalidArgumentError("queue URL is empty (file:///dir or redis://host:port/stream)");
  if (url.starts_with("redis://")) return RedisQueue::Open(options);
  std::string path;
  if (url.starts_with("file://")) {
    path = url.substr(7);
  } else if (url.starts_with("file:")) {
    path = url.substr(5);
  } else if (url.find("://") != std::string::npos) {
    return InvalidArgumentError("unsupported queue URL '" + url +
                                "' (want file:///dir or redis://host:port/stream)");
  } else {
    path = url;
  }
  if (path.empty()) return InvalidArgumentError("queue URL '" + url + "' names no folder");
  return SqliteQueue::Open(path, options);
}

Status Queue::AppendOne(Event event) {
  std::vector<Event> events;
  events.push_back(std::move(event));
  ASSIGN_OR_RETURN(AppendResult result, Append(std::move(events)));
  if (!result.rejected.empty()) {
    return ResourceExhaustedError("queue is full: event " + result.rejected.front() +
                                  " dropped by the disk budget");
  }
  return Status::Ok();
}

Status Queue::Ack(const queue::Lease& lease) {
  ASSIGN_OR_RETURN(std::vector<Status> results, AckBatch({lease}));
  return results.empty() ? InternalError("ack returned no result") : results.front();
}

bool IsStaleLease(const Status& status) { return status.code() == StatusCode::kAborted; }

namespace internal {

Status ValidateEvent(const Event& event, int64_t max_event_bytes) {
  if (event.type.empty() || event.type.size() > 32) {
    return InvalidArgumentError("event type must have 1 to 32 characters");
  }
  for (char c : event.type) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
      return InvalidArgumentError("event type '" + event.type + "' may only use [a-z0-9_-]");
    }
  }
  if (event.id.size() > 128) return InvalidArgumentError("event id longer than 128 characters");
  if (static_cast<int64_t>(event.payload.size()) > max_event_bytes) {
    return InvalidArgumentError("event payload of " + std::to_string(event.payload.size()) +
                                " bytes exceeds the limit of " + std::to_string(max_event_bytes));
  }
  return Status::Ok();
}

}  // namespace internal

}  // namespace edgeloop::queue
