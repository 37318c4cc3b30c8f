// ServableVersion: one loaded, warmed, ready model version, as requests see it.
//
// Immutable once published; shared by the ModelManager's serving map and by every request in
// flight (a request holds a shared_ptr for its whole life, so a version that is unloaded while
// requests run finishes them first). Thread-safe.
#ifndef EDGELOOP_SERVING_SERVABLE_H_
#define EDGELOOP_SERVING_SERVABLE_H_

#include <array>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/metrics.h"
#include "inference/model.h"
#include "inference/model_config.h"
#include "serving/batcher.h"

namespace edgeloop::serving {

// Per-version metric children, looked up once at load.
struct ServableMetrics {
  metrics::Family<metrics::Counter>* requests = nullptr;          // {model, version, code}
  std::array<std::shared_ptr<metrics::Counter>, 6> common_codes;  // 200 400 404 500 501 503
  std::shared_ptr<metrics::Histogram> request_seconds;
  std::shared_ptr<metrics::Histogram> queue_seconds;
  std::shared_ptr<metrics::Histogram> batch_rows;

  void CountRequest(const std::string& model, const std::string& version, int code) const;
};

struct ServableVersion {
  inference::ModelConfig config;
  std::string version_string;  // "3"
  std::string fingerprint;     // of the version folder when loaded
  Clock::WallTime loaded_at;
  std::shared_ptr<const inference::Model> model;
  std::shared_ptr<Batcher> batcher;  // null when batching is off
  ServableMetrics metrics;
};

}  // namespace edgeloop::serving

#endif  // EDGELOOP_SERVING_SERVABLE_H_
