#include "common/status.h"

#include <gtest/gtest.h>

#include <memory>

namespace edgeloop {
namespace {

StatusOr<int> Half(int value) {
  if (value % 2 != 0) return InvalidArgumentError("odd: " + std::to_string(value));
  return value / 2;
}

StatusOr<int> Quarter(int value) {
  ASSIGN_OR_RETURN(int half, Half(value));
  ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

Status CheckQuarter(int value) {
  RETURN_IF_ERROR(Quarter(value).status());
  return Status::Ok();
}

TEST(StatusTest, DefaultIsOk) {
  Status status;
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.ToString(), "OK");
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status status = NotFoundError("model 'x' is not loaded");
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_EQ(status.ToString(), "NOT_FOUND: model 'x' is not loaded");
}

TEST(StatusTest, OkStatusDropsMessage) {
  Status status(StatusCode::kOk, "ignored");
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.message(), "");
}

TEST(StatusTest, WithContextPrefixesErrorsOnly) {
  EXPECT_EQ(InternalError("boom").WithContext("loading").message(), "loading: boom");
  EXPECT_TRUE(Status::Ok().WithContext("loading").ok());
}

TEST(StatusOrTest, HoldsValueOrError) {
  StatusOr<int> value = Half(8);
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value, 4);
  StatusOr<int> error = Half(3);
  ASSERT_FALSE(error.ok());
  EXPECT_EQ(error.status().code(), StatusCode::kInvalidArgument);
}

TEST(StatusOrTest, OkStatusBecomesInternalError) {
  StatusOr<int> bad(Status::Ok());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInternal);
}

TEST(StatusOrTest, MacrosPropagateTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().message(), "odd: 3");
  EXPECT_EQ(Quarter(5).status().message(), "odd: 5");
  EXPECT_TRUE(CheckQuarter(12).ok());
  EXPECT_FALSE(CheckQuarter(10).ok());
}

TEST(StatusOrTest, MoveOnlyValues) {
  StatusOr<std::unique_ptr<int>> value = std::make_unique<int>(7);
  ASSERT_TRUE(value.ok());
  std::unique_ptr<int> taken = std::move(value).value();
  EXPECT_EQ(*taken, 7);
}

TEST(StatusCodeTest, EveryCodeHasAName) {
  for (int code = 0; code <= 16; ++code) {
    EXPECT_NE(StatusCodeName(static_cast<StatusCode>(code)), "UNKNOWN")
        << code << " (2 is UNKNOWN itself)";
    if (code == 1) code = 2;  // skip kUnknown
  }
}

}  // namespace
}  // namespace edgeloop
