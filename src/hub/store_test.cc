// The store's ingest and query suite, run over SQLite and a real PostgreSQL.
#include "hub/store.h"

#include <gtest/gtest.h>

#include <thread>

#include "hub/auth.h"
#include "hub/test_stores.h"

namespace edgeloop::hub {
namespace {

constexpr int64_t kT0 = 1'795'000'000'000;  // 2026-11-17
constexpr int64_t kHour = 3'600'000;

std::string Id(int n) {
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "0190a1b2-c3d4-7e5f-8a9b-%012d", n);
  return buffer;
}

Event Insight(int n, const std::string& site, int64_t ts, bool anomaly = false, double score = 0.1,
              const std::string& version = "1") {
  Event e;
  e.id = Id(n);
  e.site = site;
  e.type = anomaly ? "anomaly" : "insight";
  e.ts_ms = ts;
  e.model = "machine-failure";
  e.model_version = version;
  e.model_digest = "sha256:" + std::string(64, 'a');
  e.request_id = "req-" + std::to_string(n);
  e.anomaly = anomaly ? 1 : 0;
  e.score = score;
  e.latency_ms = 1.0 + n % 10;
  e.prediction = n % 2 == 0 ? "ok" : "fail";
  e.inputs = R"({"x":[1,2,"tab\there"]})";
  e.outputs = R"({"y":"line\nbreak \\ back"})";
  return e;
}

Event Feedback(int n, const std::string& site, int64_t ts, int target, const std::string& label) {
  Event e;
  e.id = Id(n);
  e.site = site;
  e.type = "feedback";
  e.ts_ms = ts;
  e.target_id = Id(target);
  e.label = label;
  return e;
}

UploadMeta Meta(const std::string& site) {
  return {site, kT0 + 10 * kHour, "key-1", "zstd", 100, 1000};
}

int64_t Int(const SqlValue& v) {
  if (const auto* n = std::get_if<int64_t>(&v)) return *n;
  if (const auto* d = std::get_if<double>(&v)) return static_cast<int64_t>(*d);
  return -1;
}
double Dbl(const SqlValue& v) {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* n = std::get_if<int64_t>(&v)) return static_cast<double>(*n);
  return -1;
}
std::string Str(const SqlValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return "<not text>";
}
size_t Col(const SqlTable& t, const std::string& name) {
  for (size_t i = 0; i < t.columns.size(); ++i) {
    if (t.columns[i] == name) return i;
  }
  ADD_FAILURE() << "no column " << name;
  return 0;
}

template <typename Backend>
class StoreTest : public testing::StoreFixture<Backend> {
 protected:
  void SetUp() override {
    testing::StoreFixture<Backend>::SetUp();
    if (!this->Opened()) return;
    ASSERT_TRUE(this->store_->AddSite("north", kT0).ok());
    ASSERT_TRUE(this->store_->AddSite("south", kT0).ok());
  }
};

TYPED_TEST_SUITE(StoreTest, testing::Backends, testing::BackendNames);

TYPED_TEST(StoreTest, MigratesToTheCurrentVersionOnceAndReopens) {
  auto version = this->store_->SchemaVersion();
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, kSchemaVersion);
  auto applied = this->store_->Migrate();
  ASSERT_TRUE(applied.ok());
  EXPECT_TRUE(applied->empty());
  this->store_.reset();
  auto reopened = Store::Open(this->url_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto sites = (*reopened)->ListSites();
  ASSERT_TRUE(sites.ok());
  EXPECT_EQ(sites->size(), 2u);
}

TYPED_TEST(StoreTest, OpeningWithoutMigrateRefusesAnEmptyDatabase) {
  std::string skip;
  const std::string url = this->backend_.NewUrl(&skip);
  ASSERT_FALSE(url.empty()) << skip;
  auto store = Store::Open(url, {.pool_size = 1, .migrate = false});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("edgeloop hub migrate"), std::string::npos);
}

TYPED_TEST(StoreTest, SitesAreUniqueAndNamesAreChecked) {
  EXPECT_EQ(this->store_->AddSite("north", kT0).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(this->store_->AddSite("bad name", kT0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(this->store_->AddSite("", kT0).code(), StatusCode::kInvalidArgument);
}

TYPED_TEST(StoreTest, TokensAreFoundByHashAndRevoked) {
  TokenRecord record{"dash", Role::kRead, "", kT0, kT0 + kHour, std::nullopt};
  ASSERT_TRUE(this->store_->AddToken(HashToken("secret-1"), record).ok());
  auto found = this->store_->FindToken(HashToken("secret-1"));
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->role, Role::kRead);
  EXPECT_EQ((*found)->expires_at, kT0 + kHour);
  auto missing = this->store_->FindToken(HashToken("secret-2"));
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  auto revoked = this->store_->RevokeTokens("dash", kT0 + 1);
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(*revoked, 1);
  EXPECT_TRUE((*this->store_->FindToken(HashToken("secret-1")))->revoked_at.has_value());
  // A site token needs an existing site.
  EXPECT_FALSE(this->store_->AddToken(HashToken("x"), {"s", Role::kSite, "", kT0, {}, {}}).ok());
}

TYPED_TEST(StoreTest, IngestIsIdempotentByEventId) {
  std::vector<Event> batch;
  for (int i = 0; i < 50; ++i)
    batch.push_back(Insight(i, "north", kT0 + i * 1000, i % 10 == 0, i / 50.0));
  auto first = this->store_->Ingest(Meta("north"), batch, 0);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->accepted, 50);
  EXPECT_EQ(first->duplicates, 0);
  auto again = this->store_->Ingest(Meta("north"), batch, 0);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->accepted, 0);
  EXPECT_EQ(again->duplicates, 50);
  // Overlapping batch, with a repeat inside itself.
  std::vector<Event> overlap = {Insight(49, "north", kT0), Insight(50, "north", kT0),
                                Insight(50, "north", kT0)};
  auto third = this->store_->Ingest(Meta("north"), overlap, 2);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->accepted, 1);
  EXPECT_EQ(third->duplicates, 2);

  auto events = this->store_->Events({}, 1000);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->rows.size(), 51u);
  auto sites = this->store_->ListSites();
  ASSERT_TRUE(sites.ok());
  EXPECT_EQ((*sites)[0].name, "north");
  EXPECT_EQ((*sites)[0].events_total, 51);
  EXPECT_EQ((*sites)[0].uploads_total, 3);
  EXPECT_EQ((*sites)[0].last_seen_at, kT0 + 10 * kHour);
  EXPECT_FALSE((*sites)[1].last_seen_at.has_value());
  auto uploads = this->store_->Uploads({}, 10);
  ASSERT_TRUE(uploads.ok());
  ASSERT_EQ(uploads->rows.size(), 3u);
  const auto& last = uploads->rows[0];
  EXPECT_EQ(Int(last[Col(*uploads, "events")]), 5);
  EXPECT_EQ(Int(last[Col(*uploads, "accepted")]), 1);
  EXPECT_EQ(Int(last[Col(*uploads, "duplicates")]), 2);
  EXPECT_EQ(Int(last[Col(*uploads, "rejected")]), 2);
  EXPECT_EQ(Str(last[Col(*uploads, "idempotency_key")]), "key-1");
}

TYPED_TEST(StoreTest, TextWithTabsNewlinesAndBackslashesRoundTrips) {
  ASSERT_TRUE(this->store_->Ingest(Meta("north"), {Insight(1, "north", kT0)}, 0).ok());
  auto events = this->store_->Events({}, 10);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->rows.size(), 1u);
  EXPECT_EQ(Str(events->rows[0][Col(*events, "inputs")]), R"({"x":[1,2,"tab\there"]})");
  EXPECT_EQ(Str(events->rows[0][Col(*events, "outputs")]), R"({"y":"line\nbreak \\ back"})");
  EXPECT_DOUBLE_EQ(Dbl(events->rows[0][Col(*events, "latency_ms")]), 2.0);
}

TYPED_TEST(StoreTest, IngestRefusesEventsOfAnotherSiteAndUnknownSites) {
  auto mixed =
      this->store_->Ingest(Meta("north"), {Insight(1, "north", kT0), Insight(2, "south", kT0)}, 0);
  EXPECT_EQ(mixed.status().code(), StatusCode::kPermissionDenied);
  auto unknown = this->store_->Ingest(Meta("west"), {Insight(3, "west", kT0)}, 0);
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  // Nothing of either was stored.
  EXPECT_TRUE(this->store_->Events({}, 10)->rows.empty());
  EXPECT_TRUE(this->store_->Uploads({}, 10)->rows.empty());
}

TYPED_TEST(StoreTest, CountsByBucketAndSiteWithAnomalyRate) {
  std::vector<Event> north, south;
  for (int i = 0; i < 40; ++i)
    north.push_back(Insight(i, "north", kT0 + (i % 4) * kHour, i % 4 == 0));
  for (int i = 100; i < 110; ++i) south.push_back(Insight(i, "south", kT0 + kHour, false));
  ASSERT_TRUE(this->store_->Ingest(Meta("north"), north, 0).ok());
  ASSERT_TRUE(this->store_->Ingest(Meta("south"), south, 0).ok());
  auto counts = this->store_->Counts({}, kHour, {"site"});
  ASSERT_TRUE(counts.ok()) << counts.status();
  ASSERT_EQ(counts->rows.size(), 5u);  // north: 4 buckets, south: 1
  const auto& r0 = counts->rows[0];
  EXPECT_EQ(Int(r0[Col(*counts, "bucket")]), (kT0 / kHour) * kHour);
  EXPECT_EQ(Str(r0[Col(*counts, "site")]), "north");
  EXPECT_EQ(Int(r0[Col(*counts, "events")]), 10);
  EXPECT_EQ(Int(r0[Col(*counts, "anomalies")]), 10);
  EXPECT_DOUBLE_EQ(Dbl(r0[Col(*counts, "anomaly_rate")]), 1.0);
  const auto& r1 = counts->rows[1];
  EXPECT_EQ(Int(r1[Col(*counts, "events")]), 10);
  EXPECT_DOUBLE_EQ(Dbl(r1[Col(*counts, "anomaly_rate")]), 0.0);

  QueryFilter south_only;
  south_only.site = "south";
  auto filtered = this->store_->Counts(south_only, 24 * kHour, {"model", "version"});
  ASSERT_TRUE(filtered.ok()) << filtered.status();
  ASSERT_EQ(filtered->rows.size(), 1u);
  EXPECT_EQ(Int(filtered->rows[0][Col(*filtered, "events")]), 10);
  EXPECT_EQ(Str(filtered->rows[0][Col(*filtered, "version")]), "1");

  QueryFilter window;
  window.from_ms = kT0 + kHour;
  window.to_ms = kT0 + 2 * kHour;
  auto windowed = this->store_->Counts(window, kHour, {});
  ASSERT_TRUE(windowed.ok());
  ASSERT_EQ(windowed->rows.size(), 1u);
  EXPECT_EQ(Int(windowed->rows[0][Col(*windowed, "events")]), 20);
  EXPECT_EQ(this->store_->Counts({}, kHour, {"nope"}).status().code(),
            StatusCode::kInvalidArgument);
}

TYPED_TEST(StoreTest, AnomaliesAreFilteredAndOrdered) {
  std::vector<Event> batch;
  for (int i = 0; i < 20; ++i) batch.push_back(Insight(i, "north", kT0 + i, i % 2 == 0, i / 20.0));
  ASSERT_TRUE(this->store_->Ingest(Meta("north"), batch, 0).ok());
  auto top = this->store_->Anomalies({}, 0.5, true, 3);
  ASSERT_TRUE(top.ok()) << top.status();
  ASSERT_EQ(top->rows.size(), 3u);
  EXPECT_EQ(Str(top->rows[0][Col(*top, "id")]), Id(18));
  EXPECT_EQ(Str(top->rows[1][Col(*top, "id")]), Id(16));
  auto recent = this->store_->Anomalies({}, std::nullopt, false, 100);
  ASSERT_TRUE(recent.ok());
  EXPECT_EQ(recent->rows.size(), 10u);
  QueryFilter other;
  other.site = "south";
  EXPECT_TRUE(this->store_->Anomalies(other, std::nullopt, true, 10)->rows.empty());
}

TYPED_TEST(StoreTest, VersionsSeenPerSite) {
  ASSERT_TRUE(this->store_
                  ->Ingest(Meta("north"),
                           {Insight(1, "north", kT0, false, 0, "1"),
                            Insight(2, "north", kT0 + 5, false, 0, "2"),
                            Insight(3, "north", kT0 + 9, false, 0, "2")},
                           0)
                  .ok());
  ASSERT_TRUE(
      this->store_->Ingest(Meta("north"), {Insight(4, "north", kT0 - 7, false, 0, "2")}, 0).ok());
  auto versions = this->store_->Versions({});
  ASSERT_TRUE(versions.ok()) << versions.status();
  ASSERT_EQ(versions->rows.size(), 2u);
  const auto& v2 = versions->rows[0];  // newest last_seen first
  EXPECT_EQ(Str(v2[Col(*versions, "version")]), "2");
  EXPECT_EQ(Int(v2[Col(*versions, "first_seen_at")]), kT0 - 7);
  EXPECT_EQ(Int(v2[Col(*versions, "last_seen_at")]), kT0 + 9);
}

TYPED_TEST(StoreTest, AccuracyFromFeedbackLabels) {
  // Even ids predict "ok", odd ids "fail".
  std::vector<Event> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(Insight(i, "north", kT0));
  ASSERT_TRUE(this->store_->Ingest(Meta("north"), batch, 0).ok());
  std::vector<Event> feedback;
  for (int i = 0; i < 8; ++i) feedback.push_back(Feedback(100 + i, "north", kT0 + kHour, i, "ok"));
  Event explicit_wrong = Feedback(200, "north", kT0 + kHour, 8, "x");
  explicit_wrong.label.reset();
  explicit_wrong.correct = 0;
  feedback.push_back(explicit_wrong);
  auto stored = this->store_->Ingest(Meta("north"), feedback, 0);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->accepted, 9);
  auto accuracy = this->store_->Accuracy({}, kHour);
  ASSERT_TRUE(accuracy.ok()) << accuracy.status();
  ASSERT_EQ(accuracy->rows.size(), 1u);
  const auto& row = accuracy->rows[0];
  EXPECT_EQ(Int(row[Col(*accuracy, "labelled")]), 9);
  EXPECT_EQ(Int(row[Col(*accuracy, "correct")]), 4);  // ids 0, 2, 4, 6
  EXPECT_NEAR(Dbl(row[Col(*accuracy, "accuracy")]), 4.0 / 9.0, 1e-9);
  EXPECT_EQ(Str(row[Col(*accuracy, "model")]), "machine-failure");
  // Re-sending feedback changes nothing.
  ASSERT_TRUE(this->store_->Ingest(Meta("north"), feedback, 0).ok());
  EXPECT_EQ(Int(this->store_->Accuracy({}, kHour)->rows[0][Col(*accuracy, "labelled")]), 9);
}

TYPED_TEST(StoreTest, AccuracyFromTheEdgesFeedbackByRequestId) {
  // Events predict "1" (even n) or "0"; the edge's feedback names the site's request id and
  // labels with a number or a bool. Another site's request ids never match.
  std::vector<Event> batch;
  for (int i = 0; i < 6; ++i) {
    Event e = Insight(i, "north", kT0, false, 0.1, i < 3 ? "1" : "2");
    e.prediction = i % 2 == 0 ? "1" : "0";
    batch.push_back(e);
  }
  ASSERT_TRUE(this->store_->Ingest(Meta("north"), batch, 0).ok());
  Event south = Insight(50, "south", kT0);
  south.request_id = "req-0";
  south.prediction = "0";
  ASSERT_TRUE(this->store_->Ingest(Meta("south"), {south}, 0).ok());
  const std::vector<std::string> labels = {"1", "1", "true", "0", "false", "0"};
  std::vector<Event> feedback;
  for (int i = 0; i < 6; ++i) {
    Event f = Feedback(100 + i, "north", kT0 + kHour, 0, labels[static_cast<size_t>(i)]);
    f.target_id = std::string(kRequestTargetPrefix) + "req-" + std::to_string(i);
    f.request_id = "req-" + std::to_string(i);
    feedback.push_back(f);
  }
  ASSERT_TRUE(this->store_->Ingest(Meta("north"), feedback, 0).ok());
  auto accuracy = this->store_->Accuracy({}, kHour);
  ASSERT_TRUE(accuracy.ok()) << accuracy.status();
  ASSERT_EQ(accuracy->rows.size(), 2u);
  // Version 1: predictions 1 0 1 against labels 1 1 1 → 2 of 3. Version 2: 0 1 0 against 0 0 0.
  EXPECT_EQ(Str(accuracy->rows[0][Col(*accuracy, "version")]), "1");
  EXPECT_EQ(Int(accuracy->rows[0][Col(*accuracy, "labelled")]), 3);
  EXPECT_EQ(Int(accuracy->rows[0][Col(*accuracy, "correct")]), 2);
  EXPECT_EQ(Str(accuracy->rows[1][Col(*accuracy, "version")]), "2");
  EXPECT_EQ(Int(accuracy->rows[1][Col(*accuracy, "correct")]), 2);
  QueryFilter only_south;
  only_south.site = "south";
  EXPECT_TRUE(this->store_->Accuracy(only_south, kHour)->rows.empty());
}

TYPED_TEST(StoreTest, LatencyAndScoreDistributions) {
  std::vector<Event> batch;
  for (int i = 0; i < 100; ++i) batch.push_back(Insight(i, "north", kT0, false, i / 100.0));
  ASSERT_TRUE(this->store_->Ingest(Meta("north"), batch, 0).ok());
  auto latency = this->store_->Distribution({}, "latency_ms", 10);
  ASSERT_TRUE(latency.ok()) << latency.status();
  EXPECT_EQ(latency->count, 100);
  EXPECT_DOUBLE_EQ(latency->min, 1.0);
  EXPECT_DOUBLE_EQ(latency->max, 10.0);
  EXPECT_DOUBLE_EQ(latency->mean, 5.5);
  EXPECT_DOUBLE_EQ(latency->p50, 5.0);
  EXPECT_DOUBLE_EQ(latency->p99, 10.0);
  int64_t total = 0;
  for (int64_t c : latency->counts) total += c;
  EXPECT_EQ(total, 100);
  // Latencies 1..10, ten each, in ten bins of width 0.9 (the maximum belongs to the last bin).
  EXPECT_EQ(latency->counts, std::vector<int64_t>(10, 10));
  auto score = this->store_->Distribution({}, "score", 4);
  ASSERT_TRUE(score.ok());
  EXPECT_EQ(score->counts, (std::vector<int64_t>{25, 25, 25, 25}));
  EXPECT_EQ(this->store_->Distribution({}, "id; DROP TABLE events", 4).status().code(),
            StatusCode::kInvalidArgument);
}

TYPED_TEST(StoreTest, ConcurrentUploadsOfTheSameEventsStoreEachOnce) {
  std::vector<Event> batch;
  for (int i = 0; i < 200; ++i) batch.push_back(Insight(i, "north", kT0 + i));
  std::vector<std::thread> threads;
  std::atomic<int64_t> accepted{0}, duplicates{0}, failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < 3; ++round) {
        auto result = this->store_->Ingest(Meta("north"), batch, 0);
        if (!result.ok()) {
          ++failures;
          continue;
        }
        accepted += result->accepted;
        duplicates += result->duplicates;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(accepted.load(), 200);
  EXPECT_EQ(duplicates.load(), 200 * 12 - 200);
  EXPECT_EQ(this->store_->Events({}, 1000)->rows.size(), 200u);
}

TYPED_TEST(StoreTest, ConcurrentUploadsAreAnsweredEachOnItsOwnAndShareCommits) {
  constexpr int kThreads = 8;
  constexpr int kUploads = 10;
  std::vector<std::thread> threads;
  std::atomic<int64_t> accepted{0}, unknown_site{0}, other_failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int u = 0; u < kUploads; ++u) {
        // Thread 0 uploads for a site that does not exist: refused alone, nothing stored.
        const std::string site = t == 0 ? "nowhere" : (t % 2 ? "north" : "south");
        std::vector<Event> batch;
        for (int i = 0; i < 20; ++i) {
          batch.push_back(Insight(100'000 + (t * kUploads + u) * 20 + i, site, kT0 + i));
        }
        auto result = this->store_->Ingest(Meta(site), batch, 0);
        if (result.ok()) {
          accepted += result->accepted;
        } else if (result.status().code() == StatusCode::kNotFound) {
          ++unknown_site;
        } else {
          ++other_failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(other_failures.load(), 0);
  EXPECT_EQ(unknown_site.load(), kUploads);
  EXPECT_EQ(accepted.load(), (kThreads - 1) * kUploads * 20);
  EXPECT_EQ(this->store_->Events({}, 10'000)->rows.size(), size_t{(kThreads - 1) * kUploads * 20});
  // The counters and the audit rows add up, however the uploads were grouped.
  auto sites = this->store_->ListSites();
  ASSERT_TRUE(sites.ok()) << sites.status();
  for (const SiteInfo& site : *sites) {
    const int64_t uploads = (site.name == "north" ? 4 : 3) * kUploads;  // threads 1,3,5,7 / 2,4,6
    EXPECT_EQ(site.uploads_total, uploads) << site.name;
    EXPECT_EQ(site.events_total, uploads * 20) << site.name;
  }
  EXPECT_EQ(this->store_->Uploads({}, 10'000)->rows.size(), size_t{(kThreads - 1) * kUploads});
  EXPECT_EQ(this->store_->Versions({})->rows.size(), 2u);  // (north|south, machine-failure, 1)
  if (this->store_->dialect() == Dialect::kSqlite) {
    EXPECT_LT(this->store_->ingest_commits(), kThreads * kUploads);
    EXPECT_GT(this->store_->ingest_commits(), 0);
  }
}

TEST(StoreOpenTest, RejectsUnknownUrls) {
  EXPECT_EQ(Store::Open("mysql://x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Store::Open("sqlite://").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Store::Open("postgresql://nobody@127.0.0.1:1/none").status().code(),
            StatusCode::kUnavailable);
}

}  // namespace
}  // namespace edgeloop::hub
