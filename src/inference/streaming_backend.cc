#include "inference/streaming_backend.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "anomaly/detector.h"
#include "anomaly/series.h"
#include "common/logging.h"

namespace edgeloop::inference {
namespace {

namespace fs = std::filesystem;

Status ErrnoError(const std::string& what) {
  return InternalError(what + ": " + std::strerror(errno));
}

// Writes `data` to `path` so that a crash leaves either the old file or the new one.
Status WriteFileAtomically(const fs::path& path, std::string_view data) {
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("open " + tmp.string());
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const Status status = ErrnoError("write " + tmp.string());
      ::close(fd);
      return status;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const Status status = ErrnoError("fsync " + tmp.string());
    ::close(fd);
    return status;
  }
  if (::close(fd) != 0) return ErrnoError("close " + tmp.string());
  if (::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("rename " + tmp.string());
  const int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return Status::Ok();
}

// Reads the detector file: a flat YAML map of scalars.
StatusOr<std::map<std::string, std::string>> ReadDetectorFile(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return NotFoundError("cannot open " + path.string());
  std::stringstream text;
  text << in.rdbuf();
  std::map<std::string, std::string> params;
  try {
    const YAML::Node root = YAML::Load(text.str());
    if (root.IsNull()) return params;
    if (!root.IsMap()) {
      return InvalidArgumentError(path.filename().string() + " must be a map of parameters");
    }
    for (const auto& item : root) {
      if (!item.second.IsScalar()) {
        return InvalidArgumentError(path.filename().string() + ": parameter '" +
                                    item.first.as<std::string>() + "' must be a scalar");
      }
      params[item.first.as<std::string>()] = item.second.as<std::string>();
    }
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(path.filename().string() + ": " + e.what());
  }
  return params;
}

StatusOr<int64_t> TakeInt(std::map<std::string, std::string>* params, const std::string& key,
                          int64_t fallback, int64_t lo, int64_t hi) {
  const auto it = params->find(key);
  if (it == params->end()) return fallback;
  int64_t value = 0;
  const std::string text = it->second;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  params->erase(it);
  if (ec != std::errc() || ptr != text.data() + text.size() || value < lo || value > hi) {
    return InvalidArgumentError("parameter " + key + " = '" + text + "': expected an integer in [" +
                                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return value;
}

// Finds the spec named `name` with datatype `type` and shape [-1]; -1 when absent.
StatusOr<int> FindSpec(const std::vector<TensorSpec>& specs, std::string_view name, DataType type,
                       bool required, std::string_view what) {
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].name != name) continue;
    if (specs[i].datatype != type || specs[i].shape != Shape{-1}) {
      return InvalidArgumentError(std::string(what) + " '" + std::string(name) + "' must be " +
                                  std::string(DataTypeName(type)) + " with shape [-1], got " +
                                  std::string(DataTypeName(specs[i].datatype)) + " " +
                                  ShapeToString(specs[i].shape));
    }
    return static_cast<int>(i);
  }
  if (required) {
    return InvalidArgumentError("streaming_anomaly needs " + std::string(what) + " '" +
                                std::string(name) + "' (" + std::string(DataTypeName(type)) +
                                ", shape [-1])");
  }
  return -1;
}

struct Plan {
  int timestamp = -1;
  int value = -1;
  int series = -1;  // -1: every row belongs to the series "default"
  int score = -1;
  int anomaly = -1;
};

// Thread-safe: the series table locks per shard; checkpoints are serialised by ckpt_mu_ and
// never block a request (a request that finds a checkpoint in progress skips its turn).
class StreamingModel : public Model {
 public:
  StreamingModel(const ModelConfig& config, Plan plan, std::unique_ptr<anomaly::SeriesTable> table,
                 fs::path checkpoint, int64_t checkpoint_points,
                 std::chrono::seconds checkpoint_interval, Clock* clock)
      : model_name_(config.name),
        plan_(plan),
        table_(std::move(table)),
        checkpoint_(std::move(checkpoint)),
        checkpoint_points_(checkpoint_points),
        checkpoint_interval_(checkpoint_interval),
        clock_(clock),
        last_time_ns_(clock->Now().time_since_epoch().count()) {}

  ~StreamingModel() override {
    std::lock_guard<std::mutex> lock(ckpt_mu_);
    if (table_->points() != last_points_.load()) WriteCheckpointLocked();
  }

  std::string_view platform() const override { return "streaming_anomaly"; }
  bool stateful() const override { return true; }

  Status Predict(std::span<const Tensor> inputs, std::span<const int> output_indices,
                 std::vector<Tensor>* outputs) const override {
    const Tensor& ts = inputs[static_cast<size_t>(plan_.timestamp)];
    const Tensor& values = inputs[static_cast<size_t>(plan_.value)];
    const int64_t rows = ts.shape()[0];
    if (values.shape()[0] != rows) {
      return InvalidArgumentError("timestamp and value need the same number of rows");
    }
    std::vector<anomaly::Verdict> verdicts;
    Status status;
    if (plan_.series >= 0) {
      const Tensor& series = inputs[static_cast<size_t>(plan_.series)];
      if (series.shape()[0] != rows) {
        return InvalidArgumentError("series and timestamp need the same number of rows");
      }
      status = table_->Observe(series.strings(), ts.values<int64_t>(), values.values<double>(),
                               &verdicts);
    } else {
      const std::vector<std::string> keys(static_cast<size_t>(rows), "default");
      status = table_->Observe(keys, ts.values<int64_t>(), values.values<double>(), &verdicts);
    }
    RETURN_IF_ERROR(status);
    outputs->clear();
    for (int index : output_indices) {
      const TensorSpec& spec = outputs_spec_at(index);
      Tensor out(spec.name, spec.datatype, Shape{rows});
      if (index == plan_.score) {
        auto dst = out.values<double>();
        for (int64_t i = 0; i < rows; ++i)
          dst[static_cast<size_t>(i)] = verdicts[static_cast<size_t>(i)].score;
      } else {
        auto dst = out.values<uint8_t>();
        for (int64_t i = 0; i < rows; ++i)
          dst[static_cast<size_t>(i)] = verdicts[static_cast<size_t>(i)].anomaly ? 1 : 0;
      }
      outputs->push_back(std::move(out));
    }
    MaybeCheckpoint();
    return Status::Ok();
  }

  // Loads the checkpoint if there is a usable one.
  void Restore() {
    std::ifstream in(checkpoint_, std::ios::binary);
    if (!in) return;
    std::stringstream data;
    data << in.rdbuf();
    const Status status = table_->Decode(data.str());
    if (!status.ok()) {
      log::Warn(
          "anomaly checkpoint not used; starting fresh",
          {{"model", model_name_}, {"path", checkpoint_.string()}, {"error", status.ToString()}});
      return;
    }
    last_points_.store(table_->points());
    log::Info("anomaly checkpoint loaded", {{"model", model_name_},
                                            {"path", checkpoint_.string()},
                                            {"series", std::to_string(table_->size())}});
  }

  void set_output_specs(std::vector<TensorSpec> specs) { output_specs_ = std::move(specs); }

 private:
  const TensorSpec& outputs_spec_at(int index) const {
    return output_specs_[static_cast<size_t>(index)];
  }

  void MaybeCheckpoint() const {
    const int64_t pending = table_->points() - last_points_.load();
    if (pending <= 0) return;
    const int64_t now = clock_->Now().time_since_epoch().count();
    const bool due =
        pending >= checkpoint_points_ ||
        now - last_time_ns_.load() >=
            std::chrono::duration_cast<std::chrono::nanoseconds>(checkpoint_interval_).count();
    if (!due) return;
    std::unique_lock<std::mutex> lock(ckpt_mu_, std::try_to_lock);
    if (!lock.owns_lock()) return;
    WriteCheckpointLocked();
  }

  void WriteCheckpointLocked() const {
    const int64_t points = table_->points();
    const std::string data = table_->Encode();
    std::error_code ec;
    fs::create_directories(checkpoint_.parent_path(), ec);
    const Status status = WriteFileAtomically(checkpoint_, data);
    last_time_ns_.store(clock_->Now().time_since_epoch().count());
    if (!status.ok()) {
      log::Warn("anomaly checkpoint failed",
                {{"model", model_name_}, {"error", status.ToString()}});
      return;
    }
    last_points_.store(points);
    log::Debug("anomaly checkpoint written", {{"model", model_name_},
                                              {"path", checkpoint_.string()},
                                              {"series", std::to_string(table_->size())},
                                              {"evictions", std::to_string(table_->evictions())},
                                              {"bytes", std::to_string(data.size())}});
  }

  const std::string model_name_;
  const Plan plan_;
  std::vector<TensorSpec> output_specs_;
  std::unique_ptr<anomaly::SeriesTable> table_;
  const fs::path checkpoint_;
  const int64_t checkpoint_points_;
  const std::chrono::seconds checkpoint_interval_;
  Clock* const clock_;
  mutable std::mutex ckpt_mu_;                   // held while a checkpoint is written
  mutable std::atomic<int64_t> last_points_{0};  // table points at the last checkpoint
  mutable std::atomic<int64_t> last_time_ns_;    // steady time of the last checkpoint attempt
};

}  // namespace

StatusOr<std::unique_ptr<Model>> LoadStreamingModel(const ModelConfig& config, Clock* clock) {
  if (clock == nullptr) clock = Clock::Real();
  Plan plan;
  ASSIGN_OR_RETURN(plan.timestamp,
                   FindSpec(config.inputs, "timestamp", DataType::kInt64, true, "input"));
  ASSIGN_OR_RETURN(plan.value, FindSpec(config.inputs, "value", DataType::kFp64, true, "input"));
  ASSIGN_OR_RETURN(plan.series,
                   FindSpec(config.inputs, "series", DataType::kBytes, false, "input"));
  const size_t expected_inputs = plan.series >= 0 ? 3 : 2;
  if (config.inputs.size() != expected_inputs) {
    return InvalidArgumentError(
        "streaming_anomaly takes inputs timestamp (INT64), value (FP64) and optionally series "
        "(BYTES), nothing else");
  }
  ASSIGN_OR_RETURN(plan.score, FindSpec(config.outputs, "score", DataType::kFp64, true, "output"));
  ASSIGN_OR_RETURN(plan.anomaly,
                   FindSpec(config.outputs, "anomaly", DataType::kBool, false, "output"));
  if (config.outputs.size() != (plan.anomaly >= 0 ? 2u : 1u)) {
    return InvalidArgumentError(
        "streaming_anomaly has outputs score (FP64) and optionally anomaly (BOOL), nothing else");
  }

  ASSIGN_OR_RETURN(auto params, ReadDetectorFile(config.model_file));
  for (const auto& [key, value] : config.parameters) params[key] = value;
  fs::path state_dir = "edgeloop-state";
  if (const char* env = std::getenv("EDGELOOP_STATE_DIR"); env && *env) state_dir = env;
  if (const auto it = params.find("state_dir"); it != params.end()) {
    state_dir = it->second;
    params.erase(it);
  }
  anomaly::SeriesTableOptions table_options;
  ASSIGN_OR_RETURN(table_options.max_series, TakeInt(&params, "max_series", 10000, 1, 100000000));
  ASSIGN_OR_RETURN(int64_t checkpoint_points,
                   TakeInt(&params, "checkpoint_points", 1000, 1, int64_t{1} << 40));
  ASSIGN_OR_RETURN(int64_t interval_s, TakeInt(&params, "checkpoint_interval_s", 10, 1, 86400));
  auto options = anomaly::DetectorOptions::Parse(&params);
  if (!options.ok()) return options.status().WithContext("model " + config.name);
  if (!params.empty()) {
    return InvalidArgumentError("model " + config.name + ": unknown parameter '" +
                                params.begin()->first + "'");
  }
  table_options.detector = *options;
  ASSIGN_OR_RETURN(auto table, anomaly::SeriesTable::Create(table_options));
  const fs::path checkpoint = state_dir / config.name / (std::to_string(config.version) + ".ckpt");
  auto model =
      std::make_unique<StreamingModel>(config, plan, std::move(table), checkpoint,
                                       checkpoint_points, std::chrono::seconds(interval_s), clock);
  model->set_output_specs(config.outputs);
  model->Restore();
  return std::unique_ptr<Model>(std::move(model));
}

}  // namespace edgeloop::inference
