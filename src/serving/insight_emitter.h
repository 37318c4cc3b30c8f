// InsightEmitter: turns scored requests and user feedback into insight events on the queue
// (queue/queue.h), without ever blocking or failing a scoring request.
//
// The request path only decides whether a row is emitted (every anomaly, and a sample of normal
// predictions) and copies the tensors into a bounded in-memory hand-off; one background thread
// builds the JSON events (docs/serve.md, "Insight events") and appends them to the queue in
// batches. When the hand-off is full, or the queue is unreachable or rejects an event (disk
// budget), the event is dropped and counted in edgeloop_insight_events_dropped_total{reason}:
//   overflow           the hand-off was full (the queue is slower than the request rate)
//   queue_unavailable  the hand-off was full because the queue cannot be reached
//   queue_full         the queue's disk budget rejected it
//   too_large          the event is larger than the queue accepts
//   shutdown           still in the hand-off when the server stopped after its drain
// While the queue is unreachable, events wait in the hand-off (up to its capacity) and the
// thread retries every second.
//
// Each insight and anomaly event also carries the model's `prediction` as a label, when the
// version's card.json says how to turn outputs into one: a binary model (or a detector) with a
// `threshold` predicts classes[1] (default "1") when its `probability`/`score` output is at or
// above it, else classes[0]; a multi-class model predicts the class of its largest
// probability. The hub compares it with the label of the user's feedback for accuracy.
//
// The anomaly verdict of a row comes from an output named `anomaly` (BOOL, or a number: non-zero
// is an anomaly) when the request returned it; otherwise from `threshold` applied to an output
// named `score` or `probability` (score >= threshold); otherwise the row is not an anomaly.
//
// Feedback (POST /v2/models/{m}/feedback) is different: the caller hears back only once the
// event is durable in the queue, or gets the error (503 when the queue is unavailable).
//
// Thread-safe.
#ifndef EDGELOOP_SERVING_INSIGHT_EMITTER_H_
#define EDGELOOP_SERVING_INSIGHT_EMITTER_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "inference/tensor.h"
#include "queue/queue.h"
#include "serving/servable.h"

namespace edgeloop::serving {

struct InsightOptions {
  // The queue URL (queue.h: file:///dir or redis://host:port/stream). Empty: no events.
  std::string queue_url;
  std::string site;
  // Fraction of normal (non-anomalous) rows emitted, 0 to 1. Anomalies are always emitted.
  double sample_rate = 0.01;
  // Verdict threshold on a `score` or `probability` output, when the model has no `anomaly`
  // output.
  std::optional<double> threshold;
  // Events the hand-off holds.
  size_t capacity = 10'000;
  int max_batch = 256;
  Clock* clock = Clock::Real();
  metrics::Registry* metrics = nullptr;  // may be null
  // Uniform numbers in [0, 1) for sampling; empty: a per-thread generator.
  std::function<double()> uniform01;
  // For tests: a queue to use instead of opening queue_url (not owned).
  queue::Queue* queue = nullptr;
};

class InsightEmitter {
 public:
  // kInvalidArgument for a bad URL or options. A queue that cannot be reached now is not an
  // error: the thread keeps trying, and events wait (or are dropped and counted).
  static StatusOr<std::unique_ptr<InsightEmitter>> Create(InsightOptions options);
  ~InsightEmitter();  // Stop(0) if still running.

  // After a successful inference. `outputs` are the tensors returned to the client, `inputs`
  // the request's. Never blocks on I/O; copies only the rows it emits.
  void OnPrediction(const std::shared_ptr<const ServableVersion>& servable,
                    const std::string& request_id, const std::vector<inference::Tensor>& inputs,
                    const std::vector<inference::Tensor>& outputs, double latency_seconds);

  // A user's label for an earlier prediction. `done` is called (from the emitter's thread, or
  // at once when the hand-off is full) with the event id once it is durable, or an error:
  // kUnavailable (queue unreachable, full hand-off), kResourceExhausted (disk budget).
  void OnFeedback(const std::string& model, const std::string& version,
                  const std::string& request_id, std::string label_json, std::string comment,
                  std::function<void(StatusOr<std::string>)> done);

  // A drift report (drift.h) as a `drift` event (docs/serve.md, "The drift event");
  // `drift_json` is its `drift` object. Never blocks; dropped and counted like predictions.
  void OnDrift(const std::shared_ptr<const ServableVersion>& servable, std::string drift_json);

  // Stops accepting events, appends what is waiting for up to `timeout`, then drops the rest
  // (counted as "shutdown"). Idempotent.
  void Stop(std::chrono::milliseconds timeout);

  // Events appended so far (for tests and logs).
  int64_t appended() const;

 private:
  struct Pending {
    // The events, once built (feedback: at once; predictions: on the emitter thread). Kept
    // across failed appends so that a retry reuses the same ids.
    std::vector<queue::Event> built;
    std::shared_ptr<const ServableVersion> servable;
    std::vector<inference::Tensor> inputs;
    std::vector<inference::Tensor> outputs;
    std::vector<int64_t> rows;
    std::vector<std::pair<bool, std::optional<double>>> verdicts;  // per emitted row
    std::string request_id;
    double latency_seconds = 0;
    Clock::WallTime when;
    std::function<void(StatusOr<std::string>)> done;  // feedback only
    std::string drift_json;                           // drift only: the `drift` object
  };

  explicit InsightEmitter(InsightOptions options);
  static size_t Count(const Pending& pending);  // events the item stands for
  bool Push(Pending pending);                   // false (and counted) when full or stopped
  void Drop(const std::string& reason, uint64_t n = 1);
  void Loop();
  // Builds the events of one hand-off item.
  std::vector<queue::Event> Build(Pending& pending);
  std::string DigestOf(const ServableVersion& servable);
  // How the version's outputs become a predicted label (from card.json; see the class comment).
  struct PredictionRule {
    std::string task;  // empty: the card says nothing usable, no prediction
    std::optional<double> threshold;
    std::vector<std::string> classes;
  };
  const PredictionRule& RuleOf(const ServableVersion& servable);
  static std::optional<std::string> Predicted(const PredictionRule& rule,
                                              const inference::ModelConfig& config,
                                              const std::vector<inference::Tensor>& outputs,
                                              int64_t row);
  double Uniform();

  InsightOptions options_;
  std::unique_ptr<queue::Queue> owned_queue_;
  queue::Queue* queue_ = nullptr;  // emitter thread only after start

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Pending> pending_;  // GUARDED_BY(mu_)
  size_t pending_events_ = 0;    // GUARDED_BY(mu_): rows waiting (a prediction may carry several)
  bool stopping_ = false;        // GUARDED_BY(mu_)
  bool queue_down_ = false;      // GUARDED_BY(mu_)
  Clock::SteadyTime stop_deadline_;  // GUARDED_BY(mu_)
  int64_t appended_ = 0;             // GUARDED_BY(mu_)
  std::thread thread_;

  std::map<std::string, std::string> digests_;   // emitter thread only: model file → digest
  std::map<std::string, PredictionRule> rules_;  // emitter thread only: version folder → rule

  metrics::Family<metrics::Counter>* dropped_ = nullptr;
  std::shared_ptr<metrics::Counter> emitted_insight_, emitted_anomaly_, emitted_feedback_,
      emitted_drift_;
  std::shared_ptr<metrics::Gauge> buffered_;
};

// The verdict and score of row `row` of `outputs` (see the class comment).
std::pair<bool, std::optional<double>> AnomalyVerdict(const std::vector<inference::Tensor>& outputs,
                                                      int64_t row, std::optional<double> threshold);

}  // namespace edgeloop::serving

#endif  // EDGELOOP_SERVING_INSIGHT_EMITTER_H_
