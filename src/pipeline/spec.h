// The pipeline spec: a YAML file that says where rows come from, how they are typed and
// transformed, and which lake table they go to. docs/pipeline.md is the reference.
//
//   name: machine-readings
//   source: {type: csv, path: "data/*.csv", header: true}
//   schema: [{name: ts, type: timestamp}, {name: machine, type: string}, ...]
//   steps:
//     - filter: "temp IS NOT NULL AND temp < 500"
//     - derive: {temp_f: "temp * 9 / 5 + 32"}
//     - dedupe: {key: [machine, ts], keep: latest, order_by: ingested_at}
//   target: {table: readings, mode: append, partition: "day(ts)"}
//   incremental: {watermark: ts}
//   max_rejected: 100
//
// Parsing checks the shape of the file only (keys, value kinds, names); columns, types and
// expressions are checked when the pipeline is planned against the source's schema
// (runner.h). Unknown keys are errors that name the key and its line.
#ifndef EDGELOOP_PIPELINE_SPEC_H_
#define EDGELOOP_PIPELINE_SPEC_H_

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "lake/types.h"

namespace edgeloop::pipeline {

struct SourceSpec {
  enum class Kind { kCsv, kJsonLines, kHttp, kLake, kHub };
  Kind kind = Kind::kCsv;
  // kCsv, kJsonLines: a file, a folder (every regular file in it, by name) or a glob pattern;
  // relative paths are relative to the spec file's folder.
  std::string path;
  // kHttp: an http:// or https:// URL and the format of its body. kHub: the hub's base URL
  // (default $EDGELOOP_HUB_URL).
  std::string url;
  Kind format = Kind::kCsv;  // kCsv or kJsonLines
  int64_t timeout_ms = 60'000;
  // CSV options.
  bool header = true;
  char delimiter = ',';
  std::vector<std::string> columns;  // names when there is no header row
  // kLake: another table of the same lake, at a snapshot (latest when unset).
  std::string table;
  std::optional<int64_t> snapshot;
  // kHub: labelled events of `model` (and `site`, when set) from the hub's query API, read with
  // the token in `token_file` (default $EDGELOOP_HUB_TOKEN).
  std::string model;
  std::string site;
  std::string token_file;
};

struct StepSpec {
  enum class Kind { kSelect, kRename, kCast, kFilter, kDerive, kDedupe, kAggregate };
  Kind kind = Kind::kFilter;
  int line = 0;  // in the spec file, for messages
  // kSelect: the columns kept, in order.
  std::vector<std::string> columns;
  // kRename: {old, new}; kCast: {column, type name}; kDerive and kAggregate: {name,
  // expression}; in the file's order.
  std::vector<std::pair<std::string, std::string>> pairs;
  // kFilter.
  std::string expression;
  // kDedupe: key columns; kAggregate: group_by columns.
  std::vector<std::string> key;
  // kDedupe: "latest" (largest order_by, ties to the later row), "first" or "last" (input
  // order).
  std::string keep = "last";
  std::string order_by;
  // kDedupe and kAggregate (blocking steps): the memory the step may hold, in MiB; above it
  // the run fails with kResourceExhausted (max_memory_mb).
  int64_t max_memory_mb = 1024;
};

struct TargetSpec {
  std::string table;
  bool overwrite = false;      // mode: append (default) or overwrite
  std::string partition;       // "day(ts)", "month(ts)", "region" or "" (see lake::PartitionSpec)
  std::string rejected_table;  // default: <table>_rejected
};

struct PipelineSpec {
  std::string name;
  SourceSpec source;
  // Types of the source's columns, applied while reading (a value that does not parse rejects
  // the row). Without it CSV columns are strings and JSON values keep their JSON type.
  std::vector<std::pair<std::string, lake::Type>> schema;
  std::vector<StepSpec> steps;
  TargetSpec target;
  std::string watermark;  // incremental: {watermark: COLUMN}; empty for full loads
  std::optional<int64_t> max_rejected;
  std::filesystem::path base_dir;  // the spec file's folder
};

// Parses a spec from YAML text. `origin` names it in messages ("spec.yaml"). kInvalidArgument
// with "origin: line N: ..." for anything malformed.
StatusOr<PipelineSpec> ParseSpec(std::string_view yaml, const std::string& origin,
                                 const std::filesystem::path& base_dir);
// Reads and parses a spec file; its folder becomes base_dir.
StatusOr<PipelineSpec> LoadSpec(const std::filesystem::path& file);

// Table and pipeline names: 1-64 of [A-Za-z0-9_-], starting with a letter or digit.
bool IsValidName(std::string_view name);

}  // namespace edgeloop::pipeline

#endif  // EDGELOOP_PIPELINE_SPEC_H_
