#include "serving/batcher.h"

#include <gtest/gtest.h>

#include <atomic>

namespace edgeloop::serving {
namespace {

using inference::DataType;
using inference::Tensor;

// Output 0: each row's sum; output 1: the batch size the row was computed in. Counts calls.
class SumModel : public inference::Model {
 public:
  std::string_view platform() const override { return "test_sum"; }
  Status Predict(std::span<const Tensor> inputs, std::span<const int> output_indices,
                 std::vector<Tensor>* outputs) const override {
    calls_.fetch_add(1);
    const Tensor& x = inputs[0];
    const int64_t rows = x.shape()[0];
    const int64_t cols = x.shape()[1];
    for (int index : output_indices) {
      Tensor out(index == 0 ? "sum" : "batch", DataType::kFp32, {rows});
      for (int64_t r = 0; r < rows; ++r) {
        float value = static_cast<float>(rows);
        if (index == 0) {
          value = 0;
          for (int64_t c = 0; c < cols; ++c) value += x.values<float>()[r * cols + c];
        }
        out.values<float>()[r] = value;
      }
      outputs->push_back(std::move(out));
    }
    if (fail_) return InternalError("model failed");
    return Status::Ok();
  }
  mutable std::atomic<int> calls_{0};
  bool fail_ = false;
};

struct Result {
  bool done = false;
  Status status;
  std::vector<Tensor> outputs;
};

BatchItem MakeItem(std::vector<float> row_values, int64_t rows, std::vector<int> outputs,
                   Result* result) {
  BatchItem item;
  Tensor x("x", DataType::kFp32, {rows, static_cast<int64_t>(row_values.size()) / rows});
  std::copy(row_values.begin(), row_values.end(), x.values<float>().begin());
  item.inputs.push_back(std::move(x));
  item.output_indices = std::move(outputs);
  item.done = [result](StatusOr<std::vector<Tensor>> out) {
    result->done = true;
    if (out.ok()) {
      result->outputs = std::move(*out);
    } else {
      result->status = out.status();
    }
  };
  return item;
}

class BatcherTest : public ::testing::Test {
 protected:
  std::shared_ptr<Batcher> Make(int64_t max_batch, int64_t delay_us, int64_t queue = 100) {
    BatcherOptions options;
    options.max_batch_size = max_batch;
    options.max_queue_delay_us = delay_us;
    options.max_queue_size = queue;
    return std::make_shared<Batcher>(options, model_, &runner_, &clock_, nullptr, nullptr);
  }
  FakeClock clock_;
  ManualTaskRunner runner_{&clock_};
  std::shared_ptr<SumModel> model_ = std::make_shared<SumModel>();
};

TEST_F(BatcherTest, NoDelayRunsAtOnceOnTheCallingThread) {
  auto batcher = Make(8, 0);
  Result result;
  batcher->Submit(MakeItem({1, 2, 3}, 1, {0}, &result));
  ASSERT_TRUE(result.done);
  EXPECT_FLOAT_EQ(result.outputs[0].values<float>()[0], 6);
  EXPECT_EQ(runner_.pending(), 0u);
}

TEST_F(BatcherTest, DelayWaitsForCompanyThenRunsOneBatch) {
  auto batcher = Make(8, 500);
  Result a, b;
  batcher->Submit(MakeItem({1, 1}, 1, {0, 1}, &a));
  batcher->Submit(MakeItem({2, 2, 3, 3}, 2, {0, 1}, &b));
  EXPECT_FALSE(a.done);
  clock_.Advance(std::chrono::microseconds(499));
  runner_.RunDue();
  EXPECT_FALSE(a.done);
  clock_.Advance(std::chrono::microseconds(1));
  runner_.RunDue();
  ASSERT_TRUE(a.done && b.done);
  EXPECT_EQ(model_->calls_.load(), 1);
  EXPECT_FLOAT_EQ(a.outputs[0].values<float>()[0], 2);
  EXPECT_FLOAT_EQ(a.outputs[1].values<float>()[0], 3);  // computed in a batch of 3 rows
  ASSERT_EQ(b.outputs[0].shape(), (inference::Shape{2}));
  EXPECT_FLOAT_EQ(b.outputs[0].values<float>()[0], 4);
  EXPECT_FLOAT_EQ(b.outputs[0].values<float>()[1], 6);
}

TEST_F(BatcherTest, FullBatchRunsBeforeTheDelay) {
  auto batcher = Make(4, 1'000'000);
  Result a, b;
  batcher->Submit(MakeItem({1, 2}, 2, {0}, &a));
  EXPECT_FALSE(a.done);
  batcher->Submit(MakeItem({3, 4}, 2, {0}, &b));
  EXPECT_TRUE(a.done);
  EXPECT_TRUE(b.done);
  EXPECT_EQ(model_->calls_.load(), 1);
}

TEST_F(BatcherTest, BatchesNeverExceedTheMaximumRows) {
  auto batcher = Make(3, 100);
  std::vector<Result> results(5);
  for (auto& result : results) batcher->Submit(MakeItem({1}, 1, {1}, &result));
  clock_.Advance(std::chrono::microseconds(100));
  runner_.RunDue();
  for (auto& result : results) {
    ASSERT_TRUE(result.done);
    EXPECT_LE(result.outputs[0].values<float>()[0], 3);
  }
}

TEST_F(BatcherTest, EachRequestGetsOnlyTheOutputsItAskedFor) {
  auto batcher = Make(8, 100);
  Result a, b;
  batcher->Submit(MakeItem({1}, 1, {0}, &a));
  batcher->Submit(MakeItem({2}, 1, {1, 0}, &b));
  clock_.Advance(std::chrono::microseconds(100));
  runner_.RunDue();
  ASSERT_EQ(a.outputs.size(), 1u);
  EXPECT_EQ(a.outputs[0].name(), "sum");
  ASSERT_EQ(b.outputs.size(), 2u);
  EXPECT_EQ(b.outputs[0].name(), "batch");
  EXPECT_EQ(b.outputs[1].name(), "sum");
  EXPECT_FLOAT_EQ(b.outputs[1].values<float>()[0], 2);
}

TEST_F(BatcherTest, FullQueueRefusesWithResourceExhausted) {
  auto batcher = Make(100, 1000, /*queue=*/2);
  Result a, b, c;
  batcher->Submit(MakeItem({1}, 1, {0}, &a));
  batcher->Submit(MakeItem({1}, 1, {0}, &b));
  batcher->Submit(MakeItem({1}, 1, {0}, &c));
  ASSERT_TRUE(c.done);
  EXPECT_EQ(c.status.code(), StatusCode::kResourceExhausted);
  EXPECT_FALSE(a.done);
  clock_.Advance(std::chrono::milliseconds(1));
  runner_.RunDue();
  EXPECT_TRUE(a.done && b.done);
  EXPECT_TRUE(a.status.ok());
}

TEST_F(BatcherTest, ModelErrorsReachEveryRequestOfTheBatch) {
  model_->fail_ = true;
  auto batcher = Make(8, 10);
  Result a, b;
  batcher->Submit(MakeItem({1}, 1, {0}, &a));
  batcher->Submit(MakeItem({1}, 1, {0}, &b));
  clock_.Advance(std::chrono::microseconds(10));
  runner_.RunDue();
  EXPECT_EQ(a.status.code(), StatusCode::kInternal);
  EXPECT_EQ(b.status.code(), StatusCode::kInternal);
}

TEST_F(BatcherTest, LaterRequestsGetTheirOwnTimer) {
  auto batcher = Make(8, 100);
  Result a, b;
  batcher->Submit(MakeItem({1}, 1, {0}, &a));
  clock_.Advance(std::chrono::microseconds(100));
  runner_.RunDue();
  ASSERT_TRUE(a.done);
  batcher->Submit(MakeItem({1}, 1, {0}, &b));
  EXPECT_FALSE(b.done);
  clock_.Advance(std::chrono::microseconds(100));
  runner_.RunDue();
  EXPECT_TRUE(b.done);
}

}  // namespace
}  // namespace edgeloop::serving
