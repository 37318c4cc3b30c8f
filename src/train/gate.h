// The promotion gate: does a challenger model earn the alias its champion holds?
//
// The challenger passes only when, on the same test rows:
//  1. every absolute floor holds (for a metric where larger is better the value must be >= the
//     floor; for log_loss, rmse and mae it must be <= it);
//  2. with a champion, its gate metric beats the champion's by at least `min_improvement`
//     (challenger - champion >= margin, or champion - challenger >= margin for lower-is-better
//     metrics); without a champion this check is skipped;
//  3. with a champion, no slice (a value of the slice column present in both evaluations with the
//     metric defined for both) is worse than the champion's by more than `slice_tolerance`.
// A floor on a metric the evaluation lacks fails. The result lists every check with its numbers.
#ifndef EDGELOOP_TRAIN_GATE_H_
#define EDGELOOP_TRAIN_GATE_H_

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace edgeloop::train {

struct GateConfig {
  std::string metric;                    // e.g. "roc_auc", "rmse"
  double min_improvement = 0;            // margin over the champion
  std::map<std::string, double> floors;  // metric -> absolute bound
  double slice_tolerance = 0.01;
};

// Metrics of one model on the test rows: overall and per slice value.
struct Evaluation {
  std::map<std::string, double> overall;
  std::map<std::string, std::map<std::string, double>> slices;
};

struct GateCheck {
  std::string name;  // "floor roc_auc", "beats champion", "slice site=b"
  double value = 0;
  double bound = 0;
  bool passed = false;
};

struct GateResult {
  bool passed = false;
  std::vector<GateCheck> checks;
  std::vector<std::string> failures;  // human-readable, one per failed check

  nlohmann::json ToJson() const;
};

bool LargerIsBetter(const std::string& metric);
// The metrics the gate knows; kInvalidArgument for another name.
Status CheckGateMetric(const std::string& metric);

GateResult EvaluateGate(const GateConfig& config, const Evaluation& challenger,
                        const std::optional<Evaluation>& champion);

}  // namespace edgeloop::train

#endif  // EDGELOOP_TRAIN_GATE_H_
