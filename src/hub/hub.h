// RunHub: the `edgeloop hub serve` role: opens (and migrates) the store, serves the ingest and
// query API and the dashboard on one port until SIGTERM or SIGINT, then drains.
#ifndef EDGELOOP_HUB_HUB_H_
#define EDGELOOP_HUB_HUB_H_

#include <chrono>
#include <string>

#include "common/status.h"
#include "http/server.h"
#include "hub/handler.h"

namespace edgeloop::hub {

struct HubOptions {
  std::string store_url;  // sqlite://FILE or postgresql://...
  int store_connections = 4;
  bool migrate = true;
  http::ServerOptions http;
  HubHandlerOptions handler;
  std::chrono::milliseconds drain_timeout{30'000};
  // The retraining scheduler (hub/scheduler.h): a schedule file, or empty for none, and the
  // speed of its clock (demos).
  std::string schedule_file;
  double time_scale = 1.0;
};

// Returns OK after a clean shutdown, or the start-up error (store unreachable, schema too new,
// port in use).
Status RunHub(const HubOptions& options);

}  // namespace edgeloop::hub

#endif  // EDGELOOP_HUB_HUB_H_
