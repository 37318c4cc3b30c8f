#include "common/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <charconv>
#include <cmath>
#include <memory>
#include <mutex>

#include "common/clock.h"
#include "common/json_util.h"

namespace edgeloop::log {
namespace {

std::atomic<Format> g_format{Format::kText};
std::atomic<Level> g_level{Level::kInfo};

spdlog::level::level_enum ToSpdlog(Level level) {
  switch (level) {
    case Level::kTrace:
      return spdlog::level::trace;
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kTrace:
      return "trace";
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

// The message handed to spdlog is the complete line; spdlog only adds the newline and does the
// thread-safe write to stderr.
std::shared_ptr<spdlog::logger> MakeLogger() {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("edgeloop", sink);
  logger->set_pattern("%v");
  logger->set_level(spdlog::level::trace);
  logger->flush_on(spdlog::level::trace);
  return logger;
}

spdlog::logger& Logger() {
  static std::shared_ptr<spdlog::logger> logger = MakeLogger();
  return *logger;
}

bool NeedsQuotes(std::string_view text) {
  if (text.empty()) return true;
  for (char c : text) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      return true;
    }
  }
  return false;
}

}  // namespace

StatusOr<Format> ParseFormat(std::string_view text) {
  if (text == "text") return Format::kText;
  if (text == "json") return Format::kJson;
  return InvalidArgumentError("log format must be 'text' or 'json', got '" + std::string(text) +
                              "'");
}

StatusOr<Level> ParseLevel(std::string_view text) {
  for (Level level : {Level::kTrace, Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
    if (LevelName(level) == text) return level;
  }
  if (text == "warning") return Level::kWarn;
  return InvalidArgumentError("log level must be one of trace, debug, info, warn, error; got '" +
                              std::string(text) + "'");
}

void Init(Format format, Level level) {
  g_format.store(format);
  g_level.store(level);
  Logger().set_level(ToSpdlog(level));
}

bool Enabled(Level level) { return level >= g_level.load(std::memory_order_relaxed); }

Field::Field(std::string_view key, double value) : key_(key) {
  if (!std::isfinite(value)) {
    text_ = std::isnan(value) ? "NaN" : (value > 0 ? "Inf" : "-Inf");
    quoted_ = true;
    return;
  }
  char buf[32];
  auto result = std::to_chars(buf, buf + sizeof(buf), value);
  text_.assign(buf, result.ptr);
}

std::string FormatText(std::string_view message, Fields fields) {
  std::string line(message);
  for (const Field& field : fields) {
    line += ' ';
    line += field.key();
    line += '=';
    if (field.quoted() && NeedsQuotes(field.text())) {
      line += '"';
      json::AppendEscaped(&line, field.text());
      line += '"';
    } else {
      line += field.text();
    }
  }
  return line;
}

std::string FormatJson(std::string_view timestamp, std::string_view level, std::string_view message,
                       Fields fields) {
  std::string line = "{\"ts\":\"";
  line += timestamp;
  line += "\",\"level\":\"";
  line += level;
  line += "\",\"msg\":\"";
  json::AppendEscaped(&line, message);
  line += '"';
  for (const Field& field : fields) {
    line += ",\"";
    json::AppendEscaped(&line, field.key());
    line += "\":";
    if (field.quoted()) {
      line += '"';
      json::AppendEscaped(&line, field.text());
      line += '"';
    } else {
      line += field.text();
    }
  }
  line += '}';
  return line;
}

void Write(Level level, std::string_view message, Fields fields) {
  const std::string timestamp = FormatRfc3339(Clock::Real()->WallNow());
  std::string line;
  if (g_format.load(std::memory_order_relaxed) == Format::kJson) {
    line = FormatJson(timestamp, LevelName(level), message, fields);
  } else {
    line = timestamp;
    line += ' ';
    std::string_view name = LevelName(level);
    line += name;
    line.append(6 - name.size(), ' ');
    line += FormatText(message, fields);
  }
  Logger().log(ToSpdlog(level), "{}", line);
}

}  // namespace edgeloop::log
