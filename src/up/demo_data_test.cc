#include "up/demo_data.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "common/test_util.h"

namespace edgeloop::up {
namespace {

DemoDataOptions Small() {
  DemoDataOptions options;
  options.machines = 6;
  options.history_rows = 3000;
  options.live_rows = 3000;
  options.drift_at = 0.5;
  return options;
}

std::string Csv(const std::vector<DemoRow>& rows) {
  std::string out = DemoCsvHeader() + "\n";
  for (const DemoRow& row : rows) out += DemoCsvRow(row) + "\n";
  return out;
}

double Mean(const std::vector<DemoRow>& rows, size_t feature, int phase, int failure) {
  double sum = 0;
  int n = 0;
  for (const DemoRow& row : rows) {
    if (row.phase != phase || row.failure != failure) continue;
    sum += row.features[feature];
    ++n;
  }
  return n == 0 ? 0 : sum / n;
}

TEST(DemoDataTest, SameSeedSameBytesOtherSeedOtherBytes) {
  auto a = GenerateDemoData(Small());
  auto b = GenerateDemoData(Small());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(Csv(a->history), Csv(b->history));
  EXPECT_EQ(Csv(a->live), Csv(b->live));
  DemoDataOptions other = Small();
  other.seed = 8;
  auto c = GenerateDemoData(other);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(Csv(a->live), Csv(c->live));
}

TEST(DemoDataTest, RowsPhasesOperatorsAndTime) {
  auto data = GenerateDemoData(Small());
  ASSERT_TRUE(data.ok());
  ASSERT_EQ(data->history.size(), 3000u);
  ASSERT_EQ(data->live.size(), 3000u);
  for (const DemoRow& row : data->history) EXPECT_EQ(row.phase, 0);
  // The drift starts half way through the live rows (one minute holds all six machines).
  EXPECT_EQ(data->live[1499].phase, 0);
  EXPECT_EQ(data->live[1500].phase, 1);
  EXPECT_EQ(data->live.back().phase, 1);
  EXPECT_EQ(data->live.front().ts_s, Small().live_start_s);
  EXPECT_EQ(data->history.back().ts_s, Small().live_start_s - 60);
  std::set<std::string> operators, machines;
  for (const DemoRow& row : data->live) {
    operators.insert(row.operator_id);
    machines.insert(row.machine_id);
    ASSERT_EQ(row.features.size(), DemoFeatures().size());
  }
  EXPECT_EQ(machines.size(), 6u);
  EXPECT_GT(operators.size(), 3u);
  EXPECT_EQ(operators.begin()->rfind("op-", 0), 0u);
}

TEST(DemoDataTest, FailuresAnomaliesAndAConceptDrift) {
  DemoDataOptions options = Small();
  options.history_rows = 20'000;
  options.live_rows = 20'000;
  auto data = GenerateDemoData(options);
  ASSERT_TRUE(data.ok());
  int failures = 0, anomalies = 0;
  for (const DemoRow& row : data->history) {
    failures += row.failure;
    anomalies += row.injected_anomaly;
  }
  const double rate = failures / 20'000.0;
  EXPECT_GT(rate, 0.05);
  EXPECT_LT(rate, 0.30);
  EXPECT_GT(anomalies, 20);
  EXPECT_LT(anomalies, 200);
  // Features: 0 temperature, 1 vibration, 2 pressure, 4 current.
  // Before the drift, failing machines run hot; after it, temperature says nothing and failures
  // come with high pressure.
  EXPECT_GT(Mean(data->live, 0, 0, 1) - Mean(data->live, 0, 0, 0), 2.0);
  EXPECT_LT(std::abs(Mean(data->live, 0, 1, 1) - Mean(data->live, 0, 1, 0)), 1.0);
  EXPECT_GT(Mean(data->live, 2, 1, 1) - Mean(data->live, 2, 1, 0), 0.2);
  // The new bearings vibrate more: the input distribution drifts too.
  EXPECT_GT(Mean(data->live, 1, 1, 0) - Mean(data->live, 1, 0, 0), 1.0);
}

TEST(DemoDataTest, WritesAndReadsBack) {
  testing::TempDir dir;
  auto data = GenerateDemoData(Small());
  ASSERT_TRUE(data.ok());
  ASSERT_TRUE(WriteDemoData(*data, dir.path()).ok());
  auto live = ReadDemoCsv(dir.path() / "live.csv");
  ASSERT_TRUE(live.ok()) << live.status().ToString();
  ASSERT_EQ(live->size(), data->live.size());
  for (size_t i = 0; i < live->size(); ++i) {
    EXPECT_EQ(DemoCsvRow((*live)[i]), DemoCsvRow(data->live[i])) << i;
  }
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "history" / "readings.csv"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "live.csv.tmp"));
}

TEST(DemoDataTest, BadInputIsRefusedWithTheLine) {
  testing::TempDir dir;
  EXPECT_EQ(ReadDemoCsv(dir.path() / "missing.csv").status().code(), StatusCode::kNotFound);
  auto data = GenerateDemoData(Small());
  ASSERT_TRUE(data.ok());
  std::string good = DemoCsvRow(data->live[0]);
  {
    std::ofstream out(dir.path() / "bad.csv");
    out << DemoCsvHeader() << "\n" << good << "\n" << good.substr(0, good.size() / 2) << "\n";
  }
  auto bad = ReadDemoCsv(dir.path() / "bad.csv");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("line 3"), std::string::npos) << bad.status().message();
  {
    std::ofstream out(dir.path() / "header.csv");
    out << "a,b,c\n";
  }
  EXPECT_EQ(ReadDemoCsv(dir.path() / "header.csv").status().code(), StatusCode::kInvalidArgument);
  DemoDataOptions options = Small();
  options.machines = 0;
  EXPECT_EQ(GenerateDemoData(options).status().code(), StatusCode::kInvalidArgument);
  options = Small();
  options.drift_at = 1.5;
  EXPECT_EQ(GenerateDemoData(options).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgeloop::up
