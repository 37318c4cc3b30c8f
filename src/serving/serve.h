// RunServe: the `edgeloop serve` role, wiring the HTTP server, the model manager and the OIP
// handler together and running until SIGTERM or SIGINT.
#ifndef EDGELOOP_SERVING_SERVE_H_
#define EDGELOOP_SERVING_SERVE_H_

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "http/server.h"
#include "serving/drift.h"
#include "serving/insight_emitter.h"

namespace edgeloop::serving {

class ModelManager;
class Deployer;

// What a web application in front of the OIP API (src/webapp) gets from RunServe. Every pointer
// outlives the web app's handler; `deployer` and `insights` may be null.
struct WebAppContext {
  ModelManager* manager = nullptr;
  metrics::Registry* registry = nullptr;
  http::Handler* api = nullptr;  // the OIP handler: every request the web app does not route
  const Deployer* deployer = nullptr;
  InsightEmitter* insights = nullptr;
  bool loopback_only = false;
  std::string api_token;
  std::string queue_url;
  std::optional<double> anomaly_threshold;
};
using WebAppFactory =
    std::function<StatusOr<std::unique_ptr<http::Handler>>(const WebAppContext& context)>;

struct ServeOptions {
  // The model repository. May be empty with a deployment: then <cache_dir>/repository.
  std::string model_repository;
  // A deployment file (deployment.h): models followed in a registry, verified, pulled into the
  // repository and hot-swapped. Empty: serve the repository as it is.
  std::string deployment_file;
  // When positive, overrides the deployment file's poll_interval_s.
  std::chrono::milliseconds deployment_poll_interval{0};
  http::ServerOptions http;
  std::chrono::milliseconds poll_interval{500};  // 0: scan only at start and on API loads
  std::chrono::milliseconds drain_timeout{30'000};
  // Bearer token for the endpoints that change state (repository load/unload). Empty: they are
  // open when the server listens on loopback only, and closed (403) otherwise.
  std::string api_token;
  // Insight events (insight_emitter.h): on when insights.queue_url is set. The emitter's clock
  // and metrics are filled in by RunServe.
  InsightOptions insights;
  // Drift monitoring (drift.h) for models without `drift:` in the deployment file;
  // window_rows 0 turns it off.
  DriftSettings drift;
  // When set, the web app it builds answers every request and hands the OIP API's to `api`
  // (a factory, so that serving does not depend on the web app).
  WebAppFactory web_app;
};

// Loads the repository's models, serves until SIGTERM/SIGINT, then drains. With a deployment,
// serves what the deployment cache holds at once (without contacting the registry) and starts
// following the deployed references once listening. Returns OK after a clean shutdown (also when
// the drain timed out: that is logged), or the start-up error (bad repository, invalid
// deployment file, cache in use, port in use).
Status RunServe(const ServeOptions& options);

}  // namespace edgeloop::serving

#endif  // EDGELOOP_SERVING_SERVE_H_
