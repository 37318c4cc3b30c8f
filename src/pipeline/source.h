// Sources: where a pipeline's rows come from. Every source pushes typed batches (and the rows
// it could not read) into a SourceSink, so files, HTTP bodies and lake tables stream through
// the same steps without being held in memory. The hub source reads labelled events from a
// hub's query API (GET /api/v1/labelled, JSON Lines) through the HTTP reader.
#ifndef EDGELOOP_PIPELINE_SOURCE_H_
#define EDGELOOP_PIPELINE_SOURCE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "lake/batch.h"
#include "lake/lake.h"
#include "pipeline/spec.h"

namespace edgeloop::pipeline {

// Rows on their way through a pipeline, with where each came from.
struct Chunk {
  lake::Batch batch;
  std::string origin;          // the file path, URL or "lake:TABLE@SNAPSHOT" of every row
  std::vector<int64_t> lines;  // per row: its line in the file (row number for lake tables)
};

// A row that was not loaded, and why. `raw` is the row's text as it appeared in the source
// (for rows rejected by a step: the row's values at that step, as CSV).
struct Reject {
  std::string origin;
  int64_t line = 0;
  std::string raw;
  std::string reason;
};

// Receives what a source reads. A non-OK status from Rows or Rejected stops the source, and
// Run returns it.
class SourceSink {
 public:
  virtual ~SourceSink() = default;
  virtual Status Rows(Chunk chunk) = 0;
  virtual Status Rejected(Reject reject) = 0;
  // Called now and then with the bytes read so far.
  virtual void Progress(int64_t /*bytes_read*/) {}
};

// A file's identity for incremental loads: a file whose size and modification time are
// unchanged since it was loaded is not read again.
struct FileState {
  int64_t size = 0;
  int64_t mtime_ns = 0;
  friend bool operator==(const FileState&, const FileState&) = default;
};

struct SourceOptions {
  int64_t batch_rows = 65536;
  lake::Lake* lake = nullptr;  // required by lake sources; not owned
  // Files to skip when unchanged (path as listed by the source -> state when loaded).
  std::map<std::string, FileState> skip_files;
  // The committed watermark of an incremental run (as the lake stores it); a hub source whose
  // watermark column is `labelled_at` asks the hub only for labels after it.
  std::optional<std::string> watermark;
};

// Reads one source once. Not thread-safe.
class Source {
 public:
  virtual ~Source() = default;
  // The schema of every batch Run produces (known before reading any row).
  virtual const std::shared_ptr<const lake::Schema>& schema() const = 0;
  // Bytes Run will read, when known (files); -1 otherwise.
  virtual int64_t total_bytes() const = 0;
  // Reads everything, pushing batches of up to batch_rows rows. Malformed input that cannot be
  // resynchronised (a CSV quote that never closes, invalid UTF-8 in JSON) fails the run with
  // kInvalidArgument naming the file and line; a row with the wrong number of fields or a
  // value that does not parse as its column's type is a Reject.
  virtual Status Run(SourceSink* sink) = 0;
  // Files Run read to the end, with their state when opened.
  virtual std::map<std::string, FileState> files_read() const { return {}; }
  // Files that were skipped as unchanged.
  virtual int64_t files_skipped() const { return 0; }
};

// Creates the source `spec.source` describes, applying `spec.schema`. Fails with
// kInvalidArgument for a bad configuration (a lake source with a schema, a schema naming a
// column twice), kNotFound for a missing file or table.
StatusOr<std::unique_ptr<Source>> OpenSource(const PipelineSpec& spec,
                                             const SourceOptions& options);

// The files a csv/jsonl `path` names (a file, a folder's regular files, or a glob), sorted.
// Relative paths are resolved against `base_dir`.
StatusOr<std::vector<std::string>> ListSourceFiles(const std::string& path,
                                                   const std::filesystem::path& base_dir);

}  // namespace edgeloop::pipeline

#endif  // EDGELOOP_PIPELINE_SOURCE_H_
