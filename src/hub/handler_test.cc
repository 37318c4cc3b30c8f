// The HTTP API without sockets: ingest, queries, CSV and every security rule, over both stores.
#include "hub/handler.h"

#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "hub/codec.h"
#include "hub/test_stores.h"

namespace edgeloop::hub {
namespace {

using Json = nlohmann::json;
constexpr int64_t kNowMs = 1'795'766'400'000;  // 2026-11-27T08:00:00Z

std::string EventLine(int n, const std::string& site, bool anomaly = false, double score = 0.5) {
  char id[40];
  std::snprintf(id, sizeof(id), "0190a1b2-c3d4-7e5f-8a9b-%012d", n);
  Json e = {{"id", id},
            {"type", anomaly ? "anomaly" : "insight"},
            {"timestamp", kNowMs - 60'000 + n},
            {"model", {{"name", "machine-failure"}, {"version", "2"}, {"digest", "sha256:ab"}}},
            {"request_id", "r" + std::to_string(n)},
            {"latency_ms", 1.25},
            {"inputs", {{"x", n}}},
            {"outputs", {{"y", 0.5}}},
            {"anomaly", {{"verdict", anomaly}, {"score", score}}}};
  if (!site.empty()) e["site"] = site;
  return e.dump() + "\n";
}

std::string Str(const SqlValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return "<not text>";
}

struct Reply {
  int status = 0;
  Json json;
  std::string body;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string Header(const std::string& name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) return v;
    }
    return "";
  }
};

template <typename Backend>
class HandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string skip;
    const std::string url = backend_.NewUrl(&skip);
    if (url.empty()) {
      if (skip.rfind("NOT_FOUND", 0) == 0) GTEST_SKIP() << skip;
      FAIL() << skip;
    }
    auto store = Store::Open(url);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    clock_.SetWallTime(Clock::WallTime(std::chrono::milliseconds(kNowMs)));
    ASSERT_TRUE(store_->AddSite("north", kNowMs).ok());
    ASSERT_TRUE(store_->AddSite("south", kNowMs).ok());
    north_ = AddToken("site:north", Role::kSite, "north");
    south_ = AddToken("site:south", Role::kSite, "south");
    read_ = AddToken("dashboard", Role::kRead, "");
    admin_ = AddToken("ops", Role::kAdmin, "");
    expiring_ = AddToken("temp", Role::kRead, "", kNowMs + 1000);
    MakeHandler({});
  }

  void MakeHandler(HubHandlerOptions options) {
    options.token_cache_ttl = std::chrono::milliseconds(0);
    handler_.reset();
    handler_ = std::make_unique<HubHandler>(store_.get(), &registry_, &clock_, options);
  }

  std::string AddToken(const std::string& name, Role role, const std::string& site,
                       std::optional<int64_t> expires = std::nullopt) {
    std::string token = *NewToken();
    EXPECT_TRUE(
        store_->AddToken(HashToken(token), {name, role, site, kNowMs, expires, std::nullopt}).ok());
    return token;
  }

  std::future<Reply> Send(http::Method method, const std::string& target, std::string body,
                          std::vector<std::pair<std::string, std::string>> headers) {
    auto promise = std::make_shared<std::promise<Reply>>();
    std::future<Reply> future = promise->get_future();
    http::Request request;
    request.method = method;
    request.target = target;
    request.headers = std::move(headers);
    request.body = std::move(body);
    handler_->Handle(std::move(request), http::Responder::FromCallback([promise](http::Response r) {
                       Reply reply{r.status, Json::parse(r.body, nullptr, false), r.body,
                                   std::string(r.content_type), r.headers};
                       promise->set_value(std::move(reply));
                     }));
    return future;
  }

  Reply Call(http::Method method, const std::string& target, std::string body = "",
             std::vector<std::pair<std::string, std::string>> headers = {}) {
    return Send(method, target, std::move(body), std::move(headers)).get();
  }

  Reply Upload(const std::string& token, std::string body, const std::string& encoding = "") {
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Authorization", "Bearer " + token}};
    if (!encoding.empty()) headers.emplace_back("Content-Encoding", encoding);
    return Call(http::Method::kPost, "/api/v1/ingest", std::move(body), headers);
  }

  Reply Get(const std::string& token, const std::string& target) {
    return Call(http::Method::kGet, target, "", {{"Authorization", "Bearer " + token}});
  }

  Backend backend_;
  std::unique_ptr<Store> store_;
  FakeClock clock_;
  metrics::Registry registry_;
  std::unique_ptr<HubHandler> handler_;
  std::string north_, south_, read_, admin_, expiring_;
};

TYPED_TEST_SUITE(HandlerTest, testing::Backends, testing::BackendNames);

TYPED_TEST(HandlerTest, CompressedUploadsAreStoredOnceAndReported) {
  std::string body;
  for (int i = 0; i < 20; ++i) body += EventLine(i, "north", i % 5 == 0, i / 20.0);
  body += "{\"id\":\"broken\"}\n";
  Reply first = this->Upload(this->north_, *ZstdCompress(body), "zstd");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.json["accepted"], 20);
  EXPECT_EQ(first.json["duplicates"], 0);
  ASSERT_EQ(first.json["rejected"].size(), 1u);
  EXPECT_EQ(first.json["rejected"][0]["id"], "broken");
  EXPECT_EQ(first.json["rejected"][0]["line"], 21);

  Reply again = this->Upload(this->north_, *GzipCompress(body), "gzip");
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.json["accepted"], 0);
  EXPECT_EQ(again.json["duplicates"], 20);

  Reply stats = this->Get(this->read_, "/api/v1/stats?bucket=1d&group_by=site");
  ASSERT_EQ(stats.status, 200) << stats.body;
  ASSERT_EQ(stats.json["rows"].size(), 1u);
  EXPECT_EQ(stats.json["rows"][0]["events"], 20);
  EXPECT_EQ(stats.json["rows"][0]["anomalies"], 4);
  EXPECT_DOUBLE_EQ(stats.json["rows"][0]["anomaly_rate"].get<double>(), 0.2);

  Reply sites = this->Get(this->read_, "/api/v1/sites");
  ASSERT_EQ(sites.status, 200);
  EXPECT_EQ(sites.json["rows"][0]["site"], "north");
  EXPECT_EQ(sites.json["rows"][0]["sync_state"], "ok");
  EXPECT_EQ(sites.json["rows"][1]["sync_state"], "never");
  this->clock_.Advance(std::chrono::hours(2));
  EXPECT_EQ(this->Get(this->read_, "/api/v1/sites").json["rows"][0]["sync_state"], "offline");
}

TYPED_TEST(HandlerTest, QueriesAnswerJsonAndCsv) {
  std::string body;
  for (int i = 0; i < 10; ++i) body += EventLine(i, "north", i % 2 == 0, i / 10.0);
  ASSERT_EQ(this->Upload(this->north_, body).status, 200);
  Reply anomalies = this->Get(this->read_, "/api/v1/anomalies?limit=2&min_score=0.1");
  ASSERT_EQ(anomalies.status, 200) << anomalies.body;
  ASSERT_EQ(anomalies.json["rows"].size(), 2u);
  EXPECT_DOUBLE_EQ(anomalies.json["rows"][0]["score"].get<double>(), 0.8);
  Reply versions = this->Get(this->admin_, "/api/v1/versions?site=north");
  ASSERT_EQ(versions.status, 200);
  EXPECT_EQ(versions.json["rows"][0]["version"], "2");
  Reply distribution = this->Get(this->read_, "/api/v1/distribution?metric=score&bins=5");
  ASSERT_EQ(distribution.status, 200) << distribution.body;
  EXPECT_EQ(distribution.json["summary"]["count"], 10);
  Reply csv = this->Get(this->read_, "/api/v1/events.csv?site=north&limit=3");
  ASSERT_EQ(csv.status, 200);
  EXPECT_EQ(csv.content_type, "text/csv; charset=utf-8");
  EXPECT_EQ(csv.body.substr(0, csv.body.find('\r')),
            "id,site,type,ts,received_at,model,model_version,model_digest,request_id,anomaly,score,"
            "latency_ms,prediction,inputs,outputs");
  EXPECT_EQ(std::count(csv.body.begin(), csv.body.end(), '\n'), 4);
  EXPECT_NE(csv.body.find("\"{\"\"x\"\":9}\""), std::string::npos);  // quoted JSON cell
  Reply bad = this->Get(this->read_, "/api/v1/stats?bucket=5parsecs");
  EXPECT_EQ(bad.status, 400);
  EXPECT_TRUE(bad.json.contains("error"));
  EXPECT_EQ(this->Get(this->read_, "/api/v1/stats?from=yesterday").status, 400);
  EXPECT_EQ(this->Get(this->read_, "/api/v1/nothing").status, 404);
}

TYPED_TEST(HandlerTest, NoWrongExpiredOrRevokedTokenIsUnauthorized) {
  const std::string body = EventLine(1, "north");
  EXPECT_EQ(this->Call(http::Method::kPost, "/api/v1/ingest", body).status, 401);
  EXPECT_EQ(this->Upload("elh_wrong", body).status, 401);
  EXPECT_EQ(
      this->Call(http::Method::kPost, "/api/v1/ingest", body, {{"Authorization", "Basic abc"}})
          .status,
      401);
  Reply missing = this->Call(http::Method::kGet, "/api/v1/stats");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.Header("WWW-Authenticate"), "Bearer realm=\"edgeloop-hub\"");
  EXPECT_EQ(this->Get(this->expiring_, "/api/v1/sites").status, 200);
  this->clock_.Advance(std::chrono::seconds(2));
  Reply expired = this->Get(this->expiring_, "/api/v1/sites");
  EXPECT_EQ(expired.status, 401);
  EXPECT_NE(expired.json["error"].get<std::string>().find("expired"), std::string::npos);
  ASSERT_TRUE(this->store_->RevokeTokens("dashboard", kNowMs).ok());
  EXPECT_EQ(this->Get(this->read_, "/api/v1/sites").status, 401);
  EXPECT_TRUE(this->store_->Events({}, 10)->rows.empty());
}

TYPED_TEST(HandlerTest, ASiteTokenWritesOnlyItsOwnSiteAndReadsNothing) {
  // An event naming another site: the whole upload is refused and nothing is stored.
  std::string body = EventLine(1, "north") + EventLine(2, "south");
  Reply cross = this->Upload(this->north_, body);
  EXPECT_EQ(cross.status, 403) << cross.body;
  EXPECT_TRUE(this->store_->Events({}, 10)->rows.empty());
  // Events without a site are the token's.
  Reply own = this->Upload(this->south_, EventLine(3, ""));
  ASSERT_EQ(own.status, 200) << own.body;
  EXPECT_EQ(Str(this->store_->Events({}, 10)->rows.at(0).at(1)), "south");
  for (const char* path :
       {"/api/v1/sites", "/api/v1/stats", "/api/v1/anomalies", "/api/v1/events.csv",
        "/api/v1/uploads", "/api/v1/versions", "/api/v1/accuracy"}) {
    EXPECT_EQ(this->Get(this->south_, path).status, 403) << path;
  }
  EXPECT_EQ(this->Get(this->south_, "/api/v1/whoami").json["site"], "south");
  // Read and admin tokens cannot upload; site tokens cannot add sites.
  EXPECT_EQ(this->Upload(this->read_, EventLine(4, "north")).status, 403);
  EXPECT_EQ(this->Upload(this->admin_, EventLine(5, "north")).status, 403);
  EXPECT_EQ(this->Call(http::Method::kPost, "/api/v1/sites", R"({"name":"x"})",
                       {{"Authorization", "Bearer " + this->north_}})
                .status,
            403);
}

TYPED_TEST(HandlerTest, AdminAddsASiteWhoseTokenUploads) {
  Reply added = this->Call(http::Method::kPost, "/api/v1/sites", R"({"name":"east"})",
                           {{"Authorization", "Bearer " + this->admin_}});
  ASSERT_EQ(added.status, 201) << added.body;
  const std::string token = added.json["token"];
  EXPECT_EQ(token.rfind("elh_", 0), 0u);
  EXPECT_EQ(this->Upload(token, EventLine(1, "east")).status, 200);
  EXPECT_EQ(this->Call(http::Method::kPost, "/api/v1/sites", R"({"name":"east"})",
                       {{"Authorization", "Bearer " + this->admin_}})
                .status,
            409);
  EXPECT_EQ(this->Call(http::Method::kPost, "/api/v1/sites", "{",
                       {{"Authorization", "Bearer " + this->admin_}})
                .status,
            400);
}

TYPED_TEST(HandlerTest, OversizedMalformedAndEmptyBatchesAre4xx) {
  HubHandlerOptions options;
  options.max_batch_bytes = 64 << 10;
  options.max_events = 100;
  this->MakeHandler(options);
  // A zstd bomb: small on the wire, too large decoded.
  Reply bomb = this->Upload(this->north_, *ZstdCompress(std::string(1 << 20, '\n')), "zstd");
  EXPECT_EQ(bomb.status, 413) << bomb.body;
  std::string many;
  for (int i = 0; i < 101; ++i) many += EventLine(i, "north");
  EXPECT_EQ(this->Upload(this->north_, many).status, 413);
  EXPECT_EQ(this->Upload(this->north_, "garbage", "zstd").status, 400);
  EXPECT_EQ(this->Upload(this->north_, EventLine(1, "north"), "br").status, 415);
  EXPECT_EQ(this->Upload(this->north_, "\n\n").status, 400);
  EXPECT_TRUE(this->store_->Events({}, 10)->rows.empty());
  // All-invalid lines: 200 with every event reported, nothing stored.
  Reply invalid = this->Upload(this->north_, "{}\n[1]\n");
  EXPECT_EQ(invalid.status, 200);
  EXPECT_EQ(invalid.json["accepted"], 0);
  EXPECT_EQ(invalid.json["rejected"].size(), 2u);
  EXPECT_TRUE(this->store_->Events({}, 10)->rows.empty());
  EXPECT_EQ(this->Call(http::Method::kGet, "/api/v1/ingest", "",
                       {{"Authorization", "Bearer " + this->north_}})
                .status,
            405);
}

TYPED_TEST(HandlerTest, OverloadAnswers429WithRetryAfter) {
  HubHandlerOptions options;
  options.workers = 1;
  options.max_queue = 1;
  options.start_paused = true;
  this->MakeHandler(options);
  auto first = this->Send(http::Method::kPost, "/api/v1/ingest", EventLine(1, "north"),
                          {{"Authorization", "Bearer " + this->north_}});
  Reply refused = this->Upload(this->north_, EventLine(2, "north"));
  EXPECT_EQ(refused.status, 429);
  EXPECT_EQ(refused.Header("Retry-After"), "1");
  Reply query = this->Get(this->read_, "/api/v1/sites");
  EXPECT_EQ(query.status, 503);
  this->handler_->Resume();
  EXPECT_EQ(first.get().status, 200);
  EXPECT_EQ(this->store_->Events({}, 10)->rows.size(), 1u);
}

TYPED_TEST(HandlerTest, ServesTheEmbeddedDashboard) {
  Reply index = this->Call(http::Method::kGet, "/");
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.content_type, "text/html; charset=utf-8");
  EXPECT_NE(index.body.find("chart.umd.min.js"), std::string::npos);
  Reply chart = this->Call(http::Method::kGet, "/vendor/chart.umd.min.js");
  EXPECT_EQ(chart.status, 200);
  EXPECT_NE(chart.body.find("Chart.js v4"), std::string::npos);
  EXPECT_EQ(this->Call(http::Method::kGet, "/nope.js").status, 404);
  EXPECT_EQ(this->Call(http::Method::kGet, "/healthz").status, 200);
}

TYPED_TEST(HandlerTest, LabelledEventsAreFlatJsonLinesAfterTheSettleTime) {
  ASSERT_EQ(this->Upload(this->north_, EventLine(1, "north") + EventLine(2, "north")).status, 200);
  const std::string feedback =
      R"({"id":"0190a1b2-c3d4-7e5f-8a9b-000000000101","type":"feedback","timestamp":1795766400000,)"
      R"("feedback":{"event_id":"0190a1b2-c3d4-7e5f-8a9b-000000000001","label":"1"}})"
      "\n"
      R"({"id":"0190a1b2-c3d4-7e5f-8a9b-000000000102","type":"feedback","timestamp":1795766400000,)"
      R"("model":{"name":"machine-failure"},"request_id":"r2","label":{"failure":1}})"
      "\n";
  ASSERT_EQ(this->Upload(this->north_, feedback).status, 200);
  const std::string target = "/api/v1/labelled?model=machine-failure";
  // Labels younger than the settle time (1 s) are not served yet.
  Reply early = this->Get(this->read_, target);
  ASSERT_EQ(early.status, 200) << early.body;
  EXPECT_EQ(early.body, "");
  this->clock_.Advance(std::chrono::seconds(2));
  Reply reply = this->Get(this->read_, target);
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(reply.content_type, "application/x-ndjson");
  std::vector<Json> lines;
  size_t start = 0;
  while (start < reply.body.size()) {
    const size_t end = reply.body.find('\n', start);
    lines.push_back(Json::parse(reply.body.substr(start, end - start)));
    start = end + 1;
  }
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["id"], "0190a1b2-c3d4-7e5f-8a9b-000000000001");
  EXPECT_EQ(lines[0]["x"], 1);  // inputs flattened
  EXPECT_EQ(lines[0]["label"], "1");
  EXPECT_EQ(lines[0]["ts"], "2026-11-27T07:59:00.001Z");
  EXPECT_EQ(lines[1]["request_id"], nullptr);
  EXPECT_EQ(lines[1]["label_failure"], 1);  // an object label gives label_<key> columns
  EXPECT_EQ(lines[1]["x"], 2);
  EXPECT_EQ(this->Get(this->read_, "/api/v1/labelled").status, 400);  // model is required
  EXPECT_EQ(this->Get(this->north_, target).status, 403);
  Reply after = this->Get(this->read_, target + "&after=" + std::to_string(kNowMs + 1'000'000));
  EXPECT_EQ(after.body, "");
}

TYPED_TEST(HandlerTest, HealthIsOpenAndJobsNeedTokens) {
  Reply health = this->Call(http::Method::kGet, "/api/v1/health");
  ASSERT_EQ(health.status, 200) << health.body;
  EXPECT_EQ(health.json["schema_version"], kSchemaVersion);
  EXPECT_EQ(health.json["scheduler"], false);
  EXPECT_EQ(this->Call(http::Method::kGet, "/api/v1/jobs").status, 401);
  EXPECT_EQ(this->Get(this->north_, "/api/v1/jobs").status, 403);
  Reply jobs = this->Get(this->read_, "/api/v1/jobs");
  ASSERT_EQ(jobs.status, 200) << jobs.body;
  EXPECT_TRUE(jobs.json["jobs"].empty());
  // Without a scheduler, starting a job is a conflict; a read token may not start one at all.
  Reply start = this->Call(http::Method::kPost, "/api/v1/jobs", R"({"model":"m"})",
                           {{"Authorization", "Bearer " + this->admin_}});
  EXPECT_EQ(start.status, 409) << start.body;
  Reply reader = this->Call(http::Method::kPost, "/api/v1/jobs", R"({"model":"m"})",
                            {{"Authorization", "Bearer " + this->read_}});
  EXPECT_EQ(reader.status, 403);
  EXPECT_EQ(this->Get(this->read_, "/api/v1/jobs/7").status, 404);
}

}  // namespace
}  // namespace edgeloop::hub
