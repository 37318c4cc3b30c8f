#include "serving/drift.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "common/test_util.h"

namespace edgeloop::serving {
namespace {

using Json = nlohmann::json;

// A reference like train's: deciles of N(0, 1) for f0 and of U(0, 10) for f1.
std::vector<FeatureReference> NormalAndUniformReference() {
  FeatureReference f0{"f0",
                      0,
                      {-1.2816, -0.8416, -0.5244, -0.2533, 0, 0.2533, 0.5244, 0.8416, 1.2816},
                      std::vector<double>(10, 0.1)};
  FeatureReference f1{"f1", 1, {1, 2, 3, 4, 5, 6, 7, 8, 9}, std::vector<double>(10, 0.1)};
  return {f0, f1};
}

DriftSettings Settings() {
  DriftSettings settings;
  settings.window_rows = 1000;
  settings.min_rows = 200;
  return settings;
}

TEST(DriftTest, PsiAndKsAreZeroForTheReferenceItself) {
  EXPECT_NEAR(PopulationStabilityIndex({10, 20, 70}, {0.1, 0.2, 0.7}), 0.0, 1e-12);
  EXPECT_NEAR(BinnedKs({10, 20, 70}, {0.1, 0.2, 0.7}), 0.0, 1e-12);
  // Everything in the last bin against a uniform reference.
  EXPECT_GT(PopulationStabilityIndex({0, 0, 100}, {1.0 / 3, 1.0 / 3, 1.0 / 3}), 1.0);
  EXPECT_NEAR(BinnedKs({0, 0, 100}, {1.0 / 3, 1.0 / 3, 1.0 / 3}), 2.0 / 3, 1e-9);
}

TEST(DriftTest, NoDriftOnReferenceLikeData) {
  FakeClock clock;
  DriftWindow window(NormalAndUniformReference(), Settings(), &clock);
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0, 1);
  std::uniform_real_distribution<double> uniform(0, 10);
  for (int i = 0; i < 5000; ++i) window.ObserveRow({normal(rng), uniform(rng)});
  const DriftReport report = window.Report();
  EXPECT_EQ(report.window_rows, 1000);
  EXPECT_FALSE(report.drifted);
  ASSERT_EQ(report.features.size(), 2u);
  for (const FeatureDrift& f : report.features) {
    EXPECT_LT(f.psi, 0.05) << f.name;
    EXPECT_LT(f.ks, 0.06) << f.name;
    EXPECT_FALSE(f.drifted) << f.name;
  }
}

TEST(DriftTest, ShiftedFeatureDriftsAndTheOtherDoesNot) {
  FakeClock clock;
  DriftWindow window(NormalAndUniformReference(), Settings(), &clock);
  std::mt19937_64 rng(11);
  std::normal_distribution<double> shifted(1.0, 1);
  std::uniform_real_distribution<double> uniform(0, 10);
  for (int i = 0; i < 1000; ++i) window.ObserveRow({shifted(rng), uniform(rng)});
  const DriftReport report = window.Report();
  EXPECT_TRUE(report.drifted);
  EXPECT_TRUE(report.features[0].drifted);
  EXPECT_GT(report.features[0].psi, 0.5);
  EXPECT_GT(report.features[0].ks, 0.3);
  EXPECT_FALSE(report.features[1].drifted);
}

TEST(DriftTest, TooFewRowsNeverDrift) {
  FakeClock clock;
  DriftWindow window(NormalAndUniformReference(), Settings(), &clock);
  for (int i = 0; i < 199; ++i) window.ObserveRow({5.0, 5.0});
  EXPECT_FALSE(window.Report().drifted);
  window.ObserveRow({5.0, 5.0});
  EXPECT_TRUE(window.Report().drifted);
}

TEST(DriftTest, WindowSlidesByCountAndByAge) {
  FakeClock clock;
  DriftSettings settings = Settings();
  settings.window_rows = 300;
  settings.window = std::chrono::seconds(60);
  DriftWindow window(NormalAndUniformReference(), settings, &clock);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0, 1);
  std::uniform_real_distribution<double> uniform(0, 10);
  // Shifted rows first, then enough reference-like rows to push them out by count.
  for (int i = 0; i < 300; ++i) window.ObserveRow({4.0, uniform(rng)});
  EXPECT_TRUE(window.Report().drifted);
  for (int i = 0; i < 300; ++i) window.ObserveRow({normal(rng), uniform(rng)});
  EXPECT_EQ(window.Report().window_rows, 300);
  EXPECT_FALSE(window.Report().drifted);
  // By age: a minute later the window is empty.
  clock.Advance(std::chrono::seconds(61));
  EXPECT_EQ(window.Report().window_rows, 0);
}

TEST(DriftTest, MissingValuesAreLeftOut) {
  FakeClock clock;
  DriftWindow window(NormalAndUniformReference(), Settings(), &clock);
  for (int i = 0; i < 300; ++i) window.ObserveRow({std::nan(""), 0.5 + (i % 10)});
  const DriftReport report = window.Report();
  EXPECT_EQ(report.features[0].missing, 300);
  EXPECT_EQ(report.features[0].rows, 0);
  EXPECT_FALSE(report.features[0].drifted);
  EXPECT_FALSE(report.features[1].drifted);
}

TEST(DriftTest, ParsesTheCardOfTrain) {
  const Json card = {
      {"reference_statistics",
       {{"rows", 10},
        {"features",
         {{"a",
           {{"count", 10}, {"histogram", {{"edges", {1, 2}}, {"fractions", {0.2, 0.3, 0.5}}}}}},
          {"b", {{"count", 10}, {"missing_rate", 1.0}}},
          {"c", {{"histogram", {{"edges", Json::array()}, {"fractions", {1.0}}}}}}}}}}};
  auto reference = ParseDriftReference(card.dump(), {"a", "b", "c"});
  ASSERT_TRUE(reference.ok()) << reference.status();
  ASSERT_EQ(reference->size(), 2u);
  EXPECT_EQ((*reference)[0].name, "a");
  EXPECT_EQ((*reference)[1].column, 2);
  EXPECT_EQ((*reference)[1].fractions.size(), 1u);

  EXPECT_TRUE(ParseDriftReference("{}", {"a"})->empty());
  EXPECT_EQ(ParseDriftReference("not json", {"a"}).status().code(), StatusCode::kInvalidArgument);
  const Json bad = {
      {"reference_statistics",
       {{"features",
         {{"a", {{"histogram", {{"edges", {2, 1}}, {"fractions", {0.2, 0.3, 0.5}}}}}}}}}}};
  EXPECT_EQ(ParseDriftReference(bad.dump(), {"a"}).status().code(), StatusCode::kInvalidArgument);
}

TEST(DriftTest, SettingsAreValidated) {
  DriftSettings settings;
  EXPECT_TRUE(ValidateDriftSettings(settings).ok());
  settings.ks_threshold = 1.5;
  EXPECT_FALSE(ValidateDriftSettings(settings).ok());
  settings = {};
  settings.window_rows = -1;
  EXPECT_FALSE(ValidateDriftSettings(settings).ok());
  settings = {};
  settings.psi_threshold = 0;
  EXPECT_FALSE(ValidateDriftSettings(settings).ok());
}

// The monitor reads card.json from the version folder, observes FP32 inputs and calls on_drift
// once when the threshold is crossed, rate-limited per model.
TEST(DriftTest, MonitorEmitsOnceWhenFeaturesCrossTheThreshold) {
  testing::TempDir dir;
  const Json card = {
      {"reference_statistics",
       {{"features",
         {{"x", {{"histogram", {{"edges", {-1, 0, 1}}, {"fractions", {0.16, 0.34, 0.34, 0.16}}}}}},
          {"y", {{"histogram", {{"edges", {0.5}}, {"fractions", {0.5, 0.5}}}}}}}}}}};
  std::ofstream(dir.path() / "card.json") << card.dump();
  auto servable = std::make_shared<ServableVersion>();
  servable->config.name = "m";
  servable->config.version_dir = dir.path();
  servable->config.feature_names = {"x", "y"};
  servable->version_string = "1";

  FakeClock clock;
  metrics::Registry registry;
  DriftMonitorOptions options;
  options.defaults.window_rows = 200;
  options.defaults.min_rows = 100;
  options.defaults.event_interval = std::chrono::minutes(10);
  options.clock = &clock;
  options.metrics = &registry;
  std::vector<DriftReport> events;
  options.on_drift = [&](const std::shared_ptr<const ServableVersion>& s, const DriftReport& r) {
    EXPECT_EQ(s->version_string, "1");
    events.push_back(r);
  };
  DriftMonitor monitor(options);

  const auto batch = [](float x, int rows) {
    inference::Tensor input("input", inference::DataType::kFp32, {rows, 2});
    auto values = input.values<float>();
    for (int r = 0; r < rows; ++r) {
      // x spread over the reference bins around `x`; y alternates.
      values[static_cast<size_t>(2 * r)] = x + static_cast<float>((r % 7) - 3) * 0.4f;
      values[static_cast<size_t>(2 * r + 1)] = static_cast<float>(r % 2);
    }
    std::vector<inference::Tensor> inputs;
    inputs.push_back(std::move(input));
    return inputs;
  };
  for (int i = 0; i < 4; ++i) monitor.Observe(servable, batch(0.0f, 50));
  EXPECT_TRUE(events.empty());
  const Json calm = Json::parse(monitor.ReportJson(servable));
  EXPECT_TRUE(calm["reference"].get<bool>());
  EXPECT_EQ(calm["window_rows"], 200);
  EXPECT_FALSE(calm["drifted"].get<bool>()) << calm.dump();

  for (int i = 0; i < 4; ++i) monitor.Observe(servable, batch(5.0f, 50));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0].features[0].drifted);
  EXPECT_FALSE(events[0].features[1].drifted);
  const Json drifted = Json::parse(monitor.ReportJson(servable));
  EXPECT_TRUE(drifted["drifted"].get<bool>());
  EXPECT_EQ(drifted["features"][0]["name"], "x");
  EXPECT_NE(registry.Render().find("edgeloop_drift_psi{model=\"m\",feature=\"x\"}"),
            std::string::npos);

  // Back to normal, then drifting again within the interval: no second event; after it: one.
  for (int i = 0; i < 4; ++i) monitor.Observe(servable, batch(0.0f, 50));
  for (int i = 0; i < 4; ++i) monitor.Observe(servable, batch(5.0f, 50));
  EXPECT_EQ(events.size(), 1u);
  clock.Advance(std::chrono::minutes(11));
  for (int i = 0; i < 4; ++i) monitor.Observe(servable, batch(0.0f, 50));
  for (int i = 0; i < 4; ++i) monitor.Observe(servable, batch(5.0f, 50));
  EXPECT_EQ(events.size(), 2u);
}

TEST(DriftTest, VersionWithoutCardReportsNoReference) {
  testing::TempDir dir;
  auto servable = std::make_shared<ServableVersion>();
  servable->config.name = "m";
  servable->config.version_dir = dir.path();
  servable->config.feature_names = {"x"};
  servable->version_string = "2";
  DriftMonitor monitor(DriftMonitorOptions{});
  const Json json = Json::parse(monitor.ReportJson(servable));
  EXPECT_FALSE(json["reference"].get<bool>());
  EXPECT_TRUE(json["features"].empty());
}

}  // namespace
}  // namespace edgeloop::serving
