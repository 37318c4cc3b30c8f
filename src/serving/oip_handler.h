// OipHandler: the Open Inference Protocol v2 REST API (plus the repository extension and
// /metrics) as an http::Handler. Routes requests, parses and validates them, runs the model
// (inline, or through the model's batcher) and encodes the response. See docs/serve.md for the
// API. Thread-safe.
#ifndef EDGELOOP_SERVING_OIP_HANDLER_H_
#define EDGELOOP_SERVING_OIP_HANDLER_H_

#include <atomic>
#include <string>

#include "common/clock.h"
#include "common/metrics.h"
#include "http/http.h"
#include "serving/model_manager.h"

namespace edgeloop::serving {

class OipHandler : public http::Handler {
 public:
  // Every pointer must outlive the handler. `draining` turns readiness false while the server
  // shuts down.
  OipHandler(ModelManager* manager, metrics::Registry* registry, Clock* clock,
             const std::atomic<bool>* draining);

  void Handle(http::Request request, http::Responder respond) override;

 private:
  void Infer(http::Request& request, std::string_view model, std::optional<int64_t> version,
             http::Responder respond);
  http::Response ModelMetadata(std::string_view model, std::optional<int64_t> version) const;
  http::Response ModelReady(std::string_view model, std::optional<int64_t> version) const;
  http::Response ServerReady() const;
  http::Response RepositoryIndex(const http::Request& request) const;

  ModelManager* manager_;
  metrics::Registry* registry_;
  Clock* clock_;
  const std::atomic<bool>* draining_;
};

}  // namespace edgeloop::serving

#endif  // EDGELOOP_SERVING_OIP_HANDLER_H_
