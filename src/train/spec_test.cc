#include "train/spec.h"

#include <gtest/gtest.h>

namespace edgeloop::train {
namespace {

constexpr char kSpec[] = R"(
name: machine-failure
table: readings
task: binary
label: failed
features: [temp, vibration, site_type]
categorical:
  site_type: {encoding: ordinal, categories: [small, large]}
split: {method: group, group_column: machine, seed: 9, validation: 0.2, test: 0.1}
slice_column: site
threshold: {rule: fixed, value: 0.3}
trainer:
  rounds: 50
  early_stopping_rounds: 5
  params: {max_depth: 4, eta: 0.2}
gate:
  metric: pr_auc
  min_improvement: 0.01
  floors: {roc_auc: 0.8}
)";

TEST(SpecTest, ParsesEveryField) {
  auto spec = ParseTrainSpec(kSpec);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "machine-failure");
  EXPECT_EQ(spec->task, Task::kBinary);
  EXPECT_EQ(spec->features.size(), 3u);
  EXPECT_EQ(spec->categorical.at("site_type").kind, EncodingKind::kOrdinal);
  EXPECT_TRUE(spec->categorical.at("site_type").categories_declared);
  EXPECT_EQ(spec->split_method, SplitMethod::kGroup);
  EXPECT_EQ(spec->group_column, "machine");
  EXPECT_EQ(spec->split_seed, 9u);
  EXPECT_DOUBLE_EQ(spec->fractions.validation, 0.2);
  EXPECT_EQ(spec->threshold_rule, "fixed");
  EXPECT_DOUBLE_EQ(spec->threshold, 0.3);
  EXPECT_EQ(spec->rounds, 50);
  EXPECT_EQ(spec->params.at("max_depth"), "4");
  EXPECT_TRUE(spec->has_gate);
  EXPECT_EQ(spec->gate.metric, "pr_auc");
  EXPECT_DOUBLE_EQ(spec->gate.floors.at("roc_auc"), 0.8);
  const FeaturePlan plan = PlanFromSpec(*spec);
  ASSERT_EQ(plan.columns.size(), 3u);
  EXPECT_EQ(plan.columns[2].kind, EncodingKind::kOrdinal);
}

TEST(SpecTest, ClearErrors) {
  auto error = [](const std::string& yaml) {
    auto spec = ParseTrainSpec(yaml);
    EXPECT_FALSE(spec.ok()) << yaml;
    return spec.ok() ? std::string() : spec.status().message();
  };
  const std::string base = "name: m\ntable: t\nfeatures: [a]\n";
  EXPECT_NE(error(base + "task: binary\n").find("'label' is required"), std::string::npos);
  EXPECT_NE(error(base + "task: magic\nlabel: y\n").find("unknown task"), std::string::npos);
  EXPECT_NE(error(base + "task: binary\nlabel: y\ncolour: red\n").find("unknown field 'colour'"),
            std::string::npos);
  EXPECT_NE(error(base + "task: binary\nlabel: a\n").find("also listed as a feature"),
            std::string::npos);
  EXPECT_NE(error(base + "task: binary\nlabel: y\nsplit: {method: time}\n").find("time_column"),
            std::string::npos);
  EXPECT_NE(error(base + "task: binary\nlabel: y\ncategorical: {b: {encoding: one_hot}}\n")
                .find("not one of the features"),
            std::string::npos);
  EXPECT_NE(error(base + "task: binary\nlabel: y\ncategorical: {a: {encoding: hashing}}\n")
                .find("unknown encoding"),
            std::string::npos);
  EXPECT_NE(error(base + "task: binary\nlabel: y\ngate: {metric: speed}\n").find("gate metric"),
            std::string::npos);
  EXPECT_NE(error("name: [oops").find("not valid YAML"), std::string::npos);
  // Detectors need no label.
  EXPECT_TRUE(ParseTrainSpec(base + "task: ecod\n").ok());
}

}  // namespace
}  // namespace edgeloop::train
