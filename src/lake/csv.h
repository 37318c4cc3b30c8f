// Streaming RFC 4180 CSV: a tokenizer that takes bytes in any chunking and hands out records,
// and field writing with minimal quoting. Used by the lake's data files and by pipeline sources.
#ifndef EDGELOOP_LAKE_CSV_H_
#define EDGELOOP_LAKE_CSV_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace edgeloop::lake {

struct CsvOptions {
  char delimiter = ',';
  char quote = '"';
  // Records longer than this are an error (a missing closing quote would otherwise swallow the
  // rest of the file into memory).
  int64_t max_record_bytes = 64 << 20;
  // What a malformed record is: false (the lake's own data files): an error that stops the
  // input. true (pipeline sources): a record with `error` set, after which parsing goes on at
  // the next line (the resynchronisation rule below).
  bool recover_malformed = false;
};

// One record. Views are valid only during the callback.
//
// Malformed records (only with CsvOptions::recover_malformed): a record is malformed when text
// follows the closing quote of a field (`"abc"x,1`), or when a quoted field is not closed before
// the input ends or within max_record_bytes. Such a record has `error` set (why, e.g. "text
// after the closing quote of field 2"), no fields, and `raw` is the record's first physical line
// (from its start to the first line end, which is consumed). Parsing resumes at the next line,
// so an unbalanced quote costs the one line that holds it and the lines after it are read as
// records again. (A stray quote inside an unquoted field, `ab"c`, is not malformed: it is kept
// literally.)
struct CsvRecord {
  std::vector<std::string_view> fields;  // unescaped ("" inside quotes becomes ")
  std::vector<uint8_t> quoted;           // 1 when the field was quoted
  int64_t line = 0;                      // 1-based line where the record starts
  std::string_view raw;                  // the record's bytes as they appeared (no newline)
  std::string error;                     // non-empty: the record is malformed (see above)
};

// The record parser underneath CsvTokenizer, for callers that pull records from a buffer they
// own (the data-file reader). Not thread-safe; views in the record stay valid until the next
// Parse call or until `data` changes.
class CsvRecordParser {
 public:
  enum class Result { kRecord, kNeedMore, kError };

  explicit CsvRecordParser(CsvOptions options = {}) : options_(options) {}

  // Parses the record at the start of `data`. kRecord: fills `record` (line = `line`), and sets
  // `consumed` (bytes including the line end) and `newlines` (line ends consumed). kNeedMore:
  // `data` holds no complete record and `at_eof` is false (also when `data` is empty).
  // kError: `error` says why, naming the line. With recover_malformed, a malformed record is
  // kRecord with `record->error` set (see CsvRecord) instead of kError.
  Result Parse(std::string_view data, bool at_eof, int64_t line, CsvRecord* record,
               size_t* consumed, int64_t* newlines, Status* error);

  const CsvOptions& options() const { return options_; }

 private:
  CsvOptions options_;
  std::string scratch_;  // unescaped fields ("" -> ")
  struct Fixup {
    size_t field;
    size_t offset;
    size_t size;
  };
  std::vector<Fixup> fixups_;
};

// Not thread-safe. Accepts "\n" and "\r\n" line ends, quoted fields with delimiters, quotes ("")
// and newlines inside, and a final record without a newline. A quote inside an unquoted field is
// kept literally; text after a closing quote, or a file ending inside quotes, is an error naming
// the line (kInvalidArgument), or with recover_malformed a malformed record (see CsvRecord).
class CsvTokenizer {
 public:
  using RecordFn = std::function<Status(const CsvRecord&)>;

  explicit CsvTokenizer(CsvOptions options = {});

  // Tokenizes `chunk` and calls `on_record` for every record completed by it; a non-OK status
  // from the callback stops and is returned.
  Status Feed(std::string_view chunk, const RecordFn& on_record);
  // Flushes the last record (if the input did not end with a newline).
  Status Finish(const RecordFn& on_record);

  int64_t records() const { return records_; }
  int64_t bytes() const { return bytes_; }

 private:
  CsvOptions options_;
  std::string pending_;  // bytes of an incomplete record carried to the next Feed
  int64_t line_ = 1;
  int64_t records_ = 0;
  int64_t bytes_ = 0;
  CsvRecord record_;
  CsvRecordParser parser_;
  Status Deliver(std::string_view data, size_t* consumed, bool at_eof, const RecordFn& on_record,
                 bool* need_more);
};

// Appends `value` as one CSV field: quoted when it is empty and `quote_empty`, or holds the
// delimiter, a quote, CR or LF, or starts or ends with a space.
void AppendCsvField(std::string* out, std::string_view value, bool quote_empty = false,
                    char delimiter = ',');

}  // namespace edgeloop::lake

#endif  // EDGELOOP_LAKE_CSV_H_
