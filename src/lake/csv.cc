#include "lake/csv.h"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace edgeloop::lake {
namespace {

// The first `delim` or '\n' in [p, end), or end. Unquoted fields are short and plentiful, so
// this compares 16 bytes at a time.
inline const char* FindDelimOrNewline(const char* p, const char* end, char delim) {
#if defined(__SSE2__)
  const __m128i d = _mm_set1_epi8(delim);
  const __m128i n = _mm_set1_epi8('\n');
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const int mask = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, d), _mm_cmpeq_epi8(v, n)));
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  while (p < end && *p != delim && *p != '\n') ++p;
  return p;
}

int64_t CountNewlines(const char* p, const char* end) {
  int64_t n = 0;
  while ((p = static_cast<const char*>(std::memchr(p, '\n', end - p))) != nullptr) {
    ++n;
    ++p;
  }
  return n;
}

Status LineError(int64_t line, const std::string& what) {
  return InvalidArgumentError("CSV line " + std::to_string(line) + ": " + what);
}

}  // namespace

CsvRecordParser::Result CsvRecordParser::Parse(std::string_view data, bool at_eof, int64_t line,
                                               CsvRecord* record, size_t* consumed,
                                               int64_t* newlines, Status* error) {
  const char* const begin = data.data();
  const char* const end = begin + data.size();
  const char delim = options_.delimiter;
  const char quote = options_.quote;
  auto need_more = [&]() {
    if (static_cast<int64_t>(data.size()) > options_.max_record_bytes) {
      *error =
          LineError(line, "record is longer than " + std::to_string(options_.max_record_bytes) +
                              " bytes (a quote that is never closed?)");
      return Result::kError;
    }
    return Result::kNeedMore;
  };
  // A malformed record (recover_malformed): its first physical line, as documented in csv.h.
  auto malformed = [&](std::string reason) {
    const auto* nl = static_cast<const char*>(std::memchr(begin, '\n', data.size()));
    if (nl == nullptr && !at_eof) return need_more();
    const char* line_end = nl == nullptr ? end : nl;
    record->fields.clear();
    record->quoted.clear();
    record->error = std::move(reason);
    record->raw = std::string_view(
        begin, (line_end > begin && line_end[-1] == '\r' ? line_end - 1 : line_end) - begin);
    *consumed = nl == nullptr ? data.size() : static_cast<size_t>(nl + 1 - begin);
    *newlines = nl == nullptr ? 0 : 1;
    return Result::kRecord;
  };
  if (data.empty()) return Result::kNeedMore;
  record->fields.clear();
  record->quoted.clear();
  record->error.clear();
  record->line = line;
  scratch_.clear();
  fixups_.clear();
  int64_t lines = 0;
  const char* p = begin;
  const char* record_end = nullptr;  // end of the record's bytes, before the line end
  const char* next = nullptr;        // first byte after the line end
  while (next == nullptr) {
    if (p < end && *p == quote) {
      const char* q = p + 1;
      const char* field_start = q;
      bool escaped = false;
      size_t scratch_start = 0;
      while (true) {
        const auto* r = static_cast<const char*>(std::memchr(q, quote, end - q));
        if (r == nullptr) {
          if (options_.recover_malformed) {
            if (at_eof) {
              return malformed("quoted field " + std::to_string(record->fields.size() + 1) +
                               " is never closed (the input ends inside it)");
            }
            if (static_cast<int64_t>(data.size()) > options_.max_record_bytes) {
              return malformed("quoted field " + std::to_string(record->fields.size() + 1) +
                               " is not closed within " +
                               std::to_string(options_.max_record_bytes) + " bytes");
            }
          }
          if (!at_eof) return need_more();
          *error = LineError(line + lines, "the input ends inside a quoted field");
          return Result::kError;
        }
        lines += CountNewlines(q, r);
        if (r + 1 == end && !at_eof) return need_more();
        if (r + 1 < end && r[1] == quote) {
          if (!escaped) {
            escaped = true;
            scratch_start = scratch_.size();
          }
          scratch_.append(q, r + 1 - q);
          q = r + 2;
          continue;
        }
        if (escaped) {
          scratch_.append(q, r - q);
          fixups_.push_back(
              {record->fields.size(), scratch_start, scratch_.size() - scratch_start});
          record->fields.emplace_back();
        } else {
          record->fields.emplace_back(field_start, r - field_start);
        }
        record->quoted.push_back(1);
        p = r + 1;
        break;
      }
      if (p == end) {
        if (!at_eof) return need_more();
        record_end = next = end;
      } else if (*p == delim) {
        ++p;
      } else if (*p == '\n') {
        record_end = p;
        next = p + 1;
        ++lines;
      } else if (*p == '\r' && (p + 1 == end || p[1] == '\n')) {
        if (p + 1 == end && !at_eof) return need_more();
        record_end = p;
        next = p + 1 == end ? end : p + 2;
        if (p + 1 < end) ++lines;
      } else {
        const std::string what =
            "text after the closing quote of field " + std::to_string(record->fields.size());
        if (options_.recover_malformed) return malformed(what);
        *error = LineError(line + lines, what);
        return Result::kError;
      }
    } else {
      const char* s = FindDelimOrNewline(p, end, delim);
      if (s == end) {
        if (!at_eof) return need_more();
        const char* field_end = (s > p && s[-1] == '\r') ? s - 1 : s;
        record->fields.emplace_back(p, field_end - p);
        record->quoted.push_back(0);
        record_end = field_end;
        next = end;
      } else if (*s == delim) {
        record->fields.emplace_back(p, s - p);
        record->quoted.push_back(0);
        p = s + 1;
      } else {
        const char* field_end = (s > p && s[-1] == '\r') ? s - 1 : s;
        record->fields.emplace_back(p, field_end - p);
        record->quoted.push_back(0);
        record_end = field_end;
        next = s + 1;
        ++lines;
      }
    }
  }
  if (next - begin > options_.max_record_bytes) {
    *error = LineError(
        line, "record is longer than " + std::to_string(options_.max_record_bytes) + " bytes");
    return Result::kError;
  }
  for (const Fixup& f : fixups_) {
    record->fields[f.field] = std::string_view(scratch_).substr(f.offset, f.size);
  }
  record->raw = std::string_view(begin, record_end - begin);
  *consumed = static_cast<size_t>(next - begin);
  *newlines = lines;
  return Result::kRecord;
}

CsvTokenizer::CsvTokenizer(CsvOptions options) : options_(options), parser_(options) {}

// Parses records from `data` until it runs out; `consumed` is what was used.
Status CsvTokenizer::Deliver(std::string_view data, size_t* consumed, bool at_eof,
                             const RecordFn& on_record, bool* need_more) {
  *consumed = 0;
  *need_more = false;
  while (*consumed < data.size()) {
    size_t used = 0;
    int64_t newlines = 0;
    Status error;
    switch (
        parser_.Parse(data.substr(*consumed), at_eof, line_, &record_, &used, &newlines, &error)) {
      case CsvRecordParser::Result::kError:
        return error;
      case CsvRecordParser::Result::kNeedMore:
        *need_more = true;
        return Status::Ok();
      case CsvRecordParser::Result::kRecord:
        break;
    }
    *consumed += used;
    line_ += newlines;
    ++records_;
    RETURN_IF_ERROR(on_record(record_));
  }
  return Status::Ok();
}

Status CsvTokenizer::Feed(std::string_view chunk, const RecordFn& on_record) {
  bytes_ += static_cast<int64_t>(chunk.size());
  size_t used = 0;
  bool need_more = false;
  if (!pending_.empty()) {
    // Complete the carried record with growing slices of the chunk (doubling keeps the re-parse
    // cost linear), then go on in the chunk itself without copying. A malformed record may
    // consume only the first line of what is carried, so records are parsed from `pos` until
    // what is left lies within the chunk.
    size_t taken = 0;
    size_t take = std::max<size_t>(4096, pending_.size());
    size_t pos = 0;
    bool append = true;
    while (true) {
      if (append) {
        if (taken == chunk.size()) {
          pending_.erase(0, pos);
          return Status::Ok();
        }
        take = std::min(take, chunk.size() - taken);
        pending_.append(chunk.substr(taken, take));
        taken += take;
      }
      size_t consumed = 0;
      int64_t newlines = 0;
      Status error;
      const auto result = parser_.Parse(std::string_view(pending_).substr(pos), false, line_,
                                        &record_, &consumed, &newlines, &error);
      if (result == CsvRecordParser::Result::kError) return error;
      if (result == CsvRecordParser::Result::kNeedMore) {
        take = pending_.size() - pos;
        append = true;
        continue;
      }
      line_ += newlines;
      ++records_;
      RETURN_IF_ERROR(on_record(record_));
      pos += consumed;
      const size_t rest = pending_.size() - pos;  // bytes after the record
      if (rest <= taken) {                        // all of them from this chunk
        chunk = chunk.substr(taken - rest);
        pending_.clear();
        break;
      }
      append = false;
    }
  }
  RETURN_IF_ERROR(Deliver(chunk, &used, false, on_record, &need_more));
  if (need_more) pending_.assign(chunk.substr(used));
  return Status::Ok();
}

Status CsvTokenizer::Finish(const RecordFn& on_record) {
  if (pending_.empty()) return Status::Ok();
  std::string data = std::move(pending_);
  pending_.clear();
  size_t used = 0;
  bool need_more = false;
  return Deliver(data, &used, true, on_record, &need_more);
}

void AppendCsvField(std::string* out, std::string_view value, bool quote_empty, char delimiter) {
  bool needs_quotes = value.empty() ? quote_empty : (value.front() == ' ' || value.back() == ' ');
  if (!needs_quotes) {
    for (char c : value) {
      if (c == delimiter || c == '"' || c == '\n' || c == '\r') {
        needs_quotes = true;
        break;
      }
    }
  }
  if (!needs_quotes) {
    out->append(value);
    return;
  }
  out->push_back('"');
  size_t start = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '"') {
      out->append(value.substr(start, i + 1 - start));
      out->push_back('"');
      start = i + 1;
    }
  }
  out->append(value.substr(start));
  out->push_back('"');
}

}  // namespace edgeloop::lake
