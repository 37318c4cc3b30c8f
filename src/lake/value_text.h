// Allocation-free text forms of values, for the data-file write and read paths. Private to the
// lake component; types.h has the string-returning forms for everyone else.
#ifndef EDGELOOP_LAKE_VALUE_TEXT_H_
#define EDGELOOP_LAKE_VALUE_TEXT_H_

#include <cstdint>
#include <optional>
#include <string_view>

namespace edgeloop::lake {

inline constexpr int64_t kMicrosPerSecond = 1'000'000;
inline constexpr int64_t kMicrosPerDay = 86'400 * kMicrosPerSecond;

// Days since 1970-01-01 of a proleptic Gregorian date, and back.
constexpr int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

struct CivilDate {
  int64_t year;
  unsigned month;
  unsigned day;
};

constexpr CivilDate CivilFromDays(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {y + (m <= 2), m, d};
}

// The representable range: years 0000 to 9999 (what the four-digit text form can hold).
inline constexpr int64_t kMinDate = DaysFromCivil(0, 1, 1);
inline constexpr int64_t kMaxDate = DaysFromCivil(9999, 12, 31);
inline constexpr int64_t kMinTimestamp = kMinDate * kMicrosPerDay;
inline constexpr int64_t kMaxTimestamp = (kMaxDate + 1) * kMicrosPerDay - 1;

constexpr int64_t FloorDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

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
