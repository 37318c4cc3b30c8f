// RunUp: the `edgeloop up` role. Every role of the loop on one machine, on embedded defaults,
// with demo data flowing: it generates the demo data set, loads it into the lake, trains, signs,
// pushes and promotes the first model into a local OCI layout registry, then starts the hub (with
// the retraining schedule on an accelerated clock), an edge server that follows the model's alias
// (canary rollout, drift monitoring, insight events), a worker (compliance policy and
// store-and-forward upload to the hub) and a live feed that scores readings and sends feedback.
// All state lives in one folder; a second start resumes from it.
#ifndef EDGELOOP_UP_UP_H_
#define EDGELOOP_UP_UP_H_

#include <cstdint>
#include <filesystem>
#include <string>

#include "common/status.h"
#include "up/demo_data.h"

namespace edgeloop::up {

struct UpOptions {
  std::filesystem::path dir = ".edgeloop-up";  // the state folder
  // The hub listens on port_base, the edge server on port_base + 1, the worker's metrics on
  // port_base + 2. 0: free ports chosen by the system.
  int port_base = 8400;
  // Simulated time runs this many times faster than real time: the feed sends one reading per
  // machine per simulated minute, and the hub's scheduler runs on the same accelerated clock.
  double time_scale = 300;
  // Readings per second of the feed; 0 derives it from time_scale (machines * time_scale / 60).
  double feed_rate = 0;
  DemoDataOptions data;
  // Print the URLs and a status line every this many seconds on stdout (0: no status lines).
  int status_interval_s = 10;
  // Stop by itself (as on SIGTERM) once the feed has sent every reading and this many more
  // seconds passed; negative: keep running until a signal. For tests and scripted runs.
  double exit_after_feed_s = -1;
  std::string log_format = "text";  // handed to the children
  std::string log_level = "info";
};

// Runs until SIGINT or SIGTERM (or exit_after_feed_s), then stops every child (SIGTERM, then
// SIGKILL after 10 s) and returns OK. Errors: kInvalidArgument for bad options,
// kFailedPrecondition when a port is in use or another `edgeloop up` holds the folder,
// kUnavailable when a role fails to start or exits (with the tail of its log).
Status RunUp(const UpOptions& options);

}  // namespace edgeloop::up

#endif  // EDGELOOP_UP_UP_H_
