#include "train/spec.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

namespace edgeloop::train {
namespace {

// yaml-cpp throws on type mismatches; every access goes through these helpers so that errors
// become a Status naming the field.
StatusOr<std::string> Str(const YAML::Node& node, const std::string& field) {
  if (!node.IsScalar()) return InvalidArgumentError("'" + field + "' must be a scalar");
  return node.Scalar();
}

StatusOr<int64_t> Int(const YAML::Node& node, const std::string& field) {
  ASSIGN_OR_RETURN(std::string text, Str(node, field));
  try {
    size_t used = 0;
    const long long value = std::stoll(text, &used, 10);
    if (used != text.size()) throw std::invalid_argument(text);
    return static_cast<int64_t>(value);
  } catch (const std::exception&) {
    return InvalidArgumentError("'" + field + "' must be an integer, got '" + text + "'");
  }
}

StatusOr<double> Num(const YAML::Node& node, const std::string& field) {
  ASSIGN_OR_RETURN(std::string text, Str(node, field));
  try {
    size_t used = 0;
    const double value = std::stod(text, &used);
    if (used != text.size() || !std::isfinite(value)) throw std::invalid_argument(text);
    return value;
  } catch (const std::exception&) {
    return InvalidArgumentError("'" + field + "' must be a number, got '" + text + "'");
  }
}

StatusOr<std::vector<std::string>> StrList(const YAML::Node& node, const std::string& field) {
  if (!node.IsSequence()) return InvalidArgumentError("'" + field + "' must be a list");
  std::vector<std::string> out;
  for (size_t i = 0; i < node.size(); ++i) {
    ASSIGN_OR_RETURN(std::string value, Str(node[i], field));
    out.push_back(std::move(value));
  }
  return out;
}

Status CheckKeys(const YAML::Node& node, const std::string& field,
                 const std::set<std::string>& known) {
  if (!node.IsMap()) return InvalidArgumentError("'" + field + "' must be a mapping");
  for (const auto& entry : node) {
    const std::string key = entry.first.Scalar();
    if (known.count(key) == 0) {
      return InvalidArgumentError((field.empty() ? std::string() : "'" + field + "' has ") +
                                  "unknown field '" + key + "'");
    }
  }
  return Status::Ok();
}

StatusOr<Task> ParseTask(const std::string& text) {
  if (text == "binary") return Task::kBinary;
  if (text == "multiclass" || text == "multi-class" || text == "multi_class") {
    return Task::kMulticlass;
  }
  if (text == "regression") return Task::kRegression;
  if (text == "isolation_forest") return Task::kIsolationForest;
  if (text == "ecod") return Task::kEcod;
  return InvalidArgumentError("unknown task '" + text +
                              "' (binary, multiclass, regression, isolation_forest, ecod)");
}

Status ParseSplit(const YAML::Node& node, TrainSpec* spec) {
  RETURN_IF_ERROR(CheckKeys(
      node, "split", {"method", "seed", "validation", "test", "time_column", "group_column"}));
  if (node["method"]) {
    ASSIGN_OR_RETURN(std::string method, Str(node["method"], "split.method"));
    if (method == "random") {
      spec->split_method = SplitMethod::kRandom;
    } else if (method == "time") {
      spec->split_method = SplitMethod::kTime;
    } else if (method == "group") {
      spec->split_method = SplitMethod::kGroup;
    } else {
      return InvalidArgumentError("unknown split.method '" + method + "' (random, time, group)");
    }
  }
  if (node["seed"]) {
    ASSIGN_OR_RETURN(int64_t seed, Int(node["seed"], "split.seed"));
    spec->split_seed = static_cast<uint64_t>(seed);
  }
  if (node["validation"]) {
    ASSIGN_OR_RETURN(spec->fractions.validation, Num(node["validation"], "split.validation"));
  }
  if (node["test"]) {
    ASSIGN_OR_RETURN(spec->fractions.test, Num(node["test"], "split.test"));
  }
  if (node["time_column"]) {
    ASSIGN_OR_RETURN(spec->time_column, Str(node["time_column"], "split.time_column"));
  }
  if (node["group_column"]) {
    ASSIGN_OR_RETURN(spec->group_column, Str(node["group_column"], "split.group_column"));
  }
  if (spec->split_method == SplitMethod::kTime && spec->time_column.empty()) {
    return InvalidArgumentError("split.method time needs split.time_column");
  }
  if (spec->split_method == SplitMethod::kGroup && spec->group_column.empty()) {
    return InvalidArgumentError("split.method group needs split.group_column");
  }
  if (spec->split_method != SplitMethod::kGroup && !spec->group_column.empty()) {
    return InvalidArgumentError("split.group_column is only used with split.method group");
  }
  return Status::Ok();
}

Status ParseTrainer(const YAML::Node& node, TrainSpec* spec) {
  RETURN_IF_ERROR(
      CheckKeys(node, "trainer",
                {"rounds", "early_stopping_rounds", "params", "importance_type", "contamination"}));
  if (node["rounds"]) {
    ASSIGN_OR_RETURN(int64_t rounds, Int(node["rounds"], "trainer.rounds"));
    if (rounds < 1 || rounds > 100000) {
      return InvalidArgumentError("'trainer.rounds' must be in [1, 100000]");
    }
    spec->rounds = static_cast<int>(rounds);
  }
  if (node["early_stopping_rounds"]) {
    ASSIGN_OR_RETURN(int64_t rounds,
                     Int(node["early_stopping_rounds"], "trainer.early_stopping_rounds"));
    if (rounds < 0) return InvalidArgumentError("'trainer.early_stopping_rounds' must be >= 0");
    spec->early_stopping_rounds = static_cast<int>(rounds);
  }
  if (node["importance_type"]) {
    ASSIGN_OR_RETURN(spec->importance_type,
                     Str(node["importance_type"], "trainer.importance_type"));
    static const std::set<std::string> kTypes = {"gain", "weight", "cover", "total_gain",
                                                 "total_cover"};
    if (kTypes.count(spec->importance_type) == 0) {
      return InvalidArgumentError("unknown trainer.importance_type '" + spec->importance_type +
                                  "'");
    }
  }
  if (node["contamination"]) {
    ASSIGN_OR_RETURN(spec->contamination, Num(node["contamination"], "trainer.contamination"));
    if (!(spec->contamination > 0 && spec->contamination < 0.5)) {
      return InvalidArgumentError("'trainer.contamination' must be in (0, 0.5)");
    }
  }
  if (node["params"]) {
    if (!node["params"].IsMap()) return InvalidArgumentError("'trainer.params' must be a mapping");
    for (const auto& entry : node["params"]) {
      const std::string key = entry.first.Scalar();
      ASSIGN_OR_RETURN(spec->params[key], Str(entry.second, "trainer.params." + key));
    }
  }
  return Status::Ok();
}

Status ParseGate(const YAML::Node& node, TrainSpec* spec) {
  RETURN_IF_ERROR(
      CheckKeys(node, "gate", {"metric", "min_improvement", "slice_tolerance", "floors"}));
  spec->has_gate = true;
  if (node["metric"]) {
    ASSIGN_OR_RETURN(spec->gate.metric, Str(node["metric"], "gate.metric"));
  }
  if (node["min_improvement"]) {
    ASSIGN_OR_RETURN(spec->gate.min_improvement,
                     Num(node["min_improvement"], "gate.min_improvement"));
  }
  if (node["slice_tolerance"]) {
    ASSIGN_OR_RETURN(spec->gate.slice_tolerance,
                     Num(node["slice_tolerance"], "gate.slice_tolerance"));
  }
  if (node["floors"]) {
    if (!node["floors"].IsMap()) return InvalidArgumentError("'gate.floors' must be a mapping");
    for (const auto& entry : node["floors"]) {
      const std::string key = entry.first.Scalar();
      RETURN_IF_ERROR(CheckGateMetric(key).WithContext("gate.floors"));
      ASSIGN_OR_RETURN(spec->gate.floors[key], Num(entry.second, "gate.floors." + key));
    }
  }
  return Status::Ok();
}

StatusOr<TrainSpec> Parse(const YAML::Node& root) {
  if (!root.IsMap()) return InvalidArgumentError("the spec must be a YAML mapping");
  RETURN_IF_ERROR(
      CheckKeys(root, "",
                {"name", "version", "lake", "table", "snapshot", "task", "label", "features",
                 "categorical", "split", "slice_column", "threshold", "trainer", "gate"}));
  TrainSpec spec;
  for (const char* required : {"name", "table", "task", "features"}) {
    if (!root[required]) return InvalidArgumentError(std::string("'") + required + "' is required");
  }
  ASSIGN_OR_RETURN(spec.name, Str(root["name"], "name"));
  if (spec.name.empty()) return InvalidArgumentError("'name' is empty");
  if (root["version"]) {
    ASSIGN_OR_RETURN(spec.version, Str(root["version"], "version"));
  }
  if (root["lake"]) {
    ASSIGN_OR_RETURN(spec.lake, Str(root["lake"], "lake"));
  }
  ASSIGN_OR_RETURN(spec.table, Str(root["table"], "table"));
  if (root["snapshot"]) {
    ASSIGN_OR_RETURN(int64_t snapshot, Int(root["snapshot"], "snapshot"));
    if (snapshot < 1) return InvalidArgumentError("'snapshot' must be >= 1");
    spec.snapshot = snapshot;
  }
  ASSIGN_OR_RETURN(std::string task, Str(root["task"], "task"));
  ASSIGN_OR_RETURN(spec.task, ParseTask(task));
  if (root["label"]) {
    ASSIGN_OR_RETURN(spec.label, Str(root["label"], "label"));
  }
  if (IsSupervised(spec.task) && spec.label.empty()) {
    return InvalidArgumentError("'label' is required for task " + task);
  }
  ASSIGN_OR_RETURN(spec.features, StrList(root["features"], "features"));
  if (spec.features.empty()) return InvalidArgumentError("'features' is empty");
  std::set<std::string> seen;
  for (const std::string& feature : spec.features) {
    if (!seen.insert(feature).second) {
      return InvalidArgumentError("feature '" + feature + "' is listed twice");
    }
    if (feature == spec.label) {
      return InvalidArgumentError("the label '" + feature + "' is also listed as a feature");
    }
  }
  if (root["categorical"]) {
    const YAML::Node categorical = root["categorical"];
    if (!categorical.IsMap()) return InvalidArgumentError("'categorical' must be a mapping");
    for (const auto& entry : categorical) {
      const std::string column = entry.first.Scalar();
      const std::string field = "categorical." + column;
      if (seen.count(column) == 0) {
        return InvalidArgumentError("'" + field + "' is not one of the features");
      }
      RETURN_IF_ERROR(CheckKeys(entry.second, field, {"encoding", "categories"}));
      ColumnEncoding encoding;
      encoding.column = column;
      if (!entry.second["encoding"]) {
        return InvalidArgumentError("'" + field + ".encoding' is required");
      }
      ASSIGN_OR_RETURN(std::string kind, Str(entry.second["encoding"], field + ".encoding"));
      ASSIGN_OR_RETURN(encoding.kind, ParseEncodingKind(kind));
      if (encoding.kind == EncodingKind::kNone) {
        return InvalidArgumentError("'" + field + ".encoding' must be one_hot or ordinal");
      }
      if (entry.second["categories"]) {
        ASSIGN_OR_RETURN(encoding.categories,
                         StrList(entry.second["categories"], field + ".categories"));
        const std::set<std::string> unique(encoding.categories.begin(), encoding.categories.end());
        if (encoding.categories.empty() || unique.size() != encoding.categories.size()) {
          return InvalidArgumentError("'" + field + ".categories' must be distinct and non-empty");
        }
        encoding.categories_declared = true;
      }
      spec.categorical[column] = std::move(encoding);
    }
  }
  if (root["split"]) RETURN_IF_ERROR(ParseSplit(root["split"], &spec));
  if (root["slice_column"]) {
    ASSIGN_OR_RETURN(spec.slice_column, Str(root["slice_column"], "slice_column"));
  }
  if (root["threshold"]) {
    const YAML::Node threshold = root["threshold"];
    RETURN_IF_ERROR(CheckKeys(threshold, "threshold", {"rule", "value"}));
    if (threshold["rule"]) {
      ASSIGN_OR_RETURN(spec.threshold_rule, Str(threshold["rule"], "threshold.rule"));
    }
    if (spec.threshold_rule != "max_f1" && spec.threshold_rule != "fixed") {
      return InvalidArgumentError("unknown threshold.rule '" + spec.threshold_rule +
                                  "' (max_f1, fixed)");
    }
    if (threshold["value"]) {
      ASSIGN_OR_RETURN(spec.threshold, Num(threshold["value"], "threshold.value"));
    }
    if (spec.threshold_rule == "fixed" && !threshold["value"]) {
      return InvalidArgumentError("threshold.rule fixed needs threshold.value");
    }
  }
  if (root["trainer"]) RETURN_IF_ERROR(ParseTrainer(root["trainer"], &spec));
  if (root["gate"]) RETURN_IF_ERROR(ParseGate(root["gate"], &spec));
  if (spec.gate.metric.empty()) {
    spec.gate.metric = spec.task == Task::kRegression   ? "rmse"
                       : spec.task == Task::kMulticlass ? "accuracy"
                                                        : "roc_auc";
  }
  RETURN_IF_ERROR(CheckGateMetric(spec.gate.metric).WithContext("gate.metric"));
  return spec;
}

}  // namespace

std::string_view TaskName(Task task) {
  switch (task) {
    case Task::kBinary:
      return "binary";
    case Task::kMulticlass:
      return "multiclass";
    case Task::kRegression:
      return "regression";
    case Task::kIsolationForest:
      return "isolation_forest";
    case Task::kEcod:
      return "ecod";
  }
  return "binary";
}

bool IsSupervised(Task task) {
  return task == Task::kBinary || task == Task::kMulticlass || task == Task::kRegression;
}

StatusOr<TrainSpec> ParseTrainSpec(std::string_view yaml_text) {
  try {
    return Parse(YAML::Load(std::string(yaml_text)));
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(std::string("the spec is not valid YAML: ") + e.what());
  }
}

StatusOr<TrainSpec> LoadTrainSpec(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFoundError("cannot read the spec " + path);
  std::stringstream text;
  text << in.rdbuf();
  StatusOr<TrainSpec> spec = ParseTrainSpec(text.str());
  if (!spec.ok()) return spec.status().WithContext(path);
  return spec;
}

FeaturePlan PlanFromSpec(const TrainSpec& spec) {
  FeaturePlan plan;
  for (const std::string& feature : spec.features) {
    auto it = spec.categorical.find(feature);
    if (it != spec.categorical.end()) {
      plan.columns.push_back(it->second);
    } else {
      plan.columns.push_back({feature, EncodingKind::kNone, {}, false});
    }
  }
  return plan;
}

}  // namespace edgeloop::train
