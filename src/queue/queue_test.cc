// The behaviour every queue backend must have, run against the embedded queue (SQLite) and the
// Redis Streams queue (a real redis-server started on 127.0.0.1 by the test).
#include "queue/queue.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>

#include "common/test_util.h"
#include "gtest/gtest.h"
#include "queue/test_redis.h"
#include "queue/uuid.h"

namespace edgeloop::queue {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Each backend makes fresh, empty queue URLs.
struct FileBackend {
  static constexpr const char* kName = "file";
  static bool Available(std::string*) { return true; }
  std::string NewUrl() {
    return "file://" + (dir.path() / ("q" + std::to_string(counter++))).string();
  }
  edgeloop::testing::TempDir dir{"queue_test"};
  int counter = 0;
};

struct RedisBackend {
  static constexpr const char* kName = "redis";
  static std::unique_ptr<testing::TestRedis>& Server() {
    static std::unique_ptr<testing::TestRedis> server;
    return server;
  }
  static bool Available(std::string* why) {
    if (Server()) return true;
    auto started = testing::TestRedis::Start();
    if (!started.ok()) {
      *why = started.status().ToString();
      return false;
    }
    Server() = std::move(started).value();
    return true;
  }
  std::string NewUrl() {
    static std::atomic<int> counter{0};
    return Server()->Url("q" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  }
};

template <typename Backend>
class QueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!Backend::Available(&why)) GTEST_SKIP() << "skipping the redis backend: " << why;
    url_ = backend_.NewUrl();
  }

  QueueOptions Options() {
    QueueOptions options;
    options.url = url_;
    options.clock = &clock_;
    options.uniform01 = [] { return 0.5; };  // no jitter: backoffs are exact
    options.retry.initial_backoff = milliseconds(1000);
    options.retry.max_attempts = 3;
    return options;
  }
  std::unique_ptr<Queue> Open(const QueueOptions& options) {
    auto queue = Queue::Open(options);
    EXPECT_TRUE(queue.ok()) << queue.status();
    return queue.ok() ? std::move(queue).value() : nullptr;
  }
  std::unique_ptr<Queue> Open() { return Open(Options()); }

  static Event MakeEvent(std::string type, std::string payload) {
    Event event;
    event.priority = DefaultPriority(type);
    event.type = std::move(type);
    event.payload = std::move(payload);
    return event;
  }

  Backend backend_;
  FakeClock clock_;
  std::string url_;
};

using Backends = ::testing::Types<FileBackend, RedisBackend>;
class BackendNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return T::kName;
  }
};
TYPED_TEST_SUITE(QueueTest, Backends, BackendNames);

TYPED_TEST(QueueTest, CallerChosenIdsWithSeparatorsAndPrioritiesRoundTrip) {
  // The Redis backend packs type|prio|wall|bytes|id into one field: an id holding the separator,
  // and negative priorities, must come back unchanged.
  auto queue = this->Open();
  ASSERT_NE(queue, nullptr);
  Event odd = this->MakeEvent("anomaly", "{}");
  odd.id = "site|7||id|";
  odd.priority = -3;
  Event plain = this->MakeEvent("insight", "payload|with|bars");
  plain.id = "plain";
  plain.priority = 5;
  auto appended = queue->Append({odd, plain});
  ASSERT_TRUE(appended.ok()) << appended.status();
  auto leases = queue->Lease("w1", 10, seconds(30));
  ASSERT_TRUE(leases.ok()) << leases.status();
  ASSERT_EQ(leases->size(), 2u);
  EXPECT_EQ((*leases)[0].event.id, "plain");  // the higher priority first
  EXPECT_EQ((*leases)[0].event.priority, 5);
  EXPECT_EQ((*leases)[0].event.payload, "payload|with|bars");
  EXPECT_EQ((*leases)[1].event.id, "site|7||id|");
  EXPECT_EQ((*leases)[1].event.type, "anomaly");
  EXPECT_EQ((*leases)[1].event.priority, -3);
  EXPECT_GT((*leases)[1].enqueued_unix_ms, 0);
  auto acked = queue->AckBatch(*leases);
  ASSERT_TRUE(acked.ok()) << acked.status();
  for (const Status& status : *acked) EXPECT_TRUE(status.ok()) << status;
  auto stats = queue->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->bytes, 0);
}

TYPED_TEST(QueueTest, AppendedEventIsLeasedOnceAndGoneAfterAck) {
  auto queue = this->Open();
  ASSERT_NE(queue, nullptr);
  auto appended = queue->Append({this->MakeEvent("insight", R"({"x":1})")});
  ASSERT_TRUE(appended.ok()) << appended.status();
  ASSERT_EQ(appended->ids.size(), 1u);
  EXPECT_TRUE(IsUuid(appended->ids[0]));
  EXPECT_TRUE(appended->rejected.empty());

  auto leases = queue->Lease("w1", 10, seconds(30));
  ASSERT_TRUE(leases.ok()) << leases.status();
  ASSERT_EQ(leases->size(), 1u);
  const Lease& lease = (*leases)[0];
  EXPECT_EQ(lease.event.id, appended->ids[0]);
  EXPECT_EQ(lease.event.type, "insight");
  EXPECT_EQ(lease.event.payload, R"({"x":1})");
  EXPECT_EQ(lease.attempt, 1);
  EXPECT_GT(lease.fence, 0u);
  EXPECT_EQ(lease.consumer, "w1");

  // Leased: nobody else gets it.
  auto again = queue->Lease("w2", 10, seconds(30));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());

  EXPECT_TRUE(queue->Ack(lease).ok());
  // A second ack of the same lease is stale.
  EXPECT_TRUE(IsStaleLease(queue->Ack(lease)));

  auto stats = queue->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->ready + stats->leased + stats->retry, 0);
  EXPECT_EQ(stats->bytes, 0);
  EXPECT_EQ(stats->appended_total, 1);
  EXPECT_EQ(stats->acked_total, 1);
}

TYPED_TEST(QueueTest, ExpiredLeaseIsRedeliveredAndLateAckWithOldFenceIsRejected) {
  auto queue = this->Open();
  ASSERT_NE(queue, nullptr);
  ASSERT_TRUE(queue->AppendOne(this->MakeEvent("insight", "{}")).ok());
  auto first = queue->Lease("slow", 1, seconds(10));
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 1u);

  this->clock_.Advance(seconds(9));
  auto none = queue->Lease("fast", 1, seconds(10));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty()) << "redelivered before the visibility timeout";

  this->clock_.Advance(seconds(2));
  auto second = queue->Lease("fast", 1, seconds(10));
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->size(), 1u);
  const Lease& old_lease = (*first)[0];
  const Lease& new_lease = (*second)[0];
  EXPECT_EQ(new_lease.event.id, old_lease.event.id);
  EXPECT_EQ(new_lease.attempt, 2);
  EXPECT_GT(new_lease.fence, old_lease.fence);
  ASSERT_EQ(new_lease.history.size(), 1u);
  EXPECT_EQ(new_lease.history[0].consumer, "slow");
  EXPECT_EQ(new_lease.history[0].reason, "lease expired");

  // The worker that lost its lease can neither ack nor nack.
  EXPECT_TRUE(IsStaleLease(queue->Ack(old_lease)));
  auto nack = queue->Nack(old_lease, "late", std::nullopt);
  EXPECT_TRUE(IsStaleLease(nack.status()));
  EXPECT_TRUE(queue->Ack(new_lease).ok());
}

TYPED_TEST(QueueTest, NackedEventWaitsOutItsBackoff) {
  auto queue = this->Open();
  ASSERT_NE(queue, nullptr);
  ASSERT_TRUE(queue->AppendOne(this->MakeEvent("insight", "{}")).ok());
  auto leases = queue->Lease("w", 1, seconds(30));
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->size(), 1u);
  auto outcome = queue->Nack((*leases)[0], "upstream 503", std::nullopt);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(*outcome, NackOutcome::kRetry);

  // Backoff after one failure: initial_backoff (1 s), no jitter with uniform01 = 0.5.
  this->clock_.Advance(milliseconds(999));
  auto early = queue->Lease("w", 1, seconds(30));
  ASSERT_TRUE(early.ok());
  EXPECT_TRUE(early->empty());
  auto stats = queue->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->retry, 1);

  this->clock_.Advance(milliseconds(2));
  auto due = queue->Lease("w", 1, seconds(30));
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].attempt, 2);
  ASSERT_EQ((*due)[0].history.size(), 1u);
  EXPECT_EQ((*due)[0].history[0].reason, "upstream 503");
}

TYPED_TEST(QueueTest, PoisonMessageGoesToDlqWithHistoryAndCanBeReplayed) {
  auto queue = this->Open();  // max_attempts = 3
  ASSERT_NE(queue, nullptr);
  ASSERT_TRUE(queue->AppendOne(this->MakeEvent("insight", R"({"poison":true})")).ok());
  ASSERT_TRUE(queue->AppendOne(this->MakeEvent("insight", R"({"fine":true})")).ok());
  std::string poison_id;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    auto leases = queue->Lease("w", 10, seconds(30));
    ASSERT_TRUE(leases.ok()) << leases.status();
    bool saw_poison = false;
    for (const Lease& lease : *leases) {
      if (lease.event.payload == R"({"fine":true})") {
        EXPECT_TRUE(queue->Ack(lease).ok());
        continue;
      }
      saw_poison = true;
      poison_id = lease.event.id;
      EXPECT_EQ(lease.attempt, attempt);
      auto outcome = queue->Nack(lease, "parse error " + std::to_string(attempt), std::nullopt);
      ASSERT_TRUE(outcome.ok()) << outcome.status();
      EXPECT_EQ(*outcome, attempt == 3 ? NackOutcome::kDeadLettered : NackOutcome::kRetry);
    }
    EXPECT_TRUE(saw_poison) << "attempt " << attempt;
    this->clock_.Advance(seconds(10));  // past any backoff (1 s, 2 s)
  }
  auto leases = queue->Lease("w", 10, seconds(30));
  ASSERT_TRUE(leases.ok());
  EXPECT_TRUE(leases->empty()) << "a dead event was delivered";

  auto dead = queue->DlqList(10);
  ASSERT_TRUE(dead.ok()) << dead.status();
  ASSERT_EQ(dead->size(), 1u);
  const EventInfo& info = (*dead)[0];
  EXPECT_EQ(info.event.id, poison_id);
  EXPECT_EQ(info.event.payload, R"({"poison":true})");
  EXPECT_EQ(info.state, "dead");
  EXPECT_EQ(info.attempts, 3);
  EXPECT_EQ(info.dead_reason, "parse error 3");
  ASSERT_EQ(info.history.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(info.history[i].reason, "parse error " + std::to_string(i + 1));
    EXPECT_EQ(info.history[i].consumer, "w");
    EXPECT_GT(info.history[i].unix_ms, 0);
  }
  auto stats = queue->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->dlq_size, 1);
  EXPECT_EQ(stats->dead_lettered_total, 1);

  auto unknown = queue->DlqReplay({"not-an-id"});
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(*unknown, 0);
  auto replayed = queue->DlqReplay({poison_id});
  ASSERT_TRUE(replayed.ok()) << replayed.status();
  EXPECT_EQ(*replayed, 1);
  auto after = queue->DlqList(10);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty());
  auto redelivered = queue->Lease("w", 10, seconds(30));
  ASSERT_TRUE(redelivered.ok());
  ASSERT_EQ(redelivered->size(), 1u);
  EXPECT_EQ((*redelivered)[0].event.id, poison_id);
  EXPECT_EQ((*redelivered)[0].attempt, 1);          // a fresh count
  EXPECT_EQ((*redelivered)[0].history.size(), 3u);  // the history stays
  EXPECT_TRUE(queue->Ack((*redelivered)[0]).ok());
}

TYPED_TEST(QueueTest, LeaseThatKeepsExpiringEndsInDlq) {
  auto queue = this->Open();  // max_attempts = 3
  ASSERT_NE(queue, nullptr);
  ASSERT_TRUE(queue->AppendOne(this->MakeEvent("insight", "{}")).ok());
  for (int attempt = 1; attempt <= 3; ++attempt) {
    auto leases = queue->Lease("crashy", 1, seconds(5));
    ASSERT_TRUE(leases.ok());
    ASSERT_EQ(leases->size(), 1u) << "attempt " << attempt;
    this->clock_.Advance(seconds(6));  // the worker "crashed": the lease expires
  }
  auto leases = queue->Lease("crashy", 1, seconds(5));
  ASSERT_TRUE(leases.ok());
  EXPECT_TRUE(leases->empty());
  auto dead = queue->DlqList(10);
  ASSERT_TRUE(dead.ok());
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ((*dead)[0].dead_reason, "lease expired");
  EXPECT_EQ((*dead)[0].history.size(), 3u);
}

TYPED_TEST(QueueTest, DiskQuotaDropsRoutineBeforeAnomaliesOldestFirstAndCountsThem) {
  QueueOptions options = this->Options();
  const std::string payload(936, 'x');  // with a 36-byte id, 7-byte type, 64 overhead: ~1 KB
  Event probe = this->MakeEvent("insight", payload);
  probe.id = NewEventId(this->clock_);
  const int64_t insight_bytes = probe.StoredBytes();  // 1043
  options.max_bytes = insight_bytes * 10;             // room for ~10 events
  options.high_watermark = 0.85;                      // pressure from the 9th event on
  options.low_watermark = 0.5;  // then drop down to 4 events (5 with the new one)
  auto queue = this->Open(options);
  ASSERT_NE(queue, nullptr);

  // Old anomalies, then routine insights, interleaved in time.
  std::vector<std::string> anomalies, insights;
  for (int i = 0; i < 3; ++i) {
    auto a = queue->Append({this->MakeEvent("anomaly", payload)});
    ASSERT_TRUE(a.ok());
    anomalies.push_back(a->ids[0]);
    auto b = queue->Append({this->MakeEvent("insight", payload)});
    ASSERT_TRUE(b.ok());
    insights.push_back(b->ids[0]);
  }
  for (int i = 0; i < 2; ++i) {
    auto b = queue->Append({this->MakeEvent("insight", payload)});
    ASSERT_TRUE(b.ok());
    insights.push_back(b->ids[0]);
  }
  // 8 events stored, 5 routine. The 9th passes the high watermark (8.5 events): routine events
  // are dropped, oldest first, until the stored ones and the new one fit under the low
  // watermark (5 events).
  auto ninth = queue->Append({this->MakeEvent("insight", payload)});
  ASSERT_TRUE(ninth.ok()) << ninth.status();
  EXPECT_TRUE(ninth->rejected.empty());

  auto stats = queue->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_LE(stats->bytes, options.max_bytes / 2);
  const int64_t dropped = stats->drops["quota:insight"];
  EXPECT_EQ(dropped, 4);
  EXPECT_EQ(stats->drops.count("quota:anomaly"), 0u);

  auto live = queue->Peek(100);
  ASSERT_TRUE(live.ok());
  std::set<std::string> present;
  for (const EventInfo& info : *live) present.insert(info.event.id);
  for (const std::string& id : anomalies) EXPECT_TRUE(present.count(id)) << "anomaly dropped";
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(present.count(insights[i])) << "kept old insight " << i;
  EXPECT_TRUE(present.count(insights[4])) << "dropped a newer insight before an older one";
  EXPECT_TRUE(present.count(ninth->ids[0]));

  // Fill with anomalies: the remaining insights go first, then the oldest anomalies.
  std::vector<std::string> more;
  for (int i = 0; i < 15; ++i) {
    auto a = queue->Append({this->MakeEvent("anomaly", payload)});
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_TRUE(a->rejected.empty());
    more.push_back(a->ids[0]);
  }
  stats = queue->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_LE(stats->bytes, options.max_bytes);
  EXPECT_EQ(stats->drops["quota:insight"], 6);
  EXPECT_GT(stats->drops["quota:anomaly"], 0);
  live = queue->Peek(100);
  ASSERT_TRUE(live.ok());
  present.clear();
  for (const EventInfo& info : *live) present.insert(info.event.id);
  EXPECT_FALSE(present.count(anomalies[0])) << "the oldest anomaly should have gone";
  EXPECT_TRUE(present.count(more.back()));

  // Now 8 anomalies are stored: a routine insight too big for the space left cannot push one
  // out, so it is rejected (counted), and the single-event Append reports kResourceExhausted.
  const std::string big_payload(3000, 'z');
  auto routine = queue->Append({this->MakeEvent("insight", big_payload)});
  ASSERT_TRUE(routine.ok());
  ASSERT_EQ(routine->rejected.size(), 1u);
  EXPECT_EQ(queue->AppendOne(this->MakeEvent("insight", big_payload)).code(),
            StatusCode::kResourceExhausted);
  stats = queue->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->drops["rejected:insight"], 2);
  EXPECT_LE(stats->bytes, options.max_bytes);

  // An event larger than the whole budget is rejected without dropping anything for it.
  auto big = queue->Append({this->MakeEvent("anomaly", std::string(insight_bytes * 11, 'y'))});
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->rejected.size(), 1u);
  auto last = queue->Stats();
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->ready, stats->ready);
}

TYPED_TEST(QueueTest, DeadEventsCountAgainstTheBudgetAndAreDroppedInOrder) {
  QueueOptions options = this->Options();
  options.retry.max_attempts = 1;
  const std::string payload(936, 'x');
  options.max_bytes = 1043 * 4;
  options.high_watermark = 1.0;
  options.low_watermark = 1.0;
  auto queue = this->Open(options);
  ASSERT_NE(queue, nullptr);
  ASSERT_TRUE(queue->AppendOne(this->MakeEvent("insight", payload)).ok());
  auto leases = queue->Lease("w", 1, seconds(30));
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->size(), 1u);
  auto outcome = queue->Nack((*leases)[0], "bad", std::nullopt);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, NackOutcome::kDeadLettered);
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(queue->AppendOne(this->MakeEvent("insight", payload)).ok());
  auto stats = queue->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->dlq_size, 0) << "the oldest (dead) insight should have been dropped";
  EXPECT_EQ(stats->drops["quota:insight"], 1);
  EXPECT_EQ(stats->ready, 4);
}

TYPED_TEST(QueueTest, HigherPriorityIsLeasedFirstThenOldestFirst) {
  auto queue = this->Open();
  ASSERT_NE(queue, nullptr);
  std::vector<std::string> order;  // expected lease order
  auto insight1 = queue->Append({this->MakeEvent("insight", "i1")});
  auto anomaly1 = queue->Append({this->MakeEvent("anomaly", "a1")});
  Event low = this->MakeEvent("debug", "d1");
  low.priority = -3;
  auto debug1 = queue->Append({low});
  auto insight2 = queue->Append({this->MakeEvent("insight", "i2")});
  auto anomaly2 = queue->Append({this->MakeEvent("anomaly", "a2")});
  ASSERT_TRUE(insight1.ok() && anomaly1.ok() && debug1.ok() && insight2.ok() && anomaly2.ok());
  auto leases = queue->Lease("w", 5, seconds(30));
  ASSERT_TRUE(leases.ok()) << leases.status();
  std::vector<std::string> payloads;
  for (const Lease& lease : *leases) payloads.push_back(lease.event.payload);
  EXPECT_EQ(payloads, (std::vector<std::string>{"a1", "a2", "i1", "i2", "d1"}));

  // Events coming back (a nack after its backoff, an expired lease, a release) keep their place:
  // an anomaly that failed is leased before routine events, older before newer.
  const Lease* a1 = &(*leases)[0];
  const Lease* i1 = &(*leases)[2];
  ASSERT_TRUE(queue->Nack(*i1, "later", milliseconds(0)).ok());
  ASSERT_TRUE(queue->Release((*leases)[1]).ok());  // a2
  ASSERT_TRUE(queue->Ack((*leases)[3]).ok());      // i2
  ASSERT_TRUE(queue->Ack((*leases)[4]).ok());      // d1
  auto anomaly3 = queue->Append({this->MakeEvent("anomaly", "a3")});
  ASSERT_TRUE(anomaly3.ok());
  this->clock_.Advance(seconds(31));  // a1's lease expires
  auto again = queue->Lease("w", 10, seconds(30));
  ASSERT_TRUE(again.ok()) << again.status();
  payloads.clear();
  for (const Lease& lease : *again) payloads.push_back(lease.event.payload);
  EXPECT_EQ(payloads, (std::vector<std::string>{"a1", "a2", "a3", "i1"}));
  ASSERT_EQ(again->size(), 4u);
  EXPECT_EQ((*again)[0].attempt, 2);  // a1: its lease expired, a failed attempt
  EXPECT_EQ((*again)[1].attempt, 1);  // a2: released, no attempt spent
  EXPECT_EQ((*again)[3].attempt, 2);  // i1: nacked
  (void)a1;
}

TYPED_TEST(QueueTest, ReleaseGivesTheEventBackWithoutSpendingAnAttempt) {
  auto queue = this->Open();  // max_attempts = 3
  ASSERT_NE(queue, nullptr);
  ASSERT_TRUE(queue->AppendOne(this->MakeEvent("insight", "{}")).ok());
  // Released ten times (more than max_attempts): never dead, the attempt stays 1.
  for (int i = 0; i < 10; ++i) {
    auto leases = queue->Lease("w", 1, seconds(30));
    ASSERT_TRUE(leases.ok()) << leases.status();
    ASSERT_EQ(leases->size(), 1u) << "round " << i;
    EXPECT_EQ((*leases)[0].attempt, 1);
    EXPECT_TRUE((*leases)[0].history.empty());
    ASSERT_TRUE(queue->Release((*leases)[0]).ok());
    // The released lease is no longer current.
    EXPECT_TRUE(IsStaleLease(queue->Ack((*leases)[0])));
    EXPECT_TRUE(IsStaleLease(queue->Release((*leases)[0])));
  }
  // With a delay it waits like a retry.
  auto leases = queue->Lease("w", 1, seconds(30));
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->size(), 1u);
  ASSERT_TRUE(queue->Release((*leases)[0], milliseconds(500)).ok());
  auto stats = queue->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->retry, 1);
  EXPECT_EQ(stats->dlq_size, 0);
  this->clock_.Advance(milliseconds(499));
  auto early = queue->Lease("w", 1, seconds(30));
  ASSERT_TRUE(early.ok());
  EXPECT_TRUE(early->empty());
  this->clock_.Advance(milliseconds(2));
  auto due = queue->Lease("w", 1, seconds(30));
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].attempt, 1);
  EXPECT_TRUE(queue->Ack((*due)[0]).ok());
  EXPECT_EQ(queue->Release((*due)[0], milliseconds(-1)).code(), StatusCode::kInvalidArgument);
}

TYPED_TEST(QueueTest, DeadLetterMovesTheEventToTheDlqNowWithItsReason) {
  auto queue = this->Open();  // max_attempts = 3
  ASSERT_NE(queue, nullptr);
  ASSERT_TRUE(queue->AppendOne(this->MakeEvent("anomaly", R"({"bad":1})")).ok());
  auto first = queue->Lease("w1", 1, seconds(30));
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 1u);
  ASSERT_TRUE(queue->Nack((*first)[0], "timeout", milliseconds(0)).ok());
  auto second = queue->Lease("w2", 1, seconds(30));
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->size(), 1u);
  EXPECT_EQ((*second)[0].attempt, 2);
  // A stale lease cannot dead-letter it.
  EXPECT_TRUE(IsStaleLease(queue->DeadLetter((*first)[0], "late")));
  ASSERT_TRUE(queue->DeadLetter((*second)[0], "schema v1 is not supported").ok());
  EXPECT_TRUE(IsStaleLease(queue->Ack((*second)[0])));
  EXPECT_TRUE(IsStaleLease(queue->DeadLetter((*second)[0], "again")));

  auto none = queue->Lease("w", 1, seconds(30));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto dead = queue->DlqList(10);
  ASSERT_TRUE(dead.ok()) << dead.status();
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ((*dead)[0].dead_reason, "schema v1 is not supported");
  EXPECT_EQ((*dead)[0].attempts, 2);
  EXPECT_EQ((*dead)[0].event.type, "anomaly");
  EXPECT_EQ((*dead)[0].event.priority, kPriorityAnomaly);
  ASSERT_EQ((*dead)[0].history.size(), 2u);
  EXPECT_EQ((*dead)[0].history[0].reason, "timeout");
  EXPECT_EQ((*dead)[0].history[1].reason, "schema v1 is not supported");
  EXPECT_EQ((*dead)[0].history[1].consumer, "w2");
  auto stats = queue->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->dlq_size, 1);
  EXPECT_EQ(stats->dead_lettered_total, 1);
  EXPECT_EQ(stats->ready + stats->leased + stats->retry, 0);
  EXPECT_GT(stats->bytes, 0);  // dead events still count against the budget
  ASSERT_EQ(*queue->DlqReplay({}), 1);
  auto replayed = queue->Lease("w", 1, seconds(30));
  ASSERT_TRUE(replayed.ok());
  ASSERT_EQ(replayed->size(), 1u);
  EXPECT_EQ((*replayed)[0].event.priority, kPriorityAnomaly);
  EXPECT_EQ((*replayed)[0].attempt, 1);
  EXPECT_EQ((*replayed)[0].history.size(), 2u);
}

TYPED_TEST(QueueTest, StatsAndPeekDescribeTheQueue) {
  auto queue = this->Open();
  ASSERT_NE(queue, nullptr);
  ASSERT_TRUE(queue->AppendOne(this->MakeEvent("insight", "a")).ok());
  this->clock_.Advance(seconds(5));
  ASSERT_TRUE(queue->AppendOne(this->MakeEvent("anomaly", "b")).ok());
  ASSERT_TRUE(queue->AppendOne(this->MakeEvent("feedback", "c")).ok());
  auto leases = queue->Lease("w", 1, seconds(30));
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->size(), 1u);
  this->clock_.Advance(seconds(2));

  auto stats = queue->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->ready, 2);
  EXPECT_EQ(stats->leased, 1);
  EXPECT_EQ(stats->depth_by_priority[kPriorityRoutine], 2);
  EXPECT_EQ(stats->depth_by_priority[kPriorityAnomaly], 1);
  EXPECT_EQ(stats->oldest_age_ms, 7000);
  EXPECT_GT(stats->bytes, 0);

  auto peek = queue->Peek(10);
  ASSERT_TRUE(peek.ok()) << peek.status();
  ASSERT_EQ(peek->size(), 3u);
  int leased = 0;
  for (const EventInfo& info : *peek) leased += info.state == "leased";
  EXPECT_EQ(leased, 1);
  // Peek leases nothing.
  auto more = queue->Lease("w", 10, seconds(30));
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more->size(), 2u);
}

TYPED_TEST(QueueTest, ReopenKeepsEventsCountersAndFences) {
  uint64_t fence = 0;
  std::string id;
  {
    auto queue = this->Open();
    ASSERT_NE(queue, nullptr);
    ASSERT_TRUE(queue->AppendOne(this->MakeEvent("insight", "kept")).ok());
    auto leases = queue->Lease("w", 1, seconds(30));
    ASSERT_TRUE(leases.ok());
    ASSERT_EQ(leases->size(), 1u);
    fence = (*leases)[0].fence;
    id = (*leases)[0].event.id;
  }
  auto queue = this->Open();
  ASSERT_NE(queue, nullptr);
  this->clock_.Advance(seconds(31));
  auto leases = queue->Lease("w", 1, seconds(30));
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->size(), 1u);
  EXPECT_EQ((*leases)[0].event.id, id);
  EXPECT_GT((*leases)[0].fence, fence);
  EXPECT_EQ((*leases)[0].attempt, 2);
}

TYPED_TEST(QueueTest, ConcurrentProducersAndConsumersDeliverEveryEvent) {
  auto queue = this->Open();
  ASSERT_NE(queue, nullptr);
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 200;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<std::string> appended;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; i += 4) {
        std::vector<Event> batch;
        for (int j = 0; j < 4; ++j) {
          batch.push_back(this->MakeEvent("insight", std::to_string(p * 1000 + i + j)));
        }
        auto result = queue->Append(std::move(batch));
        ASSERT_TRUE(result.ok()) << result.status();
        std::lock_guard<std::mutex> lock(mu);
        appended.insert(result->ids.begin(), result->ids.end());
      }
    });
  }
  std::set<std::string> consumed;
  for (auto& thread : threads) thread.join();
  threads.clear();
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&, c] {
      while (true) {
        auto leases = queue->Lease("c" + std::to_string(c), 50, seconds(60));
        ASSERT_TRUE(leases.ok()) << leases.status();
        if (leases->empty()) return;
        auto acks = queue->AckBatch(*leases);
        ASSERT_TRUE(acks.ok()) << acks.status();
        std::lock_guard<std::mutex> lock(mu);
        for (size_t i = 0; i < leases->size(); ++i) {
          EXPECT_TRUE((*acks)[i].ok());
          EXPECT_TRUE(consumed.insert((*leases)[i].event.id).second) << "delivered twice";
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(appended.size(), static_cast<size_t>(kProducers * kPerProducer));
  EXPECT_EQ(consumed, appended);
}

TYPED_TEST(QueueTest, BadInputIsRefusedWithAClearError) {
  auto queue = this->Open();
  ASSERT_NE(queue, nullptr);
  Event bad_type = this->MakeEvent("Not A Type!", "{}");
  EXPECT_EQ(queue->Append({bad_type}).status().code(), StatusCode::kInvalidArgument);
  QueueOptions options = this->Options();
  Event huge = this->MakeEvent("insight", std::string(options.max_event_bytes + 1, 'x'));
  EXPECT_EQ(queue->Append({huge}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(queue->Lease("w", 0, seconds(1)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(queue->Lease("", 1, seconds(1)).status().code(), StatusCode::kInvalidArgument);
  Lease forged;
  forged.handle = "12345-0";
  forged.fence = 99;
  EXPECT_TRUE(IsStaleLease(queue->Ack(forged)));
  EXPECT_EQ(queue->Peek(0).status().code(), StatusCode::kInvalidArgument);
}

// kill -9 while events flow: a child process appends from several threads and writes every id
// to a pipe only after Append returned (acknowledged). The parent kills it at a random moment,
// then reopens the queue: every acknowledged id must be there.
TYPED_TEST(QueueTest, KillNineWhileAppendingLosesNoAcknowledgedEvent) {
  std::set<std::string> acked;
  std::mt19937 rng(7);
  for (int round = 0; round < 4; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      QueueOptions options;
      options.url = this->url_;
      auto queue = Queue::Open(options);
      if (!queue.ok()) ::_exit(3);
      std::vector<std::thread> producers;
      for (int t = 0; t < 4; ++t) {
        producers.emplace_back([&, t] {
          for (int i = 0;; ++i) {
            std::vector<Event> batch(1 + (i + t) % 8);
            for (Event& event : batch) {
              event.type = "insight";
              event.payload = std::string(200, 'p');
            }
            auto result = (*queue)->Append(std::move(batch));
            if (!result.ok()) ::_exit(4);
            std::string lines;
            for (const std::string& id : result->ids) lines += id + "\n";
            if (::write(fds[1], lines.data(), lines.size()) < 0) ::_exit(5);
          }
        });
      }
      for (auto& producer : producers) producer.join();
      ::_exit(0);
    }
    ::close(fds[1]);
    // Read acknowledgements until a random number arrived, then kill -9.
    const size_t target = acked.size() + 100 + rng() % 1500;
    std::string buffer;
    char chunk[4096];
    while (acked.size() < target) {
      const ssize_t n = ::read(fds[0], chunk, sizeof(chunk));
      ASSERT_GT(n, 0) << "the producer died on its own";
      buffer.append(chunk, n);
      size_t newline;
      while ((newline = buffer.find('\n')) != std::string::npos) {
        acked.insert(buffer.substr(0, newline));
        buffer.erase(0, newline + 1);
      }
    }
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status));
    // Whatever acknowledgements were still in the pipe count too (complete lines only).
    while (true) {
      const ssize_t n = ::read(fds[0], chunk, sizeof(chunk));
      if (n <= 0) break;
      buffer.append(chunk, n);
    }
    ::close(fds[0]);
    size_t newline;
    while ((newline = buffer.find('\n')) != std::string::npos) {
      acked.insert(buffer.substr(0, newline));
      buffer.erase(0, newline + 1);
    }

    QueueOptions options;
    options.url = this->url_;
    auto queue = Queue::Open(options);
    ASSERT_TRUE(queue.ok()) << queue.status();
    auto live = (*queue)->Peek(1'000'000);
    ASSERT_TRUE(live.ok()) << live.status();
    std::set<std::string> present;
    for (const EventInfo& info : *live) present.insert(info.event.id);
    size_t missing = 0;
    for (const std::string& id : acked) missing += present.count(id) == 0;
    EXPECT_EQ(missing, 0u) << "round " << round << ": " << missing << " of " << acked.size()
                           << " acknowledged events lost";
  }
}

}  // namespace
}  // namespace edgeloop::queue
