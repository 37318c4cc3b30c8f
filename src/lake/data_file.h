// Data files: immutable files of rows of one schema, behind an interface so that formats can sit
// side by side. A file's format follows from its name's extension; a table may hold both.
//
// "csv.zst" (the first format, and the one for tables with string columns): RFC 4180 CSV (comma,
// CRLF-free "\n" rows, fields quoted when they hold a comma, quote, CR or LF) with a header row
// of field names, compressed with zstd. A null is an empty unquoted field; an empty string is "".
// Values use the text forms of types.h. Every tool reads it: `zstdcat f.csv.zst | head`.
//
// "col.zst" (columnar, for tables without string columns: numbers, bools, times, dates): the
// 8-byte magic "ELCOL01\n", then row groups (up to 65,536 rows and 4 MiB of values each); a
// row group is, per column in schema order, one zstd frame of its values as little-endian 8-byte
// integers (bool 0/1, int64, timestamp in microseconds, date in days) or IEEE doubles, byte-stream
// split (byte b of value i at b * rows + i), followed, only when the column has nulls there, by a
// zstd frame of one validity byte per row (1 = present). Then the footer, a zstd frame of JSON:
// {"version": 1, "rows": N, "fields": [{"id", "name", "type"}...], "groups": [{"rows": n, "chunks":
// [[offset, values_bytes, nulls, valid_bytes]...]}...]}; then the footer frame's size (u64,
// little-endian) and the magic again. Every frame carries zstd's checksum. Reading is decompressing
// into the columns, no parsing: a 1M x 21 numeric table reads in 0.24 s instead of 1.0 s from
// csv.zst (two threads, bench/train). docs/lake.md has the details.
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

// csv.zst: the format of tables with string columns (and of every file before col.zst).
const DataFormat& DefaultDataFormat();
// col.zst.
const DataFormat& ColumnarDataFormat();
// The format new files of a table with `schema` are written in: col.zst when no field is a
// string, csv.zst otherwise.
const DataFormat& DataFormatFor(const Schema& schema);

// `schema` is the file's schema (the table schema when written). `compression_level`: zstd level.
// The format follows `path`'s extension (".col.zst": columnar, which refuses a schema with a
// string field with kInvalidArgument; anything else: csv.zst).
StatusOr<std::unique_ptr<DataFileWriter>> OpenDataFileWriter(const std::filesystem::path& path,
                                                             std::shared_ptr<const Schema> schema,
                                                             int compression_level = 3);
// Reads a file written with `file_schema` and returns batches of `read_schema`: fields are
// matched by id (renames are safe), fields missing from the file read as null, and widened
// types are converted. kDataLoss for a corrupt or truncated file.
// csv.zst: `threads` > 1 parses on that many threads besides one that decompresses (rows still
// come in file order, in batches of up to the first Next call's `max_rows`); 1 reads on the
// caller's thread. col.zst: `threads` > 1 decodes row groups ahead on one thread.
StatusOr<std::unique_ptr<DataFileReader>> OpenDataFileReader(
    const std::filesystem::path& path, std::shared_ptr<const Schema> file_schema,
    std::shared_ptr<const Schema> read_schema, int threads = 1);

}  // namespace edgeloop::lake

#endif  // EDGELOOP_LAKE_DATA_FILE_H_
