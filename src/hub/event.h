// Insight events as the hub receives them: one JSON object per line (JSON Lines), validated
// field by field so that a bad event is reported on its own and the rest of the batch is kept.
// See docs/hub.md for the wire format.
#ifndef EDGELOOP_HUB_EVENT_H_
#define EDGELOOP_HUB_EVENT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace edgeloop::hub {

// One validated event. Strings are stored as received (JSON values minified).
struct Event {
  std::string id;  // a canonical UUID (UUIDv7 from the edge)
  std::string site;
  std::string type;   // insight | anomaly | feedback | drift
  int64_t ts_ms = 0;  // event time, Unix milliseconds
  std::string model;
  std::string model_version;
  std::string model_digest;
  std::optional<std::string> request_id;
  std::optional<int64_t> anomaly;  // verdict: 1, 0, or unknown
  std::optional<double> score;
  std::optional<double> latency_ms;
  std::optional<std::string> prediction;  // the predicted label, compared with feedback labels
  std::optional<std::string> inputs;      // minified JSON
  std::optional<std::string> outputs;     // minified JSON
  // type == feedback: the event it labels, the true label, and whether the prediction was right
  // (when the edge knows; otherwise the hub compares `label` with the labelled event's
  // prediction).
  std::string target_id;
  std::optional<std::string> label;
  std::optional<int64_t> correct;
  // type == drift: the report as received (minified `drift` object), the rows of its window
  // and how many features it marks as drifted.
  std::optional<std::string> drift;
  int64_t drift_window_rows = 0;
  int64_t drifted_features = 0;
};

// A feedback event in the edge's form ({request_id, label}, no `feedback.event_id`) targets
// "request:<request_id>": the event of the same site with that request id.
inline constexpr std::string_view kRequestTargetPrefix = "request:";

struct Rejection {
  std::string id;    // "" when the line had no readable id
  int64_t line = 0;  // 1-based
  std::string error;
};

struct ParsedBatch {
  std::vector<Event> events;
  std::vector<Rejection> rejected;
};

struct ParseLimits {
  size_t max_events = 10'000;
  size_t max_line_bytes = 1 << 20;
};

// Parses a JSON Lines body. Blank lines are skipped. An event whose `site` is missing gets
// `default_site`; its `site` must otherwise equal `default_site` unless `default_site` is empty.
// Returns kResourceExhausted-free errors only for the batch as a whole: more than
// `max_events` lines (kOutOfRange) or a site mismatch (kPermissionDenied). Thread-safe.
StatusOr<ParsedBatch> ParseBatch(std::string_view body, std::string_view default_site,
                                 const ParseLimits& limits);

// True for a canonical UUID: 8-4-4-4-12 hex digits.
bool IsCanonicalUuid(std::string_view text);

// "2026-11-27T08:00:00.123Z" or with an offset "+01:00"; seconds fraction optional.
StatusOr<int64_t> ParseRfc3339Ms(std::string_view text);

}  // namespace edgeloop::hub

#endif  // EDGELOOP_HUB_EVENT_H_
