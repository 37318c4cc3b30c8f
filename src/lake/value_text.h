// Allocation-free text forms of values, for the data-file write and read paths. Private to the
// lake component; types.h has the string-returning forms for everyone else.
#ifndef EDGELOOP_LAKE_VALUE_TEXT_H_
#define EDGELOOP_LAKE_VALUE_TEXT_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "lake/calendar.h"

namespace edgeloop::lake {

// The representable range: years 0000 to 9999 (what the four-digit text form can hold).
inline constexpr int64_t kMinDate = DaysFromCivil(0, 1, 1);
inline constexpr int64_t kMaxDate = DaysFromCivil(9999, 12, 31);
inline constexpr int64_t kMinTimestamp = kMinDate * kMicrosPerDay;
inline constexpr int64_t kMaxTimestamp = (kMaxDate + 1) * kMicrosPerDay - 1;

// Buffer sizes that always suffice.
inline constexpr int kMaxTimestampText = 32;
inline constexpr int kMaxDateText = 16;
inline constexpr int kMaxNumberText = 32;

// Write the text form at `out` and return the end. The value must be in range.
char* WriteDate(char* out, int64_t days);
char* WriteTimestamp(char* out, int64_t micros);
char* WriteInt(char* out, int64_t value);
char* WriteDouble(char* out, double value);

std::optional<int64_t> ParseInt64(std::string_view text);
std::optional<double> ParseDouble(std::string_view text);
std::optional<bool> ParseBool(std::string_view text);

}  // namespace edgeloop::lake

#endif  // EDGELOOP_LAKE_VALUE_TEXT_H_
