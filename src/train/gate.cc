#include "train/gate.h"

#include <cstdio>
#include <set>

namespace edgeloop::train {
namespace {

const std::set<std::string>& KnownMetrics() {
  static const std::set<std::string> known = {"roc_auc", "pr_auc", "accuracy", "f1",   "precision",
                                              "recall",  "r2",     "log_loss", "rmse", "mae"};
  return known;
}

std::string Number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.6g", value);
  return buffer;
}

}  // namespace

bool LargerIsBetter(const std::string& metric) {
  return !(metric == "log_loss" || metric == "rmse" || metric == "mae");
}

Status CheckGateMetric(const std::string& metric) {
  if (KnownMetrics().count(metric) == 0) {
    return InvalidArgumentError("unknown gate metric '" + metric +
                                "' (roc_auc, pr_auc, accuracy, f1, precision, recall, r2, "
                                "log_loss, rmse, mae)");
  }
  return Status::Ok();
}

nlohmann::json GateResult::ToJson() const {
  nlohmann::json list = nlohmann::json::array();
  for (const GateCheck& c : checks) {
    list.push_back(
        {{"check", c.name}, {"value", c.value}, {"bound", c.bound}, {"passed", c.passed}});
  }
  return {{"passed", passed}, {"checks", list}, {"failures", failures}};
}

GateResult EvaluateGate(const GateConfig& config, const Evaluation& challenger,
                        const std::optional<Evaluation>& champion) {
  GateResult result;
  auto add = [&](std::string name, double value, double bound, bool passed, std::string why) {
    result.checks.push_back({std::move(name), value, bound, passed});
    if (!passed) result.failures.push_back(std::move(why));
  };
  for (const auto& [metric, floor] : config.floors) {
    auto it = challenger.overall.find(metric);
    if (it == challenger.overall.end()) {
      add("floor " + metric, 0, floor, false, metric + " is not defined for this model");
      continue;
    }
    const bool larger = LargerIsBetter(metric);
    const bool ok = larger ? it->second >= floor : it->second <= floor;
    add("floor " + metric, it->second, floor, ok,
        metric + " " + Number(it->second) +
            (larger ? " is below the floor " : " is above the floor ") + Number(floor));
  }
  if (champion.has_value()) {
    const std::string& metric = config.metric;
    const bool larger = LargerIsBetter(metric);
    auto mine = challenger.overall.find(metric);
    auto theirs = champion->overall.find(metric);
    if (mine == challenger.overall.end() || theirs == champion->overall.end()) {
      add("beats champion", 0, config.min_improvement, false,
          metric + " is not defined for the challenger or the champion");
    } else {
      const double gain = larger ? mine->second - theirs->second : theirs->second - mine->second;
      add("beats champion on " + metric, gain, config.min_improvement,
          gain >= config.min_improvement,
          metric + " " + Number(mine->second) + " vs champion " + Number(theirs->second) +
              ": improvement " + Number(gain) + " is below the margin " +
              Number(config.min_improvement));
    }
    for (const auto& [slice, metrics] : challenger.slices) {
      auto other = champion->slices.find(slice);
      if (other == champion->slices.end()) continue;
      auto a = metrics.find(metric);
      auto b = other->second.find(metric);
      if (a == metrics.end() || b == other->second.end()) continue;
      const double loss = larger ? b->second - a->second : a->second - b->second;
      add("slice " + slice, loss, config.slice_tolerance, loss <= config.slice_tolerance,
          "slice " + slice + ": " + metric + " " + Number(a->second) + " vs champion " +
              Number(b->second) + " regresses by " + Number(loss) + ", more than the tolerance " +
              Number(config.slice_tolerance));
    }
  }
  result.passed = result.failures.empty();
  return result;
}

}  // namespace edgeloop::train
