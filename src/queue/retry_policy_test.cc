#include "gtest/gtest.h"
#include "queue/queue.h"

namespace edgeloop::queue {
namespace {

using std::chrono::milliseconds;

TEST(RetryPolicyTest, BackoffGrowsExponentiallyUpToTheCap) {
  RetryPolicy policy;
  policy.initial_backoff = milliseconds(100);
  policy.multiplier = 2;
  policy.max_backoff = milliseconds(1000);
  policy.jitter = 0;
  EXPECT_EQ(policy.Backoff(1, 0.3), milliseconds(100));
  EXPECT_EQ(policy.Backoff(2, 0.3), milliseconds(200));
  EXPECT_EQ(policy.Backoff(4, 0.3), milliseconds(800));
  EXPECT_EQ(policy.Backoff(5, 0.3), milliseconds(1000));
  EXPECT_EQ(policy.Backoff(500, 0.3), milliseconds(1000));
}

TEST(RetryPolicyTest, JitterSpreadsTheDelayWithinItsBounds) {
  RetryPolicy policy;
  policy.initial_backoff = milliseconds(1000);
  policy.jitter = 0.2;
  EXPECT_EQ(policy.Backoff(1, 0.0), milliseconds(800));
  EXPECT_EQ(policy.Backoff(1, 0.5), milliseconds(1000));
  EXPECT_EQ(policy.Backoff(1, 0.999999), milliseconds(1199));
  // Never above the cap, even with jitter.
  policy.max_backoff = milliseconds(1000);
  EXPECT_LE(policy.Backoff(3, 0.999), milliseconds(1000));
}

TEST(RetryPolicyTest, ValidateRefusesNonsense) {
  RetryPolicy policy;
  EXPECT_TRUE(policy.Validate().ok());
  policy.max_attempts = 0;
  EXPECT_EQ(policy.Validate().code(), StatusCode::kInvalidArgument);
  policy = RetryPolicy();
  policy.jitter = 1.5;
  EXPECT_EQ(policy.Validate().code(), StatusCode::kInvalidArgument);
  policy = RetryPolicy();
  policy.multiplier = 0.5;
  EXPECT_EQ(policy.Validate().code(), StatusCode::kInvalidArgument);
}

TEST(QueueOpenTest, BadUrlsAndOptionsAreInvalidArguments) {
  QueueOptions options;
  options.url = "";
  EXPECT_EQ(Queue::Open(options).status().code(), StatusCode::kInvalidArgument);
  options.url = "ftp://host/x";
  EXPECT_EQ(Queue::Open(options).status().code(), StatusCode::kInvalidArgument);
  options.url = "redis://127.0.0.1:notaport/s";
  EXPECT_EQ(Queue::Open(options).status().code(), StatusCode::kInvalidArgument);
  options.url = "redis://127.0.0.1:1/s";  // nothing listens on port 1
  EXPECT_EQ(Queue::Open(options).status().code(), StatusCode::kUnavailable);
  options.url = "file:///tmp/never-created";
  options.low_watermark = 0.95;
  options.high_watermark = 0.9;
  EXPECT_EQ(Queue::Open(options).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgeloop::queue
