// The training spec: a YAML file that says what to train on and how (docs/train.md has the
// reference). Example:
//
//   name: machine-failure
//   lake: /var/lib/edgeloop/lake        # or --lake
//   table: sensor_readings
//   snapshot: 12                        # optional; latest when absent (the card records it)
//   task: binary                        # binary | multiclass | regression |
//                                       # isolation_forest | ecod
//   label: failed
//   features: [temperature_c, vibration_rms, site_type]
//   categorical:
//     site_type: {encoding: one_hot}    # or {encoding: ordinal, categories: [low, mid, high]}
//   split: {method: random, seed: 42, validation: 0.15, test: 0.15}
//   #  method: time   -> time_column: ts
//   #  method: group  -> group_column: machine_id
//   slice_column: site
//   threshold: {rule: max_f1}           # or {rule: fixed, value: 0.3}
//   trainer:
//     rounds: 300
//     early_stopping_rounds: 20
//     params: {max_depth: 6, eta: 0.1, seed: 7, nthread: 2}
//   gate:
//     metric: roc_auc
//     min_improvement: 0.002
//     slice_tolerance: 0.01
//     floors: {roc_auc: 0.8}
#ifndef EDGELOOP_TRAIN_SPEC_H_
#define EDGELOOP_TRAIN_SPEC_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "train/features.h"
#include "train/gate.h"
#include "train/split.h"

namespace edgeloop::train {

enum class Task { kBinary, kMulticlass, kRegression, kIsolationForest, kEcod };
std::string_view TaskName(Task task);  // "binary", ...
bool IsSupervised(Task task);          // binary, multiclass, regression

enum class SplitMethod { kRandom, kTime, kGroup };

struct TrainSpec {
  std::string name;
  std::string version;  // optional; default derived from the snapshot and the model bytes
  std::string lake;
  std::string table;
  std::optional<int64_t> snapshot;
  Task task = Task::kBinary;
  std::string label;  // required for supervised tasks; optional for detectors (for ROC-AUC)
  std::vector<std::string> features;
  std::map<std::string, ColumnEncoding> categorical;  // by column
  SplitMethod split_method = SplitMethod::kRandom;
  SplitFractions fractions;
  uint64_t split_seed = 42;
  std::string time_column;
  std::string group_column;
  std::string slice_column;
  // Binary threshold.
  std::string threshold_rule = "max_f1";  // or "fixed"
  double threshold = 0.5;
  // Trainer.
  int rounds = 100;
  int early_stopping_rounds = 10;
  std::string importance_type = "gain";
  std::map<std::string, std::string> params;  // XGBoost or detector parameters, as strings
  // Anomaly detectors: the score above which a row is an anomaly, as a training-score quantile.
  double contamination = 0.01;
  // Gate.
  bool has_gate = false;
  GateConfig gate;
};

// Parses the spec's YAML text. kInvalidArgument names the offending field: unknown keys, wrong
// types, a missing name/table/task/features/label, an unknown task, split method or encoding.
StatusOr<TrainSpec> ParseTrainSpec(std::string_view yaml_text);
StatusOr<TrainSpec> LoadTrainSpec(const std::string& path);

// The feature plan the spec declares (encodings without fitted categories yet).
FeaturePlan PlanFromSpec(const TrainSpec& spec);

}  // namespace edgeloop::train

#endif  // EDGELOOP_TRAIN_SPEC_H_
