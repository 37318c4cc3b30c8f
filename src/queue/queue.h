// Queue: the durable insight queue between `serve` (producers) and `worker` (consumers).
//
// One interface, two backends, chosen by URL in QueueOptions::url:
//   file:///var/lib/edgeloop/queue          embedded: SQLite in WAL mode, group commit; several
//                                           processes on one box may open it (worker + CLI)
//   redis://127.0.0.1:6379/insights         scale-out: Redis Streams with a consumer group, shared
//                                           by many processes and hosts
// docs/queue.md describes the semantics, the on-disk format and the Redis key layout.
//
// Delivery is at least once. The life of an event:
//
//   Append ──▶ ready ──Lease──▶ leased ──Ack──▶ (gone)
//                ▲                 │ Nack, or the visibility timeout passes
//                │                 ▼
//                └── retry ◀── attempts < max_attempts ?  ── no ──▶ dead (the DLQ)
//                (waits its backoff)                                 │ DlqReplay
//                ▲───────────────────────────────────────────────────┘
//
// * Append returns only after every stored event is durable (fsynced for the embedded queue;
//   written by Redis under its appendfsync policy for Redis). Concurrent Appends share one commit
//   (group commit): each caller blocks until the commit holding its events is on disk.
// * Lease hands out up to `max` visible events, each with `attempt` (1 on first delivery) and a
//   `fence` token: a number that grows with every lease the queue grants. An event leased again
//   (after its lease expired or was nacked) gets a new, larger fence; Ack/Nack with an older
//   fence fail with kAborted (IsStaleLease), so a worker that lost its lease cannot ack or
//   requeue work another worker now owns.
// * Nack records (time, consumer, reason) in the event's history and makes it visible again
//   after a backoff from RetryPolicy (exponential, with jitter), or moves it to the dead-letter
//   queue when it has used max_attempts. A lease that expires counts as a failed attempt with
//   reason "lease expired".
// * Release hands a lease back without spending an attempt (the consumer never started on it);
//   DeadLetter moves a leased event to the DLQ at once (a failure no retry can fix).
// * Dead events keep their payload, reason and attempt history until DlqReplay puts them back
//   (ready, with a fresh attempt count; the history is kept) or the disk budget drops them.
//
// Time. Visibility, backoff and ages are measured in "queue time": the embedded queue counts
// monotonic time (Clock::Now) accumulated across runs and persisted in the database, so a wall
// clock jump never expires or ages anything, and a reboot resumes the count where it stopped
// (time while the queue was closed does not count). Wall time (Clock::WallNow) is recorded only
// for people (enqueued_unix_ms, history). The Redis backend shares one queue between hosts, so
// its lease deadlines and ages use the clients' wall clocks (Clock::WallNow; keep hosts on NTP):
// a jump can end a lease early or late (a redelivery, which at-least-once allows) but never loses
// data. In both backends nothing is ever dropped for its age: only the disk budget drops events.
//
// Disk budget. Stored bytes (Event::StoredBytes of live and dead events) never exceed
// max_bytes. When an Append would take them above high_watermark * max_bytes, the queue drops
// events until they are at or below low_watermark * max_bytes (or the incoming events fit), in
// this order: lowest priority first (routine insights and feedback before anomalies), and within
// a priority the oldest first, dead or alive. An incoming event is never stored at the cost of
// an event with a higher priority: if it cannot fit otherwise, it is itself dropped and listed in
// AppendResult::rejected. Every drop is counted by reason ("quota:<type>" for stored events,
// "rejected:<type>" for incoming ones); the counts are persisted and shown by Stats.
//
// Thread safety: every method of Queue is thread-safe. A Lease is a plain value.
#ifndef EDGELOOP_QUEUE_QUEUE_H_
#define EDGELOOP_QUEUE_QUEUE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace edgeloop::queue {

// Priorities: higher values are kept longer under disk pressure. Any int is allowed.
inline constexpr int kPriorityRoutine = 0;  // insights, feedback
inline constexpr int kPriorityAnomaly = 10;

// "anomaly" → kPriorityAnomaly, anything else → kPriorityRoutine.
int DefaultPriority(std::string_view type);

struct Event {
  // A UUIDv7 (NewEventId in queue/uuid.h). Append assigns one when empty. Consumers must be
  // idempotent on it: at-least-once delivery may hand the same id out twice.
  std::string id;
  // "insight", "anomaly", "feedback", or another name of 1 to 32 characters [a-z0-9_-].
  std::string type = "insight";
  int priority = kPriorityRoutine;
  // JSON bytes (not parsed by the queue; any bytes are stored as they are).
  std::string payload;

  // What this event counts against the disk budget: payload + id + type + 64 bytes overhead.
  int64_t StoredBytes() const;
};

// One failed attempt, in the order they happened.
struct Attempt {
  int64_t unix_ms = 0;   // wall time, for people
  std::string consumer;  // who held the lease
  std::string reason;    // the Nack reason, or "lease expired"
};

// An event handed to a consumer. Pass it back unchanged to Ack or Nack.
struct Lease {
  Event event;
  int attempt = 1;     // 1 on the first delivery, +1 on every redelivery
  uint64_t fence = 0;  // fencing token, larger for every lease the queue grants
  std::string consumer;
  std::string handle;  // backend locator (row id, stream entry id); opaque
  int64_t enqueued_unix_ms = 0;
  int64_t age_ms = 0;            // queue time since the Append, at the moment of the lease
  std::vector<Attempt> history;  // earlier failed attempts
};

// What Peek and DlqList show about a stored event.
struct EventInfo {
  Event event;
  std::string handle;
  std::string state;  // "ready", "leased", "retry" (waiting out a backoff) or "dead"
  int attempts = 0;   // leases granted so far (reset by DlqReplay)
  int64_t enqueued_unix_ms = 0;
  int64_t age_ms = 0;
  std::vector<Attempt> history;
  std::string dead_reason;  // why it is in the DLQ (the last attempt's reason, or "max attempts")
};

struct AppendResult {
  std::vector<std::string> ids;       // every input event's id, in input order
  std::vector<std::string> rejected;  // ids not stored: no room without dropping higher priority
};

enum class NackOutcome { kRetry, kDeadLettered };

struct QueueStats {
  std::string backend;  // "file" or "redis"
  int64_t ready = 0;    // visible now
  int64_t leased = 0;   // held under an unexpired lease
  int64_t retry = 0;    // waiting out a backoff (or an expired lease not yet reclaimed)
  std::map<int, int64_t> depth_by_priority;  // ready + leased + retry, by priority
  int64_t oldest_age_ms = 0;  // queue-time age of the oldest live event; 0 when empty
  int64_t bytes = 0;          // stored bytes, live and dead
  int64_t max_bytes = 0;      // 0: no budget
  int64_t dlq_size = 0;
  std::map<std::string, int64_t> drops;  // reason → events dropped, since the queue was created
  int64_t appended_total = 0;
  int64_t acked_total = 0;
  int64_t dead_lettered_total = 0;
};

// Retry with exponential backoff and jitter.
struct RetryPolicy {
  int max_attempts = 5;  // leases per event before it goes to the DLQ (>= 1)
  std::chrono::milliseconds initial_backoff{1000};
  double multiplier = 2.0;
  std::chrono::milliseconds max_backoff{5 * 60 * 1000};
  // Fraction of the backoff that is randomised: the delay is uniform in
  // [backoff * (1 - jitter), backoff * (1 + jitter)], capped at max_backoff.
  double jitter = 0.2;

  // Delay after `failed_attempts` (>= 1) failures: initial * multiplier^(failed_attempts - 1),
  // jittered with `uniform01` (a number in [0, 1)).
  std::chrono::milliseconds Backoff(int failed_attempts, double uniform01) const;
  Status Validate() const;
};

struct QueueOptions {
  // "file:///abs/dir" (the folder is created), "file:relative/dir", a plain path (taken as
  // file), or "redis://host:port/stream-name" (also "redis://host:port" → stream "edgeloop").
  std::string url;
  // Not owned; must outlive the queue.
  Clock* clock = Clock::Real();
  // Uniform random numbers in [0, 1) for backoff jitter; empty: a generator seeded from
  // std::random_device.
  std::function<double()> uniform01;
  RetryPolicy retry;
  // Used by Lease when its `visibility` is zero.
  std::chrono::milliseconds default_visibility{30'000};
  // Disk budget in bytes of Event::StoredBytes; 0: none.
  int64_t max_bytes = 0;
  double high_watermark = 0.9;
  double low_watermark = 0.8;
  // Larger events are refused with kInvalidArgument.
  int64_t max_event_bytes = 1 << 20;
  // Redis only: the consumer group, and the timeout of one command.
  std::string redis_group = "edgeloop";
  std::chrono::milliseconds redis_timeout{5'000};
  // Open only to read (the CLI's stats/peek/dlq ls): never creates anything, and for the
  // embedded queue does not take the process lock, so it works beside a running worker.
  bool read_only = false;
};

class Queue {
 public:
  virtual ~Queue() = default;

  // Opens (creating if needed) the queue named by options.url. Errors: kInvalidArgument for a
  // bad URL or options; kUnavailable when Redis cannot be reached; kFailedPrecondition when
  // another process holds the embedded queue open for writing; kDataLoss for a corrupt database.
  static StatusOr<std::unique_ptr<Queue>> Open(const QueueOptions& options);

  // "file:///..." or "redis://...".
  virtual std::string Describe() const = 0;

  // Stores the events durably, applying the disk budget, and returns once they are durable.
  // Events with an empty id get a UUIDv7. kInvalidArgument (nothing stored) when an event is
  // larger than max_event_bytes or has a bad type; an error from the store means nothing from
  // this call was acknowledged (some events may still have been stored; ids make redelivery
  // harmless).
  virtual StatusOr<AppendResult> Append(std::vector<Event> events) = 0;
  // One event; kResourceExhausted when the budget rejects it. (Not an Append overload: with
  // one, `Append({event})` would quietly pick it.)
  Status AppendOne(Event event);

  // Leases up to `max` visible events to `consumer` for `visibility` (0: default_visibility):
  // higher priority first, then oldest first, in both backends (Redis keeps one stream per
  // priority). If none is visible, waits up to `wait` (real time) for one to be appended, then
  // returns what it has (possibly nothing). Expired leases found on the way count as failed
  // attempts (dead-lettering events that used max_attempts). (Inside Queue the name Lease is this
  // method; the struct is queue::Lease.)
  virtual StatusOr<std::vector<queue::Lease>> Lease(std::string_view consumer, int max,
                                                    std::chrono::milliseconds visibility,
                                                    std::chrono::milliseconds wait = {}) = 0;

  // Removes leased events for good. One Status per lease, in order: OK, or kAborted
  // (IsStaleLease) when the lease is no longer current (expired and leased again, dead-lettered,
  // dropped, or already acked). A non-stale error (I/O) fails the whole batch.
  virtual StatusOr<std::vector<Status>> AckBatch(const std::vector<queue::Lease>& leases) = 0;
  Status Ack(const queue::Lease& lease);

  // Gives a leased event back: it becomes visible after `retry_after` (default: the
  // RetryPolicy backoff for lease.attempt), or goes to the DLQ with `reason` when it has used
  // max_attempts. kAborted (IsStaleLease) when the lease is no longer current.
  virtual StatusOr<NackOutcome> Nack(const queue::Lease& lease, std::string_view reason,
                                     std::optional<std::chrono::milliseconds> retry_after = {}) = 0;

  // Gives a leased event back without counting the lease as an attempt: it becomes visible again
  // after `delay` (0: at once) with the attempt number it had, and nothing is added to its
  // history. For a consumer that could not start on the event (draining, its destination down),
  // so that outages never push events towards the DLQ. kAborted (IsStaleLease) when the lease is
  // no longer current; kInvalidArgument for a negative delay.
  virtual Status Release(const queue::Lease& lease, std::chrono::milliseconds delay = {}) = 0;

  // Moves a leased event to the dead-letter queue now, whatever attempts it has left (for a
  // failure that retrying cannot fix). `reason` becomes its dead reason and the last entry of its
  // history. kAborted (IsStaleLease) when the lease is no longer current.
  virtual Status DeadLetter(const queue::Lease& lease, std::string_view reason) = 0;

  virtual StatusOr<QueueStats> Stats() = 0;

  // Up to `limit` live events in delivery order (ready first, then retry and leased), without
  // leasing them.
  virtual StatusOr<std::vector<EventInfo>> Peek(int limit) = 0;

  // Up to `limit` dead events, oldest first.
  virtual StatusOr<std::vector<EventInfo>> DlqList(int limit) = 0;
  // Makes dead events ready again (attempt count reset, history kept). `ids`: event ids to
  // replay; empty: all. Returns how many were replayed; ids not in the DLQ are ignored.
  virtual StatusOr<int64_t> DlqReplay(const std::vector<std::string>& ids) = 0;
};

// True for the kAborted status that Ack/Nack return for a lease that is no longer current.
bool IsStaleLease(const Status& status);

}  // namespace edgeloop::queue

#endif  // EDGELOOP_QUEUE_QUEUE_H_
