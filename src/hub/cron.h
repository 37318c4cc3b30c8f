// Cron expressions with time zones, for the retraining scheduler (docs/hub.md, "Retraining
// scheduler").
//
//   ASSIGN_OR_RETURN(auto tz, TimeZone::Load("Europe/Berlin"));
//   ASSIGN_OR_RETURN(CronSchedule cron, CronSchedule::Parse("30 2 * * mon-fri", tz));
//   ASSIGN_OR_RETURN(int64_t next, cron.NextAfter(now_unix_seconds));
//
// Time zones come from the system's compiled zoneinfo (TZif files under /usr/share/zoneinfo),
// read once; g++ 12's libstdc++ has no std::chrono::tzdb. Both classes are immutable after
// creation and thread-safe.
#ifndef EDGELOOP_HUB_CRON_H_
#define EDGELOOP_HUB_CRON_H_

#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace edgeloop::hub {

class TimeZone {
 public:
  // "UTC" (or "") is built in; any other name is read from `zoneinfo_dir`/NAME. kInvalidArgument
  // for a malformed name or file, kNotFound for an unknown zone.
  static StatusOr<std::shared_ptr<const TimeZone>> Load(
      std::string_view name, const std::string& zoneinfo_dir = "/usr/share/zoneinfo");
  // Parses TZif bytes (versions 1 to 4); for tests and odd installations.
  static StatusOr<std::shared_ptr<const TimeZone>> FromTzif(std::string name,
                                                            std::string_view bytes);

  const std::string& name() const { return name_; }
  // Seconds east of UTC in effect at `utc_seconds`.
  int32_t OffsetAt(int64_t utc_seconds) const;

  // The POSIX TZ footer rule that applies after the last transition (cron.cc).
  struct Rule;

 private:
  TimeZone() = default;

  std::string name_;
  std::vector<int64_t> transitions_;    // UTC seconds, ascending
  std::vector<int32_t> offset_after_;   // the offset from transitions_[i] on
  int32_t initial_offset_ = 0;          // before the first transition
  std::shared_ptr<const Rule> footer_;  // may be null
};

class CronSchedule {
 public:
  // Five fields: minute hour day-of-month month day-of-week; `*`, numbers, ranges `a-b`, lists,
  // steps `*/n` and `a-b/n`, month and weekday names (jan, mon), day-of-week 0-7 (7 = Sunday).
  // kInvalidArgument naming the field for anything else, or for a schedule that never fires.
  static StatusOr<CronSchedule> Parse(std::string_view expression,
                                      std::shared_ptr<const TimeZone> zone);

  // The first firing time strictly after `utc_seconds`, in UTC seconds. A local time skipped by
  // a DST gap fires at the first instant after the gap; a local time that occurs twice fires at
  // its first occurrence only. kNotFound when nothing fires within 30 years.
  StatusOr<int64_t> NextAfter(int64_t utc_seconds) const;

  const std::string& expression() const { return expression_; }
  const TimeZone& zone() const { return *zone_; }

 private:
  CronSchedule() = default;
  bool DayMatches(int64_t days_since_epoch) const;

  std::string expression_;
  std::shared_ptr<const TimeZone> zone_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1-31
  std::bitset<13> months_;   // 1-12
  std::bitset<7> weekdays_;  // 0 = Sunday
  bool days_restricted_ = false;
  bool weekdays_restricted_ = false;
};

}  // namespace edgeloop::hub

#endif  // EDGELOOP_HUB_CRON_H_
