#include "hub/cron.h"

#include <gtest/gtest.h>

#include "hub/event.h"

namespace edgeloop::hub {
namespace {

int64_t At(const char* rfc3339) {
  auto ms = ParseRfc3339Ms(rfc3339);
  EXPECT_TRUE(ms.ok()) << rfc3339;
  return *ms / 1000;
}

CronSchedule MustParse(const char* expression, const char* zone = "UTC") {
  auto tz = TimeZone::Load(zone);
  EXPECT_TRUE(tz.ok()) << tz.status().message();
  auto cron = CronSchedule::Parse(expression, *tz);
  EXPECT_TRUE(cron.ok()) << cron.status().message();
  return *cron;
}

int64_t Next(const CronSchedule& cron, int64_t after) {
  auto next = cron.NextAfter(after);
  EXPECT_TRUE(next.ok()) << next.status().message();
  return next.ok() ? *next : -1;
}

TEST(TimeZoneTest, OffsetsFollowTheZoneinfoFile) {
  auto berlin = TimeZone::Load("Europe/Berlin");
  ASSERT_TRUE(berlin.ok()) << berlin.status().message();
  EXPECT_EQ((*berlin)->OffsetAt(At("2026-01-15T12:00:00Z")), 3600);
  EXPECT_EQ((*berlin)->OffsetAt(At("2026-07-15T12:00:00Z")), 7200);
  // The switch is at 01:00 UTC on the last Sunday of March.
  EXPECT_EQ((*berlin)->OffsetAt(At("2026-03-29T00:59:59Z")), 3600);
  EXPECT_EQ((*berlin)->OffsetAt(At("2026-03-29T01:00:00Z")), 7200);
  auto ny = TimeZone::Load("America/New_York");
  ASSERT_TRUE(ny.ok());
  EXPECT_EQ((*ny)->OffsetAt(At("2026-01-15T12:00:00Z")), -5 * 3600);
  EXPECT_EQ((*ny)->OffsetAt(At("2026-07-15T12:00:00Z")), -4 * 3600);
}

TEST(TimeZoneTest, FooterRuleAppliesAfterTheLastTransition) {
  // Debian's "fat" files list transitions until 2037; later years come from the POSIX rule.
  auto berlin = TimeZone::Load("Europe/Berlin");
  ASSERT_TRUE(berlin.ok());
  EXPECT_EQ((*berlin)->OffsetAt(At("2045-07-01T10:00:00Z")), 7200);
  EXPECT_EQ((*berlin)->OffsetAt(At("2045-12-01T10:00:00Z")), 3600);
  // 2045: last Sunday of March is the 26th; the switch is at 01:00 UTC.
  EXPECT_EQ((*berlin)->OffsetAt(At("2045-03-26T00:59:59Z")), 3600);
  EXPECT_EQ((*berlin)->OffsetAt(At("2045-03-26T01:00:00Z")), 7200);
  auto sydney = TimeZone::Load("Australia/Sydney");
  ASSERT_TRUE(sydney.ok());
  EXPECT_EQ((*sydney)->OffsetAt(At("2045-01-15T00:00:00Z")), 11 * 3600);
  EXPECT_EQ((*sydney)->OffsetAt(At("2045-07-15T00:00:00Z")), 10 * 3600);
}

TEST(TimeZoneTest, BadNamesAndFilesAreErrors) {
  EXPECT_EQ(TimeZone::Load("Mars/Olympus_Mons").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(TimeZone::Load("../../etc/passwd").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(TimeZone::FromTzif("x", "not a tzif file at all, but long enough to have a header")
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(TimeZone::FromTzif("x", "TZif2").status().code(), StatusCode::kInvalidArgument);
}

TEST(CronTest, EveryFifteenMinutesInUtc) {
  const CronSchedule cron = MustParse("*/15 * * * *");
  EXPECT_EQ(Next(cron, At("2026-11-27T10:00:00Z")), At("2026-11-27T10:15:00Z"));
  EXPECT_EQ(Next(cron, At("2026-11-27T10:14:59Z")), At("2026-11-27T10:15:00Z"));
  EXPECT_EQ(Next(cron, At("2026-11-27T23:59:00Z")), At("2026-11-28T00:00:00Z"));
}

TEST(CronTest, ListsRangesStepsAndNames) {
  const CronSchedule cron = MustParse("5,35 9-17/4 * jan-mar mon-fri");
  // 2026-11-27 is a Friday: the next match is Friday 2027-01-01 09:05.
  EXPECT_EQ(Next(cron, At("2026-11-27T10:00:00Z")), At("2027-01-01T09:05:00Z"));
  EXPECT_EQ(Next(cron, At("2027-01-01T09:05:00Z")), At("2027-01-01T09:35:00Z"));
  EXPECT_EQ(Next(cron, At("2027-01-01T09:35:00Z")), At("2027-01-01T13:05:00Z"));
  EXPECT_EQ(Next(cron, At("2027-01-01T17:35:00Z")), At("2027-01-04T09:05:00Z"));  // Monday
}

TEST(CronTest, SundayIsZeroAndSeven) {
  const CronSchedule zero = MustParse("0 12 * * 0");
  const CronSchedule seven = MustParse("0 12 * * 7");
  EXPECT_EQ(Next(zero, At("2026-11-27T00:00:00Z")), At("2026-11-29T12:00:00Z"));
  EXPECT_EQ(Next(seven, At("2026-11-27T00:00:00Z")), At("2026-11-29T12:00:00Z"));
}

TEST(CronTest, BothDayFieldsRestrictedMeansEither) {
  // The 13th or any Friday (Vixie cron).
  const CronSchedule cron = MustParse("0 0 13 * fri");
  EXPECT_EQ(Next(cron, At("2026-11-27T00:00:00Z")), At("2026-12-04T00:00:00Z"));  // a Friday
  EXPECT_EQ(Next(cron, At("2026-12-11T00:00:00Z")), At("2026-12-13T00:00:00Z"));  // the 13th
}

TEST(CronTest, LocalTimeInAZone) {
  const CronSchedule cron = MustParse("0 9 * * mon-fri", "America/New_York");
  // Winter: 09:00 EST is 14:00 UTC; summer: 09:00 EDT is 13:00 UTC.
  EXPECT_EQ(Next(cron, At("2026-11-27T00:00:00Z")), At("2026-11-27T14:00:00Z"));
  EXPECT_EQ(Next(cron, At("2026-07-01T00:00:00Z")), At("2026-07-01T13:00:00Z"));
}

TEST(CronTest, SpringForwardGapFiresAfterTheGap) {
  // 2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 does not exist.
  const CronSchedule cron = MustParse("30 2 * * *", "Europe/Berlin");
  EXPECT_EQ(Next(cron, At("2026-03-28T12:00:00Z")), At("2026-03-29T01:00:00Z"));
  EXPECT_EQ(Next(cron, At("2026-03-29T01:00:00Z")), At("2026-03-30T00:30:00Z"));
  // Every quarter hour through the gap fires once at its end, then carries on.
  const CronSchedule quarter = MustParse("*/15 * * * *", "Europe/Berlin");
  EXPECT_EQ(Next(quarter, At("2026-03-29T00:45:00Z")), At("2026-03-29T01:00:00Z"));
  EXPECT_EQ(Next(quarter, At("2026-03-29T01:00:00Z")), At("2026-03-29T01:15:00Z"));
}

TEST(CronTest, FallBackRepeatedHourFiresOnce) {
  // 2026-10-25 in Berlin: 03:00 CEST falls back to 02:00 CET (01:00 UTC); 02:30 happens twice.
  const CronSchedule cron = MustParse("30 2 * * *", "Europe/Berlin");
  EXPECT_EQ(Next(cron, At("2026-10-24T12:00:00Z")), At("2026-10-25T00:30:00Z"));
  EXPECT_EQ(Next(cron, At("2026-10-25T00:30:00Z")), At("2026-10-26T01:30:00Z"));
  // Started during the second 02:xx hour: the day's 02:30 was already due.
  EXPECT_EQ(Next(cron, At("2026-10-25T01:10:00Z")), At("2026-10-26T01:30:00Z"));
}

TEST(CronTest, LeapDay) {
  const CronSchedule cron = MustParse("0 0 29 2 *");
  EXPECT_EQ(Next(cron, At("2026-11-27T00:00:00Z")), At("2028-02-29T00:00:00Z"));
}

TEST(CronTest, MalformedExpressionsAreRejectedWithTheField) {
  auto utc = *TimeZone::Load("UTC");
  for (const char* bad : {"", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *",
                          "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *", "a * * * *",
                          "* * * foo *", "1,,2 * * * *", "0 0 30 2 *"}) {
    auto cron = CronSchedule::Parse(bad, utc);
    EXPECT_EQ(cron.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  auto hour = CronSchedule::Parse("0 25 * * *", utc);
  EXPECT_NE(hour.status().message().find("hour"), std::string::npos) << hour.status().message();
  auto never = CronSchedule::Parse("0 0 31 4 *", utc);
  EXPECT_NE(never.status().message().find("never fires"), std::string::npos);
}

}  // namespace
}  // namespace edgeloop::hub
