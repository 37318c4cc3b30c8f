// RunWorker: the `edgeloop worker` role. Opens the queue, builds the function chain from its
// file, serves /metrics and /healthz, runs the worker until SIGTERM or SIGINT, then drains.
#ifndef EDGELOOP_FUNCTIONS_RUN_WORKER_H_
#define EDGELOOP_FUNCTIONS_RUN_WORKER_H_

#include <chrono>
#include <string>

#include "common/status.h"
#include "queue/queue.h"

namespace edgeloop::functions {

struct RunWorkerOptions {
  std::string queue_url;
  std::string function_file;
  std::string consumer;  // empty: "<hostname>-<pid>"
  int batch_size = 100;
  int concurrency = 2;
  std::chrono::milliseconds visibility{60'000};
  std::chrono::milliseconds lease_wait{500};
  std::chrono::milliseconds probe_initial{1'000};
  std::chrono::milliseconds probe_max{60'000};
  std::chrono::milliseconds drain_timeout{30'000};
  queue::RetryPolicy retry;
  std::string metrics_address = "127.0.0.1";
  int metrics_port = 9464;  // 0 picks a free port (logged); -1: no metrics server
};

// Returns OK after a clean shutdown, or the start-up error (bad queue URL or function file,
// queue unreachable, metrics port in use).
Status RunWorker(const RunWorkerOptions& options);

}  // namespace edgeloop::functions

#endif  // EDGELOOP_FUNCTIONS_RUN_WORKER_H_
