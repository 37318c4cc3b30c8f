// Behaviour specific to the embedded queue: queue time across restarts and clock jumps,
// read-only opens, several handles on one folder, corrupt files.
#include <fstream>
#include <set>

#include "common/test_util.h"
#include "gtest/gtest.h"
#include "queue/queue.h"

namespace edgeloop::queue {
namespace {

using std::chrono::hours;
using std::chrono::seconds;

class SqliteQueueTest : public ::testing::Test {
 protected:
  QueueOptions Options(Clock* clock) {
    QueueOptions options;
    options.url = "file://" + (dir_.path() / "q").string();
    options.clock = clock;
    return options;
  }
  edgeloop::testing::TempDir dir_{"sqlite_queue_test"};
};

TEST_F(SqliteQueueTest, AgeCountsRunningTimeAcrossRestartsAndIgnoresWallClockJumps) {
  {
    FakeClock clock;
    auto queue = Queue::Open(Options(&clock));
    ASSERT_TRUE(queue.ok()) << queue.status();
    ASSERT_TRUE((*queue)->AppendOne(Event{"", "insight", 0, "{}"}).ok());
    clock.Advance(seconds(10));
    auto stats = (*queue)->Stats();  // persists queue time (every transaction does)
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->oldest_age_ms, 10'000);
  }
  // A "reboot": a new process whose monotonic clock starts lower, and a wall clock a year off.
  FakeClock rebooted;
  rebooted.SetWallTime(rebooted.WallNow() + hours(24 * 365));
  auto queue = Queue::Open(Options(&rebooted));
  ASSERT_TRUE(queue.ok()) << queue.status();
  auto stats = (*queue)->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->oldest_age_ms, 10'000) << "the downtime or the wall jump counted";
  rebooted.Advance(seconds(5));
  rebooted.SetWallTime(rebooted.WallNow() - hours(24 * 700));  // wall clock jumps back
  stats = (*queue)->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->oldest_age_ms, 15'000);
  // A lease taken now expires after its visibility in running time, whatever the wall says.
  auto leases = (*queue)->Lease("w", 1, seconds(30));
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->size(), 1u);
  rebooted.SetWallTime(rebooted.WallNow() + hours(1000));
  auto none = (*queue)->Lease("w", 1, seconds(30));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty()) << "a wall clock jump expired a lease";
}

TEST_F(SqliteQueueTest, ReadOnlyOpenSeesEventsAndRefusesWrites) {
  FakeClock clock;
  auto writer = Queue::Open(Options(&clock));
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->AppendOne(Event{"", "anomaly", 10, "{}"}).ok());
  QueueOptions options = Options(&clock);
  options.read_only = true;
  auto reader = Queue::Open(options);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto stats = (*reader)->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->ready, 1);
  EXPECT_EQ((*reader)->AppendOne(Event{"", "insight", 0, "{}"}).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ((*reader)->Lease("w", 1, seconds(1)).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(SqliteQueueTest, ReadOnlyOpenOfAMissingQueueCreatesNothing) {
  FakeClock clock;
  QueueOptions options = Options(&clock);
  options.read_only = true;
  EXPECT_EQ(Queue::Open(options).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "q"));
}

TEST_F(SqliteQueueTest, TwoHandlesOnOneFolderNeverHandOutTheSameFence) {
  FakeClock clock;
  auto a = Queue::Open(Options(&clock));
  auto b = Queue::Open(Options(&clock));
  ASSERT_TRUE(a.ok() && b.ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE((*a)->AppendOne(Event{"", "insight", 0, "{}"}).ok());
  std::set<uint64_t> fences;
  std::set<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    for (Queue* queue : {a->get(), b->get()}) {
      auto leases = queue->Lease("w", 1, seconds(30));
      ASSERT_TRUE(leases.ok());
      ASSERT_EQ(leases->size(), 1u);
      EXPECT_TRUE(fences.insert((*leases)[0].fence).second);
      EXPECT_TRUE(ids.insert((*leases)[0].event.id).second);
    }
  }
}

TEST_F(SqliteQueueTest, CorruptDatabaseIsReportedNotCrashedOn) {
  std::filesystem::create_directories(dir_.path() / "q");
  {
    std::ofstream out(dir_.path() / "q" / "queue.db", std::ios::binary);
    out << std::string(8192, '\x5a');
  }
  FakeClock clock;
  auto queue = Queue::Open(Options(&clock));
  ASSERT_FALSE(queue.ok());
  EXPECT_EQ(queue.status().code(), StatusCode::kDataLoss) << queue.status();
}

TEST_F(SqliteQueueTest, AFileWhereTheFolderShouldBeIsAnError) {
  { std::ofstream out(dir_.path() / "q"); }
  FakeClock clock;
  auto queue = Queue::Open(Options(&clock));
  ASSERT_FALSE(queue.ok());
}

}  // namespace
}  // namespace edgeloop::queue
