#include "functions/worker.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <thread>

#include "common/test_util.h"
#include "functions/chain_config.h"
#include "functions/compliance.h"
#include "functions/exec.h"
#include "functions/upload.h"
#include "queue/queue.h"

namespace edgeloop::functions {
namespace {

using Json = nlohmann::json;
using edgeloop::testing::TempDir;
using std::chrono::milliseconds;

void WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

// Every event in the folder sink, in the order the files were written (the audit log's order).
std::vector<Json> ReadSink(const std::filesystem::path& outbox) {
  std::vector<Json> events;
  for (const auto& entry : std::filesystem::directory_iterator(outbox)) {
    if (entry.path().filename().string().rfind(".tmp", 0) == 0) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string packed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto body = Decompress(packed, Encoding::kZstd);
    EXPECT_TRUE(body.ok());
    size_t start = 0;
    while (start < body->size()) {
      const size_t end = body->find('\n', start);
      events.push_back(Json::parse(body->substr(start, end - start)));
      start = end + 1;
    }
  }
  return events;
}

std::vector<Json> ReadAudit(const std::filesystem::path& path) {
  std::vector<Json> records;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) records.push_back(Json::parse(line));
  return records;
}

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    outbox_ = dir_.path() / "outbox";
    std::filesystem::create_directories(outbox_);
    WriteFile(dir_.path() / "hub.yaml", "destination: hub\nallow: [id, type, site, anomaly]\n");
    queue::QueueOptions options;
    options.url = "file://" + (dir_.path() / "queue").string();
    options.clock = &clock_;
    options.uniform01 = [] { return 0.5; };
    options.retry.max_attempts = 3;
    options.retry.initial_backoff = milliseconds(1000);
    options.retry.jitter = 0;
    auto queue = queue::Queue::Open(options);
    ASSERT_TRUE(queue.ok()) << queue.status();
    queue_ = std::move(*queue);
  }

  std::unique_ptr<Function> Compliance() {
    ComplianceOptions options;
    options.policy_file = dir_.path() / "hub.yaml";
    options.audit_log = audit_path_;
    options.clock = &clock_;
    return std::move(*ComplianceFunction::Create(options));
  }

  std::unique_ptr<Function> Upload() {
    UploadOptions options;
    options.destination = "hub";
    options.sink = MakeFolderSink(outbox_);
    options.clock = &clock_;
    return std::move(*UploadFunction::Create(std::move(options)));
  }

  std::unique_ptr<Worker> MakeWorker(std::vector<std::unique_ptr<Function>> chain,
                                     int batch_size = 20) {
    WorkerOptions options;
    options.queue = queue_.get();
    options.consumer = "test-worker";
    options.chain = std::move(chain);
    options.batch_size = batch_size;
    options.clock = &clock_;
    options.metrics = &registry_;
    options.probe_initial = milliseconds(1000);
    options.probe_max = milliseconds(60'000);
    auto worker = Worker::Create(std::move(options));
    EXPECT_TRUE(worker.ok()) << worker.status();
    return std::move(*worker);
  }

  std::vector<std::unique_ptr<Function>> EgressChain() {
    std::vector<std::unique_ptr<Function>> chain;
    chain.push_back(Compliance());
    chain.push_back(Upload());
    return chain;
  }

  std::string Append(const std::string& type, int n) {
    queue::Event event;
    event.type = type;
    event.priority = queue::DefaultPriority(type);
    event.payload = Json({{"type", type},
                          {"site", "plant-7"},
                          {"n", n},
                          {"inputs", {{"customer_id", "C-" + std::to_string(n)}}},
                          {"anomaly", {{"verdict", type == "anomaly"}}}})
                        .dump();
    auto result = queue_->Append({event});
    EXPECT_TRUE(result.ok()) << result.status();
    return result->ids.front();
  }

  double Gauge(const std::string& name) {
    const std::string text = registry_.Render();
    const size_t at = text.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + name.size() + 2));
  }

  TempDir dir_;
  FakeClock clock_;
  metrics::Registry registry_;
  std::filesystem::path outbox_;
  std::filesystem::path audit_path_ = dir_.path() / "audit.jsonl";
  std::unique_ptr<queue::Queue> queue_;
};

TEST_F(WorkerTest, DeliversEventsThroughComplianceAndAcksThem) {
  auto worker = MakeWorker(EgressChain());
  std::set<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.insert(Append(i % 3 == 0 ? "anomaly" : "insight", i));
  auto leased = worker->RunOnce(milliseconds(0));
  ASSERT_TRUE(leased.ok()) << leased.status();
  EXPECT_EQ(*leased, 10);
  auto stats = queue_->Stats();
  EXPECT_EQ(stats->ready + stats->leased + stats->retry, 0);
  std::set<std::string> delivered;
  for (const Json& event : ReadSink(outbox_)) {
    delivered.insert(event["id"].get<std::string>());
    // Nothing off the allow-list leaves.
    EXPECT_FALSE(event.contains("inputs"));
    EXPECT_FALSE(event.contains("n"));
  }
  EXPECT_EQ(delivered, ids);
  EXPECT_EQ(ReadAudit(audit_path_).size(), 2u);  // two lanes
}

TEST_F(WorkerTest, PoisonMessageEndsInTheDeadLetterQueueWithItsHistoryAndCanBeReplayed) {
  ExecOptions exec;
  exec.name = "always-fails";
  exec.argv = {"/bin/sh", "-c", "cat > /dev/null; echo boom >&2; exit 1"};
  std::vector<std::unique_ptr<Function>> chain;
  chain.push_back(std::move(*ExecFunction::Create(exec)));
  auto worker = MakeWorker(std::move(chain));
  const std::string id = Append("insight", 1);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    auto leased = worker->RunOnce(milliseconds(0));
    ASSERT_TRUE(leased.ok());
    EXPECT_EQ(*leased, 1) << "attempt " << attempt;
    clock_.Advance(std::chrono::minutes(1));  // past any backoff
  }
  EXPECT_EQ(*worker->RunOnce(milliseconds(0)), 0);
  auto dead = queue_->DlqList(10);
  ASSERT_TRUE(dead.ok());
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ((*dead)[0].event.id, id);
  ASSERT_EQ((*dead)[0].history.size(), 3u);
  EXPECT_NE((*dead)[0].history[0].reason.find("exited with status 1"), std::string::npos);
  EXPECT_EQ((*dead)[0].history[0].consumer, "test-worker");
  ASSERT_EQ(*queue_->DlqReplay({id}), 1);
  auto leased = worker->RunOnce(milliseconds(0));
  EXPECT_EQ(*leased, 1);
}

TEST_F(WorkerTest, DestinationDownForADayThenBackDeliversEverythingInPriorityOrder) {
  auto worker = MakeWorker(EgressChain(), /*batch_size=*/25);
  const auto parked = dir_.path() / "parked";
  std::filesystem::rename(outbox_, parked);  // the destination goes away

  std::set<std::string> anomalies, routine;
  routine.insert(Append("insight", 0));
  ASSERT_EQ(*worker->RunOnce(milliseconds(0)), 1);  // fails: unavailable
  EXPECT_TRUE(worker->held_back());

  // A simulated day: events keep coming, the worker probes with a growing delay and leases
  // nothing.
  int n = 1;
  for (int minute = 0; minute < 24 * 60; minute += 10) {
    clock_.Advance(std::chrono::minutes(10));
    if (minute % 60 == 0) {
      anomalies.insert(Append("anomaly", n++));
      for (int i = 0; i < 2; ++i) routine.insert(Append("insight", n++));
    }
    ASSERT_EQ(*worker->RunOnce(milliseconds(0)), 0);
    ASSERT_TRUE(worker->held_back());
  }
  ASSERT_TRUE(worker->UpdateStats().ok());
  EXPECT_EQ(Gauge("edgeloop_worker_backlog_events"), 73);
  EXPECT_GE(Gauge("edgeloop_worker_oldest_unsent_age_seconds"), 24 * 3600 - 1);
  EXPECT_EQ(Gauge("edgeloop_worker_held_back"), 1);
  // The outage spent no attempt (the first batch was released, not nacked); nothing is dead.
  auto peek = queue_->Peek(100);
  for (const auto& info : *peek) EXPECT_EQ(info.attempts, 0) << info.event.id;
  EXPECT_EQ(queue_->Stats()->dlq_size, 0);

  std::filesystem::rename(parked, outbox_);  // back
  clock_.Advance(std::chrono::minutes(1));
  int drained = 0;
  for (int i = 0; i < 10; ++i) drained += *worker->RunOnce(milliseconds(0));
  EXPECT_EQ(drained, 73);
  EXPECT_FALSE(worker->held_back());
  std::set<std::string> delivered;
  for (const Json& event : ReadSink(outbox_)) delivered.insert(event["id"].get<std::string>());
  std::set<std::string> all = anomalies;
  all.insert(routine.begin(), routine.end());
  EXPECT_EQ(delivered, all);
  // Priority order: every anomaly left before any routine event of the backlog.
  int last_priority = 1 << 30;
  for (const Json& record : ReadAudit(audit_path_)) {
    EXPECT_LE(record["priority"].get<int>(), last_priority);
    last_priority = record["priority"].get<int>();
  }
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(worker->UpdateStats().ok());
  EXPECT_EQ(Gauge("edgeloop_worker_backlog_events"), 0);
  EXPECT_GT(Gauge("edgeloop_worker_drain_rate_events_per_second"), 0);
}

TEST_F(WorkerTest, BrokenPolicyBlocksEgressWithoutSpendingAttempts) {
  WriteFile(dir_.path() / "hub.yaml", "destination: hub\nallow: [id\n");
  auto worker = MakeWorker(EgressChain());
  const std::string id = Append("anomaly", 1);
  ASSERT_EQ(*worker->RunOnce(milliseconds(0)), 1);
  EXPECT_TRUE(worker->held_back());
  for (int i = 0; i < 20; ++i) {
    clock_.Advance(std::chrono::minutes(5));
    ASSERT_EQ(*worker->RunOnce(milliseconds(0)), 0);
  }
  EXPECT_TRUE(ReadSink(outbox_).empty());
  WriteFile(dir_.path() / "hub.yaml", "destination: hub\nallow: [id]\n");
  clock_.Advance(std::chrono::minutes(2));
  EXPECT_EQ(*worker->RunOnce(milliseconds(0)), 1);
  auto events = ReadSink(outbox_);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], Json({{"id", id}}));
}

TEST_F(WorkerTest, DrainCancelsABatchPastTheTimeoutAndHandsItBack) {
  ExecOptions exec;
  exec.argv = {"/bin/sh", "-c", "sleep 30"};
  exec.timeout = std::chrono::seconds(60);
  std::vector<std::unique_ptr<Function>> chain;
  chain.push_back(std::move(*ExecFunction::Create(exec)));
  WorkerOptions options;
  options.queue = queue_.get();
  options.chain = std::move(chain);
  options.clock = &clock_;
  options.metrics = &registry_;
  options.lease_wait = milliseconds(50);
  auto worker = std::move(*Worker::Create(std::move(options)));
  const std::string id = Append("insight", 1);
  worker->Start();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (Gauge("edgeloop_worker_batches_in_flight") != 1 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));  // polling for the batch to start
  }
  ASSERT_EQ(Gauge("edgeloop_worker_batches_in_flight"), 1);
  const auto started = std::chrono::steady_clock::now();
  EXPECT_FALSE(worker->Drain(milliseconds(100)));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  auto peek = queue_->Peek(10);
  ASSERT_EQ(peek->size(), 1u);
  EXPECT_EQ((*peek)[0].event.id, id);
  EXPECT_NE((*peek)[0].state, "leased");
}

TEST_F(WorkerTest, ChainFileBuildsStagesAndRefusesUploadWithoutCompliance) {
  WriteFile(dir_.path() / "chain.yaml", R"(
functions:
  - exec: {name: enrich, command: [/bin/cat], timeout_ms: 1000}
  - compliance: {policy: hub.yaml, audit_log: audit/hub.jsonl}
  - upload: {destination: hub, folder: outbox, compression: gzip, bandwidth_bytes_per_s: 1000000}
)");
  auto chain = LoadChain(dir_.path() / "chain.yaml", &clock_, nullptr);
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_EQ(chain->size(), 3u);
  EXPECT_EQ((*chain)[0]->name(), "exec:enrich");
  EXPECT_EQ((*chain)[2]->name(), "upload:hub");

  auto bad = ParseChain("functions:\n  - upload: {destination: hub, folder: x}\n", dir_.path(),
                        &clock_, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("after a compliance"), std::string::npos);
  EXPECT_FALSE(ParseChain("functions: []\n", dir_.path(), &clock_, nullptr).ok());
  EXPECT_FALSE(ParseChain("functions:\n  - nope: {}\n", dir_.path(), &clock_, nullptr).ok());
  EXPECT_FALSE(
      ParseChain("functions:\n  - exec: {command: [x], typo: 1}\n", dir_.path(), &clock_, nullptr)
          .ok());
}

}  // namespace
}  // namespace edgeloop::functions
