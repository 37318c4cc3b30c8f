#include "train/train.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "common/logging.h"
#include "inference/model_config.h"
#include "train/metrics.h"
#include "train/split.h"
#include "train/tabular_models.h"

namespace edgeloop::train {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Labels of the rows the model trains on, with their class names for classifiers.
struct Labels {
  std::vector<float> values;         // per table row; class index for classifiers
  std::vector<uint8_t> present;      // per table row
  std::vector<std::string> classes;  // classifiers: index -> name
  int num_classes = 0;               // 0 for regression
};

StatusOr<Labels> ReadLabels(const TrainSpec& spec, const RawTable& table) {
  Labels labels;
  const RawColumn* column = table.Find(spec.label);
  if (column == nullptr) return InvalidArgumentError("missing label column '" + spec.label + "'");
  const int64_t n = table.num_rows;
  labels.values.assign(n, 0);
  labels.present.assign(n, 0);
  if (spec.task == Task::kMulticlass) {
    std::set<std::string> names;
    bool all_integers = true;
    for (int64_t i = 0; i < n; ++i) {
      if (!column->valid[i]) continue;
      names.insert(column->texts[i]);
      const std::string& t = column->texts[i];
      all_integers = all_integers && !t.empty() &&
                     t.find_first_not_of("-0123456789") == std::string::npos && t.size() < 18;
    }
    labels.classes.assign(names.begin(), names.end());
    if (all_integers) {
      std::sort(
          labels.classes.begin(), labels.classes.end(),
          [](const std::string& a, const std::string& b) { return std::stoll(a) < std::stoll(b); });
    }
    std::map<std::string, int> index;
    for (size_t k = 0; k < labels.classes.size(); ++k) index[labels.classes[k]] = k;
    for (int64_t i = 0; i < n; ++i) {
      if (!column->valid[i]) continue;
      labels.values[i] = static_cast<float>(index[column->texts[i]]);
      labels.present[i] = 1;
    }
    labels.num_classes = static_cast<int>(labels.classes.size());
  } else {
    std::set<float> seen;
    for (int64_t i = 0; i < n; ++i) {
      const float v = column->numbers[i];
      if (std::isnan(v)) continue;
      labels.values[i] = v;
      labels.present[i] = 1;
      if (seen.size() < 3) seen.insert(v);
    }
    if (spec.task == Task::kBinary || !IsSupervised(spec.task)) {
      for (int64_t i = 0; i < n; ++i) {
        if (labels.present[i] && labels.values[i] != 0 && labels.values[i] != 1) {
          char value[32];
          std::snprintf(value, sizeof(value), "%g", labels.values[i]);
          return InvalidArgumentError("label '" + spec.label +
                                      "' must be 0 or 1 (or a bool) for a " +
                                      std::string(TaskName(spec.task)) + " task, found " + value);
        }
      }
      labels.classes = {"0", "1"};
      labels.num_classes = 2;
    }
  }
  if (IsSupervised(spec.task) && spec.task != Task::kRegression) {
    std::set<float> distinct;
    for (int64_t i = 0; i < n && distinct.size() < 2; ++i) {
      if (labels.present[i]) distinct.insert(labels.values[i]);
    }
    if (distinct.size() < 2) {
      return InvalidArgumentError(
          "label '" + spec.label + "' has only one class" +
          (distinct.empty() ? std::string()
                            : " (" + labels.classes[static_cast<int>(*distinct.begin())] + ")") +
          " in the snapshot; a classifier needs at least two");
    }
  }
  return labels;
}

StatusOr<Split> MakeSplit(const TrainSpec& spec, const RawTable& table,
                          const std::vector<int64_t>& rows) {
  // Splits are computed over `rows` (positions), then mapped back to table rows.
  StatusOr<Split> split = InvalidArgumentError("no split");
  if (spec.split_method == SplitMethod::kRandom) {
    split = RandomSplit(static_cast<int64_t>(rows.size()), spec.fractions, spec.split_seed);
  } else if (spec.split_method == SplitMethod::kGroup) {
    const RawColumn* column = table.Find(spec.group_column);
    std::vector<std::string> keys;
    keys.reserve(rows.size());
    for (int64_t row : rows) keys.push_back(column->valid[row] ? column->texts[row] : "");
    split = GroupSplit(keys, spec.fractions, spec.split_seed);
  } else {
    const RawColumn* column = table.Find(spec.time_column);
    std::vector<int64_t> times;
    times.reserve(rows.size());
    for (int64_t row : rows) {
      if (!column->valid[row]) {
        return InvalidArgumentError("time column '" + spec.time_column + "' has missing values");
      }
      times.push_back(column->times[row]);
    }
    split = TimeSplit(times, spec.fractions);
  }
  if (!split.ok()) return split.status();
  for (auto* part : {&split->train, &split->validation, &split->test}) {
    for (int64_t& i : *part) i = rows[i];
  }
  return split;
}

std::vector<float> Gather(const std::vector<float>& values, const std::vector<int64_t>& rows) {
  std::vector<float> out;
  out.reserve(rows.size());
  for (int64_t row : rows) out.push_back(values[row]);
  return out;
}

std::string Hex12(const std::string& bytes) {
  // FNV-1a 64 is enough for a version suffix; the registry digests the real content.
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(hash));
  return std::string(text, 12);
}

Status WriteFile(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return InternalError("cannot write " + path.string());
  return Status::Ok();
}

Status PrepareOutDir(const fs::path& out) {
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!fs::is_directory(out, ec) || !fs::is_empty(out, ec)) {
      return AlreadyExistsError("the output folder " + out.string() +
                                " already exists and is not empty");
    }
  }
  return Status::Ok();
}

// Writes `files` into a staging folder beside `out` and renames it into place, so a crash never
// leaves a half-written model folder.
Status WriteModelDir(const fs::path& out, const std::map<std::string, std::string>& files) {
  std::error_code ec;
  const fs::path staging = out.parent_path() / ("." + out.filename().string() + ".staging");
  fs::remove_all(staging, ec);
  fs::create_directories(staging, ec);
  if (ec) return InternalError("cannot create " + staging.string() + ": " + ec.message());
  for (const auto& [name, bytes] : files) RETURN_IF_ERROR(WriteFile(staging / name, bytes));
  if (fs::exists(out)) fs::remove(out, ec);  // empty, checked before
  fs::rename(staging, out, ec);
  if (ec) return InternalError("cannot move the model into " + out.string() + ": " + ec.message());
  return Status::Ok();
}

std::string Yaml(const std::string& text) { return Json(text).dump(); }  // a quoted scalar

std::string FeatureNamesYaml(const std::vector<std::string>& names) {
  std::string out = "feature_names: [";
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + Yaml(names[i]);
  return out + "]\n";
}

// With categorical columns, the model.yaml `encoding` block (inference/encoding.h), so that
// serve takes raw rows and encodes them as training did; "" when every column is a number.
std::string ServingEncodingYaml(const FeaturePlan& plan) {
  inference::InputEncoding encoding;
  bool categorical = false;
  for (const ColumnEncoding& c : plan.columns) {
    inference::EncodedColumn column;
    column.column = c.column;
    column.categories = c.categories;
    switch (c.kind) {
      case EncodingKind::kNone:
        column.kind = inference::EncodedColumn::Kind::kNumber;
        break;
      case EncodingKind::kOneHot:
        column.kind = inference::EncodedColumn::Kind::kOneHot;
        categorical = true;
        break;
      case EncodingKind::kOrdinal:
        column.kind = inference::EncodedColumn::Kind::kOrdinal;
        categorical = true;
        break;
    }
    encoding.columns.push_back(std::move(column));
  }
  return categorical ? encoding.ToYaml() : std::string();
}

std::string Threads(const TrainSpec& spec) {
  auto it = spec.params.find("nthread");
  if (it != spec.params.end()) return it->second;
  return std::to_string(std::max(1u, std::thread::hardware_concurrency()));
}

// Logs (at debug level) how long each phase of a training run took, and keeps the times for
// the summary's `timings_ms`.
class PhaseTimer {
 public:
  void End(const char* phase) {
    const auto now = std::chrono::steady_clock::now();
    const double ms = std::chrono::duration<double, std::milli>(now - last_).count();
    log::Debug("train phase", {{"phase", phase}, {"ms", ms}});
    timings_[phase] = std::round(ms * 10) / 10;
    last_ = now;
  }
  const Json& timings() const { return timings_; }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  Json timings_ = Json::object();
};

}  // namespace

int TrainThreads(const TrainSpec& spec) {
  int threads = 1;
  const std::string text = Threads(spec);
  std::from_chars(text.data(), text.data() + text.size(), threads);
  return std::max(threads, 1);
}

std::vector<std::pair<std::string, RawColumn::Kind>> RequiredColumns(const TrainSpec& spec) {
  std::vector<std::pair<std::string, RawColumn::Kind>> columns;
  std::set<std::string> seen;
  auto add = [&](const std::string& name, RawColumn::Kind kind) {
    if (!name.empty() && seen.insert(name).second) columns.emplace_back(name, kind);
  };
  for (const std::string& feature : spec.features) {
    add(feature,
        spec.categorical.count(feature) ? RawColumn::Kind::kText : RawColumn::Kind::kNumber);
  }
  add(spec.label,
      spec.task == Task::kMulticlass ? RawColumn::Kind::kText : RawColumn::Kind::kNumber);
  add(spec.time_column, RawColumn::Kind::kTime);
  add(spec.group_column, RawColumn::Kind::kText);
  add(spec.slice_column, RawColumn::Kind::kText);
  return columns;
}

StatusOr<TrainResult> TrainOnTable(const TrainSpec& spec, const RawTable& table,
                                   const Lineage& lineage, const TrainOptions& options) {
  RETURN_IF_ERROR(PrepareOutDir(options.out_dir));
  PhaseTimer timer;
  if (table.num_rows == 0) {
    return InvalidArgumentError("table '" + lineage.table + "' is empty at snapshot " +
                                std::to_string(lineage.snapshot));
  }
  for (const auto& [name, kind] : RequiredColumns(spec)) {
    if (table.Find(name) == nullptr) return InvalidArgumentError("missing column '" + name + "'");
  }
  FeaturePlan plan = PlanFromSpec(spec);
  RETURN_IF_ERROR(CheckPlan(table, plan));

  // Rows with a label (all rows for detectors without one).
  Labels labels;
  const bool has_label = !spec.label.empty();
  std::vector<int64_t> rows;
  if (has_label) {
    ASSIGN_OR_RETURN(labels, ReadLabels(spec, table));
    for (int64_t i = 0; i < table.num_rows; ++i) {
      if (labels.present[i]) rows.push_back(i);
    }
  } else {
    for (int64_t i = 0; i < table.num_rows; ++i) rows.push_back(i);
  }
  if (rows.empty()) return InvalidArgumentError("no row of the snapshot has a label");
  const int64_t dropped = table.num_rows - static_cast<int64_t>(rows.size());
  if (dropped > 0) log::Warn("rows without a label are skipped", {{"rows", dropped}});

  ASSIGN_OR_RETURN(Split split, MakeSplit(spec, table, rows));
  if (spec.task == Task::kBinary || spec.task == Task::kMulticlass) {
    std::set<float> train_classes;
    for (int64_t row : split.train) train_classes.insert(labels.values[row]);
    if (train_classes.size() < 2) {
      return InvalidArgumentError("the training split of label '" + spec.label +
                                  "' holds only one class");
    }
  }
  timer.End("labels and split");
  RETURN_IF_ERROR(FitEncodings(table, split.train, &plan));
  const std::vector<std::string> feature_names = plan.FeatureNames();
  const int64_t width = plan.num_features();
  const std::vector<float> x_train = EncodeRows(table, split.train, plan);
  const std::vector<float> x_valid = EncodeRows(table, split.validation, plan);
  const std::vector<float> x_test = EncodeRows(table, split.test, plan);
  std::vector<float> y_train, y_valid, y_test;
  if (has_label) {
    y_train = Gather(labels.values, split.train);
    y_valid = Gather(labels.values, split.validation);
    y_test = Gather(labels.values, split.test);
  }
  const MatrixView train_view{x_train.data(), static_cast<int64_t>(split.train.size()), width,
                              has_label ? y_train.data() : nullptr};
  const MatrixView valid_view{x_valid.data(), static_cast<int64_t>(split.validation.size()), width,
                              has_label ? y_valid.data() : nullptr};
  const MatrixView test_view{x_test.data(), static_cast<int64_t>(split.test.size()), width,
                             has_label ? y_test.data() : nullptr};

  timer.End("encode");
  // The training rows' reference statistics do not depend on the model: they are computed on
  // one thread while the trainer runs (its threads leave part of the cores idle between
  // rounds). The future is waited for on every path out of this function.
  std::future<Json> reference_statistics = std::async(std::launch::async, [&] {
    return ReferenceStatistics(x_train, static_cast<int64_t>(split.train.size()), feature_names,
                               table, split.train, plan, /*threads=*/1);
  });
  TabularTask task{spec, labels.num_classes, labels.classes, feature_names};
  ASSIGN_OR_RETURN(std::unique_ptr<TabularModel> model,
                   FitModel(task, train_view, valid_view, options.progress, Threads(spec)));

  timer.End("fit");
  // Evaluation.
  std::vector<double> valid_scores;
  const std::vector<double>* trained_valid_scores = model->TrainedValidationScores();
  const size_t per_row = spec.task == Task::kMulticlass ? labels.num_classes : 1;
  if (trained_valid_scores != nullptr &&
      trained_valid_scores->size() == split.validation.size() * per_row) {
    valid_scores = *trained_valid_scores;
  } else {
    ASSIGN_OR_RETURN(valid_scores, model->Score(valid_view));
  }
  ASSIGN_OR_RETURN(std::vector<double> test_scores, model->Score(test_view));
  const double threshold = model->ChooseThreshold(train_view, valid_view, valid_scores);
  std::vector<std::string> slice_values;
  if (!spec.slice_column.empty()) {
    const RawColumn* column = table.Find(spec.slice_column);
    for (int64_t row : split.test) {
      slice_values.push_back(column->valid[row] ? column->texts[row] : "__missing__");
    }
  }
  Json test_metrics = Json::object();
  Json valid_metrics = Json::object();
  Evaluation evaluation;
  if (has_label) {
    test_metrics = EvaluateScores(task, y_test, test_scores, threshold);
    valid_metrics = EvaluateScores(task, y_valid, valid_scores, threshold);
    evaluation = ToEvaluation(task, y_test, test_scores, threshold, spec.slice_column, slice_values,
                              &test_metrics);
  }

  timer.End("evaluate");
  // Champion and gate.
  std::optional<Evaluation> champion_evaluation;
  Json champion_json;
  if (options.champion) {
    if (!has_label) {
      return InvalidArgumentError("--champion needs a label column to compare models");
    }
    ASSIGN_OR_RETURN(std::unique_ptr<TabularModel> champion,
                     LoadChampion(options.champion->dir, task));
    ASSIGN_OR_RETURN(FeaturePlan champion_plan, champion->Plan());
    RETURN_IF_ERROR(CheckPlan(table, champion_plan).WithContext("the champion's features"));
    const std::vector<float> x_champion = EncodeRows(table, split.test, champion_plan);
    const MatrixView champion_view{x_champion.data(), static_cast<int64_t>(split.test.size()),
                                   champion_plan.num_features(), y_test.data()};
    ASSIGN_OR_RETURN(std::vector<double> champion_scores, champion->Score(champion_view));
    Json overall = EvaluateScores(task, y_test, champion_scores, champion->threshold());
    champion_evaluation = ToEvaluation(task, y_test, champion_scores, champion->threshold(),
                                       spec.slice_column, slice_values, &overall);
    champion_json = {{"reference", options.champion->reference}, {"metrics", overall}};
    if (!options.champion->digest.empty()) champion_json["digest"] = options.champion->digest;
  }
  TrainResult result;
  Json gate_json;
  if (spec.has_gate || options.champion) {
    if (!has_label) return InvalidArgumentError("a gate needs a label column");
    const GateResult gate = EvaluateGate(spec.gate, evaluation, champion_evaluation);
    result.gate_passed = gate.passed;
    gate_json = gate.ToJson();
    gate_json["metric"] = spec.gate.metric;
    gate_json["min_improvement"] = spec.gate.min_improvement;
    gate_json["slice_tolerance"] = spec.gate.slice_tolerance;
    gate_json["floors"] = spec.gate.floors;
    if (!champion_json.is_null()) gate_json["champion"] = champion_json;
  }

  timer.End("champion and gate");
  // The model folder.
  ASSIGN_OR_RETURN(ModelFiles files, model->Files(feature_names));
  const std::string version =
      spec.version.empty() ? std::to_string(lineage.snapshot) + "-" + Hex12(files.model_bytes)
                           : spec.version;
  Json card;
  card["name"] = spec.name;
  card["version"] = version;
  card["created"] = lineage.snapshot_time;
  card["task"] = TaskName(spec.task);
  if (has_label) card["label"] = spec.label;
  if (!labels.classes.empty() && spec.task != Task::kRegression) card["classes"] = labels.classes;
  card["features"] = spec.features;
  card["encoding"] = PlanToJson(plan);
  card["lineage"] = {{"lake", lineage.lake},
                     {"table", lineage.table},
                     {"snapshot", lineage.snapshot},
                     {"snapshot_time", lineage.snapshot_time},
                     {"spec_sha256", lineage.spec_sha256}};
  Json split_json = {{"method", spec.split_method == SplitMethod::kRandom ? "random"
                                : spec.split_method == SplitMethod::kTime ? "time"
                                                                          : "group"},
                     {"seed", spec.split_seed},
                     {"validation", spec.fractions.validation},
                     {"test", spec.fractions.test},
                     {"rows",
                      {{"train", split.train.size()},
                       {"validation", split.validation.size()},
                       {"test", split.test.size()},
                       {"without_label", dropped}}}};
  if (!spec.time_column.empty()) split_json["time_column"] = spec.time_column;
  if (!spec.group_column.empty()) split_json["group_column"] = spec.group_column;
  if (split.test_start) split_json["test_start_us"] = *split.test_start;
  if (split.validation_start) split_json["validation_start_us"] = *split.validation_start;
  card["split"] = split_json;
  card["parameters"] = model->Parameters();
  card["training"] = model->TrainingReport();
  card["code_version"] = options.code_version;
  if (has_label) {
    card["metrics"] = {{"test", test_metrics}, {"validation", valid_metrics}};
  }
  if (spec.task == Task::kBinary || !IsSupervised(spec.task)) {
    card["threshold"] = {{"value", threshold}, {"rule", model->ThresholdRule()}};
  }
  ASSIGN_OR_RETURN(Json importance, model->FeatureImportance(feature_names));
  if (!importance.is_null()) card["feature_importance"] = importance;
  card["reference_statistics"] = reference_statistics.get();
  if (!gate_json.is_null()) card["gate"] = gate_json;
  timer.End("card (importance, reference statistics)");

  std::map<std::string, std::string> dir_files;
  dir_files[files.model_file] = files.model_bytes;
  dir_files["model.yaml"] =
      files.model_yaml + FeatureNamesYaml(feature_names) + ServingEncodingYaml(plan);
  dir_files["card.json"] = card.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
  // The folder must load as a servable model before it is written.
  RETURN_IF_ERROR(
      inference::ParseModelConfig(dir_files["model.yaml"], spec.name, 1, options.out_dir)
          .status()
          .WithContext("generated model.yaml"));
  RETURN_IF_ERROR(WriteModelDir(options.out_dir, dir_files));
  timer.End("write");

  result.out_dir = options.out_dir;
  result.card = card;
  result.summary = {{"name", spec.name},           {"version", version},
                    {"task", TaskName(spec.task)}, {"out", options.out_dir.string()},
                    {"lineage", card["lineage"]},  {"rows", split_json["rows"]},
                    {"training", card["training"]}};
  if (has_label) result.summary["metrics"] = card["metrics"];
  if (card.contains("threshold")) result.summary["threshold"] = card["threshold"];
  if (!gate_json.is_null()) result.summary["gate"] = gate_json;
  result.summary["gate_passed"] = result.gate_passed;
  result.summary["timings_ms"] = timer.timings();
  return result;
}

}  // namespace edgeloop::train
