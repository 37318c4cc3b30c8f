#include "common/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace edgeloop::metrics {
namespace {

TEST(MetricsTest, RendersCountersWithLabels) {
  Registry registry;
  auto* requests = registry.AddCounter("edgeloop_requests_total", "Requests.", {"model", "code"});
  requests->With({"fraud", "200"})->Increment(3);
  requests->With({"a\"b", "404"})->Increment();
  EXPECT_EQ(registry.Render(),
            "# HELP edgeloop_requests_total Requests.\n"
            "# TYPE edgeloop_requests_total counter\n"
            "edgeloop_requests_total{model=\"a\\\"b\",code=\"404\"} 1\n"
            "edgeloop_requests_total{model=\"fraud\",code=\"200\"} 3\n");
}

TEST(MetricsTest, HistogramBucketsAreCumulativeAndInclusive) {
  Registry registry;
  auto* latency = registry.AddHistogram("lat_seconds", "Latency.", {}, {0.1, 1.0});
  auto child = latency->With({});
  child->Observe(0.1);
  child->Observe(0.5);
  child->Observe(3.0);
  EXPECT_EQ(registry.Render(),
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{le=\"0.1\"} 1\n"
            "lat_seconds_bucket{le=\"1\"} 2\n"
            "lat_seconds_bucket{le=\"+Inf\"} 3\n"
            "lat_seconds_sum 3.6\n"
            "lat_seconds_count 3\n");
}

TEST(MetricsTest, GaugesAndRemoval) {
  Registry registry;
  auto* loaded = registry.AddGauge("loaded", "Loaded.", {"v"});
  loaded->With({"1"})->Set(1);
  loaded->With({"2"})->Add(2.5);
  loaded->Remove({"1"});
  EXPECT_EQ(registry.Render(), "# HELP loaded Loaded.\n# TYPE loaded gauge\nloaded{v=\"2\"} 2.5\n");
}

TEST(MetricsTest, SameNameReturnsSameFamily) {
  Registry registry;
  EXPECT_EQ(registry.AddCounter("c", "C."), registry.AddCounter("c", "C."));
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  Registry registry;
  auto counter = registry.AddCounter("c", "C.")->With({});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) counter->Increment();
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter->Value(), 40000u);
}

TEST(MetricsTest, FormatsSpecialValues) {
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(0.25), "0.25");
  EXPECT_EQ(PowerOfTwoBuckets(5), (std::vector<double>{1, 2, 4, 8}));
}

}  // namespace
}  // namespace edgeloop::metrics
