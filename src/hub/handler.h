// HubHandler: the hub's HTTP API and dashboard as an http::Handler.
//
//   POST /api/v1/ingest                 site token: an upload of JSON Lines events
//   GET  /api/v1/whoami                 any token
//   GET  /api/v1/sites                  read/admin: sites, last seen, sync state
//   POST /api/v1/sites                  admin: {"name": "..."} creates a site and its token
//   GET  /api/v1/stats|anomalies|versions|distribution|accuracy|events|uploads|drift
//                                       read/admin; ?format=csv (or a .csv suffix) for CSV
//   GET  /api/v1/labelled               read/admin: events joined with feedback labels (JSONL)
//   GET  /api/v1/jobs[/{id}[/log]]      read/admin: retraining jobs
//   POST /api/v1/jobs                   admin: {"model": "..."} runs a job now
//   GET  /api/v1/health                 open: status, schema version
//   GET  /, /app.js, /style.css, /vendor/chart.umd.min.js   the dashboard (no data in it)
//   GET  /healthz, /metrics
//
// Everything that touches the store runs on the handler's own worker threads, never on the
// server's I/O threads; when every worker is busy and the queue of waiting requests is full,
// uploads get 429 and queries 503, both with Retry-After. docs/hub.md is the reference.
// Thread-safe.
#ifndef EDGELOOP_HUB_HANDLER_H_
#define EDGELOOP_HUB_HANDLER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "http/http.h"
#include "hub/auth.h"
#include "hub/store.h"

namespace edgeloop::hub {

// What the handler needs from the retraining scheduler (hub/scheduler.h).
class JobRunner {
 public:
  virtual ~JobRunner() = default;
  // Starts a job for `model` now; returns its id. kNotFound for a model the schedule does not
  // name, kAborted while that model's job runs.
  virtual StatusOr<int64_t> RunNow(const std::string& model) = 0;
};

struct HubHandlerOptions {
  // Decoded upload size (413 beyond); the compressed size is the HTTP server's body limit.
  size_t max_batch_bytes = 32 << 20;
  size_t max_events = 10'000;  // per upload (413 beyond)
  int workers = 4;             // threads running store work
  size_t max_queue = 256;      // requests waiting for a worker before 429/503
  std::chrono::milliseconds token_cache_ttl{5'000};
  std::chrono::milliseconds stale_after{5 * 60'000};     // sync state "stale" after this silence
  std::chrono::milliseconds offline_after{60 * 60'000};  // ... and "offline" after this
  // Tests: workers start only when Resume() is called, so that a full queue is reproducible.
  bool start_paused = false;
};

class HubHandler : public http::Handler {
 public:
  // `store`, `registry` and `clock` must outlive the handler.
  HubHandler(Store* store, metrics::Registry* registry, Clock* clock, HubHandlerOptions options);
  ~HubHandler() override;  // finishes queued work, then joins the workers

  void Handle(http::Request request, http::Responder respond) override;
  void Resume();
  // Enables POST /api/v1/jobs; `jobs` must outlive the handler. Call before serving.
  void SetJobRunner(JobRunner* jobs) { jobs_ = jobs; }

 private:
  using Task = std::function<void()>;
  bool Submit(Task task);
  void WorkerLoop();

  void Ingest(const http::Request& request, http::Responder& respond);
  http::Response Query(const http::Request& request, std::string_view path);
  http::Response AddSite(const http::Request& request);
  http::Response Health();
  http::Response Jobs(const http::Request& request, std::string_view path);
  http::Response Labelled(const http::Request& request);
  int64_t WallMs() const;

  Store* store_;
  metrics::Registry* registry_;
  Clock* clock_;
  const HubHandlerOptions options_;
  Authenticator auth_;
  JobRunner* jobs_ = nullptr;
  std::atomic<int> schema_version_{0};  // cached by Health()

  std::shared_ptr<metrics::Counter> events_accepted_, events_duplicate_, events_rejected_, uploads_,
      overloaded_;
  std::shared_ptr<metrics::Histogram> ingest_seconds_;

  std::mutex mu_;
  std::condition_variable work_;
  std::deque<Task> queue_;  // GUARDED_BY(mu_)
  int busy_ = 0;            // GUARDED_BY(mu_)
  bool paused_;             // GUARDED_BY(mu_)
  bool stopping_ = false;   // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

// One embedded dashboard file.
struct Asset {
  std::string_view path;  // "/app.js"
  std::string_view content_type;
  std::string_view data;
};
const Asset* FindAsset(std::string_view path);

}  // namespace edgeloop::hub

#endif  // EDGELOOP_HUB_HANDLER_H_
