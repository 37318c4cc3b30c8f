#include "webapp/web_app.h"

#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "serving/insight_emitter.h"
#include "serving/model_manager.h"
#include "serving/oip_handler.h"
#include "serving/test_repository.h"

namespace edgeloop::webapp {
namespace {

using http::Method;
using Json = nlohmann::json;

constexpr char kToken[] = "the-serve-api-token-0123";

class WebAppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_.AddVersion("mf", 1);
    serving::ModelManagerOptions options;
    options.repository = repo_.root();
    options.registry = &registry_;
    options.clock = &clock_;
    options.runner = &runner_;
    manager_ = std::move(*serving::ModelManager::Create(options));
    manager_->Reconcile(true);

    queue::QueueOptions queue_options;
    queue_options.url = "file://" + (dir_.path() / "queue").string();
    queue_ = std::move(*queue::Queue::Open(queue_options));
    serving::InsightOptions insight_options;
    insight_options.queue = queue_.get();
    insight_options.sample_rate = 0;
    insights_ = std::move(*serving::InsightEmitter::Create(insight_options));

    api_ = std::make_unique<serving::OipHandler>(manager_.get(), &registry_, &clock_, &draining_,
                                                 serving::ControlAccess{kToken, false}, nullptr,
                                                 insights_.get());
    UsersFile users = *UsersFile::Load(dir_.path() / "users");
    ASSERT_TRUE(
        users.Put({"op", Role::kOperator, *HashPassword("op-password", HashCost::kMinimal)}, false)
            .ok());
    ASSERT_TRUE(
        users.Put({"eu", Role::kUser, *HashPassword("eu-password", HashCost::kMinimal)}, false)
            .ok());
    ASSERT_TRUE(users.Save().ok());
  }
  void TearDown() override {
    app_.reset();
    insights_->Stop(std::chrono::milliseconds(1000));
  }

  void MakeApp(bool with_users, bool loopback) {
    WebAppOptions options;
    if (with_users) options.users_file = dir_.path() / "users";
    options.clock = &clock_;
    options.monitor_interval = std::chrono::milliseconds(0);
    options.uplink_status_url = "http://127.0.0.1:9/metrics";
    options.fetch = [this](const std::string&) -> StatusOr<std::string> {
      if (!worker_up_) return UnavailableError("connection refused");
      return std::string("edgeloop_worker_held_back ") + (hub_down_ ? "1" : "0") + "\n";
    };
    serving::WebAppContext context;
    context.manager = manager_.get();
    context.registry = &registry_;
    context.api = api_.get();
    context.insights = insights_.get();
    context.loopback_only = loopback;
    context.api_token = kToken;
    context.queue_url = "file://" + (dir_.path() / "queue").string();
    auto app = WebApp::Create(options, context);
    ASSERT_TRUE(app.ok()) << app.status();
    app_ = std::move(*app);
  }

  // Calls the app; waits (bounded) for answers that come from another thread (feedback).
  http::Response Call(Method method, const std::string& target, std::string body = "",
                      std::vector<std::pair<std::string, std::string>> headers = {}) {
    http::Request request;
    request.method = method;
    request.target = target;
    request.body = std::move(body);
    request.headers = std::move(headers);
    auto promise = std::make_shared<std::promise<http::Response>>();
    auto future = promise->get_future();
    app_->Handle(std::move(request), http::Responder::FromCallback([promise](http::Response r) {
                   promise->set_value(std::move(r));
                 }));
    EXPECT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready) << target;
    return future.get();
  }

  // Logs in; returns {cookie header, csrf}.
  std::pair<std::string, std::string> Login(const std::string& user, const std::string& password) {
    http::Response response =
        Call(Method::kPost, "/ui/api/login", Json{{"user", user}, {"password", password}}.dump());
    EXPECT_EQ(response.status, 200) << response.body;
    std::string cookie;
    for (auto& [name, value] : response.headers) {
      if (name == "Set-Cookie") cookie = value.substr(0, value.find(';'));
    }
    return {cookie, Json::parse(response.body)["csrf"].get<std::string>()};
  }

  static std::string Csv(int rows) {
    std::string csv =
        "temperature_c,vibration_rms,vibration_peak,pressure_bar,rpm,current_a,voltage_v,power_kw,"
        "oil_temp_c,oil_quality,humidity_pct,ambient_temp_c,load_pct,cycle_time_s,tool_wear_min,"
        "acoustic_db,torque_nm,flow_lpm,hours_since_service,error_count_24h\n";
    for (int r = 0; r < rows; ++r) {
      csv += std::to_string(60 + r % 30) +
             ",2.49,6.66,3.96,1681,13.3,394.6,9.16,62.2,0.83,45.3,24.2,58.9,29.2," +
             std::to_string(50 + (r * 7) % 200) + ",78.6,40.3,18.8,143.6," + std::to_string(r % 4) +
             "\n";
    }
    return csv;
  }

  edgeloop::testing::TempDir dir_;
  serving::testing::TestRepository repo_;
  metrics::Registry registry_;
  FakeClock clock_;
  ManualTaskRunner runner_{&clock_};
  std::atomic<bool> draining_{false};
  std::unique_ptr<serving::ModelManager> manager_;
  std::unique_ptr<queue::Queue> queue_;
  std::unique_ptr<serving::InsightEmitter> insights_;
  std::unique_ptr<serving::OipHandler> api_;
  std::unique_ptr<WebApp> app_;
  bool worker_up_ = true;
  bool hub_down_ = false;
};

TEST_F(WebAppTest, ServesThePageAndHandsOtherPathsToTheApi) {
  MakeApp(true, false);
  http::Response root = Call(Method::kGet, "/");
  EXPECT_EQ(root.status, 302);
  http::Response page = Call(Method::kGet, "/ui/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("<title>edgeloop site app</title>"), std::string::npos);
  bool csp = false;
  for (auto& [name, value] : page.headers) csp |= name == "Content-Security-Policy";
  EXPECT_TRUE(csp);
  EXPECT_EQ(Call(Method::kGet, "/ui/app.js").content_type, "text/javascript; charset=utf-8");
  EXPECT_GT(Call(Method::kGet, "/ui/vendor/chart.umd.min.js").body.size(), 100'000u);
  EXPECT_EQ(Call(Method::kGet, "/ui/nope.js").status, 404);
  EXPECT_EQ(Call(Method::kPost, "/ui/").status, 405);
  EXPECT_EQ(Call(Method::kGet, "/v2/health/live").status, 200);
  EXPECT_EQ(Call(Method::kGet, "/v2/models/mf").status, 200);
  EXPECT_EQ(Call(Method::kGet, "/ui/api/%zz").status, 400);
}

TEST_F(WebAppTest, ProductionNeedsALoginAndACsrfTokenAndKeepsOperatorsApart) {
  MakeApp(true, false);
  EXPECT_FALSE(app_->dev_mode());
  Json session = Json::parse(Call(Method::kGet, "/ui/api/session").body);
  EXPECT_EQ(session["mode"], "production");
  EXPECT_EQ(session["logged_in"], false);
  EXPECT_EQ(Call(Method::kGet, "/ui/api/models").status, 401);
  EXPECT_EQ(Call(Method::kPost, "/ui/api/login", R"({"user":"op","password":"wrong-pass"})").status,
            401);
  EXPECT_EQ(Call(Method::kPost, "/ui/api/login", R"({"user":"nobody","password":"x"})").status,
            401);
  EXPECT_EQ(Call(Method::kPost, "/ui/api/login", "not json").status, 400);

  auto [cookie, csrf] = Login("eu", "eu-password");
  EXPECT_EQ(cookie.rfind("edgeloop_session=", 0), 0u);
  const std::vector<std::pair<std::string, std::string>> with_cookie = {{"Cookie", cookie}};
  EXPECT_EQ(Json::parse(Call(Method::kGet, "/ui/api/session", "", with_cookie).body)["role"],
            "user");
  EXPECT_EQ(Call(Method::kGet, "/ui/api/models", "", with_cookie).status, 200);
  // End users never see the operator view.
  EXPECT_EQ(Call(Method::kGet, "/ui/api/operator", "", with_cookie).status, 403);
  // A POST with the cookie but without the CSRF token is refused.
  const std::string record = R"({"values":{}})";
  EXPECT_EQ(Call(Method::kPost, "/ui/api/models/mf/score", record, with_cookie).status, 403);
  EXPECT_EQ(Call(Method::kPost, "/ui/api/models/mf/score", record,
                 {{"Cookie", cookie}, {"X-CSRF-Token", csrf + "0"}})
                .status,
            403);
  // With it, the request reaches the scorer (which wants every field).
  http::Response missing = Call(Method::kPost, "/ui/api/models/mf/score", record,
                                {{"Cookie", cookie}, {"X-CSRF-Token", csrf}});
  EXPECT_EQ(missing.status, 400);
  EXPECT_EQ(Json::parse(missing.body)["error"], "the field 'temperature_c' is missing");

  auto op = Login("op", "op-password");
  EXPECT_EQ(Call(Method::kGet, "/ui/api/operator", "", {{"Cookie", op.first}}).status, 200);
  // Logging out ends the session.
  EXPECT_EQ(
      Call(Method::kPost, "/ui/api/logout", "", {{"Cookie", op.first}, {"X-CSRF-Token", op.second}})
          .status,
      200);
  EXPECT_EQ(Call(Method::kGet, "/ui/api/operator", "", {{"Cookie", op.first}}).status, 401);
}

TEST_F(WebAppTest, TheApiTokenLogsInAsOperatorAndWorksAsABearerToken) {
  MakeApp(false, false);
  EXPECT_FALSE(app_->dev_mode());
  EXPECT_EQ(Call(Method::kPost, "/ui/api/login", R"({"token":"wrong"})").status, 401);
  EXPECT_EQ(
      Call(Method::kPost, "/ui/api/login", R"({"user":"op","password":"op-password"})").status,
      401);
  http::Response login = Call(Method::kPost, "/ui/api/login", Json{{"token", kToken}}.dump());
  EXPECT_EQ(login.status, 200);
  EXPECT_EQ(Json::parse(login.body)["role"], "operator");
  const std::string bearer = std::string("Bearer ") + kToken;
  EXPECT_EQ(Call(Method::kGet, "/ui/api/operator", "", {{"Authorization", bearer}}).status, 200);
  EXPECT_EQ(Call(Method::kGet, "/ui/api/operator", "", {{"Authorization", "Bearer nope"}}).status,
            401);
}

TEST_F(WebAppTest, DevModeOnLoopbackGivesEveryoneAnOperatorSessionButStillNeedsCsrf) {
  MakeApp(false, true);
  EXPECT_TRUE(app_->dev_mode());
  http::Response session = Call(Method::kGet, "/ui/api/session");
  Json body = Json::parse(session.body);
  EXPECT_EQ(body["mode"], "dev");
  EXPECT_EQ(body["role"], "operator");
  EXPECT_NE(body["notice"].get<std::string>().find("Dev mode"), std::string::npos);
  std::string cookie;
  for (auto& [name, value] : session.headers) {
    if (name == "Set-Cookie") {
      EXPECT_NE(value.find("HttpOnly"), std::string::npos);
      EXPECT_NE(value.find("SameSite=Strict"), std::string::npos);
      cookie = value.substr(0, value.find(';'));
    }
  }
  EXPECT_EQ(Call(Method::kGet, "/ui/api/operator", "", {{"Cookie", cookie}}).status, 200);
  EXPECT_EQ(Call(Method::kPost, "/ui/api/models/mf/score-csv", Csv(2), {{"Cookie", cookie}}).status,
            403);
  EXPECT_EQ(Call(Method::kPost, "/ui/api/models/mf/score-csv", Csv(2),
                 {{"Cookie", cookie}, {"X-CSRF-Token", body["csrf"].get<std::string>()}})
                .status,
            200);
}

TEST_F(WebAppTest, ScoresARecordWithContributionsLikeTheInferApi) {
  MakeApp(true, false);
  auto [cookie, csrf] = Login("eu", "eu-password");
  const std::vector<std::pair<std::string, std::string>> headers = {{"Cookie", cookie},
                                                                    {"X-CSRF-Token", csrf}};
  Json models = Json::parse(Call(Method::kGet, "/ui/api/models", "", {{"Cookie", cookie}}).body);
  ASSERT_EQ(models["models"].size(), 1u);
  const Json& columns = models["models"][0]["schema"]["columns"];
  ASSERT_EQ(columns.size(), 20u);
  Json values = Json::object();
  Json row = Json::array();
  for (size_t i = 0; i < columns.size(); ++i) {
    values[columns[i]["name"].get<std::string>()] = 10.0 + static_cast<double>(i);
    row.push_back(10.0 + static_cast<double>(i));
  }
  http::Response scored =
      Call(Method::kPost, "/ui/api/models/mf/score", Json{{"values", values}}.dump(), headers);
  ASSERT_EQ(scored.status, 200) << scored.body;
  Json result = Json::parse(scored.body);
  EXPECT_EQ(result["outputs"][0], "probability");
  EXPECT_EQ(result["contributions"].size(), 8u);
  EXPECT_FALSE(result["request_id"].get<std::string>().empty());

  Json infer = {
      {"inputs",
       {{{"name", "features"}, {"datatype", "FP32"}, {"shape", {1, 20}}, {"data", row}}}}};
  http::Response direct = Call(Method::kPost, "/v2/models/mf/infer", infer.dump());
  ASSERT_EQ(direct.status, 200) << direct.body;
  EXPECT_EQ(result["values"][0].get<float>(),
            Json::parse(direct.body)["outputs"][0]["data"][0].get<float>());
  // The largest contribution comes first.
  EXPECT_GE(std::fabs(result["contributions"][0]["value"].get<double>()),
            std::fabs(result["contributions"][7]["value"].get<double>()));
}

TEST_F(WebAppTest, ScoresACsvFileAndRejectsBadFilesWithAMessage) {
  MakeApp(true, false);
  auto [cookie, csrf] = Login("eu", "eu-password");
  const std::vector<std::pair<std::string, std::string>> headers = {{"Cookie", cookie},
                                                                    {"X-CSRF-Token", csrf}};
  http::Response scored = Call(Method::kPost, "/ui/api/models/mf/score-csv", Csv(1000), headers);
  ASSERT_EQ(scored.status, 200) << scored.body.substr(0, 300);
  Json result = Json::parse(scored.body);
  EXPECT_EQ(result["rows"], 1000);
  ASSERT_EQ(result["results"].size(), 1000u);
  EXPECT_EQ(result["results"][999][0], 999);
  EXPECT_EQ(result["request_ids"].size(), 1u);  // 1000 rows fit one batch of 1024
  EXPECT_EQ(result["outputs"][0], "probability");

  http::Response wrong = Call(Method::kPost, "/ui/api/models/mf/score-csv", "a,b\n1,2\n", headers);
  EXPECT_EQ(wrong.status, 400);
  EXPECT_NE(Json::parse(wrong.body)["error"].get<std::string>().find("wrong columns"),
            std::string::npos);
  http::Response garbage = Call(Method::kPost, "/ui/api/models/mf/score-csv",
                                std::string("\x89PNG\r\n\x1a\n\0\0", 10), headers);
  EXPECT_EQ(garbage.status, 400);
  EXPECT_NE(garbage.body.find("not CSV text"), std::string::npos);
  EXPECT_EQ(Call(Method::kPost, "/ui/api/models/nope/score-csv", Csv(1), headers).status, 404);
}

TEST_F(WebAppTest, FeedbackBecomesAFeedbackEventInTheQueue) {
  MakeApp(true, false);
  auto [cookie, csrf] = Login("eu", "eu-password");
  const std::vector<std::pair<std::string, std::string>> headers = {{"Cookie", cookie},
                                                                    {"X-CSRF-Token", csrf}};
  Json scored =
      Json::parse(Call(Method::kPost, "/ui/api/models/mf/score-csv", Csv(3), headers).body);
  const std::string request_id = scored["request_ids"][0];
  Json feedback = {{"model", "mf"},
                   {"version", "1"},
                   {"request_id", request_id},
                   {"row", 2},
                   {"verdict", "label"},
                   {"label", "failure"},
                   {"note", "bearing replaced the day after"}};
  http::Response answer = Call(Method::kPost, "/ui/api/feedback", feedback.dump(), headers);
  ASSERT_EQ(answer.status, 201) << answer.body;
  const std::string id = Json::parse(answer.body)["id"];
  auto events = queue_->Peek(100);
  ASSERT_TRUE(events.ok());
  bool found = false;
  for (const queue::EventInfo& info : *events) {
    if (info.event.id != id) continue;
    found = true;
    EXPECT_EQ(info.event.type, "feedback");
    Json payload = Json::parse(info.event.payload);
    EXPECT_EQ(payload["request_id"], request_id);
    EXPECT_NE(info.event.payload.find("bearing replaced"), std::string::npos);
    EXPECT_NE(info.event.payload.find("failure"), std::string::npos);
  }
  EXPECT_TRUE(found);
  feedback["verdict"] = "maybe";
  EXPECT_EQ(Call(Method::kPost, "/ui/api/feedback", feedback.dump(), headers).status, 400);
  feedback["verdict"] = "label";
  feedback.erase("label");
  EXPECT_EQ(Call(Method::kPost, "/ui/api/feedback", feedback.dump(), headers).status, 400);
}

TEST_F(WebAppTest, OperatorViewShowsModelsRequestsQueueAndUplink) {
  MakeApp(true, false);
  auto [cookie, csrf] = Login("op", "op-password");
  Call(Method::kPost, "/ui/api/models/mf/score-csv", Csv(5),
       {{"Cookie", cookie}, {"X-CSRF-Token", csrf}});
  app_->monitor()->Poll();
  Json view = Json::parse(Call(Method::kGet, "/ui/api/operator", "", {{"Cookie", cookie}}).body);
  EXPECT_EQ(view["models"][0]["name"], "mf");
  EXPECT_EQ(view["models"][0]["state"], "READY");
  EXPECT_GE(view["requests"]["total"].get<double>(), 1);
  EXPECT_EQ(view["uplink"]["state"], "online");
  EXPECT_TRUE(view["queue"].is_object());
  hub_down_ = true;
  clock_.Advance(std::chrono::seconds(3));
  app_->monitor()->Poll();
  view = Json::parse(Call(Method::kGet, "/ui/api/operator", "", {{"Cookie", cookie}}).body);
  EXPECT_EQ(view["uplink"]["state"], "offline");
  worker_up_ = false;
  app_->monitor()->Poll();
  view = Json::parse(Call(Method::kGet, "/ui/api/operator", "", {{"Cookie", cookie}}).body);
  EXPECT_EQ(view["uplink"]["state"], "unreachable");
}

TEST_F(WebAppTest, RecentAnomaliesAreBounded) {
  RecentScores recent(3, 2, 2);
  for (int i = 0; i < 5; ++i) recent.Add({i, "m", "a", i / 10.0, i % 2 == 1});
  recent.Add({9, "m", "b", 0.9, true});
  recent.Add({10, "m", "c", 0.1, false});  // evicts series a, the least recently updated
  Json json = Json::parse(recent.Json(""));
  ASSERT_EQ(json["series"].size(), 2u);
  EXPECT_EQ(json["series"][0]["series"], "b");
  ASSERT_EQ(json["anomalies"].size(), 2u);
  EXPECT_EQ(json["anomalies"][0]["series"], "b");  // newest first
  EXPECT_EQ(json["anomalies"][1]["time_ms"], 3);
  EXPECT_EQ(Json::parse(recent.Json("other"))["series"].size(), 0u);
}

}  // namespace
}  // namespace edgeloop::webapp
