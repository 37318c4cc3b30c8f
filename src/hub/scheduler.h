// Scheduler: the hub's retraining loop (docs/hub.md, "Retraining scheduler"). Per model of a
// schedule file, cron expressions (with time zones) and triggers (drift reports, new feedback
// labels) start a job: `edgeloop pipeline run` (hub events + labels into the lake), then
// `edgeloop train` (challenger, gate against the champion, push and promote on pass). Jobs and
// their outcome, gate numbers and log are kept in the hub store.
//
// Job states: queued -> running -> succeeded | rejected (the gate refused) | failed |
// interrupted (the hub stopped; also set at start-up for jobs a killed hub left running).
// One job at a time per model. A failed step ends the job; nothing after it runs, so a
// failed job never pushes or promotes.
//
// Time: cron times are evaluated on a scaled clock (`time_scale`, for demos) that starts at the
// wall time of Create(); durations in the schedule (drift window, cooldown) are scheduler-clock
// durations, compared with the store's real receive times after dividing by the scale.
//
// Thread-safe. Tick() is what the background thread calls; tests call it with a FakeClock.
#ifndef EDGELOOP_HUB_SCHEDULER_H_
#define EDGELOOP_HUB_SCHEDULER_H_

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "hub/cron.h"
#include "hub/handler.h"
#include "hub/jobs.h"
#include "hub/store.h"

namespace edgeloop::hub {

struct ModelSchedule {
  std::string model;
  std::filesystem::path pipeline;  // pipeline spec
  std::filesystem::path train;     // training spec
  std::filesystem::path lake;
  std::string champion;  // reference or folder; empty: no champion
  std::string push;      // reference; empty: no push
  std::filesystem::path key;
  std::string promote;  // alias; empty: no promotion
  std::vector<CronSchedule> crons;
  int64_t drift_events = 0;  // 0: no drift trigger
  int64_t drift_window_ms = 3'600'000;
  int64_t min_labels = 0;  // 0: no feedback trigger
  int64_t cooldown_ms = 0;
  int64_t timeout_ms = 30 * 60'000;
  size_t max_log_bytes = 64 << 10;
};

struct ScheduleConfig {
  std::filesystem::path work_dir;  // one folder per job under it
  std::vector<ModelSchedule> models;
};

// Parses a schedule file (YAML, docs/hub.md). Relative paths are resolved against `base_dir`.
// kInvalidArgument naming the key (and line) for anything malformed: unknown keys, a bad cron
// expression or time zone, a missing required key, a model listed twice.
StatusOr<ScheduleConfig> ParseSchedule(std::string_view yaml, const std::string& origin,
                                       const std::filesystem::path& base_dir);
StatusOr<ScheduleConfig> LoadSchedule(const std::filesystem::path& file);

// "90s", "5m", "1h", "1d", "250ms".
StatusOr<int64_t> ParseDurationMs(std::string_view text);

struct SchedulerOptions {
  double time_scale = 1.0;  // scheduler clock speed relative to `clock`
  // Given to the children as EDGELOOP_HUB_URL and EDGELOOP_HUB_TOKEN.
  std::string hub_url;
  std::string hub_token;
  std::chrono::milliseconds tick{250};  // background thread period (real time)
};

class Scheduler : public JobRunner {
 public:
  // Marks jobs a previous hub left unfinished as interrupted and computes the first cron
  // times. `store`, `clock` and `launcher` must outlive the scheduler.
  static StatusOr<std::unique_ptr<Scheduler>> Create(ScheduleConfig config, Store* store,
                                                     Clock* clock, StepLauncher* launcher,
                                                     SchedulerOptions options);
  ~Scheduler() override;  // Stop()

  // Evaluates every model's cron times and triggers once and starts the jobs that are due.
  void Tick();
  // JobRunner: starts a job for `model` now (trigger "api").
  StatusOr<int64_t> RunNow(const std::string& model) override;

  // Runs Tick() every options.tick on a background thread until Stop().
  void Start();
  // Stops the thread, cancels running steps (their jobs end interrupted) and waits for the job
  // threads.
  void Stop();
  // Waits until no job runs (tests).
  void WaitIdle();

  // The scheduler clock, Unix ms.
  int64_t ScheduledNowMs() const;

 private:
  struct ModelState {
    ModelSchedule config;
    std::vector<int64_t> next_fire_s;    // per cron, UTC seconds on the scheduler clock
    std::optional<int64_t> last_job_ms;  // real wall time of the last job's creation
    bool running = false;
  };

  Scheduler(ScheduleConfig config, Store* store, Clock* clock, StepLauncher* launcher,
            SchedulerOptions options);
  int64_t RealNowMs() const;
  // Creates the job row and its thread. Requires mu_ held; `state` must not be running.
  StatusOr<int64_t> StartJobLocked(ModelState& state, const std::string& trigger);
  void RunJob(JobRecord job, ModelSchedule config);

  const ScheduleConfig config_;
  Store* store_;
  Clock* clock_;
  StepLauncher* launcher_;
  const SchedulerOptions options_;
  const Clock::WallTime start_wall_;

  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, ModelState> models_;  // GUARDED_BY(mu_)
  std::vector<std::thread> job_threads_;      // GUARDED_BY(mu_)
  int running_jobs_ = 0;                      // GUARDED_BY(mu_)
  bool stopping_ = false;                     // GUARDED_BY(mu_)
  std::thread ticker_;
};

// For `edgeloop hub serve --schedule FILE`: loads the schedule, replaces the scheduler's read
// token (name "scheduler": earlier ones are revoked, the new one is handed to the children
// only) and creates the scheduler for a hub reachable at `hub_url`. Errors: a bad schedule file
// (kInvalidArgument), the store's.
StatusOr<std::unique_ptr<Scheduler>> CreateHubScheduler(const std::filesystem::path& schedule_file,
                                                        double time_scale,
                                                        const std::string& hub_url, Store* store,
                                                        Clock* clock, StepLauncher* launcher);

}  // namespace edgeloop::hub

#endif  // EDGELOOP_HUB_SCHEDULER_H_
