#include "train/gate.h"

#include <gtest/gtest.h>

namespace edgeloop::train {
namespace {

Evaluation Eval(double auc, std::map<std::string, double> slice_auc) {
  Evaluation e;
  e.overall["roc_auc"] = auc;
  e.overall["log_loss"] = 0.3;
  for (const auto& [slice, value] : slice_auc) e.slices[slice]["roc_auc"] = value;
  return e;
}

GateConfig Config() {
  GateConfig config;
  config.metric = "roc_auc";
  config.min_improvement = 0.01;
  config.slice_tolerance = 0.02;
  config.floors = {{"roc_auc", 0.8}, {"log_loss", 0.5}};
  return config;
}

TEST(GateTest, BetterChallengerPasses) {
  const GateResult r = EvaluateGate(Config(), Eval(0.92, {{"site=a", 0.9}, {"site=b", 0.93}}),
                                    Eval(0.90, {{"site=a", 0.9}, {"site=b", 0.9}}));
  EXPECT_TRUE(r.passed) << r.ToJson().dump();
  EXPECT_TRUE(r.failures.empty());
}

TEST(GateTest, ImprovementBelowTheMarginFails) {
  const GateResult r = EvaluateGate(Config(), Eval(0.905, {}), Eval(0.90, {}));
  EXPECT_FALSE(r.passed);
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_NE(r.failures[0].find("below the margin"), std::string::npos) << r.failures[0];
}

TEST(GateTest, SliceRegressionBeyondToleranceFails) {
  const GateResult r = EvaluateGate(Config(), Eval(0.95, {{"site=a", 0.85}, {"site=b", 0.99}}),
                                    Eval(0.90, {{"site=a", 0.9}, {"site=b", 0.9}}));
  EXPECT_FALSE(r.passed);
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_NE(r.failures[0].find("site=a"), std::string::npos);
}

TEST(GateTest, FloorsApplyWithoutAChampion) {
  EXPECT_TRUE(EvaluateGate(Config(), Eval(0.85, {}), std::nullopt).passed);
  const GateResult r = EvaluateGate(Config(), Eval(0.75, {}), std::nullopt);
  EXPECT_FALSE(r.passed);
  EXPECT_NE(r.failures[0].find("below the floor"), std::string::npos);
  GateConfig config = Config();
  config.floors["pr_auc"] = 0.5;  // not in the evaluation
  EXPECT_FALSE(EvaluateGate(config, Eval(0.9, {}), std::nullopt).passed);
}

TEST(GateTest, LowerIsBetterMetrics) {
  GateConfig config;
  config.metric = "rmse";
  config.min_improvement = 0.1;
  Evaluation better, worse;
  better.overall["rmse"] = 1.0;
  worse.overall["rmse"] = 1.2;
  EXPECT_TRUE(EvaluateGate(config, better, worse).passed);
  EXPECT_FALSE(EvaluateGate(config, worse, better).passed);
  EXPECT_FALSE(LargerIsBetter("log_loss"));
  EXPECT_TRUE(LargerIsBetter("r2"));
}

}  // namespace
}  // namespace edgeloop::train
