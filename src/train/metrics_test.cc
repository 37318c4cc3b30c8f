#include "train/metrics.h"

#include <gtest/gtest.h>

#include <cmath>

namespace edgeloop::train {
namespace {

TEST(MetricsTest, RocAucCountsTiesAsHalf) {
  // Pairs (pos, neg): (0.8 > 0.1), (0.8 > 0.4), (0.4 = 0.4 -> 0.5), (0.4 > 0.1) -> 3.5 / 4.
  const std::vector<double> labels = {1, 0, 1, 0};
  const std::vector<double> scores = {0.8, 0.4, 0.4, 0.1};
  ASSERT_TRUE(RocAuc(labels, scores).has_value());
  EXPECT_DOUBLE_EQ(*RocAuc(labels, scores), 0.875);
}

TEST(MetricsTest, RocAucUndefinedForOneClass) {
  EXPECT_FALSE(RocAuc(std::vector<double>{1, 1}, std::vector<double>{0.2, 0.3}).has_value());
}

TEST(MetricsTest, AveragePrecisionMatchesSklearnExample) {
  // sklearn docs: average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.8333...
  const std::vector<double> labels = {0, 0, 1, 1};
  const std::vector<double> scores = {0.1, 0.4, 0.35, 0.8};
  EXPECT_NEAR(*AveragePrecision(labels, scores), 0.8333333333333333, 1e-12);
}

TEST(MetricsTest, LogLossClipsAndAverages) {
  const std::vector<double> labels = {1, 0};
  const std::vector<double> p = {0.9, 0.2};
  EXPECT_NEAR(LogLoss(labels, p, 2), -(std::log(0.9) + std::log(0.8)) / 2, 1e-12);
  // A confident wrong answer is finite thanks to clipping.
  EXPECT_TRUE(std::isfinite(LogLoss(std::vector<double>{1}, std::vector<double>{0.0}, 2)));
}

TEST(MetricsTest, MulticlassLogLossUsesTheTrueClassColumn) {
  const std::vector<double> labels = {2, 0};
  const std::vector<double> p = {0.1, 0.2, 0.7, 0.5, 0.25, 0.25};
  EXPECT_NEAR(LogLoss(labels, p, 3), -(std::log(0.7) + std::log(0.5)) / 2, 1e-12);
}

TEST(MetricsTest, ConfusionAndDerivedMetrics) {
  const std::vector<double> labels = {1, 1, 0, 0, 1};
  const std::vector<int> predicted = {1, 0, 0, 1, 1};
  const ConfusionMatrix m = Confusion(labels, predicted, 2);
  EXPECT_EQ(m.at(0, 0), 1);  // tn
  EXPECT_EQ(m.at(0, 1), 1);  // fp
  EXPECT_EQ(m.at(1, 0), 1);  // fn
  EXPECT_EQ(m.at(1, 1), 2);  // tp
  EXPECT_DOUBLE_EQ(Accuracy(m), 0.6);
  EXPECT_DOUBLE_EQ(Precision(m), 2.0 / 3);
  EXPECT_DOUBLE_EQ(Recall(m), 2.0 / 3);
  EXPECT_DOUBLE_EQ(F1(m), 2.0 / 3);
}

TEST(MetricsTest, MacroF1AveragesClasses) {
  const std::vector<double> labels = {0, 1, 2, 2};
  const std::vector<int> predicted = {0, 2, 2, 2};
  const ConfusionMatrix m = Confusion(labels, predicted, 3);
  // class 0: 1; class 1: 0; class 2: 2*2/(3+2) = 0.8.
  EXPECT_DOUBLE_EQ(F1(m), (1 + 0 + 0.8) / 3);
}

TEST(MetricsTest, RegressionMetrics) {
  const std::vector<double> y = {1, 2, 3, 4};
  const std::vector<double> p = {1, 2, 3, 6};
  EXPECT_DOUBLE_EQ(Rmse(y, p), 1.0);
  EXPECT_DOUBLE_EQ(Mae(y, p), 0.5);
  EXPECT_DOUBLE_EQ(*R2(y, p), 1 - 4.0 / 5.0);
  EXPECT_DOUBLE_EQ(*R2(std::vector<double>{2, 2}, std::vector<double>{2, 2}), 1.0);
  EXPECT_DOUBLE_EQ(*R2(std::vector<double>{2, 2}, std::vector<double>{2, 3}), 0.0);
  EXPECT_FALSE(R2(std::vector<double>{2}, std::vector<double>{2}).has_value());
}

TEST(MetricsTest, ThresholdMaximisesF1AndPrefersTheHigherOnTies) {
  // Scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg).
  // t=0.9: tp1 pred1 -> 2/3; t=0.8: tp1 pred2 -> 0.5; t=0.7: tp2 pred3 -> 0.8; t=0.1: 4/6.
  const std::vector<double> labels = {1, 0, 1, 0};
  const std::vector<double> scores = {0.9, 0.8, 0.7, 0.1};
  EXPECT_DOUBLE_EQ(ChooseThresholdMaxF1(labels, scores), 0.7);
  // Equal F1 at 0.9 and 0.6: the higher threshold wins.
  const std::vector<double> tie_labels = {1, 0, 1};
  const std::vector<double> tie_scores = {0.9, 0.8, 0.6};
  // t=0.9: 2*1/(1+2)=0.667; t=0.8: 2/(2+2)=0.5; t=0.6: 4/(3+2)=0.8 -> 0.6 (no tie here).
  EXPECT_DOUBLE_EQ(ChooseThresholdMaxF1(tie_labels, tie_scores), 0.6);
  const std::vector<double> exact_tie_labels = {1, 1, 0, 0};
  const std::vector<double> exact_tie_scores = {0.9, 0.5, 0.5, 0.2};
  // t=0.9: 2/(1+2)=0.667; t=0.5: 4/(3+2)=0.8; t=0.2: 4/(4+2)=0.667 -> 0.5.
  EXPECT_DOUBLE_EQ(ChooseThresholdMaxF1(exact_tie_labels, exact_tie_scores), 0.5);
  EXPECT_DOUBLE_EQ(ChooseThresholdMaxF1(std::vector<double>{0, 0}, std::vector<double>{1, 2}), 0.5);
}

}  // namespace
}  // namespace edgeloop::train
