// OipHandler: the Open Inference Protocol v2 REST API (plus the repository extension, the
// read-only deployment report and /metrics) as an http::Handler. Routes requests, parses and
// validates them, runs the model (inline, or through the model's batcher) and encodes the
// response. See docs/serve.md for the API. Thread-safe.
#ifndef EDGELOOP_SERVING_OIP_HANDLER_H_
#define EDGELOOP_SERVING_OIP_HANDLER_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/metrics.h"
#include "http/http.h"
#include "serving/batcher.h"
#include "serving/model_manager.h"

namespace edgeloop::serving {

// Who may use the endpoints that change state (repository load and unload).
struct ControlAccess {
  // When set, requests must carry `Authorization: Bearer <token>` (401 otherwise).
  std::string token;
  // Without a token: allow everyone (for a server that listens on loopback only) or no one
  // (403), so that a server reachable from the network never has an open control API.
  bool allow_without_token = false;
};

class Deployer;
class DriftMonitor;
class InsightEmitter;
class Rollout;
class RolloutRouter;

class OipHandler : public http::Handler {
 public:
  // Every pointer must outlive the handler. `draining` turns readiness false while the server
  // shuts down. `deployer` (may be null) answers GET /v2/deployment, and its rollouts route
  // requests that name no version (rollout.h). `insights` (may be null) receives every
  // successful prediction and serves POST /v2/models/{m}/feedback. `drift` (may be null) sees
  // every request's inputs and answers GET /v2/models/{m}/drift.
  OipHandler(ModelManager* manager, metrics::Registry* registry, Clock* clock,
             const std::atomic<bool>* draining, ControlAccess control,
             const Deployer* deployer = nullptr, InsightEmitter* insights = nullptr,
             DriftMonitor* drift = nullptr);

  void Handle(http::Request request, http::Responder respond) override;

 private:
  void Infer(http::Request& request, std::string_view model, std::optional<int64_t> version,
             http::Responder respond);
  void Feedback(const http::Request& request, std::string_view model,
                std::optional<int64_t> version, http::Responder respond);
  void RunShadow(const std::shared_ptr<Rollout>& rollout,
                 const std::shared_ptr<const ServableVersion>& shadow, BatchItem item);
  http::Response Drift(std::string_view model, std::optional<int64_t> version) const;
  http::Response ModelMetadata(std::string_view model, std::optional<int64_t> version) const;
  http::Response ModelReady(std::string_view model, std::optional<int64_t> version) const;
  http::Response ServerReady() const;
  http::Response RepositoryIndex(const http::Request& request) const;
  // An error response when `request` may not change state, nullopt when it may.
  std::optional<http::Response> CheckControlAccess(const http::Request& request) const;

  ModelManager* manager_;
  metrics::Registry* registry_;
  Clock* clock_;
  const std::atomic<bool>* draining_;
  const ControlAccess control_;
  const Deployer* deployer_;
  InsightEmitter* insights_;
  DriftMonitor* drift_;
  RolloutRouter* rollouts_;  // the deployer's; null without one
};

}  // namespace edgeloop::serving

#endif  // EDGELOOP_SERVING_OIP_HANDLER_H_
