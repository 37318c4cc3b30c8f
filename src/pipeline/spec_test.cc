#include "pipeline/spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace edgeloop::pipeline {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

StatusOr<PipelineSpec> Parse(const std::string& yaml) {
  return ParseSpec(yaml, "spec.yaml", "/base");
}

std::string Error(const std::string& yaml) {
  StatusOr<PipelineSpec> spec = Parse(yaml);
  EXPECT_FALSE(spec.ok()) << yaml;
  return spec.ok() ? "" : spec.status().message();
}

constexpr char kFull[] = R"yaml(
name: machine-readings
source: {type: csv, path: "data/*.csv", header: true, delimiter: ";"}
schema:
  - {name: ts, type: timestamp}
  - {name: machine, type: string}
  - {name: temp, type: double}
steps:
  - filter: "temp IS NOT NULL AND temp < 500"
  - derive: {temp_f: "temp * 9 / 5 + 32", day: "date_trunc('day', ts)"}
  - dedupe: {key: [machine, ts], keep: latest, order_by: temp, max_memory_mb: 256}
  - select: [ts, machine, temp_f, day]
  - rename: {temp_f: fahrenheit}
  - cast: {fahrenheit: string}
  - aggregate: {group_by: [machine], values: {n: "count(*)", hottest: "max(fahrenheit)"}}
target: {table: readings, mode: append, partition: "day(ts)"}
incremental: {watermark: ts}
max_rejected: 25
)yaml";

TEST(SpecTest, ParsesEveryPart) {
  StatusOr<PipelineSpec> spec = Parse(kFull);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "machine-readings");
  EXPECT_EQ(spec->source.kind, SourceSpec::Kind::kCsv);
  EXPECT_EQ(spec->source.path, "data/*.csv");
  EXPECT_EQ(spec->source.delimiter, ';');
  ASSERT_EQ(spec->schema.size(), 3u);
  EXPECT_EQ(spec->schema[0].first, "ts");
  EXPECT_EQ(spec->schema[0].second, lake::Type::kTimestamp);
  ASSERT_EQ(spec->steps.size(), 7u);
  EXPECT_EQ(spec->steps[0].kind, StepSpec::Kind::kFilter);
  EXPECT_EQ(spec->steps[0].line, 9);
  EXPECT_EQ(spec->steps[1].kind, StepSpec::Kind::kDerive);
  ASSERT_EQ(spec->steps[1].pairs.size(), 2u);
  EXPECT_EQ(spec->steps[1].pairs[0].first, "temp_f");  // file order is kept
  EXPECT_EQ(spec->steps[1].pairs[1].first, "day");
  EXPECT_EQ(spec->steps[2].keep, "latest");
  EXPECT_EQ(spec->steps[2].key, (std::vector<std::string>{"machine", "ts"}));
  EXPECT_EQ(spec->steps[3].columns.size(), 4u);
  EXPECT_EQ(spec->steps[2].max_memory_mb, 256);
  EXPECT_EQ(spec->steps[6].key, (std::vector<std::string>{"machine"}));
  EXPECT_EQ(spec->steps[6].max_memory_mb, 1024);  // the default
  EXPECT_EQ(spec->target.table, "readings");
  EXPECT_EQ(spec->target.rejected_table, "readings_rejected");
  EXPECT_EQ(spec->target.partition, "day(ts)");
  EXPECT_FALSE(spec->target.overwrite);
  EXPECT_EQ(spec->watermark, "ts");
  EXPECT_EQ(spec->max_rejected, 25);
  EXPECT_EQ(spec->base_dir, "/base");
}

TEST(SpecTest, OtherSources) {
  auto http = Parse(
      "name: a\nsource: {type: http, url: 'http://127.0.0.1:1/x.jsonl', format: jsonl}\n"
      "target: {table: t}\n");
  ASSERT_TRUE(http.ok()) << http.status();
  EXPECT_EQ(http->source.kind, SourceSpec::Kind::kHttp);
  EXPECT_EQ(http->source.format, SourceSpec::Kind::kJsonLines);
  auto lake = Parse(
      "name: a\nsource: {type: lake, table: raw, snapshot: 4}\n"
      "target: {table: t, mode: overwrite, rejected_table: bad}\n");
  ASSERT_TRUE(lake.ok()) << lake.status();
  EXPECT_EQ(lake->source.table, "raw");
  EXPECT_EQ(lake->source.snapshot, 4);
  EXPECT_TRUE(lake->target.overwrite);
  EXPECT_EQ(lake->target.rejected_table, "bad");
}

TEST(SpecTest, HubSource) {
  auto hub = Parse(
      "name: a\nsource: {type: hub, url: 'http://127.0.0.1:8300', token_file: t.token, "
      "model: machine-failure, site: plant-1, labelled: true}\n"
      "target: {table: t}\nincremental: {watermark: labelled_at}\n");
  ASSERT_TRUE(hub.ok()) << hub.status();
  EXPECT_EQ(hub->source.kind, SourceSpec::Kind::kHub);
  EXPECT_EQ(hub->source.model, "machine-failure");
  EXPECT_EQ(hub->source.site, "plant-1");
  EXPECT_EQ(hub->source.token_file, "t.token");
  EXPECT_EQ(hub->source.url, "http://127.0.0.1:8300");
  auto from_env = Parse("name: a\nsource: {type: hub, model: m}\ntarget: {table: t}\n");
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_TRUE(from_env->source.url.empty());
  EXPECT_THAT(Error("name: a\nsource: {type: hub}\ntarget: {table: t}\n"),
              HasSubstr("a hub source needs a 'model'"));
  EXPECT_THAT(Error("name: a\nsource: {type: hub, model: m, url: 'ftp://x'}\ntarget: {table: t}\n"),
              HasSubstr("must start with http://"));
  EXPECT_THAT(
      Error("name: a\nsource: {type: hub, model: m, labelled: false}\ntarget: {table: t}\n"),
      HasSubstr("labelled events only"));
  EXPECT_THAT(Error("name: a\nsource: {type: hub, model: m, path: x}\ntarget: {table: t}\n"),
              HasSubstr("unknown key 'path' in source"));
}

TEST(SpecTest, UnknownKeysAreNamedWithTheirLine) {
  EXPECT_EQ(Error("name: a\nsource: {type: csv, path: x}\ntarget: {table: t}\nstepz: []\n"),
            "spec.yaml: line 4: unknown key 'stepz' in the spec (known: name, source, schema, "
            "steps, target, incremental, max_rejected)");
  EXPECT_THAT(Error("name: a\nsource: {type: csv, path: x, hedder: true}\ntarget: {table: t}\n"),
              HasSubstr("line 2: unknown key 'hedder' in source"));
  EXPECT_THAT(Error("name: a\nsource: {type: csv, path: x}\ntarget: {table: t}\n"
                    "steps:\n  - filtr: 'x > 1'\n"),
              HasSubstr("line 5: unknown step 'filtr'"));
  EXPECT_THAT(Error("name: a\nsource: {type: csv, path: x}\ntarget: {table: t, partion: x}\n"),
              HasSubstr("unknown key 'partion' in target"));
}

TEST(SpecTest, BadValuesAreClearErrors) {
  const std::string base = "name: a\nsource: {type: csv, path: x}\ntarget: {table: t}\n";
  EXPECT_THAT(Error("source: {type: csv, path: x}\ntarget: {table: t}\n"),
              HasSubstr("needs a 'name'"));
  EXPECT_THAT(Error("name: a\ntarget: {table: t}\n"), HasSubstr("needs a 'source'"));
  EXPECT_THAT(Error("name: a\nsource: {type: csv, path: x}\n"), HasSubstr("needs a 'target'"));
  EXPECT_THAT(Error("name: a\nsource: {type: ftp, path: x}\ntarget: {table: t}\n"),
              HasSubstr("unknown source type 'ftp'"));
  EXPECT_THAT(Error("name: a\nsource: {type: csv}\ntarget: {table: t}\n"),
              HasSubstr("needs a 'path'"));
  EXPECT_THAT(Error("name: a\nsource: {type: http, url: 'ftp://x'}\ntarget: {table: t}\n"),
              HasSubstr("must start with http://"));
  EXPECT_THAT(Error(base + "schema: [{name: a, type: decimal}]\n"),
              HasSubstr("line 4: unknown type 'decimal' for column 'a'"));
  EXPECT_THAT(Error(base + "schema: [{name: a, type: int}, {name: a, type: int}]\n"),
              HasSubstr("names column 'a' twice"));
  EXPECT_THAT(Error(base + "steps:\n  - dedupe: {key: [a], keep: newest}\n"),
              HasSubstr("keep must be latest, first or last"));
  EXPECT_THAT(Error(base + "steps:\n  - dedupe: {key: [a], keep: latest}\n"),
              HasSubstr("latest needs 'order_by'"));
  EXPECT_THAT(Error(base + "steps:\n  - cast: {a: money}\n"), HasSubstr("unknown type 'money'"));
  EXPECT_THAT(Error(base + "steps:\n  - filter: x\n    derive: {}\n"),
              HasSubstr("exactly one step name"));
  EXPECT_THAT(Error(base + "steps:\n  - aggregate: {group_by: [a]}\n"),
              HasSubstr("needs 'values'"));
  EXPECT_THAT(Error(base + "steps:\n  - dedupe: {key: [a], max_memory_mb: 0}\n"),
              HasSubstr("dedupe max_memory_mb must be at least 1"));
  EXPECT_THAT(Error(base + "steps:\n  - aggregate: {values: {n: 'count(*)'}, max_memory_mb: x}\n"),
              HasSubstr("must be an integer"));
  EXPECT_THAT(Error(base + "steps:\n  - select: {max_memory_mb: 1}\n"), Not(HasSubstr("memory")));
  EXPECT_THAT(Error(base + "max_rejected: many\n"), HasSubstr("must be an integer"));
  EXPECT_THAT(Error(base + "max_rejected: -1\n"), HasSubstr(">= 0"));
  EXPECT_THAT(Error("name: 'a b'\nsource: {type: csv, path: x}\ntarget: {table: t}\n"),
              HasSubstr("name 'a b' must be"));
  EXPECT_THAT(Error("name: a\nsource: {type: csv, path: x}\ntarget: {table: ../t}\n"),
              HasSubstr("table name '../t'"));
  EXPECT_THAT(Error("name: a\nsource: {type: csv, path: x, header: false}\ntarget: {table: t}\n"),
              HasSubstr("without a header row needs 'columns'"));
  EXPECT_THAT(Error("name: a\nsource: {type: csv, path: x}\n"
                    "target: {table: t, mode: overwrite}\nincremental: {watermark: ts}\n"),
              HasSubstr("incremental loads need target mode append"));
  EXPECT_THAT(Error("name: [a\n"), HasSubstr("invalid YAML"));
  EXPECT_THAT(Error("- just\n- a list\n"), HasSubstr("must be a mapping"));
}

TEST(SpecTest, LoadSpecResolvesTheFolder) {
  StatusOr<PipelineSpec> missing = LoadSpec("/nonexistent/spec.yaml");
  EXPECT_THAT(missing.status().message(), HasSubstr("cannot read the spec file"));
}

TEST(SpecTest, Names) {
  EXPECT_TRUE(IsValidName("readings_2026-11"));
  EXPECT_FALSE(IsValidName(""));
  EXPECT_FALSE(IsValidName("_x"));
  EXPECT_FALSE(IsValidName("a/b"));
  EXPECT_FALSE(IsValidName(std::string(65, 'a')));
}

}  // namespace
}  // namespace edgeloop::pipeline
