// RunServe: the `edgeloop serve` role, wiring the HTTP server, the model manager and the OIP
// handler together and running until SIGTERM or SIGINT.
#ifndef EDGELOOP_SERVING_SERVE_H_
#define EDGELOOP_SERVING_SERVE_H_

#include <chrono>
#include <string>

#include "common/status.h"
#include "http/server.h"

namespace edgeloop::serving {

struct ServeOptions {
  std::string model_repository;
  http::ServerOptions http;
  std::chrono::milliseconds poll_interval{500};  // 0: scan only at start and on API loads
  std::chrono::milliseconds drain_timeout{30'000};
  // Bearer token for the endpoints that change state (repository load/unload). Empty: they are
  // open when the server listens on loopback only, and closed (403) otherwise.
  std::string api_token;
};

// Loads the repository's models, serves until SIGTERM/SIGINT, then drains. Returns OK after a
// clean shutdown (also when the drain timed out: that is logged), or the start-up error (bad
// repository, port in use).
Status RunServe(const ServeOptions& options);

}  // namespace edgeloop::serving

#endif  // EDGELOOP_SERVING_SERVE_H_
