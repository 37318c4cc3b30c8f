// Runs a pipeline: source -> steps -> one lake commit holding the new rows, the rejected rows
// and the new watermark.
//
// A run plans everything first (source schema, steps, the target's schema), so a bad spec
// fails before any row is read. Rows stream: the source parses batches on the calling thread
// and a writer thread encodes them into data files. Nothing is visible until the single commit
// at the end; a run that fails (or is killed) leaves the tables as they were, and its written
// files are orphans that `lake expire` removes.
//
// Incremental loads (`incremental: {watermark: COLUMN}`): only rows whose COLUMN is greater
// than the watermark committed by the last successful run are loaded; the new watermark (the
// largest value read) is committed with the rows, so it moves only when the commit succeeds.
// File sources also record each file's size and modification time, and skip unchanged files,
// so a re-run neither loads nor rejects anything twice.
#ifndef EDGELOOP_PIPELINE_RUNNER_H_
#define EDGELOOP_PIPELINE_RUNNER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "lake/lake.h"
#include "pipeline/source.h"
#include "pipeline/spec.h"

namespace edgeloop::pipeline {

struct RunProgress {
  int64_t bytes_read = 0;
  int64_t total_bytes = -1;  // unknown for HTTP and lake sources
  int64_t rows_read = 0;
  int64_t rows_rejected = 0;
  double seconds = 0;
};

struct RunOptions {
  const Clock* clock = Clock::Real();
  // Overrides the spec's max_rejected: the run fails, committing nothing, when more rows than
  // this are rejected.
  std::optional<int64_t> max_rejected;
  int64_t batch_rows = 65536;
  // Called from the running thread at most about every `progress_interval_ms`.
  std::function<void(const RunProgress&)> progress;
  int64_t progress_interval_ms = 500;
  // Plans and reads, but commits nothing.
  bool dry_run = false;
};

struct RunSummary {
  std::string run_id;
  std::string pipeline;
  std::string table;
  std::string rejected_table;
  int64_t rows_read = 0;      // rows the source produced (typed)
  int64_t rows_written = 0;   // rows committed to the table
  int64_t rows_rejected = 0;  // rows in the rejected-rows table from this run
  int64_t rows_filtered = 0;  // rows filter steps did not keep
  int64_t rows_deduplicated = 0;
  int64_t rows_skipped = 0;  // rows at or below the watermark (already loaded)
  int64_t bytes_read = 0;
  int64_t files_read = 0;
  int64_t files_skipped = 0;        // unchanged since the last run
  std::optional<int64_t> snapshot;  // the commit, when there was something to commit
  std::optional<std::string> watermark_before;
  std::optional<std::string> watermark_after;
  double seconds = 0;
  std::vector<Reject> first_rejects;  // up to 10, for the report
};

struct RunResult {
  enum class Stage { kPlan, kRun, kDone };
  Stage stage = Stage::kPlan;  // where it stopped
  Status status;               // OK when stage is kDone
  RunSummary summary;          // what happened up to the failure
};

// Runs `spec` against `lake`. Plan errors (kInvalidArgument: unknown columns, bad expressions,
// type errors, a target whose schema does not fit) come with stage kPlan; source, limit and
// commit failures with stage kRun.
RunResult RunPipeline(const PipelineSpec& spec, lake::Lake* lake, const RunOptions& options);

// The columns of the rejected-rows table.
lake::Schema RejectedRowsSchema();

}  // namespace edgeloop::pipeline

#endif  // EDGELOOP_PIPELINE_RUNNER_H_
