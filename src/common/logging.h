// Structured logging on top of spdlog.
//
//   log::Info("model loaded", {{"model", name}, {"version", 3}, {"ms", 12.5}});
//
// prints, in text format (the default):
//   2026-11-27T04:50:00.123Z info  model loaded model=fraud version=3 ms=12.5
// and in JSON format (one object per line, for log shippers):
//   {"ts":"2026-11-27T04:50:00.123Z","level":"info","msg":"model loaded","model":"fraud",...}
//
// Logs go to stderr. All functions are thread-safe. Values that are secrets must never be
// passed as fields; wrap anything that might hold one in log::Redacted.
#ifndef EDGELOOP_COMMON_LOGGING_H_
#define EDGELOOP_COMMON_LOGGING_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

#include "common/status.h"

namespace edgeloop::log {

enum class Format { kText, kJson };
enum class Level { kTrace, kDebug, kInfo, kWarn, kError };

// Parses "text"/"json" and "trace"/"debug"/"info"/"warn"/"error".
StatusOr<Format> ParseFormat(std::string_view text);
StatusOr<Level> ParseLevel(std::string_view text);

// Configures the process-wide logger. May be called again (tests do); not concurrently with
// logging calls that race on the format change (they see the old or the new format).
void Init(Format format, Level level);

// Marks a value that must not appear in logs; it renders as "<redacted>".
struct Redacted {
  std::string_view value;
};

// One key=value pair of a log line. Holds a rendered copy of the value.
class Field {
 public:
  Field(std::string_view key, std::string_view value) : key_(key), text_(value), quoted_(true) {}
  Field(std::string_view key, const std::string& value) : Field(key, std::string_view(value)) {}
  Field(std::string_view key, const char* value) : Field(key, std::string_view(value)) {}
  Field(std::string_view key, bool value) : key_(key), text_(value ? "true" : "false") {}
  Field(std::string_view key, double value);
  Field(std::string_view key, Redacted) : key_(key), text_("<redacted>"), quoted_(true) {}
  Field(std::string_view key, const Status& status)
      : key_(key), text_(status.ToString()), quoted_(true) {}
  template <typename T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool>) Field(std::string_view key, T value)
      : key_(key), text_(std::to_string(value)) {}

  std::string_view key() const { return key_; }
  const std::string& text() const { return text_; }
  bool quoted() const { return quoted_; }

 private:
  std::string_view key_;
  std::string text_;
  bool quoted_ = false;  // a string (JSON-quoted); otherwise a number or bool
};

using Fields = std::initializer_list<Field>;

bool Enabled(Level level);
void Write(Level level, std::string_view message, Fields fields);

inline void Trace(std::string_view message, Fields fields = {}) {
  if (Enabled(Level::kTrace)) Write(Level::kTrace, message, fields);
}
inline void Debug(std::string_view message, Fields fields = {}) {
  if (Enabled(Level::kDebug)) Write(Level::kDebug, message, fields);
}
inline void Info(std::string_view message, Fields fields = {}) {
  if (Enabled(Level::kInfo)) Write(Level::kInfo, message, fields);
}
inline void Warn(std::string_view message, Fields fields = {}) {
  if (Enabled(Level::kWarn)) Write(Level::kWarn, message, fields);
}
inline void Error(std::string_view message, Fields fields = {}) {
  if (Enabled(Level::kError)) Write(Level::kError, message, fields);
}

// Renders one log line body without timestamp and level; exposed for tests.
std::string FormatText(std::string_view message, Fields fields);
std::string FormatJson(std::string_view timestamp, std::string_view level, std::string_view message,
                       Fields fields);

}  // namespace edgeloop::log

#endif  // EDGELOOP_COMMON_LOGGING_H_
