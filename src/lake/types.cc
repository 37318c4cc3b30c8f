#include "lake/types.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <set>

#include "lake/value_text.h"

namespace edgeloop::lake {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Parses exactly `n` digits at `text[*pos]`.
bool Digits(std::string_view text, size_t* pos, int n, int* value) {
  if (*pos + n > text.size()) return false;
  int v = 0;
  for (int i = 0; i < n; ++i) {
    const char c = text[*pos + i];
    if (!IsDigit(c)) return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *value = v;
  return true;
}

unsigned DaysInMonth(int64_t year, unsigned month) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month == 2) {
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return leap ? 29 : 28;
  }
  return kDays[month - 1];
}

// "YYYY-MM-DD" at the start of `text`; advances `pos`.
std::optional<int64_t> ParseDatePart(std::string_view text, size_t* pos) {
  int y = 0, m = 0, d = 0;
  if (!Digits(text, pos, 4, &y)) return std::nullopt;
  if (*pos >= text.size() || text[*pos] != '-') return std::nullopt;
  ++*pos;
  if (!Digits(text, pos, 2, &m)) return std::nullopt;
  if (*pos >= text.size() || text[*pos] != '-') return std::nullopt;
  ++*pos;
  if (!Digits(text, pos, 2, &d)) return std::nullopt;
  if (m < 1 || m > 12 || d < 1 || static_cast<unsigned>(d) > DaysInMonth(y, m)) {
    return std::nullopt;
  }
  return DaysFromCivil(y, static_cast<unsigned>(m), static_cast<unsigned>(d));
}

}  // namespace

std::string_view TypeName(Type type) {
  switch (type) {
    case Type::kBool:
      return "bool";
    case Type::kInt64:
      return "int64";
    case Type::kDouble:
      return "double";
    case Type::kString:
      return "string";
    case Type::kTimestamp:
      return "timestamp";
    case Type::kDate:
      return "date";
  }
  return "unknown";
}

StatusOr<Type> ParseType(std::string_view name) {
  const std::string n = Lower(name);
  if (n == "bool" || n == "boolean") return Type::kBool;
  if (n == "int64" || n == "int" || n == "integer" || n == "bigint" || n == "long") {
    return Type::kInt64;
  }
  if (n == "double" || n == "float" || n == "real" || n == "float64") return Type::kDouble;
  if (n == "string" || n == "text" || n == "varchar" || n == "str") return Type::kString;
  if (n == "timestamp" || n == "datetime") return Type::kTimestamp;
  if (n == "date") return Type::kDate;
  return InvalidArgumentError("unknown type '" + std::string(name) +
                              "' (expected bool, int64, double, string, timestamp or date)");
}

bool CanWiden(Type from, Type to) {
  if (from == to) return false;
  if (to == Type::kString) return true;
  if (from == Type::kInt64 && to == Type::kDouble) return true;
  if (from == Type::kDate && to == Type::kTimestamp) return true;
  return false;
}

int Schema::IndexOf(std::string_view name) const {
  for (size_t i = 0; i < fields.size(); ++i) {
    if (fields[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

const Field* Schema::Find(std::string_view name) const {
  const int i = IndexOf(name);
  return i < 0 ? nullptr : &fields[i];
}

int32_t Schema::next_field_id() const {
  int32_t max_id = 0;
  for (const Field& f : fields) max_id = std::max(max_id, f.id);
  return max_id + 1;
}

Status ValidateSchema(const Schema& schema) {
  if (schema.fields.empty()) return InvalidArgumentError("a schema needs at least one column");
  std::set<std::string_view> names;
  std::set<int32_t> ids;
  for (const Field& f : schema.fields) {
    if (f.name.empty() || f.name.size() > 128) {
      return InvalidArgumentError("column name '" + f.name + "' must be 1-128 characters");
    }
    for (char c : f.name) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return InvalidArgumentError("column name '" + f.name + "' holds a control character");
      }
    }
    if (!names.insert(f.name).second) {
      return InvalidArgumentError("duplicate column name '" + f.name + "'");
    }
    if (f.id < 0) return InvalidArgumentError("column '" + f.name + "' has a negative field id");
    if (f.id > 0 && !ids.insert(f.id).second) {
      return InvalidArgumentError("duplicate field id " + std::to_string(f.id));
    }
  }
  return Status::Ok();
}

std::string FormatTimestamp(int64_t micros) {
  char buf[kMaxTimestampText];
  if (micros < kMinTimestamp || micros > kMaxTimestamp) return std::to_string(micros);
  return std::string(buf, WriteTimestamp(buf, micros));
}

std::string FormatDate(int32_t days) {
  char buf[kMaxDateText];
  if (days < kMinDate || days > kMaxDate) return std::to_string(days);
  return std::string(buf, WriteDate(buf, days));
}

std::optional<int32_t> ParseDate(std::string_view text) {
  size_t pos = 0;
  const auto days = ParseDatePart(text, &pos);
  if (!days || pos != text.size()) return std::nullopt;
  return static_cast<int32_t>(*days);
}

std::optional<int64_t> ParseTimestamp(std::string_view text) {
  size_t pos = 0;
  const auto days = ParseDatePart(text, &pos);
  if (!days) return std::nullopt;
  int64_t micros = *days * kMicrosPerDay;
  if (pos == text.size()) return micros;
  const char sep = text[pos];
  if (sep != 'T' && sep != 't' && sep != ' ') return std::nullopt;
  ++pos;
  int h = 0, mi = 0, s = 0;
  if (!Digits(text, &pos, 2, &h)) return std::nullopt;
  if (pos >= text.size() || text[pos] != ':') return std::nullopt;
  ++pos;
  if (!Digits(text, &pos, 2, &mi)) return std::nullopt;
  if (pos < text.size() && text[pos] == ':') {
    ++pos;
    if (!Digits(text, &pos, 2, &s)) return std::nullopt;
    if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
      ++pos;
      int64_t frac = 0;
      int digits = 0;
      while (pos < text.size() && IsDigit(text[pos])) {
        if (digits < 6) frac = frac * 10 + (text[pos] - '0');
        ++digits;
        ++pos;
      }
      // Up to microseconds; nanosecond digits (pandas writes them) are truncated.
      if (digits == 0 || digits > 9) return std::nullopt;
      for (int i = std::min(digits, 6); i < 6; ++i) frac *= 10;
      micros += frac;
    }
  }
  if (h > 23 || mi > 59 || s > 60) return std::nullopt;
  micros += (static_cast<int64_t>(h) * 3600 + mi * 60 + s) * kMicrosPerSecond;
  if (pos < text.size()) {
    const char z = text[pos];
    if (z == 'Z' || z == 'z') {
      ++pos;
    } else if (z == '+' || z == '-') {
      ++pos;
      int oh = 0, om = 0;
      if (!Digits(text, &pos, 2, &oh)) return std::nullopt;
      if (pos < text.size() && text[pos] == ':') ++pos;
      if (pos < text.size() && !Digits(text, &pos, 2, &om)) return std::nullopt;
      if (oh > 23 || om > 59) return std::nullopt;
      const int64_t offset = (static_cast<int64_t>(oh) * 3600 + om * 60) * kMicrosPerSecond;
      micros += z == '+' ? -offset : offset;
    } else {
      return std::nullopt;
    }
  }
  if (pos != text.size()) return std::nullopt;
  if (micros < kMinTimestamp || micros > kMaxTimestamp) return std::nullopt;
  return micros;
}

// value_text.h

char* WriteInt(char* out, int64_t value) {
  return std::to_chars(out, out + kMaxNumberText, value).ptr;
}

char* WriteDouble(char* out, double value) {
  return std::to_chars(out, out + kMaxNumberText, value).ptr;
}

namespace {
inline char* Put2(char* out, unsigned v) {
  out[0] = static_cast<char>('0' + v / 10);
  out[1] = static_cast<char>('0' + v % 10);
  return out + 2;
}
}  // namespace

char* WriteDate(char* out, int64_t days) {
  const CivilDate c = CivilFromDays(days);
  const auto y = static_cast<unsigned>(c.year);
  out = Put2(out, y / 100);
  out = Put2(out, y % 100);
  *out++ = '-';
  out = Put2(out, c.month);
  *out++ = '-';
  return Put2(out, c.day);
}

char* WriteTimestamp(char* out, int64_t micros) {
  const int64_t days = FloorDiv(micros, kMicrosPerDay);
  int64_t rest = micros - days * kMicrosPerDay;
  out = WriteDate(out, days);
  const auto secs = static_cast<unsigned>(rest / kMicrosPerSecond);
  const auto frac = static_cast<unsigned>(rest % kMicrosPerSecond);
  *out++ = 'T';
  out = Put2(out, secs / 3600);
  *out++ = ':';
  out = Put2(out, secs / 60 % 60);
  *out++ = ':';
  out = Put2(out, secs % 60);
  if (frac != 0) {
    *out++ = '.';
    unsigned f = frac;
    for (int i = 5; i >= 0; --i) {
      out[i] = static_cast<char>('0' + f % 10);
      f /= 10;
    }
    out += 6;
  }
  *out++ = 'Z';
  return out;
}

std::optional<int64_t> ParseInt64(std::string_view text) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (begin != end && *begin == '+') ++begin;
  if (begin == end) return std::nullopt;
  int64_t value = 0;
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

std::optional<double> ParseDouble(std::string_view text) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (begin != end && *begin == '+') ++begin;
  if (begin == end) return std::nullopt;
  double value = 0;
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

std::optional<bool> ParseBool(std::string_view text) {
  if (text.size() > 5) return std::nullopt;
  char buf[5];
  for (size_t i = 0; i < text.size(); ++i) {
    buf[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
  }
  const std::string_view t(buf, text.size());
  if (t == "true" || t == "t" || t == "1" || t == "yes" || t == "y") return true;
  if (t == "false" || t == "f" || t == "0" || t == "no" || t == "n") return false;
  return std::nullopt;
}

}  // namespace edgeloop::lake
