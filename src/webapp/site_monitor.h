// SiteMonitor: what the operator view shows about the site beyond this server: the insight
// queue (depth, dead letters, disk budget use) and the uplink (the worker that forwards events to
// the hub: online / offline since, backlog, oldest unsent, drain rate).
//
// The uplink comes from the worker's metrics endpoint (`edgeloop worker --metrics-port`,
// Prometheus text: edgeloop_worker_held_back, _backlog_events, _oldest_unsent_age_seconds,
// _drain_rate_events_per_second, _dead_letter_events). States:
//   unknown      no --uplink-status-url was given
//   unreachable  the worker's endpoint does not answer (the worker is down)
//   offline      the worker holds back: its destination (the hub) is unavailable
//   online       the worker forwards
// `since` is when this server first saw the current state.
//
// Poll() does the I/O (one queue Stats call, one HTTP GET with a 2 s timeout); Start() calls it
// from a background thread, so request handlers only read the last snapshot. Thread-safe.
#ifndef EDGELOOP_WEBAPP_SITE_MONITOR_H_
#define EDGELOOP_WEBAPP_SITE_MONITOR_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "queue/queue.h"

namespace edgeloop::webapp {

struct Sample {
  std::string name;
  std::string labels;  // as written, without braces: `model="m",code="200"`
  double value = 0;
};
// Parses Prometheus text exposition lines; comments and malformed lines are skipped.
std::vector<Sample> ParsePrometheusText(std::string_view text);
// The sum of every sample named `name` (0 when none); `labels_contain` filters when not empty.
double SumOf(const std::vector<Sample>& samples, std::string_view name,
             std::string_view labels_contain = {});

struct SiteMonitorOptions {
  std::string queue_url;          // serve --queue; empty: no queue section
  std::string uplink_status_url;  // the worker's http://host:port/metrics; empty: unknown
  Clock* clock = Clock::Real();
  // Fetches a URL's body; empty: libcurl with a 2 s timeout. For tests.
  std::function<StatusOr<std::string>(const std::string& url)> fetch;
  // For tests: a queue to read instead of opening queue_url (not owned).
  queue::Queue* queue = nullptr;
};

class SiteMonitor {
 public:
  static StatusOr<std::unique_ptr<SiteMonitor>> Create(SiteMonitorOptions options);
  ~SiteMonitor();  // Stop()

  // Refreshes the snapshot now (I/O on the calling thread).
  void Poll();
  // Polls every `interval` on a background thread until Stop().
  void Start(std::chrono::milliseconds interval);
  void Stop();

  // The last snapshot: {"queue":{...}|null,"uplink":{"state","since_ms",...}}.
  std::string Json() const;
  std::string uplink_state() const;

 private:
  explicit SiteMonitor(SiteMonitorOptions options);

  SiteMonitorOptions options_;
  std::unique_ptr<queue::Queue> owned_queue_;  // Poll() only

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;                 // GUARDED_BY(mu_)
  std::string queue_json_ = "null";       // GUARDED_BY(mu_)
  std::string uplink_state_ = "unknown";  // GUARDED_BY(mu_)
  std::string uplink_error_;              // GUARDED_BY(mu_)
  int64_t uplink_since_ms_ = 0;           // GUARDED_BY(mu_)
  std::string uplink_json_ = "{}";        // GUARDED_BY(mu_): the worker's numbers
  std::thread thread_;
};

}  // namespace edgeloop::webapp

#endif  // EDGELOOP_WEBAPP_SITE_MONITOR_H_
