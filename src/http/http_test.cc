#include "http/http.h"

#include <gtest/gtest.h>

namespace edgeloop::http {
namespace {

TEST(HttpTest, StatusCodesMapToHttp) {
  EXPECT_EQ(HttpStatusFromStatus(Status::Ok()), 200);
  EXPECT_EQ(HttpStatusFromStatus(InvalidArgumentError("x")), 400);
  EXPECT_EQ(HttpStatusFromStatus(UnauthenticatedError("x")), 401);
  EXPECT_EQ(HttpStatusFromStatus(PermissionDeniedError("x")), 403);
  EXPECT_EQ(HttpStatusFromStatus(NotFoundError("x")), 404);
  EXPECT_EQ(HttpStatusFromStatus(UnimplementedError("x")), 501);
  EXPECT_EQ(HttpStatusFromStatus(UnavailableError("x")), 503);
  EXPECT_EQ(HttpStatusFromStatus(ResourceExhaustedError("x")), 503);
  EXPECT_EQ(HttpStatusFromStatus(InternalError("x")), 500);
}

TEST(HttpTest, ErrorResponsesCarryJsonAndRetryAfterWhenOverloaded) {
  Response response = ErrorResponse(ResourceExhaustedError("queue \"full\""));
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(response.body, R"({"error":"queue \"full\""})");
  ASSERT_EQ(response.headers.size(), 1u);
  EXPECT_EQ(response.headers[0].first, "Retry-After");
  EXPECT_TRUE(ErrorResponse(NotFoundError("x")).headers.empty());
}

TEST(HttpTest, RequestHeaderLookupIsCaseInsensitive) {
  Request request;
  request.target = "/v2/models/m/infer?x=1";
  request.headers = {{"Content-Type", "application/json"}, {"X-Id", "7"}};
  EXPECT_EQ(request.Header("content-type"), "application/json");
  EXPECT_EQ(request.Header("x-id"), "7");
  EXPECT_EQ(request.Header("missing"), "");
  EXPECT_EQ(request.path(), "/v2/models/m/infer");
}

TEST(HttpTest, ResponderDeliversOnce) {
  int calls = 0;
  {
    Responder respond = Responder::FromCallback([&](Response r) {
      ++calls;
      EXPECT_EQ(r.status, 201);
    });
    respond(Response::Json(201, "{}"));
  }
  EXPECT_EQ(calls, 1);
}

TEST(HttpTest, DroppedResponderAnswers500) {
  int status = 0;
  {
    Responder respond = Responder::FromCallback([&](Response r) { status = r.status; });
  }
  EXPECT_EQ(status, 500);
}

TEST(HttpTest, MovedResponderAnswersOnlyFromItsNewOwner) {
  int calls = 0;
  Responder first = Responder::FromCallback([&](Response) { ++calls; });
  Responder second = std::move(first);
  EXPECT_FALSE(first);  // NOLINT(bugprone-use-after-move)
  second(Response::Json(200, "{}"));
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace edgeloop::http
