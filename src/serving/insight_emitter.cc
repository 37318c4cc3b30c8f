#include "serving/insight_emitter.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "common/logging.h"
#include "queue/uuid.h"
#include "registry/digest.h"

namespace edgeloop::serving {
namespace {

using Json = nlohmann::json;
using inference::DataType;
using inference::Tensor;

int64_t RowsOf(const Tensor& tensor) { return tensor.shape().empty() ? 1 : tensor.shape().front(); }

int64_t PerRow(const Tensor& tensor) {
  const int64_t rows = RowsOf(tensor);
  return rows > 0 ? tensor.element_count() / rows : 0;
}

Json Element(const Tensor& t, int64_t i) {
  const auto index = static_cast<size_t>(i);
  switch (t.datatype()) {
    case DataType::kBool:
      return t.values<uint8_t>()[index] != 0;
    case DataType::kUint8:
      return t.values<uint8_t>()[index];
    case DataType::kUint16:
      return t.values<uint16_t>()[index];
    case DataType::kUint32:
      return t.values<uint32_t>()[index];
    case DataType::kUint64:
      return t.values<uint64_t>()[index];
    case DataType::kInt8:
      return t.values<int8_t>()[index];
    case DataType::kInt16:
      return t.values<int16_t>()[index];
    case DataType::kInt32:
      return t.values<int32_t>()[index];
    case DataType::kInt64:
      return t.values<int64_t>()[index];
    case DataType::kFp32: {
      const float v = t.values<float>()[index];
      return std::isfinite(v) ? Json(static_cast<double>(v)) : Json();
    }
    case DataType::kFp64: {
      const double v = t.values<double>()[index];
      return std::isfinite(v) ? Json(v) : Json();
    }
    case DataType::kBytes:
      return t.strings()[index];
    case DataType::kFp16:
    case DataType::kBf16:
      return nullptr;
  }
  return nullptr;
}

std::optional<double> Number(const Tensor& t, int64_t i) {
  Json value = Element(t, i);
  if (value.is_boolean()) return value.get<bool>() ? 1.0 : 0.0;
  if (value.is_number()) return value.get<double>();
  return std::nullopt;
}

// Row `row` of a tensor: a scalar when the row has one element, else a flat list.
Json RowValue(const Tensor& t, int64_t row) {
  const int64_t per_row = PerRow(t);
  if (per_row == 1) return Element(t, row);
  Json list = Json::array();
  for (int64_t j = 0; j < per_row; ++j) list.push_back(Element(t, row * per_row + j));
  return list;
}

// Copies rows `rows` of `tensor` into a new tensor of rows.size() rows.
Tensor SelectRows(const Tensor& tensor, const std::vector<int64_t>& rows) {
  inference::Shape shape = tensor.shape();
  if (shape.empty()) return tensor;
  shape[0] = static_cast<int64_t>(rows.size());
  Tensor out(tensor.name(), tensor.datatype(), shape);
  const int64_t per_row = PerRow(tensor);
  if (tensor.datatype() == DataType::kBytes) {
    for (size_t r = 0; r < rows.size(); ++r) {
      for (int64_t j = 0; j < per_row; ++j) {
        out.strings()[r * static_cast<size_t>(per_row) + static_cast<size_t>(j)] =
            tensor.strings()[static_cast<size_t>(rows[r] * per_row + j)];
      }
    }
    return out;
  }
  const size_t row_bytes =
      static_cast<size_t>(per_row) * inference::DataTypeByteSize(tensor.datatype());
  for (size_t r = 0; r < rows.size(); ++r) {
    std::memcpy(out.bytes().data() + r * row_bytes,
                tensor.bytes().data() + static_cast<size_t>(rows[r]) * row_bytes, row_bytes);
  }
  return out;
}

}  // namespace

size_t InsightEmitter::Count(const Pending& pending) {
  if (!pending.drift_json.empty()) return 1;
  return pending.rows.empty() ? pending.built.size() : pending.rows.size();
}

std::pair<bool, std::optional<double>> AnomalyVerdict(const std::vector<Tensor>& outputs,
                                                      int64_t row,
                                                      std::optional<double> threshold) {
  const Tensor* anomaly = nullptr;
  const Tensor* score = nullptr;
  for (const Tensor& output : outputs) {
    if (output.name() == "anomaly") anomaly = &output;
    if (output.name() == "score" || (output.name() == "probability" && score == nullptr)) {
      score = &output;
    }
  }
  std::optional<double> score_value;
  if (score != nullptr && row < RowsOf(*score)) {
    // The first element of the row: the score, or a binary model's probability.
    score_value = Number(*score, row * PerRow(*score));
  }
  if (anomaly != nullptr && row < RowsOf(*anomaly)) {
    const auto flag = Number(*anomaly, row * PerRow(*anomaly));
    return {flag.has_value() && *flag != 0, score_value};
  }
  if (threshold && score_value) return {*score_value >= *threshold, score_value};
  return {false, score_value};
}

InsightEmitter::InsightEmitter(InsightOptions options) : options_(std::move(options)) {
  if (options_.metrics != nullptr) {
    dropped_ = options_.metrics->AddCounter(
        "edgeloop_insight_events_dropped_total",
        "Insight and feedback events not queued, by reason: overflow, queue_unavailable, "
        "queue_full, too_large, shutdown",
        {"reason"});
    for (const char* reason :
         {"overflow", "queue_unavailable", "queue_full", "too_large", "shutdown"}) {
      dropped_->With({reason});  // exported at 0 from the start
    }
    auto* emitted = options_.metrics->AddCounter("edgeloop_insight_events_total",
                                                 "Events appended to the queue, by type", {"type"});
    emitted_insight_ = emitted->With({"insight"});
    emitted_anomaly_ = emitted->With({"anomaly"});
    emitted_feedback_ = emitted->With({"feedback"});
    emitted_drift_ = emitted->With({"drift"});
    buffered_ =
        options_.metrics
            ->AddGauge("edgeloop_insight_events_buffered", "Events waiting in memory for the queue")
            ->With({});
  }
}

StatusOr<std::unique_ptr<InsightEmitter>> InsightEmitter::Create(InsightOptions options) {
  if (options.sample_rate < 0 || options.sample_rate > 1 || std::isnan(options.sample_rate)) {
    return InvalidArgumentError("--sample-rate must be between 0 and 1");
  }
  if (options.capacity == 0 || options.max_batch < 1) {
    return InvalidArgumentError("the insight hand-off needs a positive capacity and batch");
  }
  if (options.queue == nullptr && options.queue_url.empty()) {
    return InvalidArgumentError("insight events need a queue URL");
  }
  auto emitter = std::unique_ptr<InsightEmitter>(new InsightEmitter(std::move(options)));
  if (emitter->options_.queue != nullptr) {
    emitter->queue_ = emitter->options_.queue;
  } else {
    queue::QueueOptions queue_options;
    queue_options.url = emitter->options_.queue_url;
    queue_options.clock = emitter->options_.clock;
    auto opened = queue::Queue::Open(queue_options);
    if (opened.ok()) {
      emitter->owned_queue_ = std::move(*opened);
      emitter->queue_ = emitter->owned_queue_.get();
    } else if (opened.status().code() == StatusCode::kInvalidArgument) {
      return opened.status().WithContext("--queue");
    } else {
      log::Warn("the insight queue is not reachable yet; events wait in memory",
                {{"queue", emitter->options_.queue_url}, {"error", opened.status()}});
      emitter->queue_down_ = true;
    }
  }
  emitter->thread_ = std::thread([raw = emitter.get()] { raw->Loop(); });
  return emitter;
}

InsightEmitter::~InsightEmitter() { Stop(std::chrono::milliseconds(0)); }

int64_t InsightEmitter::appended() const {
  std::lock_guard<std::mutex> lock(mu_);
  return appended_;
}

double InsightEmitter::Uniform() {
  if (options_.uniform01) return options_.uniform01();
  thread_local std::mt19937_64 generator{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(generator);
}

void InsightEmitter::Drop(const std::string& reason, uint64_t n) {
  if (dropped_ != nullptr && n > 0) dropped_->With({reason})->Increment(n);
}

bool InsightEmitter::Push(Pending pending) {
  const size_t events = Count(pending);
  std::string reason;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      reason = "shutdown";
    } else if (pending_events_ + events > options_.capacity) {
      reason = queue_down_ ? "queue_unavailable" : "overflow";
    } else {
      pending_events_ += events;
      if (buffered_) buffered_->Set(static_cast<double>(pending_events_));
      pending_.push_back(std::move(pending));
      wake_.notify_one();
      return true;
    }
  }
  Drop(reason, events);
  if (pending.done) {
    pending.done(UnavailableError("the insight queue cannot take the event now (" + reason + ")"));
  }
  return false;
}

void InsightEmitter::OnPrediction(const std::shared_ptr<const ServableVersion>& servable,
                                  const std::string& request_id, const std::vector<Tensor>& inputs,
                                  const std::vector<Tensor>& outputs, double latency_seconds) {
  if (inputs.empty() || outputs.empty()) return;
  const int64_t rows = RowsOf(inputs.front());
  Pending pending;
  for (int64_t row = 0; row < rows; ++row) {
    auto verdict = AnomalyVerdict(outputs, row, options_.threshold);
    if (!verdict.first && !(options_.sample_rate > 0 && Uniform() < options_.sample_rate)) continue;
    pending.rows.push_back(row);
    pending.verdicts.push_back(verdict);
  }
  if (pending.rows.empty()) return;
  pending.servable = servable;
  for (const Tensor& input : inputs) pending.inputs.push_back(SelectRows(input, pending.rows));
  for (const Tensor& output : outputs) {
    pending.outputs.push_back(RowsOf(output) == rows ? SelectRows(output, pending.rows) : output);
  }
  pending.request_id = request_id;
  pending.latency_seconds = latency_seconds;
  pending.when = options_.clock->WallNow();
  Push(std::move(pending));
}

void InsightEmitter::OnDrift(const std::shared_ptr<const ServableVersion>& servable,
                             std::string drift_json) {
  if (servable == nullptr || drift_json.empty()) return;
  Pending pending;
  pending.servable = servable;
  pending.drift_json = std::move(drift_json);
  pending.when = options_.clock->WallNow();
  Push(std::move(pending));
}

void InsightEmitter::OnFeedback(const std::string& model, const std::string& version,
                                const std::string& request_id, std::string label_json,
                                std::string comment,
                                std::function<void(StatusOr<std::string>)> done) {
  Pending pending;
  queue::Event event;
  event.id = queue::NewEventId(*options_.clock);
  event.type = "feedback";
  event.priority = queue::DefaultPriority("feedback");
  Json body = {{"id", event.id},
               {"type", "feedback"},
               {"site", options_.site},
               {"model", {{"name", model}}},
               {"timestamp", FormatRfc3339(options_.clock->WallNow())},
               {"request_id", request_id},
               {"label", Json::parse(label_json, nullptr, false)}};
  if (!version.empty()) body["model"]["version"] = version;
  if (!comment.empty()) body["comment"] = comment;
  event.payload = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  pending.built.push_back(std::move(event));
  pending.done = std::move(done);
  Push(std::move(pending));
}

std::string InsightEmitter::DigestOf(const ServableVersion& servable) {
  const std::string key = servable.config.model_file.string() + "\n" + servable.fingerprint;
  auto it = digests_.find(key);
  if (it != digests_.end()) return it->second;
  std::ifstream in(servable.config.model_file, std::ios::binary);
  registry::Sha256 hasher;
  char buffer[64 << 10];
  while (in) {
    in.read(buffer, sizeof(buffer));
    hasher.Update(buffer, static_cast<size_t>(in.gcount()));
  }
  std::string digest = in.eof() ? hasher.Finish().str() : "";
  digests_[key] = digest;
  return digest;
}

const InsightEmitter::PredictionRule& InsightEmitter::RuleOf(const ServableVersion& servable) {
  const std::string key = servable.config.version_dir.string() + "\n" + servable.fingerprint;
  auto it = rules_.find(key);
  if (it != rules_.end()) return it->second;
  PredictionRule rule;
  std::ifstream in(servable.config.version_dir / "card.json", std::ios::binary);
  const Json card = in ? Json::parse(in, nullptr, false) : Json();
  if (card.is_object() && card.contains("task") && card["task"].is_string()) {
    rule.task = card["task"].get<std::string>();
    if (card.contains("threshold") && card["threshold"].is_object() &&
        card["threshold"].contains("value") && card["threshold"]["value"].is_number()) {
      rule.threshold = card["threshold"]["value"].get<double>();
    }
    if (card.contains("classes") && card["classes"].is_array()) {
      for (const Json& c : card["classes"]) {
        rule.classes.push_back(c.is_string() ? c.get<std::string>() : c.dump());
      }
    }
    if (rule.task == "regression" || (rule.task != "multiclass" && !rule.threshold)) {
      rule.task.clear();  // no label to predict
    }
    if (rule.task != "multiclass" && rule.classes.size() != 2) rule.classes = {"0", "1"};
  }
  return rules_.emplace(key, std::move(rule)).first->second;
}

std::optional<std::string> InsightEmitter::Predicted(const PredictionRule& rule,
                                                     const inference::ModelConfig& config,
                                                     const std::vector<Tensor>& outputs,
                                                     int64_t row) {
  if (rule.task.empty()) return std::nullopt;
  // The output that carries the prediction: one declared `kind: prediction`, else the
  // `probability` or `score` output.
  const Tensor* out = nullptr;
  for (const Tensor& output : outputs) {
    const int index = config.OutputIndex(output.name());
    const bool declared =
        index >= 0 && config.outputs[static_cast<size_t>(index)].kind == "prediction";
    if (declared ||
        (out == nullptr && (output.name() == "probability" || output.name() == "score"))) {
      out = &output;
      if (declared) break;
    }
  }
  if (out == nullptr || row >= RowsOf(*out)) return std::nullopt;
  const int64_t per_row = PerRow(*out);
  if (rule.task == "multiclass") {
    if (per_row < 2) return std::nullopt;
    int64_t best = -1;
    double best_p = 0;
    for (int64_t k = 0; k < per_row; ++k) {
      const std::optional<double> p = Number(*out, row * per_row + k);
      if (p && (best < 0 || *p > best_p)) best = k, best_p = *p;
    }
    if (best < 0) return std::nullopt;
    if (rule.classes.size() == static_cast<size_t>(per_row)) {
      return rule.classes[static_cast<size_t>(best)];
    }
    return std::to_string(best);
  }
  const std::optional<double> p = Number(*out, row * per_row);
  if (!p || !rule.threshold) return std::nullopt;
  return rule.classes[*p >= *rule.threshold ? 1 : 0];
}

std::vector<queue::Event> InsightEmitter::Build(Pending& pending) {
  std::vector<queue::Event> events;
  if (!pending.servable) return events;
  const ServableVersion& servable = *pending.servable;
  const inference::ModelConfig& config = servable.config;
  const std::string digest = DigestOf(servable);
  const std::string timestamp = FormatRfc3339(pending.when);
  if (!pending.drift_json.empty()) {
    queue::Event event;
    event.id = queue::NewEventId(*options_.clock);
    event.type = "drift";
    event.priority = queue::DefaultPriority("anomaly");
    const Json body = {
        {"id", event.id},
        {"type", "drift"},
        {"site", options_.site},
        {"timestamp", timestamp},
        {"ts_ms",
         std::chrono::duration_cast<std::chrono::milliseconds>(pending.when.time_since_epoch())
             .count()},
        {"model",
         {{"name", config.name}, {"version", servable.version_string}, {"digest", digest}}},
        {"model_version", servable.version_string},
        {"model_digest", digest},
        {"drift", Json::parse(pending.drift_json, nullptr, false)}};
    event.payload = body.dump(-1, ' ', false, Json::error_handler_t::replace);
    events.push_back(std::move(event));
    return events;
  }
  const PredictionRule& rule = RuleOf(servable);
  for (size_t r = 0; r < pending.rows.size(); ++r) {
    const auto row = static_cast<int64_t>(r);
    Json inputs = Json::object();
    // A single input whose row matches the feature names becomes {feature: value}: the
    // compliance policy can then name features.
    if (pending.inputs.size() == 1 && !config.feature_names.empty() &&
        PerRow(pending.inputs[0]) == static_cast<int64_t>(config.feature_names.size())) {
      const Tensor& input = pending.inputs[0];
      const int64_t per_row = PerRow(input);
      for (int64_t j = 0; j < per_row; ++j) {
        inputs[config.feature_names[static_cast<size_t>(j)]] = Element(input, row * per_row + j);
      }
    } else {
      for (const Tensor& input : pending.inputs) inputs[input.name()] = RowValue(input, row);
    }
    Json outputs = Json::object();
    for (const Tensor& output : pending.outputs) {
      outputs[output.name()] = RowsOf(output) > row ? RowValue(output, row) : Json();
    }
    const auto& [verdict, score] = pending.verdicts[r];
    queue::Event event;
    event.id = queue::NewEventId(*options_.clock);
    event.type = verdict ? "anomaly" : "insight";
    event.priority = queue::DefaultPriority(event.type);
    Json body = {
        {"id", event.id},
        {"type", event.type},
        {"site", options_.site},
        {"model",
         {{"name", config.name}, {"version", servable.version_string}, {"digest", digest}}},
        {"timestamp", timestamp},
        {"request_id", pending.request_id},
        {"row", pending.rows[r]},
        {"inputs", std::move(inputs)},
        {"outputs", std::move(outputs)},
        {"anomaly", {{"verdict", verdict}, {"score", score ? Json(*score) : Json()}}},
        {"latency_ms", pending.latency_seconds * 1000.0}};
    if (auto predicted = Predicted(rule, config, pending.outputs, row)) {
      body["prediction"] = *predicted;
    }
    event.payload = body.dump(-1, ' ', false, Json::error_handler_t::replace);
    events.push_back(std::move(event));
  }
  return events;
}

void InsightEmitter::Loop() {
  Clock::SteadyTime retry_open_at{};
  for (;;) {
    std::vector<Pending> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping with nothing left
      if (stopping_ && std::chrono::steady_clock::now() >= stop_deadline_) {
        size_t left = pending_events_;
        std::vector<Pending> abandoned(std::make_move_iterator(pending_.begin()),
                                       std::make_move_iterator(pending_.end()));
        pending_.clear();
        pending_events_ = 0;
        lock.unlock();
        Drop("shutdown", left);
        for (Pending& p : abandoned) {
          if (p.done) p.done(UnavailableError("the server is shutting down"));
        }
        return;
      }
      size_t events = 0;
      while (!pending_.empty() && events < static_cast<size_t>(options_.max_batch)) {
        events += Count(pending_.front());
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    // Open the queue if it was not reachable (at most once a second).
    if (queue_ == nullptr) {
      if (Clock::Real()->Now() >= retry_open_at) {
        queue::QueueOptions queue_options;
        queue_options.url = options_.queue_url;
        queue_options.clock = options_.clock;
        auto opened = queue::Queue::Open(queue_options);
        if (opened.ok()) {
          owned_queue_ = std::move(*opened);
          queue_ = owned_queue_.get();
          log::Info("the insight queue is reachable", {{"queue", options_.queue_url}});
        } else {
          retry_open_at = Clock::Real()->Now() + std::chrono::seconds(1);
        }
      }
    }
    std::vector<queue::Event> events;
    std::vector<size_t> owner;  // index into batch per event
    for (size_t b = 0; b < batch.size(); ++b) {
      if (batch[b].built.empty()) batch[b].built = Build(batch[b]);
      for (const queue::Event& event : batch[b].built) {
        events.push_back(event);
        owner.push_back(b);
      }
    }
    Status failure;
    std::vector<std::string> rejected;
    if (queue_ == nullptr) {
      failure = UnavailableError("the insight queue is not reachable");
    } else {
      // Events over the queue's size limit would fail the whole append: drop them alone.
      std::vector<queue::Event> fitting;
      std::vector<size_t> fitting_owner;
      for (size_t i = 0; i < events.size(); ++i) {
        if (static_cast<int64_t>(events[i].payload.size()) > (1 << 20) - 1024) {
          Drop("too_large");
          if (batch[owner[i]].done) {
            batch[owner[i]].done(InvalidArgumentError("the feedback event is too large"));
            batch[owner[i]].done = nullptr;
          }
          continue;
        }
        fitting.push_back(events[i]);
        fitting_owner.push_back(owner[i]);
      }
      events = std::move(fitting);
      owner = std::move(fitting_owner);
      if (!events.empty()) {
        auto result = queue_->Append(events);
        if (result.ok()) {
          rejected = result->rejected;
        } else {
          failure = result.status();
        }
      }
    }
    if (!failure.ok()) {
      // Put the batch back at the front (its events keep their ids, so a partly stored append
      // that is repeated is deduplicated downstream) and wait before the next try.
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!queue_down_) {
          log::Warn("cannot append insight events; keeping them in memory",
                    {{"error", failure}, {"waiting", static_cast<int64_t>(pending_events_)}});
        }
        queue_down_ = true;
        // Each item keeps its built events (and so their ids) for the next try.
        for (size_t b = batch.size(); b-- > 0;) pending_.push_front(std::move(batch[b]));
      }
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait_for(lock, std::chrono::seconds(1), [&] {
        return stopping_ && std::chrono::steady_clock::now() >= stop_deadline_;
      });
      continue;
    }
    std::set<std::string> rejected_ids(rejected.begin(), rejected.end());
    int64_t stored = 0;
    for (size_t i = 0; i < events.size(); ++i) {
      Pending& from = batch[owner[i]];
      if (rejected_ids.count(events[i].id)) {
        Drop("queue_full");
        if (from.done) from.done(ResourceExhaustedError("the queue's disk budget is full"));
        continue;
      }
      ++stored;
      if (events[i].type == "anomaly" && emitted_anomaly_) emitted_anomaly_->Increment();
      if (events[i].type == "insight" && emitted_insight_) emitted_insight_->Increment();
      if (events[i].type == "feedback" && emitted_feedback_) emitted_feedback_->Increment();
      if (events[i].type == "drift" && emitted_drift_) emitted_drift_->Increment();
      if (from.done) from.done(events[i].id);
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_down_) log::Info("appending insight events again");
    queue_down_ = false;
    appended_ += stored;
    size_t taken = 0;
    for (const Pending& p : batch) taken += Count(p);
    pending_events_ -= std::min(pending_events_, taken);
    if (buffered_) buffered_->Set(static_cast<double>(pending_events_));
    wake_.notify_all();
  }
}

void InsightEmitter::Stop(std::chrono::milliseconds timeout) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
    stop_deadline_ = std::chrono::steady_clock::now() + timeout;
    wake_.notify_all();
  }
  thread_.join();
}

}  // namespace edgeloop::serving
