#include "pipeline/steps.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace edgeloop::pipeline {
namespace {

using lake::Batch;
using lake::Type;
using ::testing::HasSubstr;

class CollectingSink : public SourceSink {
 public:
  Status Rows(Chunk chunk) override {
    chunks.push_back(std::move(chunk));
    return Status::Ok();
  }
  Status Rejected(Reject reject) override {
    rejects.push_back(std::move(reject));
    return Status::Ok();
  }
  std::vector<std::string> Rows() const {
    std::vector<std::string> out;
    for (const Chunk& c : chunks) {
      for (int64_t i = 0; i < c.batch.num_rows(); ++i) {
        std::string row;
        for (size_t k = 0; k < c.batch.columns().size(); ++k) {
          if (k) row += "|";
          row += c.batch.column(k).IsNull(i) ? "NULL" : lake::FormatValue(c.batch.column(k), i);
        }
        out.push_back(row);
      }
    }
    return out;
  }
  std::vector<Chunk> chunks;
  std::vector<Reject> rejects;
};

std::shared_ptr<const lake::Schema> InputSchema() {
  auto schema = std::make_shared<lake::Schema>();
  schema->fields = {{1, "machine", Type::kString},
                    {2, "ts", Type::kTimestamp},
                    {3, "temp", Type::kDouble},
                    {4, "code", Type::kString}};
  return schema;
}

// machine, ts, temp, code
Chunk Input(const std::vector<std::tuple<const char*, const char*, double, const char*>>& rows,
            const std::string& origin = "in.csv") {
  Chunk chunk;
  chunk.batch = Batch(InputSchema());
  chunk.origin = origin;
  int64_t line = 2;
  for (const auto& [machine, ts, temp, code] : rows) {
    auto& c = chunk.batch.columns();
    machine ? c[0].AppendString(machine) : c[0].AppendNull();
    c[1].AppendInt(*lake::ParseTimestamp(ts));
    std::isnan(temp) ? c[2].AppendNull() : c[2].AppendDouble(temp);
    code ? c[3].AppendString(code) : c[3].AppendNull();
    chunk.lines.push_back(line++);
  }
  return chunk;
}

constexpr double kNull = std::numeric_limits<double>::quiet_NaN();

StepSpec Step(StepSpec::Kind kind) {
  StepSpec s;
  s.kind = kind;
  s.line = 7;
  return s;
}

struct Run {
  std::unique_ptr<StepChain> chain;
  CollectingSink sink;
};

std::unique_ptr<Run> Plan(const std::vector<StepSpec>& steps) {
  auto run = std::make_unique<Run>();
  auto chain = StepChain::Create(steps, InputSchema(), Clock::Real());
  EXPECT_TRUE(chain.ok()) << chain.status();
  if (!chain.ok()) return nullptr;
  run->chain = *std::move(chain);
  run->chain->SetNext(&run->sink);
  return run;
}

Status PlanError(const std::vector<StepSpec>& steps) {
  auto chain = StepChain::Create(steps, InputSchema(), Clock::Real());
  return chain.ok() ? Status::Ok() : chain.status();
}

std::string Names(const lake::Schema& schema) {
  std::string out;
  for (const auto& f : schema.fields) {
    out += (out.empty() ? "" : ",") + f.name + ":" + std::string(lake::TypeName(f.type));
  }
  return out;
}

TEST(StepsTest, SelectAndRename) {
  StepSpec select = Step(StepSpec::Kind::kSelect);
  select.columns = {"temp", "machine"};
  StepSpec rename = Step(StepSpec::Kind::kRename);
  rename.pairs = {{"temp", "celsius"}};
  auto run = Plan({select, rename});
  EXPECT_EQ(Names(*run->chain->output_schema()), "celsius:double,machine:string");
  ASSERT_TRUE(run->chain->Rows(Input({{"m1", "2026-11-27", 1.5, "1"}})).ok());
  EXPECT_EQ(run->sink.Rows(), (std::vector<std::string>{"1.5|m1"}));

  select.columns = {"nope"};
  EXPECT_EQ(PlanError({select}).message(),
            "steps[0] (select, line 7): select: unknown column 'nope' (columns: machine, ts, "
            "temp, code)");
  rename.pairs = {{"temp", "machine"}};
  EXPECT_THAT(PlanError({rename}).message(), HasSubstr("two columns would be named 'machine'"));
}

TEST(StepsTest, CastRejectsValuesThatDoNotConvert) {
  StepSpec cast = Step(StepSpec::Kind::kCast);
  cast.pairs = {{"code", "int64"}};
  auto run = Plan({cast});
  EXPECT_EQ(Names(*run->chain->output_schema()),
            "machine:string,ts:timestamp,temp:double,code:int64");
  ASSERT_TRUE(run->chain
                  ->Rows(Input({{"m1", "2026-11-27", 1, "12"},
                                {"m2", "2026-11-27", 2, "x1"},
                                {"m3", "2026-11-27", 3, nullptr}}))
                  .ok());
  EXPECT_EQ(run->sink.Rows(), (std::vector<std::string>{"m1|2026-11-27T00:00:00Z|1|12",
                                                        "m3|2026-11-27T00:00:00Z|3|NULL"}));
  ASSERT_EQ(run->sink.rejects.size(), 1u);
  EXPECT_EQ(run->sink.rejects[0].origin, "in.csv");
  EXPECT_EQ(run->sink.rejects[0].line, 3);
  EXPECT_EQ(run->sink.rejects[0].raw, "m2,2026-11-27T00:00:00Z,2,x1");
  EXPECT_EQ(run->sink.rejects[0].reason, "column 'code': cannot cast 'x1' to int64");
  EXPECT_EQ(run->sink.chunks[0].lines, (std::vector<int64_t>{2, 4}));
}

TEST(StepsTest, FilterKeepsOnlyTrueAndCounts) {
  StepSpec filter = Step(StepSpec::Kind::kFilter);
  filter.expression = "temp > 1";
  auto run = Plan({filter});
  ASSERT_TRUE(run->chain
                  ->Rows(Input({{"m1", "2026-11-27", 1, "a"},
                                {"m2", "2026-11-27", 2, "b"},
                                {"m3", "2026-11-27", kNull, "c"}}))
                  .ok());
  EXPECT_EQ(run->sink.Rows(), (std::vector<std::string>{"m2|2026-11-27T00:00:00Z|2|b"}));
  EXPECT_EQ(run->chain->counters().filtered, 2);

  filter.expression = "temp + 1";
  EXPECT_THAT(PlanError({filter}).message(), HasSubstr("the condition is double, not bool"));
  filter.expression = "temp > 'x'";
  EXPECT_THAT(PlanError({filter}).message(), HasSubstr("type error"));
  filter.expression = "tmp > 1";
  EXPECT_THAT(PlanError({filter}).message(),
              HasSubstr("steps[0] (filter, line 7): unknown column 'tmp' at position 1"));
}

TEST(StepsTest, DeriveAddsAndReplacesColumnsInOrderAndRejectsRowErrors) {
  StepSpec derive = Step(StepSpec::Kind::kDerive);
  derive.pairs = {{"temp_f", "temp * 9 / 5 + 32"},
                  {"day", "date_trunc('day', ts)"},
                  {"ratio", "temp_f / temp"},
                  {"machine", "upper(machine)"}};
  auto run = Plan({derive});
  EXPECT_EQ(Names(*run->chain->output_schema()),
            "machine:string,ts:timestamp,temp:double,code:string,temp_f:double,"
            "day:timestamp,ratio:double");
  ASSERT_TRUE(run->chain
                  ->Rows(Input({{"m1", "2026-11-27T05:00:00Z", 10, "a"},
                                {"m2", "2026-11-27T06:00:00Z", 0, "b"}}))
                  .ok());
  EXPECT_EQ(run->sink.Rows(),
            (std::vector<std::string>{"M1|2026-11-27T05:00:00Z|10|a|50|2026-11-27T00:00:00Z|5"}));
  ASSERT_EQ(run->sink.rejects.size(), 1u);
  EXPECT_EQ(run->sink.rejects[0].reason, "division by zero");
  EXPECT_EQ(run->sink.rejects[0].line, 3);

  derive.pairs = {{"x", "NULL"}};
  EXPECT_THAT(PlanError({derive}).message(), HasSubstr("cast(NULL AS type)"));
  derive.pairs = {{"x", "temp +"}};
  EXPECT_THAT(PlanError({derive}).message(), HasSubstr("derive 'x': unexpected end"));
}

TEST(StepsTest, DedupeKeepsTheLatestPerKey) {
  StepSpec dedupe = Step(StepSpec::Kind::kDedupe);
  dedupe.key = {"machine"};
  dedupe.keep = "latest";
  dedupe.order_by = "ts";
  auto run = Plan({dedupe});
  ASSERT_TRUE(run->chain
                  ->Rows(Input({{"m1", "2026-11-27T05:00:00Z", 1, "a"},
                                {"m2", "2026-11-27T05:00:00Z", 2, "b"},
                                {"m1", "2026-11-27T07:00:00Z", 3, "c"}},
                               "one.csv"))
                  .ok());
  ASSERT_TRUE(run->chain
                  ->Rows(Input({{"m1", "2026-11-27T06:00:00Z", 4, "d"},
                                {nullptr, "2026-11-27T05:00:00Z", 5, "e"},
                                {"m2", "2026-11-27T05:00:00Z", 6, "f"}},
                               "two.csv"))
                  .ok());
  EXPECT_TRUE(run->sink.chunks.empty());  // blocking until Finish
  ASSERT_TRUE(run->chain->Finish().ok());
  EXPECT_EQ(run->sink.Rows(), (std::vector<std::string>{"m1|2026-11-27T07:00:00Z|3|c",
                                                        "NULL|2026-11-27T05:00:00Z|5|e",
                                                        "m2|2026-11-27T05:00:00Z|6|f"}));
  ASSERT_EQ(run->sink.chunks.size(), 2u);
  EXPECT_EQ(run->sink.chunks[0].origin, "one.csv");
  EXPECT_EQ(run->sink.chunks[1].origin, "two.csv");
  EXPECT_EQ(run->sink.chunks[1].lines, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(run->chain->counters().deduplicated, 3);

  dedupe.keep = "first";
  auto first = Plan({dedupe});
  ASSERT_TRUE(first->chain
                  ->Rows(Input({{"m1", "2026-11-27T05:00:00Z", 1, "a"},
                                {"m1", "2026-11-27T07:00:00Z", 3, "c"}}))
                  .ok());
  ASSERT_TRUE(first->chain->Finish().ok());
  EXPECT_EQ(first->sink.Rows(), (std::vector<std::string>{"m1|2026-11-27T05:00:00Z|1|a"}));

  dedupe.key = {"nope"};
  EXPECT_THAT(PlanError({dedupe}).message(), HasSubstr("unknown key column 'nope'"));
}

TEST(StepsTest, AggregateGroups) {
  StepSpec aggregate = Step(StepSpec::Kind::kAggregate);
  aggregate.key = {"machine"};
  aggregate.pairs = {{"n", "count(*)"},          {"n_temp", "count(temp)"}, {"total", "sum(temp)"},
                     {"mean", "avg(temp)"},      {"low", "min(temp)"},      {"last", "max(ts)"},
                     {"first_code", "min(code)"}};
  auto run = Plan({aggregate});
  EXPECT_EQ(Names(*run->chain->output_schema()),
            "machine:string,n:int64,n_temp:int64,total:double,mean:double,low:double,"
            "last:timestamp,first_code:string");
  ASSERT_TRUE(run->chain
                  ->Rows(Input({{"m1", "2026-11-27T05:00:00Z", 1, "b"},
                                {"m2", "2026-11-27T05:00:00Z", kNull, "z"},
                                {"m1", "2026-11-27T07:00:00Z", 3, "a"}}))
                  .ok());
  ASSERT_TRUE(run->chain->Finish().ok());
  EXPECT_EQ(run->sink.Rows(),
            (std::vector<std::string>{"m1|2|2|4|2|1|2026-11-27T07:00:00Z|a",
                                      "m2|1|0|NULL|NULL|NULL|2026-11-27T05:00:00Z|z"}));

  StepSpec total = Step(StepSpec::Kind::kAggregate);
  total.pairs = {{"n", "count(*)"}};
  auto empty = Plan({total});
  ASSERT_TRUE(empty->chain->Finish().ok());
  EXPECT_EQ(empty->sink.Rows(), (std::vector<std::string>{"0"}));  // one group, like SQL

  total.pairs = {{"n", "temp + 1"}};
  EXPECT_THAT(PlanError({total}).message(), HasSubstr("not an aggregate call"));
  total.pairs = {{"n", "sum(code)"}};
  EXPECT_THAT(PlanError({total}).message(), HasSubstr("needs a number"));
}

// `rows` rows of machine "m<i % keys>" with increasing ts and temp = i, in chunks of 10k.
Status FeedMachines(StepChain* chain, int64_t rows, int64_t keys) {
  const int64_t t0 = *lake::ParseTimestamp("2026-11-27T00:00:00Z");
  for (int64_t first = 0; first < rows; first += 10'000) {
    Chunk chunk;
    chunk.batch = Batch(InputSchema());
    chunk.origin = "many.csv";
    for (int64_t i = first; i < std::min(rows, first + 10'000); ++i) {
      auto& c = chunk.batch.columns();
      c[0].AppendString("m" + std::to_string(i % keys));
      c[1].AppendInt(t0 + i * 1'000'000);
      c[2].AppendDouble(static_cast<double>(i));
      c[3].AppendString("code");
      chunk.lines.push_back(i + 2);
    }
    RETURN_IF_ERROR(chain->Rows(std::move(chunk)));
  }
  return Status::Ok();
}

TEST(StepsTest, DedupeMemoryFollowsDistinctKeysNotRows) {
  // 300k rows over 1000 keys fit in 1 MiB because replaced rows are dropped as they pile up
  // (300k rows held would be about 10 MB); the output is the same as without dropping.
  StepSpec dedupe = Step(StepSpec::Kind::kDedupe);
  dedupe.key = {"machine"};
  dedupe.keep = "latest";
  dedupe.order_by = "ts";
  dedupe.max_memory_mb = 1;
  auto run = Plan({dedupe});
  ASSERT_TRUE(FeedMachines(run->chain.get(), 300'000, 1000).ok());
  ASSERT_TRUE(run->chain->Finish().ok());
  const std::vector<std::string> rows = run->sink.Rows();
  ASSERT_EQ(rows.size(), 1000u);
  // In input order of the kept rows: the latest rows, 299000 (m0) to 299999 (m999).
  EXPECT_EQ(rows.front(), "m0|2026-11-30T11:03:20Z|299000|code");
  EXPECT_EQ(rows.back(), "m999|2026-11-30T11:19:59Z|299999|code");
  EXPECT_EQ(run->sink.chunks.back().lines.back(), 299'999 + 2);
  EXPECT_EQ(run->chain->counters().deduplicated, 299'000);
}

TEST(StepsTest, BlockingStepsAboveTheirMemoryLimitFailClearly) {
  StepSpec dedupe = Step(StepSpec::Kind::kDedupe);
  dedupe.key = {"machine"};
  dedupe.max_memory_mb = 1;
  auto run = Plan({dedupe});
  Status status = FeedMachines(run->chain.get(), 200'000, 200'000);
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("dedupe holds about"));
  EXPECT_THAT(status.message(), HasSubstr("distinct keys"));
  EXPECT_THAT(status.message(), HasSubstr("max_memory_mb (1)"));

  StepSpec aggregate = Step(StepSpec::Kind::kAggregate);
  aggregate.key = {"machine"};
  aggregate.pairs = {{"n", "count(*)"}, {"top", "max(code)"}};
  aggregate.max_memory_mb = 1;
  auto groups = Plan({aggregate});
  status = FeedMachines(groups->chain.get(), 200'000, 200'000);
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("aggregate holds about"));
  EXPECT_THAT(status.message(), HasSubstr("groups from"));

  // Few groups stay far below the limit whatever the number of rows.
  auto few = Plan({aggregate});
  ASSERT_TRUE(FeedMachines(few->chain.get(), 200'000, 10).ok());
  ASSERT_TRUE(few->chain->Finish().ok());
  EXPECT_EQ(few->sink.Rows().size(), 10u);
}

TEST(StepsTest, StepsAfterABlockingStepRunAtFinish) {
  StepSpec aggregate = Step(StepSpec::Kind::kAggregate);
  aggregate.key = {"machine"};
  aggregate.pairs = {{"n", "count(*)"}};
  StepSpec filter = Step(StepSpec::Kind::kFilter);
  filter.expression = "n > 1";
  auto run = Plan({aggregate, filter});
  ASSERT_TRUE(run->chain
                  ->Rows(Input({{"m1", "2026-11-27", 1, "a"},
                                {"m2", "2026-11-27", 1, "a"},
                                {"m1", "2026-11-27", 1, "a"}}))
                  .ok());
  ASSERT_TRUE(run->chain->Finish().ok());
  EXPECT_EQ(run->sink.Rows(), (std::vector<std::string>{"m1|2"}));
}

TEST(StepsTest, RowAsCsvQuotesStrings) {
  Chunk chunk = Input({{"a,b", "2026-11-27", kNull, ""}});
  EXPECT_EQ(RowAsCsv(chunk.batch, 0), "\"a,b\",2026-11-27T00:00:00Z,,\"\"");
}

}  // namespace
}  // namespace edgeloop::pipeline
