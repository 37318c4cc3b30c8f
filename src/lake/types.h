// Lake data types, fields and schemas.
//
// Every column is nullable. Field ids are assigned once and never reused, so a rename keeps the
// data; the schema version grows with every change.
#ifndef EDGELOOP_LAKE_TYPES_H_
#define EDGELOOP_LAKE_TYPES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace edgeloop::lake {

enum class Type : uint8_t {
  kBool,
  kInt64,
  kDouble,
  kString,     // UTF-8
  kTimestamp,  // microseconds since the Unix epoch, UTC
  kDate,       // days since the Unix epoch
};

// "bool", "int64", "double", "string", "timestamp", "date".
std::string_view TypeName(Type type);
// Accepts the names above and common aliases (boolean, int, integer, bigint, float, real,
// text, varchar, datetime); kInvalidArgument otherwise.
StatusOr<Type> ParseType(std::string_view name);
// Widening that schema evolution allows without rewriting data: int64 -> double,
// date -> timestamp, and any type -> string.
bool CanWiden(Type from, Type to);

struct Field {
  int32_t id = 0;
  std::string name;
  Type type = Type::kString;

  friend bool operator==(const Field&, const Field&) = default;
};

struct Schema {
  int32_t version = 1;
  std::vector<Field> fields;

  // Index of the field named `name`, or -1.
  int IndexOf(std::string_view name) const;
  const Field* Find(std::string_view name) const;
  int32_t next_field_id() const;  // 1 + the largest id

  friend bool operator==(const Schema&, const Schema&) = default;
};

// Column names: 1-128 characters, not empty, no control characters; unique in a schema.
Status ValidateSchema(const Schema& schema);

// Text forms shared by the CSV data files, the catalog's statistics and the CLI:
// timestamps "2026-11-27T04:50:00.123456Z", dates "2026-11-27", bools "true"/"false", doubles in
// the shortest round-trip form.
std::string FormatTimestamp(int64_t micros);
std::string FormatDate(int32_t days);
// Accept ISO 8601 / RFC 3339 forms ("2026-11-27", "2026-11-27 04:50", "2026-11-27T04:50:00Z",
// "...+02:00", fractional seconds up to microseconds) and, for timestamps, nothing else.
std::optional<int64_t> ParseTimestamp(std::string_view text);
std::optional<int32_t> ParseDate(std::string_view text);

}  // namespace edgeloop::lake

#endif  // EDGELOOP_LAKE_TYPES_H_
