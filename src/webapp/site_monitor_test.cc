#include "webapp/site_monitor.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/test_util.h"

namespace edgeloop::webapp {
namespace {

using Json = nlohmann::json;

TEST(PrometheusTextTest, ParsesSamplesAndSumsByName) {
  const auto samples = ParsePrometheusText(
      "# HELP x help\n# TYPE x counter\n"
      "edgeloop_inference_requests_total{model=\"m\",version=\"1\",code=\"200\"} 7\n"
      "edgeloop_inference_requests_total{model=\"m\",version=\"1\",code=\"400\"} 2\n"
      "edgeloop_worker_held_back 1\n"
      "bucket{le=\"+Inf\"} 3\n"
      "broken line\n");
  ASSERT_EQ(samples.size(), 4u);
  EXPECT_EQ(samples[0].labels, "model=\"m\",version=\"1\",code=\"200\"");
  EXPECT_EQ(SumOf(samples, "edgeloop_inference_requests_total"), 9);
  EXPECT_EQ(SumOf(samples, "edgeloop_inference_requests_total", "code=\"200\""), 7);
  EXPECT_EQ(SumOf(samples, "edgeloop_worker_held_back"), 1);
  EXPECT_EQ(SumOf(samples, "absent"), 0);
}

TEST(SiteMonitorTest, UplinkStateFollowsTheWorkerAndRemembersSince) {
  FakeClock clock;
  std::string worker = "edgeloop_worker_held_back 0\nedgeloop_worker_backlog_events 12\n";
  bool up = true;
  SiteMonitorOptions options;
  options.uplink_status_url = "http://127.0.0.1:1/metrics";
  options.clock = &clock;
  options.fetch = [&](const std::string& url) -> StatusOr<std::string> {
    EXPECT_EQ(url, "http://127.0.0.1:1/metrics");
    if (!up) return UnavailableError("connection refused");
    return worker;
  };
  auto monitor = std::move(*SiteMonitor::Create(options));
  monitor->Poll();
  Json first = Json::parse(monitor->Json());
  EXPECT_EQ(first["uplink"]["state"], "online");
  EXPECT_EQ(first["uplink"]["backlog"], 12);
  EXPECT_TRUE(first["queue"].is_null());
  const int64_t online_since = first["uplink"]["since_ms"];

  clock.Advance(std::chrono::seconds(5));
  monitor->Poll();
  EXPECT_EQ(Json::parse(monitor->Json())["uplink"]["since_ms"], online_since);

  worker = "edgeloop_worker_held_back 1\nedgeloop_worker_backlog_events 40\n";
  monitor->Poll();
  Json offline = Json::parse(monitor->Json());
  EXPECT_EQ(offline["uplink"]["state"], "offline");
  EXPECT_EQ(offline["uplink"]["since_ms"], online_since + 5000);
  EXPECT_EQ(offline["uplink"]["backlog"], 40);

  up = false;
  clock.Advance(std::chrono::seconds(1));
  monitor->Poll();
  Json gone = Json::parse(monitor->Json());
  EXPECT_EQ(gone["uplink"]["state"], "unreachable");
  EXPECT_EQ(gone["uplink"]["error"], "connection refused");
  EXPECT_EQ(monitor->uplink_state(), "unreachable");
}

TEST(SiteMonitorTest, WithoutAUrlTheUplinkIsUnknownAndBadUrlsAreRefused) {
  auto monitor = std::move(*SiteMonitor::Create({}));
  monitor->Poll();
  EXPECT_EQ(Json::parse(monitor->Json())["uplink"]["state"], "unknown");
  SiteMonitorOptions bad;
  bad.uplink_status_url = "file:///etc/passwd";
  EXPECT_EQ(SiteMonitor::Create(bad).status().code(), StatusCode::kInvalidArgument);
}

TEST(SiteMonitorTest, QueueDepthDeadLettersAndBudgetComeFromTheQueue) {
  edgeloop::testing::TempDir dir;
  queue::QueueOptions queue_options;
  queue_options.url = "file://" + (dir.path() / "q").string();
  queue_options.max_bytes = 10 << 20;
  auto queue = queue::Queue::Open(queue_options);
  ASSERT_TRUE(queue.ok()) << queue.status();
  std::vector<queue::Event> events(3);
  for (auto& event : events) {
    event.type = "insight";
    event.payload = R"({"x":1})";
  }
  ASSERT_TRUE((*queue)->Append(events).ok());
  SiteMonitorOptions options;
  options.queue_url = queue_options.url;
  options.queue = queue->get();
  auto monitor = std::move(*SiteMonitor::Create(options));
  monitor->Poll();
  Json q = Json::parse(monitor->Json())["queue"];
  EXPECT_EQ(q["depth"], 3);
  EXPECT_EQ(q["dead_letters"], 0);
  EXPECT_EQ(q["max_bytes"], 10 << 20);
  EXPECT_GT(q["bytes"].get<int64_t>(), 0);
}

}  // namespace
}  // namespace edgeloop::webapp
