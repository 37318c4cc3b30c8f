#include "pipeline/expr.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>

namespace edgeloop::pipeline {
namespace {

using lake::Batch;
using lake::Column;
using lake::Type;
using ::testing::HasSubstr;

// A batch with columns of every type; row 2 is all NULL.
//   ts                        machine  temp   count  ok     day
//   2026-11-27T04:50:00Z      " M-1 "  71.5   3      true   2026-11-27
//   2026-02-28T23:59:59.5Z    "m-2"    -4     0      false  2024-02-29
//   NULL                      NULL     NULL   NULL   NULL   NULL
Batch TestBatch() {
  auto schema = std::make_shared<lake::Schema>();
  schema->fields = {{1, "ts", Type::kTimestamp}, {2, "machine", Type::kString},
                    {3, "temp", Type::kDouble},  {4, "count", Type::kInt64},
                    {5, "ok", Type::kBool},      {6, "day", Type::kDate}};
  Batch batch(schema);
  auto& c = batch.columns();
  c[0].AppendInt(*lake::ParseTimestamp("2026-11-27T04:50:00Z"));
  c[0].AppendInt(*lake::ParseTimestamp("2026-02-28T23:59:59.5Z"));
  c[0].AppendNull();
  c[1].AppendString(" M-1 ");
  c[1].AppendString("m-2");
  c[1].AppendNull();
  c[2].AppendDouble(71.5);
  c[2].AppendDouble(-4);
  c[2].AppendNull();
  c[3].AppendInt(3);
  c[3].AppendInt(0);
  c[3].AppendNull();
  c[4].AppendBool(true);
  c[4].AppendBool(false);
  c[4].AppendNull();
  c[5].AppendInt(*lake::ParseDate("2026-11-27"));
  c[5].AppendInt(*lake::ParseDate("2024-02-29"));
  c[5].AppendNull();
  return batch;
}

struct Evaluated {
  Column column;
  std::vector<RowError> errors;
  // Row i as text: "NULL" or the lake text form.
  std::string At(int64_t i) const {
    return column.IsNull(i) ? "NULL" : lake::FormatValue(column, i);
  }
};

Evaluated Eval(const std::string& text, const Clock* clock = Clock::Real()) {
  const Batch batch = TestBatch();
  StatusOr<std::unique_ptr<Expression>> expr = Expression::Compile(text, *batch.schema());
  EXPECT_TRUE(expr.ok()) << text << ": " << expr.status();
  Evaluated out;
  if (!expr.ok()) return out;
  EXPECT_TRUE((*expr)->Evaluate(batch, {clock, &out.errors}, &out.column).ok());
  EXPECT_EQ(out.column.size(), 3);
  return out;
}

std::vector<std::string> Rows(const std::string& text) {
  const Evaluated e = Eval(text);
  return {e.At(0), e.At(1), e.At(2)};
}

Status CompileError(const std::string& text) {
  const Batch batch = TestBatch();
  StatusOr<std::unique_ptr<Expression>> expr = Expression::Compile(text, *batch.schema());
  return expr.ok() ? Status::Ok() : expr.status();
}

using V = std::vector<std::string>;

TEST(ExprTest, ArithmeticFollowsTypes) {
  EXPECT_EQ(Rows("temp * 9 / 5 + 32"), (V{"160.7", "24.8", "NULL"}));
  EXPECT_EQ(Rows("count + 2"), (V{"5", "2", "NULL"}));
  EXPECT_EQ(Rows("count * 2 - 1"), (V{"5", "-1", "NULL"}));
  EXPECT_EQ(Rows("count / 2"), (V{"1.5", "0", "NULL"}));  // `/` is always double
  EXPECT_EQ(Rows("count % 2"), (V{"1", "0", "NULL"}));
  EXPECT_EQ(Rows("-count"), (V{"-3", "0", "NULL"}));
  EXPECT_EQ(Rows("2 + 3 * 4"), (V{"14", "14", "14"}));
  EXPECT_EQ(Rows("(2 + 3) * 4"), (V{"20", "20", "20"}));
  EXPECT_EQ(Eval("count + 2").column.type(), Type::kInt64);
  EXPECT_EQ(Eval("count + 2.0").column.type(), Type::kDouble);
}

TEST(ExprTest, DivisionByZeroAndOverflowAreRowErrors) {
  const Evaluated div = Eval("temp / count");
  EXPECT_EQ(div.At(0), "23.833333333333332");
  EXPECT_EQ(div.At(1), "NULL");
  ASSERT_EQ(div.errors.size(), 1u);
  EXPECT_EQ(div.errors[0].row, 1);
  EXPECT_EQ(div.errors[0].reason, "division by zero");

  const Evaluated overflow = Eval("count * 9223372036854775807");
  ASSERT_EQ(overflow.errors.size(), 1u);
  EXPECT_EQ(overflow.errors[0].row, 0);
  EXPECT_THAT(overflow.errors[0].reason, HasSubstr("overflow"));
  EXPECT_EQ(Rows("-9223372036854775808"),
            (V{"-9223372036854775808", "-9223372036854775808", "-9223372036854775808"}));
}

TEST(ExprTest, ThreeValuedLogic) {
  EXPECT_EQ(Rows("ok AND NULL"), (V{"NULL", "false", "NULL"}));
  EXPECT_EQ(Rows("ok OR NULL"), (V{"true", "NULL", "NULL"}));
  EXPECT_EQ(Rows("NOT ok"), (V{"false", "true", "NULL"}));
  EXPECT_EQ(Rows("ok AND temp > 0"), (V{"true", "false", "NULL"}));
  EXPECT_EQ(Rows("NULL AND FALSE"), (V{"false", "false", "false"}));
  EXPECT_EQ(Rows("temp IS NULL"), (V{"false", "false", "true"}));
  EXPECT_EQ(Rows("temp IS NOT NULL AND temp < 500"), (V{"true", "true", "false"}));
  EXPECT_EQ(Rows("is_null(machine)"), (V{"false", "false", "true"}));
}

TEST(ExprTest, Comparisons) {
  EXPECT_EQ(Rows("count = 3"), (V{"true", "false", "NULL"}));
  EXPECT_EQ(Rows("count == 3.0"), (V{"true", "false", "NULL"}));
  EXPECT_EQ(Rows("count <> 3"), (V{"false", "true", "NULL"}));
  EXPECT_EQ(Rows("count >= 0"), (V{"true", "true", "NULL"}));
  EXPECT_EQ(Rows("machine < 'n'"), (V{"true", "true", "NULL"}));
  EXPECT_EQ(Rows("machine IN ('m-2', 'x')"), (V{"false", "true", "NULL"}));
  EXPECT_EQ(Rows("count NOT IN (1, 2, 3)"), (V{"false", "true", "NULL"}));
  // A string literal against a timestamp or date is parsed once, at compile time.
  EXPECT_EQ(Rows("ts >= '2026-11-01'"), (V{"true", "false", "NULL"}));
  EXPECT_EQ(Rows("day = '2024-02-29'"), (V{"false", "true", "NULL"}));
  EXPECT_EQ(Rows("ts > day"), (V{"true", "true", "NULL"}));
  EXPECT_EQ(Rows("ts < to_date(ts)"), (V{"false", "false", "NULL"}));
}

TEST(ExprTest, StringFunctions) {
  EXPECT_EQ(Rows("upper(trim(machine))"), (V{"M-1", "M-2", "NULL"}));
  EXPECT_EQ(Rows("lower(machine)"), (V{" m-1 ", "m-2", "NULL"}));
  EXPECT_EQ(Rows("length(machine)"), (V{"5", "3", "NULL"}));
  EXPECT_EQ(Rows("length('héllo')"), (V{"5", "5", "5"}));
  EXPECT_EQ(Rows("substr(machine, 2, 3)"), (V{"M-1", "-2", "NULL"}));
  EXPECT_EQ(Rows("substr('héllo', 2)"), (V{"éllo", "éllo", "éllo"}));
  EXPECT_EQ(Rows("substr('abc', 0, 2)"), (V{"a", "a", "a"}));
  EXPECT_EQ(Rows("concat(machine, '/', count)"), (V{" M-1 /3", "m-2/0", "/"}));
  EXPECT_EQ(Rows("machine || '/' || count"), (V{" M-1 /3", "m-2/0", "NULL"}));
  EXPECT_EQ(Rows("coalesce(machine, 'none')"), (V{" M-1 ", "m-2", "none"}));
  EXPECT_EQ(Rows("coalesce(count, temp, 0)"), (V{"3", "0", "0"}));
}

TEST(ExprTest, NumericFunctions) {
  EXPECT_EQ(Rows("abs(temp)"), (V{"71.5", "4", "NULL"}));
  EXPECT_EQ(Rows("round(temp / 3, 2)"), (V{"23.83", "-1.33", "NULL"}));
  EXPECT_EQ(Rows("round(temp)"), (V{"72", "-4", "NULL"}));
  EXPECT_EQ(Rows("round(1234, -2)"), (V{"1200", "1200", "1200"}));
  EXPECT_EQ(Rows("floor(temp)"), (V{"71", "-4", "NULL"}));
}

TEST(ExprTest, DateFunctions) {
  EXPECT_EQ(Rows("date_trunc('day', ts)"),
            (V{"2026-11-27T00:00:00Z", "2026-02-28T00:00:00Z", "NULL"}));
  EXPECT_EQ(Rows("date_trunc('month', ts)"),
            (V{"2026-11-01T00:00:00Z", "2026-02-01T00:00:00Z", "NULL"}));
  EXPECT_EQ(Rows("date_trunc('hour', ts)"),
            (V{"2026-11-27T04:00:00Z", "2026-02-28T23:00:00Z", "NULL"}));
  EXPECT_EQ(Rows("date_trunc('year', day)"), (V{"2026-01-01", "2024-01-01", "NULL"}));
  EXPECT_EQ(Rows("year(ts)"), (V{"2026", "2026", "NULL"}));
  EXPECT_EQ(Rows("month(ts)"), (V{"11", "2", "NULL"}));
  EXPECT_EQ(Rows("day(day)"), (V{"27", "29", "NULL"}));
  EXPECT_EQ(Rows("hour(ts)"), (V{"4", "23", "NULL"}));
  EXPECT_EQ(Rows("to_date(ts)"), (V{"2026-11-27", "2026-02-28", "NULL"}));
}

TEST(ExprTest, NowComesFromTheInjectedClock) {
  FakeClock clock;
  clock.SetWallTime(std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000)));
  const Evaluated e = Eval("now()", &clock);
  EXPECT_EQ(e.At(0), "2027-01-15T08:00:00Z");
  EXPECT_EQ(e.At(2), "2027-01-15T08:00:00Z");
}

TEST(ExprTest, CastAndTryCast) {
  EXPECT_EQ(Rows("cast(count AS string)"), (V{"3", "0", "NULL"}));
  EXPECT_EQ(Rows("cast(temp AS int64)"), (V{"72", "-4", "NULL"}));
  EXPECT_EQ(Rows("cast('2026-11-27' AS date)"), (V{"2026-11-27", "2026-11-27", "2026-11-27"}));
  EXPECT_EQ(Rows("cast(ok AS int)"), (V{"1", "0", "NULL"}));
  const Evaluated bad = Eval("cast(machine AS double)");
  EXPECT_EQ(bad.At(0), "NULL");
  ASSERT_EQ(bad.errors.size(), 2u);
  EXPECT_EQ(bad.errors[0].reason, "cannot cast ' M-1 ' to double");
  const Evaluated lenient = Eval("try_cast(machine AS double)");
  EXPECT_TRUE(lenient.errors.empty());
  EXPECT_EQ(lenient.At(1), "NULL");
}

TEST(ExprTest, CaseAndIf) {
  EXPECT_EQ(Rows("CASE WHEN temp > 50 THEN 'hot' WHEN temp < 0 THEN 'cold' ELSE 'ok' END"),
            (V{"hot", "cold", "ok"}));
  EXPECT_EQ(Rows("case when count > 1 then count end"), (V{"3", "NULL", "NULL"}));
  EXPECT_EQ(Rows("if(ok, temp, count)"), (V{"71.5", "0", "NULL"}));
}

TEST(ExprTest, QuotedNamesAndStrings) {
  EXPECT_EQ(Rows("\"count\" + 1"), (V{"4", "1", "NULL"}));
  EXPECT_EQ(Rows("`count` + 1"), (V{"4", "1", "NULL"}));
  EXPECT_EQ(Rows("'it''s'"), (V{"it's", "it's", "it's"}));
}

TEST(ExprTest, CompileErrorsNamePositions) {
  EXPECT_EQ(CompileError("tmp > 3").message(),
            "unknown column 'tmp' at position 1 (columns: ts, machine, temp, count, ok, day)");
  EXPECT_THAT(CompileError("temp + 'x'").message(), HasSubstr("at position 6"));
  EXPECT_THAT(CompileError("temp + 'x'").message(), HasSubstr("type error"));
  EXPECT_THAT(CompileError("temp > ").message(), HasSubstr("unexpected end of expression"));
  EXPECT_THAT(CompileError("(temp > 1").message(), HasSubstr("expected ')'"));
  EXPECT_EQ(CompileError("temp > 1 )").message(), "unexpected ')' at position 10");
  EXPECT_EQ(CompileError("temp # 1").message(), "unexpected character '#' at position 6");
  EXPECT_EQ(CompileError("'abc").message(), "unterminated string literal at position 1");
  EXPECT_THAT(CompileError("nosuch(temp)").message(), HasSubstr("unknown function 'nosuch'"));
  EXPECT_THAT(CompileError("upper(temp)").message(), HasSubstr("type error"));
  EXPECT_THAT(CompileError("substr(machine)").message(), HasSubstr("takes 2 to 3 arguments"));
  EXPECT_THAT(CompileError("ts > 'yesterday'").message(),
              HasSubstr("'yesterday' is not a valid timestamp at position 6"));
  EXPECT_THAT(CompileError("date_trunc('week', ts)").message(), HasSubstr("unknown unit"));
  EXPECT_THAT(CompileError("cast(ts AS bool)").message(), HasSubstr("cannot cast timestamp"));
  EXPECT_THAT(CompileError("NOT temp").message(), HasSubstr("NOT needs bool"));
  EXPECT_THAT(CompileError("sum(temp)").message(), HasSubstr("only allowed in aggregate"));
  EXPECT_THAT(CompileError("").message(), HasSubstr("empty expression"));
  EXPECT_THAT(CompileError("12abc").message(), HasSubstr("invalid number"));
}

TEST(ExprTest, AggregatesSplitIntoFunctionAndArgument) {
  const Batch batch = TestBatch();
  auto expr = Expression::Compile("avg(temp * 2)", *batch.schema(), true);
  ASSERT_TRUE(expr.ok()) << expr.status();
  EXPECT_EQ((*expr)->type(), Type::kDouble);
  auto call = (*expr)->SplitAggregate();
  ASSERT_TRUE(call.ok());
  EXPECT_EQ(call->function, "avg");
  ASSERT_NE(call->argument, nullptr);
  Column arg;
  ASSERT_TRUE(call->argument->Evaluate(batch, {}, &arg).ok());
  EXPECT_EQ(arg.GetDouble(0), 143);
  auto count = Expression::Compile("count(*)", *batch.schema(), true);
  ASSERT_TRUE(count.ok());
  EXPECT_EQ((*count)->SplitAggregate()->argument, nullptr);
  auto nested = Expression::Compile("sum(max(temp))", *batch.schema(), true);
  EXPECT_THAT(nested.status().message(), HasSubstr("cannot be nested"));
  auto not_top = Expression::Compile("sum(temp) + 1", *batch.schema(), true);
  ASSERT_TRUE(not_top.ok());
  EXPECT_THAT((*not_top)->SplitAggregate().status().message(), HasSubstr("not an aggregate"));
}

TEST(ExprTest, ParsedValues) {
  Column c(Type::kInt64);
  EXPECT_TRUE(AppendParsed(" 42 ", Type::kInt64, &c));
  EXPECT_TRUE(AppendParsed("+7", Type::kInt64, &c));
  EXPECT_FALSE(AppendParsed("4.2", Type::kInt64, &c));
  EXPECT_FALSE(AppendParsed("", Type::kInt64, &c));
  EXPECT_FALSE(AppendParsed("99999999999999999999", Type::kInt64, &c));
  EXPECT_EQ(c.size(), 2);
  Column b(Type::kBool);
  EXPECT_TRUE(AppendParsed("Yes", Type::kBool, &b));
  EXPECT_TRUE(AppendParsed("0", Type::kBool, &b));
  EXPECT_FALSE(AppendParsed("maybe", Type::kBool, &b));
  Column d(Type::kDouble);
  EXPECT_TRUE(AppendParsed("1e3", Type::kDouble, &d));
  EXPECT_FALSE(AppendParsed("1,5", Type::kDouble, &d));
  EXPECT_EQ(d.GetDouble(0), 1000);
}

}  // namespace
}  // namespace edgeloop::pipeline
