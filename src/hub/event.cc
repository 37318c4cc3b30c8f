#include "hub/event.h"

#include <simdjson.h>

#include <cmath>
#include <ctime>

namespace edgeloop::hub {
namespace {

namespace dom = simdjson::dom;

constexpr size_t kMaxFieldBytes = 256;

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int Digits(std::string_view text, size_t pos, size_t count) {
  if (pos + count > text.size()) return -1;
  int value = 0;
  for (size_t i = pos; i < pos + count; ++i) {
    if (text[i] < '0' || text[i] > '9') return -1;
    value = value * 10 + (text[i] - '0');
  }
  return value;
}

bool HasControl(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// A short text field: a string, or a number (versions are often numbers).
Status ShortText(dom::element value, std::string_view name, std::string* out) {
  std::string_view text;
  if (value.get_string().get(text) == simdjson::SUCCESS) {
    if (text.size() > kMaxFieldBytes) {
      return InvalidArgumentError("'" + std::string(name) + "' is longer than 256 bytes");
    }
    if (HasControl(text)) {
      return InvalidArgumentError("'" + std::string(name) + "' contains control characters");
    }
    out->assign(text);
    return Status::Ok();
  }
  int64_t number;
  if (value.get_int64().get(number) == simdjson::SUCCESS) {
    *out = std::to_string(number);
    return Status::Ok();
  }
  return InvalidArgumentError("'" + std::string(name) + "' must be a string");
}

Status OptionalText(dom::object object, std::string_view name, std::optional<std::string>* out) {
  dom::element value;
  if (object[name].get(value) != simdjson::SUCCESS || value.is_null()) return Status::Ok();
  std::string text;
  RETURN_IF_ERROR(ShortText(value, name, &text));
  *out = std::move(text);
  return Status::Ok();
}

Status OptionalNumber(dom::object object, std::string_view name, std::optional<double>* out) {
  dom::element value;
  if (object[name].get(value) != simdjson::SUCCESS || value.is_null()) return Status::Ok();
  double number;
  if (value.get_double().get(number) != simdjson::SUCCESS) {
    return InvalidArgumentError("'" + std::string(name) + "' must be a number");
  }
  if (!std::isfinite(number))
    return InvalidArgumentError("'" + std::string(name) + "' must be finite");
  *out = number;
  return Status::Ok();
}

Status OptionalBool(dom::object object, std::string_view name, std::optional<int64_t>* out) {
  dom::element value;
  if (object[name].get(value) != simdjson::SUCCESS || value.is_null()) return Status::Ok();
  bool flag;
  if (value.get_bool().get(flag) != simdjson::SUCCESS) {
    return InvalidArgumentError("'" + std::string(name) + "' must be true or false");
  }
  *out = flag ? 1 : 0;
  return Status::Ok();
}

// drift: {window_rows: n, features: [{name, psi, ks, drifted}, ...]} (docs/serve.md).
Status ParseDrift(dom::object object, Event* event) {
  dom::element value;
  dom::object drift;
  if (object["drift"].get(value) != simdjson::SUCCESS ||
      value.get_object().get(drift) != simdjson::SUCCESS) {
    return InvalidArgumentError(
        "a drift event needs 'drift': {window_rows, features: [{name, psi, ks, drifted}]}");
  }
  dom::element field;
  int64_t rows = 0;
  if (drift["window_rows"].get(field) != simdjson::SUCCESS ||
      field.get_int64().get(rows) != simdjson::SUCCESS || rows < 0) {
    return InvalidArgumentError("'drift.window_rows' must be a non-negative integer");
  }
  dom::array features;
  if (drift["features"].get(field) != simdjson::SUCCESS ||
      field.get_array().get(features) != simdjson::SUCCESS) {
    return InvalidArgumentError("'drift.features' must be an array");
  }
  int64_t drifted = 0;
  for (dom::element f : features) {
    dom::object feature;
    if (f.get_object().get(feature) != simdjson::SUCCESS) {
      return InvalidArgumentError("'drift.features' must hold objects {name, psi, ks, drifted}");
    }
    std::string name;
    if (feature["name"].get(field) != simdjson::SUCCESS) {
      return InvalidArgumentError("a drift feature needs a 'name'");
    }
    RETURN_IF_ERROR(ShortText(field, "drift.features[].name", &name));
    std::optional<double> number;
    RETURN_IF_ERROR(OptionalNumber(feature, "psi", &number));
    RETURN_IF_ERROR(OptionalNumber(feature, "ks", &number));
    std::optional<int64_t> flag;
    RETURN_IF_ERROR(OptionalBool(feature, "drifted", &flag));
    if (flag && *flag == 1) ++drifted;
  }
  event->drift = simdjson::minify(value);
  event->drift_window_rows = rows;
  event->drifted_features = drifted;
  return Status::Ok();
}

Status ParseEvent(dom::object object, Event* event) {
  dom::element value;
  if (object["type"].get(value) != simdjson::SUCCESS)
    return InvalidArgumentError("'type' is missing");
  RETURN_IF_ERROR(ShortText(value, "type", &event->type));
  if (event->type != "insight" && event->type != "anomaly" && event->type != "feedback" &&
      event->type != "drift") {
    return InvalidArgumentError("'type' must be insight, anomaly, feedback or drift, not '" +
                                event->type + "'");
  }
  // Drift reports from serve name the time `ts_ms` (docs/serve.md); both names are accepted.
  if (object["timestamp"].get(value) != simdjson::SUCCESS &&
      object["ts_ms"].get(value) != simdjson::SUCCESS) {
    return InvalidArgumentError("'timestamp' is missing");
  }
  std::string_view text;
  int64_t ms;
  if (value.get_string().get(text) == simdjson::SUCCESS) {
    ASSIGN_OR_RETURN(event->ts_ms, ParseRfc3339Ms(text));
  } else if (value.get_int64().get(ms) == simdjson::SUCCESS) {
    event->ts_ms = ms;
  } else {
    return InvalidArgumentError("'timestamp' must be an RFC 3339 string or Unix milliseconds");
  }
  dom::object model;
  if (object["model"].get(value) == simdjson::SUCCESS && value.is_string()) {
    // The flat form of drift reports: "model": "name", "model_version", "model_digest".
    RETURN_IF_ERROR(ShortText(value, "model", &event->model));
    dom::element field;
    if (object["model_version"].get(field) == simdjson::SUCCESS && !field.is_null()) {
      RETURN_IF_ERROR(ShortText(field, "model_version", &event->model_version));
    }
    if (object["model_digest"].get(field) == simdjson::SUCCESS && !field.is_null()) {
      RETURN_IF_ERROR(ShortText(field, "model_digest", &event->model_digest));
    }
  } else if (object["model"].get(value) == simdjson::SUCCESS && !value.is_null()) {
    if (value.get_object().get(model) != simdjson::SUCCESS) {
      return InvalidArgumentError("'model' must be an object {name, version, digest}");
    }
    dom::element field;
    if (model["name"].get(field) == simdjson::SUCCESS) {
      RETURN_IF_ERROR(ShortText(field, "model.name", &event->model));
    }
    if (model["version"].get(field) == simdjson::SUCCESS) {
      RETURN_IF_ERROR(ShortText(field, "model.version", &event->model_version));
    }
    if (model["digest"].get(field) == simdjson::SUCCESS) {
      RETURN_IF_ERROR(ShortText(field, "model.digest", &event->model_digest));
    }
  }
  if (event->type != "feedback" && event->model.empty()) {
    return InvalidArgumentError("'model.name' is required for insight, anomaly and drift events");
  }
  RETURN_IF_ERROR(OptionalText(object, "request_id", &event->request_id));
  RETURN_IF_ERROR(OptionalNumber(object, "latency_ms", &event->latency_ms));
  RETURN_IF_ERROR(OptionalText(object, "prediction", &event->prediction));
  if (object["anomaly"].get(value) == simdjson::SUCCESS && !value.is_null()) {
    dom::object anomaly;
    if (value.get_object().get(anomaly) != simdjson::SUCCESS) {
      return InvalidArgumentError("'anomaly' must be an object {verdict, score}");
    }
    RETURN_IF_ERROR(OptionalBool(anomaly, "verdict", &event->anomaly));
    RETURN_IF_ERROR(OptionalNumber(anomaly, "score", &event->score));
  }
  if (event->type == "anomaly" && !event->anomaly) event->anomaly = 1;
  for (const char* name : {"inputs", "outputs"}) {
    if (object[name].get(value) == simdjson::SUCCESS && !value.is_null()) {
      (name[0] == 'i' ? event->inputs : event->outputs) = simdjson::minify(value);
    }
  }
  if (event->type == "drift") return ParseDrift(object, event);
  if (event->type == "feedback" && object["feedback"].get(value) != simdjson::SUCCESS &&
      event->request_id && object["label"].get(value) == simdjson::SUCCESS) {
    // The edge's form (serve's POST /feedback): the label of a request, matched at the hub
    // with the event of that site and request id.
    event->target_id = std::string(kRequestTargetPrefix) + *event->request_id;
    std::string label;
    if (value.get_string().get(text) == simdjson::SUCCESS) {
      RETURN_IF_ERROR(ShortText(value, "label", &label));
    } else if (value.is_bool() || value.is_number() || value.is_object()) {
      label = simdjson::minify(value);  // an object's keys become label_<key> columns
      if (label.size() > 4096) return InvalidArgumentError("'label' is longer than 4096 bytes");
    } else {
      return InvalidArgumentError("'label' must be a string, number, bool or object");
    }
    event->label = std::move(label);
    return Status::Ok();
  }
  if (event->type == "feedback") {
    dom::object feedback;
    if (object["feedback"].get(value) != simdjson::SUCCESS ||
        value.get_object().get(feedback) != simdjson::SUCCESS) {
      return InvalidArgumentError("a feedback event needs 'feedback': {event_id, label, correct}");
    }
    dom::element field;
    if (feedback["event_id"].get(field) != simdjson::SUCCESS) {
      return InvalidArgumentError("'feedback.event_id' is missing");
    }
    RETURN_IF_ERROR(ShortText(field, "feedback.event_id", &event->target_id));
    if (!IsCanonicalUuid(event->target_id)) {
      return InvalidArgumentError("'feedback.event_id' must be a UUID");
    }
    RETURN_IF_ERROR(OptionalText(feedback, "label", &event->label));
    RETURN_IF_ERROR(OptionalBool(feedback, "correct", &event->correct));
    if (!event->label && !event->correct) {
      return InvalidArgumentError("feedback needs 'label' or 'correct'");
    }
  }
  return Status::Ok();
}

}  // namespace

bool IsCanonicalUuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? text[i] != '-' : !IsHex(text[i])) return false;
  }
  return true;
}

StatusOr<int64_t> ParseRfc3339Ms(std::string_view text) {
  const Status bad = InvalidArgumentError("'" + std::string(text.substr(0, 40)) +
                                          "' is not an RFC 3339 timestamp");
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't' && text[10] != ' ') || text[13] != ':' ||
      text[16] != ':') {
    return bad;
  }
  const int year = Digits(text, 0, 4), month = Digits(text, 5, 2), day = Digits(text, 8, 2);
  const int hour = Digits(text, 11, 2), minute = Digits(text, 14, 2), second = Digits(text, 17, 2);
  if (year < 1970 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 ||
      minute < 0 || minute > 59 || second < 0 || second > 60) {
    return bad;
  }
  size_t pos = 19;
  int64_t millis = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 3) millis = millis * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return bad;
    for (int i = digits; i < 3; ++i) millis *= 10;
  }
  int64_t offset_minutes = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos + 6 == text.size() && (text[pos] == '+' || text[pos] == '-') &&
             text[pos + 3] == ':') {
    const int oh = Digits(text, pos + 1, 2), om = Digits(text, pos + 4, 2);
    if (oh < 0 || om < 0) return bad;
    offset_minutes = (text[pos] == '-' ? -1 : 1) * (oh * 60 + om);
    pos += 6;
  } else {
    return bad;
  }
  if (pos != text.size()) return bad;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const int64_t seconds = static_cast<int64_t>(timegm(&tm));
  return (seconds - offset_minutes * 60) * 1000 + millis;
}

StatusOr<ParsedBatch> ParseBatch(std::string_view body, std::string_view default_site,
                                 const ParseLimits& limits) {
  // One parser per thread: it keeps its buffers between batches.
  thread_local dom::parser parser;
  ParsedBatch batch;
  int64_t line_number = 0;
  size_t start = 0;
  size_t lines = 0;
  while (start < body.size()) {
    size_t end = body.find('\n', start);
    if (end == std::string_view::npos) end = body.size();
    std::string_view line = body.substr(start, end - start);
    start = end + 1;
    ++line_number;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
      line.remove_suffix(1);
    }
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    if (++lines > limits.max_events) {
      return OutOfRangeError("the batch has more than " + std::to_string(limits.max_events) +
                             " events");
    }
    Rejection rejection;
    rejection.line = line_number;
    if (line.size() > limits.max_line_bytes) {
      rejection.error = "event is larger than " + std::to_string(limits.max_line_bytes) + " bytes";
      batch.rejected.push_back(std::move(rejection));
      continue;
    }
    dom::element doc;
    dom::object object;
    if (const auto error = parser.parse(line.data(), line.size()).get(doc); error) {
      rejection.error = std::string("invalid JSON: ") + simdjson::error_message(error);
      batch.rejected.push_back(std::move(rejection));
      continue;
    }
    if (doc.get_object().get(object) != simdjson::SUCCESS) {
      rejection.error = "an event must be a JSON object";
      batch.rejected.push_back(std::move(rejection));
      continue;
    }
    Event event;
    dom::element value;
    std::string_view id;
    if (object["id"].get(value) != simdjson::SUCCESS ||
        value.get_string().get(id) != simdjson::SUCCESS) {
      rejection.error = "'id' is missing or not a string";
      batch.rejected.push_back(std::move(rejection));
      continue;
    }
    if (!IsCanonicalUuid(id)) {
      rejection.id = std::string(id.substr(0, 64));
      rejection.error = "'id' must be a UUID (UUIDv7)";
      batch.rejected.push_back(std::move(rejection));
      continue;
    }
    event.id = std::string(id);
    std::string_view site = default_site;
    if (object["site"].get(value) == simdjson::SUCCESS && !value.is_null()) {
      if (value.get_string().get(site) != simdjson::SUCCESS || site.empty() ||
          site.size() > kMaxFieldBytes || HasControl(site)) {
        rejection.id = event.id;
        rejection.error = "'site' must be a non-empty string";
        batch.rejected.push_back(std::move(rejection));
        continue;
      }
      if (!default_site.empty() && site != default_site) {
        return PermissionDeniedError("event " + event.id + " names site '" + std::string(site) +
                                     "', but the token belongs to site '" +
                                     std::string(default_site) + "'; nothing was stored");
      }
    }
    if (site.empty()) {
      rejection.id = event.id;
      rejection.error = "'site' is missing";
      batch.rejected.push_back(std::move(rejection));
      continue;
    }
    event.site = std::string(site);
    if (Status status = ParseEvent(object, &event); !status.ok()) {
      rejection.id = event.id;
      rejection.error = status.message();
      batch.rejected.push_back(std::move(rejection));
      continue;
    }
    batch.events.push_back(std::move(event));
  }
  return batch;
}

}  // namespace edgeloop::hub
