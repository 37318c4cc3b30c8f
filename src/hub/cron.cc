#include "hub/cron.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

#include "lake/calendar.h"

namespace edgeloop::hub {
namespace {

constexpr int64_t kDay = 86'400;

// Civil-date arithmetic (header-only, shared with the lake and the pipeline).
using ::edgeloop::lake::CivilFromDays;
using ::edgeloop::lake::DaysFromCivil;
using ::edgeloop::lake::FloorDiv;
using Civil = ::edgeloop::lake::CivilDate;

// 0 = Sunday; 1970-01-01 was a Thursday.
unsigned Weekday(int64_t days) { return static_cast<unsigned>(((days % 7) + 11) % 7); }

unsigned DaysInMonth(int64_t year, unsigned month) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

int64_t BigEndian(std::string_view bytes, size_t pos, size_t width) {
  uint64_t v = 0;
  for (size_t i = 0; i < width; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[pos + i]);
  if (width == 4) return static_cast<int32_t>(static_cast<uint32_t>(v));
  return static_cast<int64_t>(v);
}

}  // namespace

// A POSIX TZ string's rule ("CET-1CEST,M3.5.0,M10.5.0/3"), only the "M" date form.
struct TimeZone::Rule {
  int32_t std_offset = 0;  // seconds east of UTC
  int32_t dst_offset = 0;
  bool has_dst = false;
  struct Date {
    unsigned month = 0, week = 0, weekday = 0;
    int32_t time = 7200;  // local seconds after midnight
  } start, end;

  // The UTC instant at which `date` happens in `year`, with the offset in effect before it.
  static int64_t Instant(int64_t year, const Date& date, int32_t offset_before) {
    const int64_t first = DaysFromCivil(year, date.month, 1);
    unsigned day = 1 + (date.weekday + 7 - Weekday(first)) % 7 + (date.week - 1) * 7;
    while (day > DaysInMonth(year, date.month)) day -= 7;
    return (first + day - 1) * kDay + date.time - offset_before;
  }

  int32_t OffsetAt(int64_t utc) const {
    if (!has_dst) return std_offset;
    const int64_t year = CivilFromDays(FloorDiv(utc + std_offset, kDay)).year;
    const int64_t start_at = Instant(year, start, std_offset);
    const int64_t end_at = Instant(year, end, dst_offset);
    const bool dst =
        start_at < end_at ? (utc >= start_at && utc < end_at) : (utc < end_at || utc >= start_at);
    return dst ? dst_offset : std_offset;
  }
};

namespace {

// Parses "[+-]hh[:mm[:ss]]" at `pos`; returns seconds.
bool ParseClock(std::string_view s, size_t* pos, int32_t* out) {
  int sign = 1;
  if (*pos < s.size() && (s[*pos] == '+' || s[*pos] == '-')) {
    sign = s[*pos] == '-' ? -1 : 1;
    ++*pos;
  }
  int32_t parts[3] = {0, 0, 0};
  for (int i = 0; i < 3; ++i) {
    if (i > 0) {
      if (*pos >= s.size() || s[*pos] != ':') break;
      ++*pos;
    }
    const size_t start = *pos;
    while (*pos < s.size() && s[*pos] >= '0' && s[*pos] <= '9') ++*pos;
    if (*pos == start) return false;
    std::from_chars(s.data() + start, s.data() + *pos, parts[i]);
  }
  *out = sign * (parts[0] * 3600 + parts[1] * 60 + parts[2]);
  return true;
}

bool ParseZoneName(std::string_view s, size_t* pos) {
  if (*pos < s.size() && s[*pos] == '<') {
    const size_t close = s.find('>', *pos);
    if (close == std::string_view::npos) return false;
    *pos = close + 1;
    return true;
  }
  const size_t start = *pos;
  while (*pos < s.size() &&
         ((s[*pos] >= 'A' && s[*pos] <= 'Z') || (s[*pos] >= 'a' && s[*pos] <= 'z')))
    ++*pos;
  return *pos - start >= 3;
}

// Returns null for footers this parser does not understand (the last transition's offset then
// stays in effect).
std::shared_ptr<TimeZone::Rule> ParseFooter(std::string_view s) {
  auto rule = std::make_shared<TimeZone::Rule>();
  size_t pos = 0;
  int32_t offset = 0;
  if (!ParseZoneName(s, &pos) || !ParseClock(s, &pos, &offset)) return nullptr;
  rule->std_offset = -offset;  // POSIX counts west as positive
  if (pos == s.size()) return rule;
  if (!ParseZoneName(s, &pos)) return nullptr;
  rule->has_dst = true;
  rule->dst_offset = rule->std_offset + 3600;
  if (pos < s.size() && s[pos] != ',') {
    if (!ParseClock(s, &pos, &offset)) return nullptr;
    rule->dst_offset = -offset;
  }
  for (TimeZone::Rule::Date* date : {&rule->start, &rule->end}) {
    if (pos >= s.size() || s[pos] != ',') return nullptr;
    ++pos;
    if (pos >= s.size() || s[pos] != 'M') return nullptr;  // only the M form
    ++pos;
    unsigned values[3];
    for (int i = 0; i < 3; ++i) {
      if (i > 0) {
        if (pos >= s.size() || s[pos] != '.') return nullptr;
        ++pos;
      }
      const size_t start = pos;
      while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
      if (pos == start) return nullptr;
      std::from_chars(s.data() + start, s.data() + pos, values[i]);
    }
    if (values[0] < 1 || values[0] > 12 || values[1] < 1 || values[1] > 5 || values[2] > 6)
      return nullptr;
    date->month = values[0];
    date->week = values[1];
    date->weekday = values[2];
    if (pos < s.size() && s[pos] == '/') {
      ++pos;
      if (!ParseClock(s, &pos, &date->time)) return nullptr;
    }
  }
  return pos == s.size() ? rule : nullptr;
}

}  // namespace

StatusOr<std::shared_ptr<const TimeZone>> TimeZone::FromTzif(std::string name,
                                                             std::string_view bytes) {
  const Status bad = InvalidArgumentError("time zone '" + name + "': not a valid TZif file");
  constexpr size_t kHeader = 44;
  if (bytes.size() < kHeader || bytes.substr(0, 4) != "TZif") return bad;
  const char version = bytes[4];
  auto counts = [&](size_t at, int64_t out[6]) {
    for (int i = 0; i < 6; ++i) out[i] = BigEndian(bytes, at + 20 + 4 * i, 4);
  };
  // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
  int64_t c[6];
  counts(0, c);
  for (int64_t n : c) {
    if (n < 0 || n > 100'000) return bad;
  }
  size_t pos = kHeader;
  size_t time_width = 4;
  if (version >= '2') {
    // Skip the version-1 block and read the 64-bit one.
    pos += static_cast<size_t>(c[3] * 5 + c[4] * 6 + c[5] + c[2] * 8 + c[1] + c[0]);
    if (bytes.size() < pos + kHeader || bytes.substr(pos, 4) != "TZif") return bad;
    counts(pos, c);
    for (int64_t n : c) {
      if (n < 0 || n > 100'000) return bad;
    }
    pos += kHeader;
    time_width = 8;
  }
  const auto timecnt = static_cast<size_t>(c[3]);
  const auto typecnt = static_cast<size_t>(c[4]);
  const size_t need = timecnt * time_width + timecnt + typecnt * 6 + static_cast<size_t>(c[5]) +
                      static_cast<size_t>(c[2]) * (time_width + 4) + static_cast<size_t>(c[1]) +
                      static_cast<size_t>(c[0]);
  if (typecnt == 0 || bytes.size() < pos + need) return bad;
  std::shared_ptr<TimeZone> zone(new TimeZone());
  zone->name_ = std::move(name);
  std::vector<int32_t> type_offsets(typecnt);
  const size_t types_at = pos + timecnt * time_width + timecnt;
  for (size_t i = 0; i < typecnt; ++i) {
    type_offsets[i] = static_cast<int32_t>(BigEndian(bytes, types_at + i * 6, 4));
  }
  for (size_t i = 0; i < timecnt; ++i) {
    const int64_t at = BigEndian(bytes, pos + i * time_width, time_width);
    const auto type = static_cast<unsigned char>(bytes[pos + timecnt * time_width + i]);
    if (type >= typecnt) return bad;
    if (!zone->transitions_.empty() && at <= zone->transitions_.back()) return bad;
    zone->transitions_.push_back(at);
    zone->offset_after_.push_back(type_offsets[type]);
  }
  zone->initial_offset_ = type_offsets[0];
  if (version >= '2') {
    const size_t footer = pos + need;
    if (footer < bytes.size() && bytes[footer] == '\n') {
      const size_t end = bytes.find('\n', footer + 1);
      if (end != std::string_view::npos) {
        zone->footer_ = ParseFooter(bytes.substr(footer + 1, end - footer - 1));
      }
    }
  }
  return std::shared_ptr<const TimeZone>(std::move(zone));
}

StatusOr<std::shared_ptr<const TimeZone>> TimeZone::Load(std::string_view name,
                                                         const std::string& zoneinfo_dir) {
  if (name.empty() || name == "UTC" || name == "Etc/UTC") {
    std::shared_ptr<TimeZone> utc(new TimeZone());
    utc->name_ = "UTC";
    return std::shared_ptr<const TimeZone>(std::move(utc));
  }
  const bool valid = name.size() <= 64 && name.find("..") == std::string_view::npos &&
                     name[0] != '/' && std::all_of(name.begin(), name.end(), [](char ch) {
                       return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                              (ch >= '0' && ch <= '9') || ch == '/' || ch == '_' || ch == '-' ||
                              ch == '+';
                     });
  if (!valid) {
    return InvalidArgumentError("'" + std::string(name) +
                                "' is not a time zone name (like Europe/Berlin)");
  }
  std::ifstream in(zoneinfo_dir + "/" + std::string(name), std::ios::binary);
  if (!in) {
    return NotFoundError("unknown time zone '" + std::string(name) + "' (not in " + zoneinfo_dir +
                         ")");
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return FromTzif(std::string(name), bytes.str());
}

int32_t TimeZone::OffsetAt(int64_t utc_seconds) const {
  if (transitions_.empty()) return footer_ ? footer_->OffsetAt(utc_seconds) : initial_offset_;
  if (utc_seconds < transitions_.front()) return initial_offset_;
  if (utc_seconds >= transitions_.back() && footer_) return footer_->OffsetAt(utc_seconds);
  const auto it = std::upper_bound(transitions_.begin(), transitions_.end(), utc_seconds);
  return offset_after_[static_cast<size_t>(it - transitions_.begin()) - 1];
}

namespace {

constexpr std::string_view kMonthNames[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                            "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::string_view kDayNames[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct FieldSpec {
  const char* name;
  int min;
  int max;
  const std::string_view* names;  // for months (from 1) and weekdays (from 0)
  size_t name_count;
};

StatusOr<int> ParseValue(std::string_view text, const FieldSpec& f) {
  std::string lower(text);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (size_t i = 0; i < f.name_count; ++i) {
    if (lower == f.names[i]) return static_cast<int>(i) + (f.min == 1 ? 1 : 0);
  }
  int value = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), value);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size()) {
    return InvalidArgumentError(std::string(f.name) + ": '" + std::string(text) +
                                "' is not a number");
  }
  if (value < f.min || value > f.max) {
    return InvalidArgumentError(std::string(f.name) + ": " + std::to_string(value) +
                                " is out of range " + std::to_string(f.min) + "-" +
                                std::to_string(f.max));
  }
  return value;
}

// Sets the bits of one field; returns whether it starts with '*' (unrestricted for the day rule).
StatusOr<bool> ParseField(std::string_view text, const FieldSpec& f, std::vector<bool>* bits) {
  if (text.empty()) return InvalidArgumentError(std::string(f.name) + " is empty");
  bits->assign(static_cast<size_t>(f.max) + 1, false);
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string_view item = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item.empty()) return InvalidArgumentError(std::string(f.name) + ": empty list item");
    std::string_view range = item;
    int step = 1;
    if (const size_t slash = item.find('/'); slash != std::string_view::npos) {
      range = item.substr(0, slash);
      const std::string_view step_text = item.substr(slash + 1);
      const auto r = std::from_chars(step_text.data(), step_text.data() + step_text.size(), step);
      if (r.ec != std::errc() || r.ptr != step_text.data() + step_text.size() || step < 1 ||
          step > f.max) {
        return InvalidArgumentError(std::string(f.name) + ": bad step '" + std::string(step_text) +
                                    "'");
      }
    }
    int lo, hi;
    if (range == "*") {
      lo = f.min;
      hi = f.max;
    } else if (const size_t dash = range.find('-'); dash != std::string_view::npos) {
      ASSIGN_OR_RETURN(lo, ParseValue(range.substr(0, dash), f));
      ASSIGN_OR_RETURN(hi, ParseValue(range.substr(dash + 1), f));
      if (hi < lo) {
        return InvalidArgumentError(std::string(f.name) + ": range '" + std::string(range) +
                                    "' runs backwards");
      }
    } else {
      ASSIGN_OR_RETURN(lo, ParseValue(range, f));
      hi = item.find('/') != std::string_view::npos ? f.max : lo;  // "5/10" = 5-max/10
    }
    for (int v = lo; v <= hi; v += step) (*bits)[static_cast<size_t>(v)] = true;
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return text[0] == '*';
}

}  // namespace

StatusOr<CronSchedule> CronSchedule::Parse(std::string_view expression,
                                           std::shared_ptr<const TimeZone> zone) {
  if (zone == nullptr) return InvalidArgumentError("a cron schedule needs a time zone");
  std::vector<std::string_view> fields;
  size_t pos = 0;
  while (pos < expression.size()) {
    while (pos < expression.size() && (expression[pos] == ' ' || expression[pos] == '\t')) ++pos;
    const size_t start = pos;
    while (pos < expression.size() && expression[pos] != ' ' && expression[pos] != '\t') ++pos;
    if (pos > start) fields.push_back(expression.substr(start, pos - start));
  }
  const std::string quoted = "cron '" + std::string(expression) + "': ";
  if (fields.size() != 5) {
    return InvalidArgumentError(quoted +
                                "needs 5 fields (minute hour day-of-month month day-of-week), "
                                "got " +
                                std::to_string(fields.size()));
  }
  static const FieldSpec kSpecs[] = {{"minute", 0, 59, nullptr, 0},
                                     {"hour", 0, 23, nullptr, 0},
                                     {"day-of-month", 1, 31, nullptr, 0},
                                     {"month", 1, 12, kMonthNames, 12},
                                     {"day-of-week", 0, 7, kDayNames, 7}};
  CronSchedule cron;
  cron.expression_ = std::string(expression);
  cron.zone_ = std::move(zone);
  std::vector<bool> bits;
  for (int i = 0; i < 5; ++i) {
    auto star = ParseField(fields[static_cast<size_t>(i)], kSpecs[i], &bits);
    if (!star.ok()) return InvalidArgumentError(quoted + star.status().message());
    for (size_t v = 0; v < bits.size(); ++v) {
      if (!bits[v]) continue;
      switch (i) {
        case 0:
          cron.minutes_.set(v);
          break;
        case 1:
          cron.hours_.set(v);
          break;
        case 2:
          cron.days_.set(v);
          break;
        case 3:
          cron.months_.set(v);
          break;
        case 4:
          cron.weekdays_.set(v % 7);
          break;
      }
    }
    if (i == 2) cron.days_restricted_ = !*star;
    if (i == 4) cron.weekdays_restricted_ = !*star;
  }
  // "0 0 30 2 *" and the like never fire.
  if (auto first = cron.NextAfter(0); !first.ok()) {
    return InvalidArgumentError(quoted + "never fires");
  }
  return cron;
}

bool CronSchedule::DayMatches(int64_t days) const {
  const Civil c = CivilFromDays(days);
  if (!months_.test(c.month)) return false;
  const bool dom = days_.test(c.day);
  const bool dow = weekdays_.test(Weekday(days));
  // Vixie cron: with both day fields restricted, either one matching is enough.
  if (days_restricted_ && weekdays_restricted_) return dom || dow;
  return dom && dow;
}

StatusOr<int64_t> CronSchedule::NextAfter(int64_t utc_seconds) const {
  const TimeZone& tz = *zone_;
  // The earliest UTC instant showing local time `local` on the wall clock, or the end of the gap
  // when a DST change skips it.
  auto to_utc = [&](int64_t local) -> int64_t {
    const int32_t before = tz.OffsetAt(local - kDay);
    const int32_t after = tz.OffsetAt(local + kDay);
    int64_t best = INT64_MAX;
    for (const int32_t offset : {before, after}) {
      const int64_t u = local - offset;
      if (tz.OffsetAt(u) == offset) best = std::min(best, u);
    }
    if (best != INT64_MAX) return best;
    // In a gap: the transition is the first instant whose offset is no longer `before`.
    int64_t lo = local - kDay, hi = local + kDay;
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      (tz.OffsetAt(mid) == before ? lo : hi) = mid;
    }
    return hi;
  };
  const int64_t local_now = utc_seconds + tz.OffsetAt(utc_seconds);
  const int64_t first_local = FloorDiv(local_now, 60) * 60 + 60;
  const int64_t first_day = FloorDiv(first_local, kDay);
  for (int64_t day = first_day; day < first_day + 30 * 366; ++day) {
    if (!DayMatches(day)) continue;
    for (int h = 0; h < 24; ++h) {
      if (!hours_.test(static_cast<size_t>(h))) continue;
      for (int m = 0; m < 60; ++m) {
        if (!minutes_.test(static_cast<size_t>(m))) continue;
        const int64_t local = day * kDay + h * 3600 + m * 60;
        if (local < first_local) continue;
        const int64_t utc = to_utc(local);
        if (utc > utc_seconds) return utc;
      }
    }
  }
  return NotFoundError("cron '" + expression_ + "' does not fire within 30 years");
}

}  // namespace edgeloop::hub
