#include "pipeline/runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "common/test_util.h"

namespace edgeloop::pipeline {
namespace {

using ::testing::HasSubstr;

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_.SetWallTime(std::chrono::system_clock::time_point(std::chrono::hours(496'000)));
    lake::LakeOptions options;
    options.clock = &clock_;
    auto opened = lake::Lake::Open(dir_.path() / "lake", options, true);
    ASSERT_TRUE(opened.ok()) << opened.status();
    lake_ = *std::move(opened);
    std::filesystem::create_directories(dir_.path() / "in");
  }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_.path() / "in" / name, std::ios::binary) << text;
  }

  PipelineSpec Spec(const std::string& yaml) {
    auto spec = ParseSpec(yaml, "spec.yaml", dir_.path());
    EXPECT_TRUE(spec.ok()) << spec.status();
    return spec.ok() ? *spec : PipelineSpec();
  }

  RunResult Run(const PipelineSpec& spec, RunOptions options = {}) {
    options.clock = &clock_;
    return RunPipeline(spec, lake_.get(), options);
  }

  // The table's rows as "v|v|..." (NULL for null), sorted.
  std::vector<std::string> Rows(const std::string& table, std::optional<int64_t> snapshot = {}) {
    lake::ScanOptions scan;
    scan.snapshot = snapshot;
    auto reader = lake_->Scan(table, scan);
    EXPECT_TRUE(reader.ok()) << reader.status();
    std::vector<std::string> out;
    if (!reader.ok()) return out;
    lake::Batch batch;
    while (true) {
      auto more = (*reader)->Next(&batch);
      EXPECT_TRUE(more.ok()) << more.status();
      if (!more.ok() || !*more) break;
      for (int64_t i = 0; i < batch.num_rows(); ++i) {
        std::string row;
        for (size_t c = 0; c < batch.columns().size(); ++c) {
          if (c) row += "|";
          row += batch.column(c).IsNull(i) ? "NULL" : lake::FormatValue(batch.column(c), i);
        }
        out.push_back(row);
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  FakeClock clock_;
  testing::TempDir dir_;
  std::unique_ptr<lake::Lake> lake_;
};

constexpr char kReadings[] = R"yaml(
name: readings
source: {type: csv, path: in}
schema:
  - {name: ts, type: timestamp}
  - {name: machine, type: string}
  - {name: temp, type: double}
steps:
  - filter: "temp < 500"
  - derive: {temp_f: "round(temp * 9 / 5 + 32, 1)", day: "to_date(ts)"}
target: {table: readings, partition: "day(ts)"}
incremental: {watermark: ts}
)yaml";

TEST_F(RunnerTest, LoadsRowsAndRejectsInOneCommit) {
  Write("a.csv",
        "ts,machine,temp\n"
        "2026-11-27T01:00:00Z,m1,20\n"
        "2026-11-27T02:00:00Z,m2,warm\n"
        "2026-11-28T01:00:00Z,m1,900\n"
        "2026-11-28T02:00:00Z,m2,21.5\n");
  const RunResult result = Run(Spec(kReadings));
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(result.stage, RunResult::Stage::kDone);
  const RunSummary& s = result.summary;
  EXPECT_EQ(s.rows_read, 3);
  EXPECT_EQ(s.rows_written, 2);
  EXPECT_EQ(s.rows_rejected, 1);
  EXPECT_EQ(s.rows_filtered, 1);
  EXPECT_EQ(s.files_read, 1);
  ASSERT_TRUE(s.snapshot.has_value());
  EXPECT_FALSE(s.watermark_before.has_value());
  EXPECT_EQ(s.watermark_after, "2026-11-28T02:00:00Z");
  EXPECT_EQ(Rows("readings"),
            (std::vector<std::string>{"2026-11-27T01:00:00Z|m1|20|68|2026-11-27",
                                      "2026-11-28T02:00:00Z|m2|21.5|70.7|2026-11-28"}));
  const std::vector<std::string> rejected = Rows("readings_rejected");
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0], s.run_id + "|" + (dir_.path() / "in/a.csv").string() +
                             "|3|2026-11-27T02:00:00Z,m2,warm|column 'temp': cannot parse "
                             "'warm' as double|" +
                             lake::FormatTimestamp(int64_t{496'000} * 3600 * 1'000'000));
  // Rows, rejects and the watermark are one snapshot.
  EXPECT_EQ(*lake_->Watermark("readings", "readings"), "2026-11-28T02:00:00Z");
  auto history = lake_->History("readings_rejected");
  ASSERT_TRUE(history.ok());
  EXPECT_EQ(history->front().id, *s.snapshot);
  auto files = lake_->Files("readings");
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(files->size(), 2u);  // day=2026-11-27 and day=2026-11-28
}

TEST_F(RunnerTest, IncrementalRunsLoadExactlyTheNewRowsAndReRunsAreIdempotent) {
  Write("a.csv", "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n2026-11-27T03:00:00Z,m1,bad\n");
  ASSERT_TRUE(Run(Spec(kReadings)).status.ok());
  EXPECT_EQ(Rows("readings").size(), 1u);
  EXPECT_EQ(Rows("readings_rejected").size(), 1u);

  // Re-run with nothing new: no rows, no rejects twice, no commit.
  const auto latest = *lake_->LatestSnapshot();
  const RunResult again = Run(Spec(kReadings));
  ASSERT_TRUE(again.status.ok()) << again.status;
  EXPECT_EQ(again.summary.rows_written, 0);
  EXPECT_EQ(again.summary.rows_rejected, 0);
  EXPECT_EQ(again.summary.files_skipped, 1);
  EXPECT_FALSE(again.summary.snapshot.has_value());
  EXPECT_EQ(*lake_->LatestSnapshot(), latest);

  // A new file repeats an old row and adds two new ones; an old file grows by one old row.
  Write("b.csv",
        "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n2026-11-27T04:00:00Z,m2,30\n"
        "2026-11-27T05:00:00Z,m3,31\n");
  Write("a.csv",
        "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n2026-11-27T03:00:00Z,m1,bad\n"
        "2026-11-26T03:00:00Z,m9,1\n");
  const RunResult third = Run(Spec(kReadings));
  ASSERT_TRUE(third.status.ok()) << third.status;
  EXPECT_EQ(third.summary.watermark_before, "2026-11-27T01:00:00Z");
  EXPECT_EQ(third.summary.rows_written, 2);
  EXPECT_EQ(third.summary.rows_skipped, 3);
  EXPECT_EQ(third.summary.watermark_after, "2026-11-27T05:00:00Z");
  EXPECT_EQ(Rows("readings").size(), 3u);

  const RunResult fourth = Run(Spec(kReadings));
  ASSERT_TRUE(fourth.status.ok());
  EXPECT_EQ(fourth.summary.rows_read, 0);
  EXPECT_EQ(fourth.summary.files_skipped, 2);
  EXPECT_EQ(Rows("readings").size(), 3u);
}

TEST_F(RunnerTest, TooManyRejectsCommitNothingAndKeepTheWatermark) {
  Write("a.csv", "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n");
  ASSERT_TRUE(Run(Spec(kReadings)).status.ok());
  const auto latest = *lake_->LatestSnapshot();
  Write("b.csv",
        "ts,machine,temp\n2026-11-28T01:00:00Z,m1,x\n2026-11-28T02:00:00Z,m1,y\n"
        "2026-11-28T03:00:00Z,m1,3\n");
  RunOptions options;
  options.max_rejected = 1;
  const RunResult result = Run(Spec(kReadings), options);
  EXPECT_EQ(result.stage, RunResult::Stage::kRun);
  EXPECT_EQ(result.status.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(result.status.message(), HasSubstr("more than 1 rows rejected"));
  EXPECT_THAT(result.status.message(), HasSubstr("b.csv:2: column 'temp'"));
  EXPECT_EQ(*lake_->LatestSnapshot(), latest);
  EXPECT_EQ(*lake_->Watermark("readings", "readings"), "2026-11-27T01:00:00Z");
  EXPECT_EQ(Rows("readings").size(), 1u);
  // With room for the rejects the same files load, and b.csv's good row is new.
  options.max_rejected = 2;
  const RunResult retry = Run(Spec(kReadings), options);
  ASSERT_TRUE(retry.status.ok()) << retry.status;
  EXPECT_EQ(retry.summary.rows_written, 1);
  EXPECT_EQ(retry.summary.rows_rejected, 2);
}

TEST_F(RunnerTest, MalformedHeaderFailsTheRunWithoutCommitting) {
  Write("a.csv", "\"ts\"x,machine,temp\n2026-11-27T01:00:00Z,m1,20\n");
  const RunResult result = Run(Spec(kReadings));
  EXPECT_EQ(result.status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status.message(), HasSubstr("a.csv"));
  EXPECT_TRUE(Rows("readings").empty());
}

TEST_F(RunnerTest, MalformedRowIsRejectedInTheSameCommitAsTheGoodRows) {
  Write("a.csv", "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n\"2026\"x,m1,1\n");
  const RunResult result = Run(Spec(kReadings));
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(result.summary.rows_rejected, 1);
  EXPECT_EQ(Rows("readings").size(), 1u);
  EXPECT_EQ(Rows("readings_rejected").size(), 1u);
}

TEST_F(RunnerTest, PlanErrorsComeBeforeAnyRowIsRead) {
  Write("a.csv", "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n");
  std::string yaml = kReadings;
  yaml.replace(yaml.find("temp < 500"), 10, "tmp < 500");
  RunResult result = Run(Spec(yaml));
  EXPECT_EQ(result.stage, RunResult::Stage::kPlan);
  EXPECT_THAT(result.status.message(),
              HasSubstr("steps[0] (filter, line 9): unknown column 'tmp' at position 1"));
  EXPECT_FALSE(lake_->Describe("readings").ok());  // nothing was created

  yaml = kReadings;
  yaml.replace(yaml.find("watermark: ts"), 13, "watermark: when");
  result = Run(Spec(yaml));
  EXPECT_EQ(result.stage, RunResult::Stage::kPlan);
  EXPECT_THAT(result.status.message(), HasSubstr("watermark column 'when'"));

  yaml = kReadings;
  yaml.replace(yaml.find("day(ts)"), 7, "day(machine)");
  result = Run(Spec(yaml));
  EXPECT_EQ(result.stage, RunResult::Stage::kPlan);
  EXPECT_THAT(result.status.message(), HasSubstr("needs a timestamp or date column"));
}

TEST_F(RunnerTest, TargetSchemaMustFit) {
  Write("a.csv", "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n");
  ASSERT_TRUE(Run(Spec(kReadings)).status.ok());
  std::string yaml = kReadings;
  yaml.replace(yaml.find("day: \"to_date(ts)\""), 18, "day: \"to_date(ts)\", extra: \"1\"");
  RunResult result = Run(Spec(yaml));
  EXPECT_EQ(result.stage, RunResult::Stage::kPlan);
  EXPECT_THAT(result.status.message(), HasSubstr("column 'extra' is not in table 'readings'"));
  yaml = kReadings;
  yaml.replace(yaml.find("day: \"to_date(ts)\""), 18, "day: \"machine\"");
  result = Run(Spec(yaml));
  EXPECT_THAT(result.status.message(),
              HasSubstr("column 'day' is string but table 'readings' has it as date"));
}

TEST_F(RunnerTest, OverwriteAggregateFromALakeTable) {
  Write("a.csv",
        "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n2026-11-27T02:00:00Z,m1,30\n"
        "2026-11-28T01:00:00Z,m2,10\n");
  ASSERT_TRUE(Run(Spec(kReadings)).status.ok());
  constexpr char kDaily[] = R"yaml(
name: daily
source: {type: lake, table: readings}
steps:
  - aggregate: {group_by: [machine, day], values: {n: "count(*)", mean: "avg(temp)"}}
target: {table: daily, mode: overwrite}
)yaml";
  RunResult result = Run(Spec(kDaily));
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(Rows("daily"), (std::vector<std::string>{"m1|2026-11-27|2|25", "m2|2026-11-28|1|10"}));
  result = Run(Spec(kDaily));
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(Rows("daily").size(), 2u);  // replaced, not appended
}

TEST_F(RunnerTest, DedupeKeepsTheLatestAcrossFiles) {
  Write("a.csv", "id,v,at\n1,a,2026-11-27T01:00:00Z\n2,b,2026-11-27T01:00:00Z\n");
  Write("b.csv", "id,v,at\n1,c,2026-11-27T03:00:00Z\n2,d,2026-11-27T00:00:00Z\n");
  const RunResult result = Run(Spec(R"yaml(
name: dd
source: {type: csv, path: "in/*.csv"}
schema: [{name: id, type: int64}, {name: v, type: string}, {name: at, type: timestamp}]
steps:
  - dedupe: {key: [id], keep: latest, order_by: at}
target: {table: dd}
)yaml"));
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(result.summary.rows_deduplicated, 2);
  EXPECT_EQ(Rows("dd"),
            (std::vector<std::string>{"1|c|2026-11-27T03:00:00Z", "2|b|2026-11-27T01:00:00Z"}));
}

TEST_F(RunnerTest, DryRunCommitsNothing) {
  Write("a.csv", "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n");
  RunOptions options;
  options.dry_run = true;
  const RunResult result = Run(Spec(kReadings), options);
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(result.summary.rows_written, 1);
  EXPECT_FALSE(result.summary.snapshot.has_value());
  EXPECT_FALSE(lake_->Describe("readings").ok());
}

TEST_F(RunnerTest, ProgressIsReported) {
  std::string text = "ts,machine,temp\n";
  for (int i = 0; i < 1000; ++i) text += "2026-11-27T01:00:00Z,m" + std::to_string(i) + ",1\n";
  Write("a.csv", text);
  RunOptions options;
  std::vector<RunProgress> seen;
  options.progress = [&](const RunProgress& p) { seen.push_back(p); };
  ASSERT_TRUE(Run(Spec(kReadings), options).status.ok());
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().rows_read, 1000);
  EXPECT_EQ(seen.back().bytes_read, static_cast<int64_t>(text.size()));
  EXPECT_EQ(seen.back().total_bytes, static_cast<int64_t>(text.size()));
}

}  // namespace
}  // namespace edgeloop::pipeline
