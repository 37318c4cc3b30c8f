// The scale-out queue: a Redis stream with one consumer group, shared by every process that opens
// the same redis://host:port/stream URL. Private to src/queue; use Queue::Open("redis://...").
//
// Events live in one stream per priority (a lane), so that Lease can hand out the highest
// priority first, as the embedded queue does. Each operation is one Lua script (EVALSHA), so it
// is atomic on the server: Append adds to the lanes (XADD) and applies the disk budget; Lease
// first makes due entries (expired leases, finished backoffs) ready again, then walks the lanes
// from the highest priority down, re-claiming ready entries with XCLAIM and reading new ones with
// XREADGROUP; Ack checks the fence and removes the entries (XACK + XDEL); Nack records the
// attempt and schedules the retry or moves the entry to the dead-letter stream. docs/queue.md
// lists every key.
//
// Concurrent Appends are combined (client-side group commit): whoever finds no batch in flight
// sends everything queued so far as one script call, one round trip, and wakes the callers it
// carried when Redis answered.
//
// Thread-safe: commands run on a small pool of connections, one per concurrent caller.
#ifndef EDGELOOP_QUEUE_REDIS_QUEUE_H_
#define EDGELOOP_QUEUE_REDIS_QUEUE_H_

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "queue/queue.h"

struct redisContext;

namespace edgeloop::queue {

class RedisQueue final : public Queue {
 public:
  static StatusOr<std::unique_ptr<Queue>> Open(const QueueOptions& options);
  ~RedisQueue() override;

  std::string Describe() const override;
  StatusOr<AppendResult> Append(std::vector<Event> events) override;
  StatusOr<std::vector<queue::Lease>> Lease(std::string_view consumer, int max,
                                            std::chrono::milliseconds visibility,
                                            std::chrono::milliseconds wait) override;
  StatusOr<std::vector<Status>> AckBatch(const std::vector<queue::Lease>& leases) override;
  StatusOr<NackOutcome> Nack(const queue::Lease& lease, std::string_view reason,
                             std::optional<std::chrono::milliseconds> retry_after) override;
  Status Release(const queue::Lease& lease, std::chrono::milliseconds delay) override;
  Status DeadLetter(const queue::Lease& lease, std::string_view reason) override;
  StatusOr<QueueStats> Stats() override;
  StatusOr<std::vector<EventInfo>> Peek(int limit) override;
  StatusOr<std::vector<EventInfo>> DlqList(int limit) override;
  StatusOr<int64_t> DlqReplay(const std::vector<std::string>& ids) override;

  class Reply;  // an owned redisReply (redis_queue.cc)

 private:
  RedisQueue(const QueueOptions& options, std::string host, int port, std::string stream);

  // One caller's events waiting to be sent (4 script arguments per event).
  struct AppendRequest {
    std::vector<std::string> args;
    size_t count = 0;
    std::vector<size_t> rejected;  // positions in this request
    Status status;
    bool done = false;  // GUARDED_BY(append_mu_)
  };

  // Runs script number `script` with KEYS = {stream} and `args`, on a pooled connection
  // (reconnecting once if the connection broke).
  StatusOr<std::unique_ptr<Reply>> Eval(int script, const std::vector<std::string>& args);
  StatusOr<std::unique_ptr<Reply>> EvalViews(int script, const std::vector<std::string_view>& args);
  // Sends the requests as one Append script call and fills in their results.
  void SendAppends(const std::vector<AppendRequest*>& batch);
  StatusOr<redisContext*> Connect();
  void ReturnConnection(redisContext* context, bool healthy);
  int64_t WallMs() const;
  double Uniform01();

  const QueueOptions options_;
  const std::string host_;
  const int port_;
  const std::string stream_;
  std::vector<std::string> shas_;  // SHA1 of each script, set by Open

  std::mutex mu_;
  std::vector<redisContext*> idle_;  // GUARDED_BY(mu_)
  std::mt19937_64 rng_;              // GUARDED_BY(mu_)

  std::mutex append_mu_;
  std::condition_variable append_cv_;        // a batch finished
  std::deque<AppendRequest*> append_queue_;  // GUARDED_BY(append_mu_)
  int append_in_flight_ = 0;                 // GUARDED_BY(append_mu_); batches being sent
};

}  // namespace edgeloop::queue

#endif  // EDGELOOP_QUEUE_REDIS_QUEUE_H_
