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
};

// One record. Views are valid only during the callback.
struct CsvRecord {
  std::vector<std::string_view> fields;  // unescaped ("" inside quotes becomes ")
  std::vector<uint8_t> quoted;           // 1 when the field was quoted
  int64_t line = 0;                      // 1-based line where the record starts
  std::string_view raw;                  // the record's bytes as they appeared (no newline)
};

// Not thread-safe. Accepts "\n" and "\r\n" line ends, quoted fields with delimiters, quotes ("")
// and newlines inside, and a final record without a newline. A quote inside an unquoted field is
// kept literally; text after a closing quote, or a file ending inside quotes, is an error naming
// the line (kInvalidArgument).
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
  std::vector<std::string> unescaped_;  // storage for fields that needed unescaping
};

// Appends `value` as one CSV field: quoted when it is empty and `quote_empty`, or holds the
// delimiter, a quote, CR or LF, or starts or ends with a space.
void AppendCsvField(std::string* out, std::string_view value, bool quote_empty = false,
                    char delimiter = ',');

}  // namespace edgeloop::lake

#endif  // EDGELOOP_LAKE_CSV_H_
