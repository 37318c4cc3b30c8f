// The embedded queue: one SQLite database in WAL mode (synchronous=FULL) in a folder, with group
// commit. Private to src/queue; use Queue::Open("file:///dir").
//
// Every operation (appends, leases, acks, nacks, replays, reads) becomes a closure that one
// writer thread runs: it takes everything queued since its last commit, runs it in one
// transaction (a savepoint per operation, so one failing operation does not undo the others),
// commits (one fsync of the WAL) and only then wakes the callers. So N producers appending at
// once pay for one fsync, and an Append returns only after its commit is on disk. Lease, Ack and
// Nack commit without an fsync when no append shares their transaction (see Run).
//
// Several processes may open the same folder (the worker and `edgeloop queue dlq replay`, say):
// each transaction starts with BEGIN IMMEDIATE and reloads the counters it keeps (fence, bytes,
// queue time) from the database, so nothing is cached across transactions.
//
// Thread-safe.
#ifndef EDGELOOP_QUEUE_SQLITE_QUEUE_H_
#define EDGELOOP_QUEUE_SQLITE_QUEUE_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "queue/queue.h"

struct sqlite3;

namespace edgeloop::queue {

class SqliteQueue final : public Queue {
 public:
  static StatusOr<std::unique_ptr<Queue>> Open(const std::string& dir, const QueueOptions& options);
  ~SqliteQueue() override;

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

  class Db;  // the connection and its prepared statements (sqlite_queue.cc)

 private:
  // Counters kept in the `meta` table, reloaded at the start of every transaction.
  struct Meta {
    int64_t qtime_ms = 0;  // queue time of this transaction
    int64_t fence = 0;     // last fence handed out
    int64_t bytes = 0;
    int64_t appended = 0;
    int64_t acked = 0;
    int64_t dead = 0;
  };
  // One operation waiting for the writer. Shared by the caller and the writer, so that the
  // writer can still signal `done` after the caller has seen it and returned.
  struct Op {
    std::function<Status()> body;
    bool durable = true;   // must be fsynced before the caller hears back
    bool isolated = true;  // runs in its own savepoint (it may fail alone)
    Status status;         // written by the writer before `done`
    std::mutex mu;         // only the caller and the writer take it: no contention across callers
    std::condition_variable done_cv;
    bool done = false;  // GUARDED_BY(mu)
  };
  using OpPtr = std::shared_ptr<Op>;

  SqliteQueue(std::string dir, const QueueOptions& options, std::unique_ptr<Db> db,
              std::unique_ptr<Db> checkpoint_db);

  // Runs `body` inside a transaction (on the writer thread, or inline when read-only) and returns
  // its status, or the commit's failure. A transaction holding any durable op commits with
  // synchronous=FULL (fsync); one with only non-durable ops (leases, acks, nacks, reads) commits
  // with synchronous=NORMAL: it survives a process crash, and a power loss can undo it, which
  // only means a redelivery.
  // Appends pass isolated=false: they fail only when the store does, and then the whole
  // transaction fails, so they need no savepoint of their own.
  Status Run(std::function<Status()> body, bool durable = true, bool isolated = true);
  void WriterLoop();
  Status RunBatch(std::deque<OpPtr>& batch);
  // Copies the WAL into the database on its own connection, off the writer's path, whenever the
  // writer's commits have left enough pages in the WAL (see wal_pages_).
  void CheckpointLoop();
  Status LoadMeta();
  Status SaveMeta();
  int64_t WallMs() const;
  double Uniform01();
  // Inside a transaction: returns expired leases and due retries to ready (or the DLQ).
  Status Reclaim();
  Status AddDrops(const std::map<std::string, int64_t>& drops);

  const std::string dir_;
  const QueueOptions options_;
  std::unique_ptr<Db> db_;

  // Queue time: qtime = qt_base_ms_ + (clock->Now() - qt_steady_base_). Used only inside
  // transactions, which are serialised (writer thread, or run_mu_ when read-only).
  int64_t qt_base_ms_ = 0;
  Clock::SteadyTime qt_steady_base_;
  Meta meta_;
  bool synchronous_full_ = true;  // the connection's current PRAGMA synchronous

  std::mutex rng_mu_;
  std::mt19937_64 rng_;  // GUARDED_BY(rng_mu_)

  std::mutex run_mu_;  // serialises inline transactions when read-only

  std::mutex mu_;
  std::condition_variable work_cv_;     // the writer waits for ops
  std::condition_variable visible_cv_;  // Lease(wait) waits for new visible events
  std::deque<OpPtr> pending_;           // GUARDED_BY(mu_)
  bool stop_ = false;                   // GUARDED_BY(mu_)
  uint64_t visible_epoch_ = 0;          // GUARDED_BY(mu_); bumped when events become ready
  std::thread writer_;

  // Background checkpoints (not when read-only).
  std::unique_ptr<Db> checkpoint_db_;
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  int wal_pages_ = 0;             // GUARDED_BY(checkpoint_mu_); from the writer's WAL hook
  bool checkpoint_stop_ = false;  // GUARDED_BY(checkpoint_mu_)
  std::thread checkpointer_;
  friend int WalHook(void*, sqlite3*, const char*, int);
};

}  // namespace edgeloop::queue

#endif  // EDGELOOP_QUEUE_SQLITE_QUEUE_H_
