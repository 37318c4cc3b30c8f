#include "lake/types.h"

#include <gtest/gtest.h>

#include <cmath>

#include "lake/batch.h"
#include "lake/value_text.h"

namespace edgeloop::lake {
namespace {

TEST(TypesTest, ParsesNamesAndAliases) {
  EXPECT_EQ(*ParseType("int"), Type::kInt64);
  EXPECT_EQ(*ParseType("BIGINT"), Type::kInt64);
  EXPECT_EQ(*ParseType("real"), Type::kDouble);
  EXPECT_EQ(*ParseType("varchar"), Type::kString);
  EXPECT_EQ(*ParseType("datetime"), Type::kTimestamp);
  EXPECT_EQ(*ParseType("boolean"), Type::kBool);
  EXPECT_EQ(*ParseType("date"), Type::kDate);
  EXPECT_EQ(ParseType("blob").status().code(), StatusCode::kInvalidArgument);
  for (Type t :
       {Type::kBool, Type::kInt64, Type::kDouble, Type::kString, Type::kTimestamp, Type::kDate}) {
    EXPECT_EQ(*ParseType(TypeName(t)), t);
  }
}

TEST(TypesTest, WideningRules) {
  EXPECT_TRUE(CanWiden(Type::kInt64, Type::kDouble));
  EXPECT_TRUE(CanWiden(Type::kDate, Type::kTimestamp));
  EXPECT_TRUE(CanWiden(Type::kBool, Type::kString));
  EXPECT_TRUE(CanWiden(Type::kTimestamp, Type::kString));
  EXPECT_FALSE(CanWiden(Type::kDouble, Type::kInt64));
  EXPECT_FALSE(CanWiden(Type::kString, Type::kInt64));
  EXPECT_FALSE(CanWiden(Type::kTimestamp, Type::kDate));
  EXPECT_FALSE(CanWiden(Type::kInt64, Type::kInt64));
}

TEST(TypesTest, ValidatesSchemas) {
  Schema s{1, {{1, "a", Type::kInt64}, {2, "b", Type::kString}}};
  EXPECT_TRUE(ValidateSchema(s).ok());
  EXPECT_EQ(s.IndexOf("b"), 1);
  EXPECT_EQ(s.Find("zz"), nullptr);
  EXPECT_EQ(s.next_field_id(), 3);
  s.fields.push_back({3, "a", Type::kInt64});
  EXPECT_EQ(ValidateSchema(s).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(ValidateSchema(Schema{1, {{1, "", Type::kInt64}}}).ok());
  EXPECT_FALSE(ValidateSchema(Schema{1, {{1, std::string(129, 'x'), Type::kInt64}}}).ok());
  EXPECT_FALSE(ValidateSchema(Schema{1, {{1, "a\nb", Type::kInt64}}}).ok());
  EXPECT_FALSE(ValidateSchema(Schema{}).ok());
}

TEST(TypesTest, TimestampTextRoundTrips) {
  EXPECT_EQ(FormatTimestamp(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatTimestamp(-1), "1969-12-31T23:59:59.999999Z");
  const int64_t t = *ParseTimestamp("2026-11-27T04:50:00.123456Z");
  EXPECT_EQ(FormatTimestamp(t), "2026-11-27T04:50:00.123456Z");
  EXPECT_EQ(*ParseTimestamp("2026-11-27 04:50"), *ParseTimestamp("2026-11-27T04:50:00Z"));
  EXPECT_EQ(*ParseTimestamp("2026-11-27T06:50:00+02:00"), *ParseTimestamp("2026-11-27T04:50:00Z"));
  EXPECT_EQ(*ParseTimestamp("2026-11-27T00:00:00-01:30"), *ParseTimestamp("2026-11-27T01:30Z"));
  EXPECT_EQ(*ParseTimestamp("2026-11-27"), int64_t{*ParseDate("2026-11-27")} * kMicrosPerDay);
  EXPECT_EQ(*ParseTimestamp("2026-11-27T04:50:00.1Z") % kMicrosPerSecond, 100000);
  EXPECT_EQ(*ParseTimestamp("2026-11-27 04:50:00.123456789") % kMicrosPerSecond, 123456);
  for (const char* bad :
       {"", "2026-13-01", "2026-02-30", "2026-11-27T25:00", "2026-11-27X", "2026-11-27T04:50:00+",
        "27/11/2026", "2026-11-27T04:50:00.Z", "12345", "2026-11-27T04:50:00Zjunk"}) {
    EXPECT_FALSE(ParseTimestamp(bad).has_value()) << bad;
  }
  EXPECT_EQ(FormatTimestamp(kMinTimestamp), "0000-01-01T00:00:00Z");
  EXPECT_EQ(FormatTimestamp(kMaxTimestamp), "9999-12-31T23:59:59.999999Z");
  EXPECT_EQ(*ParseTimestamp(FormatTimestamp(kMinTimestamp)), kMinTimestamp);
  EXPECT_EQ(*ParseTimestamp(FormatTimestamp(kMaxTimestamp)), kMaxTimestamp);
}

TEST(TypesTest, DateTextRoundTrips) {
  EXPECT_EQ(FormatDate(0), "1970-01-01");
  EXPECT_EQ(*ParseDate("2024-02-29"), DaysFromCivil(2024, 2, 29));
  EXPECT_FALSE(ParseDate("2023-02-29").has_value());
  EXPECT_FALSE(ParseDate("2023-02-28T00:00").has_value());
  for (int64_t d = kMinDate; d <= kMaxDate; d += 997) {
    EXPECT_EQ(*ParseDate(FormatDate(static_cast<int32_t>(d))), d);
  }
}

TEST(TypesTest, NumbersAndBools) {
  EXPECT_EQ(*ParseInt64("-9223372036854775808"), INT64_MIN);
  EXPECT_EQ(*ParseInt64("+42"), 42);
  EXPECT_FALSE(ParseInt64("9223372036854775808").has_value());
  EXPECT_FALSE(ParseInt64("1.5").has_value());
  EXPECT_FALSE(ParseInt64("").has_value());
  EXPECT_FALSE(ParseInt64("+").has_value());
  EXPECT_EQ(*ParseDouble("1e-3"), 0.001);
  EXPECT_TRUE(std::isinf(*ParseDouble("-inf")));
  EXPECT_FALSE(ParseDouble("1.2.3").has_value());
  EXPECT_EQ(*ParseBool("True"), true);
  EXPECT_EQ(*ParseBool("0"), false);
  EXPECT_FALSE(ParseBool("maybe").has_value());
  char buf[kMaxNumberText];
  for (double d : {0.1, 1e300, -2.5e-300, 123456789.123, 5.0}) {
    EXPECT_EQ(*ParseDouble(std::string_view(buf, WriteDouble(buf, d))), d);
  }
}

TEST(BatchTest, ColumnsHoldValuesAndNulls) {
  auto schema = std::make_shared<Schema>(
      Schema{1, {{1, "i", Type::kInt64}, {2, "s", Type::kString}, {3, "d", Type::kDouble}}});
  Batch b(schema);
  b.column(0).AppendInt(7);
  b.column(1).AppendString("x,y");
  b.column(2).AppendNull();
  b.column(0).AppendNull();
  b.column(1).AppendString("");
  b.column(2).AppendDouble(2.5);
  ASSERT_EQ(b.num_rows(), 2);
  EXPECT_EQ(FormatValue(b.column(1), 0), "x,y");
  EXPECT_TRUE(b.column(2).IsNull(0));
  EXPECT_TRUE(b.column(0).IsNull(1));
  EXPECT_EQ(b.column(1).GetString(1), "");
  Batch c(schema);
  c.AppendRow(b, 1);
  EXPECT_EQ(c.num_rows(), 1);
  EXPECT_EQ(c.column(2).GetDouble(0), 2.5);
  EXPECT_GT(b.ByteSize(), 0);
  b.Clear();
  EXPECT_EQ(b.num_rows(), 0);
  b.column(1).AppendString("z");
  EXPECT_EQ(b.column(1).GetString(0), "z");
}

}  // namespace
}  // namespace edgeloop::lake
