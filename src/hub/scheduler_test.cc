#include "hub/scheduler.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/test_util.h"
#include "hub/event.h"

namespace edgeloop::hub {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

int64_t At(const char* rfc3339) { return *ParseRfc3339Ms(rfc3339); }

// Runs no process: answers each step with a configured exit code and stdout, and can hold a
// step until released. Thread-safe.
class FakeLauncher : public StepLauncher {
 public:
  StatusOr<StepResult> Run(const StepRequest& request) override {
    std::unique_lock<std::mutex> lock(mu_);
    requests_.push_back(request);
    ++started_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return !hold_ || cancelled_; });
    std::ofstream(request.log_file, std::ios::app) << request.name << " says hello\n";
    std::ofstream(request.stdout_file) << stdout_[request.name];
    StepResult result;
    result.exit_code = exit_codes_.count(request.name) ? exit_codes_[request.name] : 0;
    result.cancelled = cancelled_;
    result.seconds = 0.5;
    return result;
  }
  void Cancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    changed_.notify_all();
  }

  void SetExit(const std::string& step, int code) {
    std::lock_guard<std::mutex> lock(mu_);
    exit_codes_[step] = code;
  }
  void SetStdout(const std::string& step, std::string text) {
    std::lock_guard<std::mutex> lock(mu_);
    stdout_[step] = std::move(text);
  }
  void Hold(bool hold) {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = hold;
    changed_.notify_all();
  }
  void WaitStarted(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return started_ >= n; });
  }
  std::vector<StepRequest> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, int> exit_codes_;
  std::map<std::string, std::string> stdout_;
  std::vector<StepRequest> requests_;
  int started_ = 0;
  bool hold_ = false;
  bool cancelled_ = false;
};

const char* kTrainSummary = R"({"name": "mf", "version": "7-abc", "gate_passed": true,
  "metrics": {"test": {"roc_auc": 0.91, "accuracy": 0.88}},
  "gate": {"passed": true, "metric": "roc_auc", "checks": [],
           "champion": {"reference": "layout:///r/mf:prod", "metrics": {"roc_auc": 0.85}}},
  "pushed": {"reference": "layout:///r/mf:candidate", "digest": "sha256:abcd"},
  "promoted": {"alias": "prod", "to": "sha256:abcd", "from": "sha256:0000"}})";

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = Store::Open("sqlite://" + (dir_.path() / "hub.db").string());
    ASSERT_TRUE(store.ok()) << store.status().message();
    store_ = std::move(*store);
    ASSERT_TRUE(store_->AddSite("plant-1", 0).ok());
    clock_.SetWallTime(Clock::WallTime(std::chrono::milliseconds(At("2026-11-27T02:58:30Z"))));
    launcher_.SetStdout("train", kTrainSummary);
  }

  ScheduleConfig Config(const std::string& model_yaml) {
    const std::string yaml =
        "lake: lake\nwork_dir: jobs\nmodels:\n  - model: mf\n"
        "    pipeline: p.yaml\n    train: t.yaml\n" +
        model_yaml;
    auto config = ParseSchedule(yaml, "schedule.yaml", dir_.path());
    EXPECT_TRUE(config.ok()) << config.status().message();
    return *config;
  }

  std::unique_ptr<Scheduler> Make(const std::string& model_yaml, SchedulerOptions options = {}) {
    options.hub_url = "http://127.0.0.1:9";
    options.hub_token = "elh_test";
    auto scheduler =
        Scheduler::Create(Config(model_yaml), store_.get(), &clock_, &launcher_, options);
    EXPECT_TRUE(scheduler.ok()) << scheduler.status().message();
    return std::move(*scheduler);
  }

  JobRecord Job(int64_t id) {
    auto job = store_->GetJob(id);
    EXPECT_TRUE(job.ok() && job->has_value());
    return **job;
  }

  std::vector<JobRecord> Jobs() { return *store_->ListJobs("", 100); }

  void Upload(const std::string& lines) {
    auto batch = ParseBatch(lines, "plant-1", {});
    ASSERT_TRUE(batch.ok());
    ASSERT_TRUE(batch->rejected.empty()) << batch->rejected[0].error;
    UploadMeta meta{"plant-1", RealMs(), "", "identity", 1, 1};
    ASSERT_TRUE(store_->Ingest(meta, batch->events, 0).ok());
  }

  int64_t RealMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               clock_.WallNow().time_since_epoch())
        .count();
  }

  std::string DriftEvent(int n) {
    char id[64];
    std::snprintf(id, sizeof(id), "0190a1b2-0000-7000-8000-%012d", n);
    return std::string(R"({"id":")") + id +
           R"(","type":"drift","ts_ms":1795000000000,"model":"mf","model_version":"3",)"
           R"("model_digest":"sha256:aa","drift":{"window_rows":500,"features":[)"
           R"({"name":"temp","psi":0.4,"ks":0.3,"drifted":true},)"
           R"({"name":"rpm","psi":0.01,"ks":0.02,"drifted":false}]}})"
           "\n";
  }

  edgeloop::testing::TempDir dir_{"scheduler_test"};
  std::unique_ptr<Store> store_;
  FakeClock clock_;
  FakeLauncher launcher_;
};

TEST_F(SchedulerTest, CronStartsAJobThatRunsPipelineThenTrainAndRecordsTheGate) {
  auto scheduler = Make(
      "    champion: layout:///r/mf:prod\n    push: layout:///r/mf:candidate\n"
      "    key: keys/k.key\n    promote: prod\n    schedule: [{cron: '0 3 * * *'}]\n");
  scheduler->Tick();
  EXPECT_TRUE(Jobs().empty());
  clock_.Advance(std::chrono::seconds(90));  // 03:00:00
  scheduler->Tick();
  scheduler->WaitIdle();
  ASSERT_EQ(Jobs().size(), 1u);
  const JobRecord job = Job(Jobs()[0].id);
  EXPECT_EQ(job.trigger, "cron");
  EXPECT_EQ(job.status, "succeeded") << job.error;
  EXPECT_EQ(job.gate_passed, 1);
  EXPECT_EQ(job.gate_metric, "roc_auc");
  EXPECT_DOUBLE_EQ(*job.challenger, 0.91);
  EXPECT_DOUBLE_EQ(*job.champion, 0.85);
  EXPECT_EQ(job.digest, "sha256:abcd");
  EXPECT_EQ(job.version, "7-abc");
  EXPECT_NE(job.log.find("pipeline says hello"), std::string::npos) << job.log;
  EXPECT_NE(job.log.find("train says hello"), std::string::npos);
  const Json details = Json::parse(job.details);
  EXPECT_EQ(details["steps"].size(), 2u);
  EXPECT_EQ(details["trained"]["promoted"]["alias"], "prod");

  const auto requests = launcher_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].args[0], "pipeline");
  EXPECT_EQ(requests[0].args[2], (dir_.path() / "p.yaml").string());
  EXPECT_EQ(requests[0].env.at("EDGELOOP_HUB_URL"), "http://127.0.0.1:9");
  EXPECT_EQ(requests[0].env.at("EDGELOOP_HUB_TOKEN"), "elh_test");
  const std::vector<std::string>& train = requests[1].args;
  EXPECT_EQ(train[0], "train");
  auto after = [&](const std::string& flag) {
    auto it = std::find(train.begin(), train.end(), flag);
    return it == train.end() || it + 1 == train.end() ? std::string() : *(it + 1);
  };
  EXPECT_EQ(after("--champion"), "layout:///r/mf:prod");
  EXPECT_EQ(after("--push"), "layout:///r/mf:candidate");
  EXPECT_EQ(after("--key"), (dir_.path() / "keys/k.key").string());
  EXPECT_EQ(after("--promote"), "prod");
  EXPECT_EQ(after("--lake"), (dir_.path() / "lake").string());

  // The next firing is a day later, not at the next tick.
  clock_.Advance(std::chrono::minutes(5));
  scheduler->Tick();
  scheduler->WaitIdle();
  EXPECT_EQ(Jobs().size(), 1u);
  clock_.Advance(std::chrono::hours(24));
  scheduler->Tick();
  scheduler->WaitIdle();
  EXPECT_EQ(Jobs().size(), 2u);
}

TEST_F(SchedulerTest, AFailedPipelineEndsTheJobBeforeTraining) {
  launcher_.SetExit("pipeline", 1);
  auto scheduler = Make("    push: layout:///r/mf:c\n");
  auto id = scheduler->RunNow("mf");
  ASSERT_TRUE(id.ok()) << id.status().message();
  scheduler->WaitIdle();
  const JobRecord job = Job(*id);
  EXPECT_EQ(job.status, "failed");
  EXPECT_EQ(job.trigger, "api");
  EXPECT_EQ(job.exit_step, "pipeline");
  EXPECT_NE(job.error.find("pipeline exited with 1"), std::string::npos) << job.error;
  EXPECT_EQ(launcher_.requests().size(), 1u);  // train never ran: nothing pushed
  EXPECT_TRUE(job.digest.empty());
  EXPECT_TRUE(job.finished_at.has_value());
}

TEST_F(SchedulerTest, AGateRefusalIsRejected) {
  launcher_.SetExit("train", 6);
  launcher_.SetStdout("train", R"({"version": "8-x", "gate_passed": false,
    "metrics": {"test": {"roc_auc": 0.70}},
    "gate": {"passed": false, "metric": "roc_auc", "champion": {"metrics": {"roc_auc": 0.85}}}})");
  auto scheduler = Make("");
  auto id = scheduler->RunNow("mf");
  ASSERT_TRUE(id.ok());
  scheduler->WaitIdle();
  const JobRecord job = Job(*id);
  EXPECT_EQ(job.status, "rejected");
  EXPECT_EQ(job.gate_passed, 0);
  EXPECT_DOUBLE_EQ(*job.challenger, 0.70);
  EXPECT_DOUBLE_EQ(*job.champion, 0.85);
  EXPECT_TRUE(job.digest.empty());
}

TEST_F(SchedulerTest, OneJobAtATimePerModel) {
  launcher_.Hold(true);
  auto scheduler = Make("");
  auto first = scheduler->RunNow("mf");
  ASSERT_TRUE(first.ok());
  launcher_.WaitStarted(1);
  EXPECT_EQ(Job(*first).status, "running");
  auto second = scheduler->RunNow("mf");
  EXPECT_EQ(second.status().code(), StatusCode::kAborted);
  EXPECT_EQ(scheduler->RunNow("nope").status().code(), StatusCode::kNotFound);
  launcher_.Hold(false);
  scheduler->WaitIdle();
  EXPECT_EQ(Job(*first).status, "succeeded");
  auto third = scheduler->RunNow("mf");
  EXPECT_TRUE(third.ok());
  scheduler->WaitIdle();
  EXPECT_EQ(Jobs().size(), 2u);
}

TEST_F(SchedulerTest, DriftReportsWithinTheWindowTriggerOnce) {
  auto scheduler = Make("    triggers: {drift: {events: 3, window: 1h}}\n");
  Upload(DriftEvent(1) + DriftEvent(2));
  scheduler->Tick();
  EXPECT_TRUE(Jobs().empty());
  // Reports older than the window do not count.
  clock_.Advance(std::chrono::hours(2));
  Upload(DriftEvent(3));
  scheduler->Tick();
  EXPECT_TRUE(Jobs().empty());
  Upload(DriftEvent(4) + DriftEvent(5));
  scheduler->Tick();
  scheduler->WaitIdle();
  ASSERT_EQ(Jobs().size(), 1u);
  EXPECT_EQ(Jobs()[0].trigger, "drift");
  // The reports that started it do not start another.
  clock_.Advance(std::chrono::minutes(1));
  scheduler->Tick();
  scheduler->WaitIdle();
  EXPECT_EQ(Jobs().size(), 1u);
  // The drift query API shows them.
  auto table = store_->DriftReports({}, 10);
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->rows.size(), 5u);
}

TEST_F(SchedulerTest, FeedbackLabelsTriggerAndCooldownHolds) {
  auto scheduler = Make("    triggers: {feedback: {min_labels: 2}}\n    cooldown: 1h\n");
  auto event = [](int n, const char* type, const char* extra) {
    char id[64];
    std::snprintf(id, sizeof(id), "0190a1b2-0000-7000-8000-%012d", n);
    return std::string(R"({"id":")") + id + R"(","type":")" + type +
           R"(","timestamp":1795000000000,"model":{"name":"mf","version":"3"},)" + extra + "}\n";
  };
  Upload(event(10, "insight", R"("request_id":"r1","prediction":"0","inputs":{"temp":1.5})"));
  Upload(event(11, "feedback",
               R"("feedback":{"event_id":"0190a1b2-0000-7000-8000-000000000010","label":"1"})"));
  scheduler->Tick();
  EXPECT_TRUE(Jobs().empty());
  // The edge's form: a label for a request id.
  Upload(event(12, "feedback", R"("request_id":"r1","label":1)"));
  scheduler->Tick();
  scheduler->WaitIdle();
  ASSERT_EQ(Jobs().size(), 1u);
  EXPECT_EQ(Jobs()[0].trigger, "feedback");
  QueryFilter filter;
  filter.model = "mf";
  auto labelled = store_->Labelled(filter, std::nullopt, std::nullopt, 100);
  ASSERT_TRUE(labelled.ok()) << labelled.status().message();
  EXPECT_EQ(labelled->rows.size(), 2u);
  // Two more labels within the cooldown start nothing; after it they do.
  clock_.Advance(std::chrono::seconds(1));
  Upload(event(13, "feedback",
               R"("feedback":{"event_id":"0190a1b2-0000-7000-8000-000000000010","label":"0"})"));
  Upload(event(14, "feedback", R"("request_id":"r1","label":0)"));
  scheduler->Tick();
  scheduler->WaitIdle();
  EXPECT_EQ(Jobs().size(), 1u);
  clock_.Advance(std::chrono::minutes(61));
  scheduler->Tick();
  scheduler->WaitIdle();
  EXPECT_EQ(Jobs().size(), 2u);
}

TEST_F(SchedulerTest, JobsLeftRunningByAKilledHubAreInterrupted) {
  JobRecord stale;
  stale.model = "mf";
  stale.trigger = "cron";
  stale.status = "running";
  stale.created_at = RealMs();
  auto id = store_->CreateJob(stale);
  ASSERT_TRUE(id.ok());
  auto scheduler = Make("");
  const JobRecord job = Job(*id);
  EXPECT_EQ(job.status, "interrupted");
  EXPECT_TRUE(job.finished_at.has_value());
}

TEST_F(SchedulerTest, StopInterruptsARunningJob) {
  launcher_.Hold(true);
  auto scheduler = Make("");
  auto id = scheduler->RunNow("mf");
  ASSERT_TRUE(id.ok());
  launcher_.WaitStarted(1);
  scheduler->Stop();
  EXPECT_EQ(Job(*id).status, "interrupted");
  EXPECT_EQ(launcher_.requests().size(), 1u);
}

TEST_F(SchedulerTest, TimeScaleAcceleratesCron) {
  SchedulerOptions options;
  options.time_scale = 60;  // one real minute is a scheduled hour
  auto scheduler = Make("    schedule: [{cron: '0 * * * *'}]\n", options);
  clock_.Advance(std::chrono::seconds(1));  // scheduled: 02:58:30 + 1 min
  scheduler->Tick();
  EXPECT_TRUE(Jobs().empty());
  clock_.Advance(std::chrono::seconds(1));  // scheduled: 03:00:30
  scheduler->Tick();
  scheduler->WaitIdle();
  EXPECT_EQ(Jobs().size(), 1u);
}

TEST(ScheduleFileTest, ErrorsNameTheKey) {
  const fs::path base = "/srv";
  auto parse = [&](const std::string& yaml) { return ParseSchedule(yaml, "s.yaml", base); };
  const std::string model = "models:\n  - {model: m, pipeline: p.yaml, train: t.yaml, lake: l";
  EXPECT_TRUE(parse(model + "}\n").ok());
  auto unknown = parse(model + ", cron: '* * * * *'}\n");
  EXPECT_NE(unknown.status().message().find("unknown key 'cron'"), std::string::npos)
      << unknown.status().message();
  auto bad_cron = parse(model + ", schedule: [{cron: '61 * * * *'}]}\n");
  EXPECT_NE(bad_cron.status().message().find("minute"), std::string::npos)
      << bad_cron.status().message();
  auto bad_zone = parse(model + ", schedule: [{cron: '0 * * * *', timezone: Nowhere/Land}]}\n");
  EXPECT_NE(bad_zone.status().message().find("unknown time zone"), std::string::npos)
      << bad_zone.status().message();
  auto promote = parse(model + ", push: layout:///r/m:c, promote: prod}\n");
  EXPECT_NE(promote.status().message().find("'promote' needs"), std::string::npos);
  auto no_lake = ParseSchedule("models:\n  - {model: m, pipeline: p, train: t}\n", "s", base);
  EXPECT_NE(no_lake.status().message().find("needs a 'lake'"), std::string::npos);
  auto twice = parse(model + "}\n  - {model: m, pipeline: p, train: t, lake: l}\n");
  EXPECT_NE(twice.status().message().find("listed twice"), std::string::npos);
  auto window = parse(model + ", triggers: {drift: {events: 3, window: soon}}}\n");
  EXPECT_EQ(window.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parse("models: [").status().code(), StatusCode::kInvalidArgument);
  auto config = parse(model + ", champion: ../models/champ}\n");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->models[0].champion, "/models/champ");
  EXPECT_EQ(config->models[0].pipeline, "/srv/p.yaml");
}

TEST(ProcessLauncherTest, CapturesOutputExitCodeAndTimeout) {
  edgeloop::testing::TempDir dir("launcher_test");
  ProcessLauncher launcher("/bin/sh");
  StepRequest request;
  request.name = "shell";
  request.args = {"-c", "echo \"out $EDGELOOP_X\"; echo err >&2; exit 3"};
  request.env = {{"EDGELOOP_X", "42"}};
  request.log_file = dir.path() / "log";
  request.stdout_file = dir.path() / "out";
  auto result = launcher.Run(request);
  ASSERT_TRUE(result.ok()) << result.status().message();
  EXPECT_EQ(result->exit_code, 3);
  EXPECT_FALSE(result->timed_out);
  EXPECT_EQ(ReadTail(dir.path() / "out", 100), "out 42\n");
  EXPECT_EQ(ReadTail(dir.path() / "log", 100), "err\n");

  request.args = {"-c", "exec sleep 30"};
  request.timeout = std::chrono::milliseconds(100);
  auto slow = launcher.Run(request);
  ASSERT_TRUE(slow.ok());
  EXPECT_TRUE(slow->timed_out);
  EXPECT_EQ(slow->exit_code, 128 + 9);
  EXPECT_LT(slow->seconds, 10);
}

TEST(ReadTailTest, CutsAtALineStart) {
  edgeloop::testing::TempDir dir("tail_test");
  std::ofstream(dir.path() / "f") << "first line\nsecond line\nthird\n";
  EXPECT_EQ(ReadTail(dir.path() / "f", 1000), "first line\nsecond line\nthird\n");
  EXPECT_EQ(ReadTail(dir.path() / "f", 15), "[... earlier output cut]\nthird\n");
  EXPECT_EQ(ReadTail(dir.path() / "missing", 10), "");
}

}  // namespace
}  // namespace edgeloop::hub
