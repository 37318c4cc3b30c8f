// Data files: immutable files of rows of one schema, behind an interface so that a columnar
// format can be added beside the first one.
//
// The first format, "csv.zst": RFC 4180 CSV (comma, CRLF-free "\n" rows, fields quoted when they
// hold a comma, quote, CR or LF) with a header row of field names, compressed with zstd. A null is
// an empty unquoted field; an empty string is "". Values use the text forms of types.h. Every
// tool reads it: `zstdcat f.csv.zst | head`.
#ifndef EDGELOOP_LAKE_DATA_FILE_H_
#define EDGELOOP_LAKE_DATA_FILE_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "lake/batch.h"
#include "lake/types.h"

namespace edgeloop::lake {

// Per-column statistics of one file. min/max in the text form of the type (strings compare
// bytewise); unset when the column has only nulls.
struct ColumnStats {
  int32_t field_id = 0;
  int64_t null_count = 0;
  std::optional<std::string> min;
  std::optional<std::string> max;
};

struct FileStats {
  int64_t rows = 0;
  int64_t bytes = 0;   // on disk
  std::string sha256;  // of the file's bytes, "sha256:<hex>"
  std::vector<ColumnStats> columns;
};

// Writes one data file. Not thread-safe. The file appears complete or not at all: it is written
// under a temporary name, fsynced and renamed by Finish().
class DataFileWriter {
 public:
  virtual ~DataFileWriter() = default;
  virtual Status Write(const Batch& batch) = 0;
  // Bytes written so far (compressed, plus an estimate for text not yet compressed), to decide
  // when to roll to a new file.
  virtual int64_t bytes_written() const = 0;
  // Memory the writer holds (text buffer, compression contexts and their buffers). Bounded by a
  // constant, whatever the number and size of the batches written (see data_file.cc).
  virtual int64_t memory_bytes() const = 0;
  virtual StatusOr<FileStats> Finish() = 0;
};

// Reads one data file back in batches. Not thread-safe.
class DataFileReader {
 public:
  virtual ~DataFileReader() = default;
  // Fills `batch` (cleared first) with up to `max_rows` rows; false at the end of the file.
  virtual StatusOr<bool> Next(Batch* batch, int64_t max_rows) = 0;
};

struct DataFormat {
  std::string name;       // "csv.zst"
  std::string extension;  // ".csv.zst"
};

const DataFormat& DefaultDataFormat();

// `schema` is the file's schema (the table schema when written). `compression_level`: zstd level.
StatusOr<std::unique_ptr<DataFileWriter>> OpenDataFileWriter(const std::filesystem::path& path,
                                                             std::shared_ptr<const Schema> schema,
                                                             int compression_level = 3);
// Reads a file written with `file_schema` and returns batches of `read_schema`: fields are
// matched by id (renames are safe), fields missing from the file read as null, and widened
// types are converted. kDataLoss for a corrupt or truncated file.
// `threads` > 1 parses on that many threads besides one that decompresses (rows still come in
// file order, in batches of up to the first Next call's `max_rows`); 1 reads on the caller's
// thread.
StatusOr<std::unique_ptr<DataFileReader>> OpenDataFileReader(
    const std::filesystem::path& path, std::shared_ptr<const Schema> file_schema,
    std::shared_ptr<const Schema> read_schema, int threads = 1);

}  // namespace edgeloop::lake

#endif  // EDGELOOP_LAKE_DATA_FILE_H_
