// Schema v3 over both stores: drift reports, labelled events, the job history, and the
// migration of a v2 database that already holds data.
#include <gtest/gtest.h>

#include "hub/event.h"
#include "hub/store.h"
#include "hub/test_stores.h"

namespace edgeloop::hub {
namespace {

constexpr int64_t kT0 = 1'795'000'000'000;

std::vector<Event> Parse(const std::string& lines) {
  auto batch = ParseBatch(lines, "north", {});
  EXPECT_TRUE(batch.ok());
  for (const Rejection& r : batch->rejected) ADD_FAILURE() << r.error;
  return batch->events;
}

std::string Id(int n) {
  char id[64];
  std::snprintf(id, sizeof(id), "0190a1b2-0000-7000-8000-%012d", n);
  return id;
}

template <typename Backend>
class StoreJobsTest : public testing::StoreFixture<Backend> {
 protected:
  void SetUp() override {
    testing::StoreFixture<Backend>::SetUp();
    if (!this->Opened()) return;
    ASSERT_TRUE(this->store_->AddSite("north", kT0).ok());
  }

  void Ingest(const std::string& lines, int64_t received_at) {
    auto result =
        this->store_->Ingest({"north", received_at, "", "identity", 1, 1}, Parse(lines), 0);
    ASSERT_TRUE(result.ok()) << result.status();
  }
};

TYPED_TEST_SUITE(StoreJobsTest, testing::Backends, testing::BackendNames);

TYPED_TEST(StoreJobsTest, DriftReportsAreStoredOnceAndLeaveTheStatsAlone) {
  const std::string drift =
      R"({"id":")" + Id(1) +
      R"(","type":"drift","ts_ms":1795000000000,"model":"mf","model_version":"3",)"
      R"("model_digest":"sha256:aa","drift":{"window_rows":500,"features":[)"
      R"({"name":"temp","psi":0.4,"ks":0.3,"drifted":true},{"name":"rpm","psi":0.0,"drifted":false}]}})"
      "\n";
  this->Ingest(drift, kT0);
  this->Ingest(drift, kT0 + 1);  // a duplicate
  auto table = this->store_->DriftReports({}, 10);
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_EQ(table->rows.size(), 1u);
  const auto& row = table->rows[0];
  EXPECT_EQ(std::get<std::string>(row[0]), Id(1));
  EXPECT_EQ(std::get<int64_t>(row[6]), 500);
  EXPECT_EQ(std::get<int64_t>(row[7]), 1);
  EXPECT_NE(std::get<std::string>(row[8]).find("\"psi\":0.4"), std::string::npos);
  auto count = this->store_->CountDriftReports("mf", kT0);
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 1);
  EXPECT_EQ(*this->store_->CountDriftReports("mf", kT0 + 1), 0);
  EXPECT_EQ(*this->store_->CountDriftReports("other", 0), 0);
  // Drift reports are not predictions: the stats count none.
  auto stats = this->store_->Counts({}, 3'600'000, {});
  ASSERT_TRUE(stats.ok());
  EXPECT_TRUE(stats->rows.empty());
}

TYPED_TEST(StoreJobsTest, LabelledJoinsLabelsByEventIdAndByRequestId) {
  const std::string events =
      R"({"id":")" + Id(1) +
      R"(","type":"insight","timestamp":1795000000000,"model":{"name":"mf","version":"3"},)"
      R"("request_id":"r1","prediction":"0","inputs":{"temp":71.5,"mode":"auto"}})"
      "\n" +
      R"({"id":")" + Id(2) +
      R"(","type":"insight","timestamp":1795000001000,"model":{"name":"mf","version":"3"},)"
      R"("request_id":"r2","prediction":"1","inputs":{"temp":90.0,"mode":"manual"}})"
      "\n" +
      R"({"id":")" + Id(3) +
      R"(","type":"insight","timestamp":1795000002000,"model":{"name":"other"},"request_id":"r3"})"
      "\n";
  this->Ingest(events, kT0);
  this->Ingest(R"({"id":")" + Id(10) +
                   R"(","type":"feedback","timestamp":1795000005000,"feedback":{"event_id":")" +
                   Id(1) + R"(","label":"1"}})" + "\n",
               kT0 + 100);
  this->Ingest(R"({"id":")" + Id(11) +
                   R"(","type":"feedback","timestamp":1795000006000,"model":{"name":"mf"},)"
                   R"("request_id":"r2","label":true})"
                   "\n",
               kT0 + 200);
  QueryFilter filter;
  filter.model = "mf";
  auto all = this->store_->Labelled(filter, std::nullopt, std::nullopt, 100);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->rows.size(), 2u);
  auto col = [&](const std::string& name) {
    for (size_t i = 0; i < all->columns.size(); ++i) {
      if (all->columns[i] == name) return i;
    }
    ADD_FAILURE() << name;
    return size_t{0};
  };
  EXPECT_EQ(std::get<std::string>(all->rows[0][col("id")]), Id(1));
  EXPECT_EQ(std::get<std::string>(all->rows[0][col("label")]), "1");
  EXPECT_EQ(std::get<int64_t>(all->rows[0][col("labelled_at")]), kT0 + 100);
  EXPECT_EQ(std::get<std::string>(all->rows[1][col("id")]), Id(2));
  EXPECT_EQ(std::get<std::string>(all->rows[1][col("label")]), "true");
  EXPECT_NE(std::get<std::string>(all->rows[1][col("inputs")]).find("manual"), std::string::npos);
  // Incremental: only labels received after the watermark.
  auto later = this->store_->Labelled(filter, kT0 + 100, std::nullopt, 100);
  ASSERT_TRUE(later.ok());
  ASSERT_EQ(later->rows.size(), 1u);
  EXPECT_EQ(*this->store_->CountLabels("mf", kT0), 2);
  EXPECT_EQ(*this->store_->CountLabels("mf", kT0 + 150), 1);
  EXPECT_EQ(*this->store_->CountLabels("other", 0), 0);
}

TYPED_TEST(StoreJobsTest, JobsRoundTripAndUnfinishedOnesAreInterrupted) {
  JobRecord job;
  job.model = "mf";
  job.trigger = "cron";
  job.status = "queued";
  job.created_at = kT0;
  auto id = this->store_->CreateJob(job);
  ASSERT_TRUE(id.ok()) << id.status();
  job.id = *id;
  job.status = "succeeded";
  job.started_at = kT0 + 1;
  job.finished_at = kT0 + 2;
  job.gate_passed = 1;
  job.gate_metric = "roc_auc";
  job.challenger = 0.9;
  job.champion = 0.8;
  job.digest = "sha256:ab";
  job.version = "3-x";
  job.details = R"({"steps":[]})";
  job.log = "line\n";
  ASSERT_TRUE(this->store_->UpdateJob(job).ok());
  auto read = this->store_->GetJob(*id);
  ASSERT_TRUE(read.ok() && read->has_value());
  EXPECT_EQ((*read)->status, "succeeded");
  EXPECT_EQ((*read)->gate_passed, 1);
  EXPECT_DOUBLE_EQ(*(*read)->challenger, 0.9);
  EXPECT_EQ((*read)->digest, "sha256:ab");
  EXPECT_EQ((*read)->log, "line\n");
  EXPECT_EQ((*read)->finished_at, kT0 + 2);

  JobRecord other = job;
  other.model = "b";
  other.status = "running";
  auto second = this->store_->CreateJob(other);
  ASSERT_TRUE(second.ok());
  EXPECT_GT(*second, *id);
  auto interrupted = this->store_->InterruptUnfinishedJobs(kT0 + 9);
  ASSERT_TRUE(interrupted.ok());
  EXPECT_EQ(*interrupted, 1);
  auto list = this->store_->ListJobs("", 10);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, *second);  // newest first
  EXPECT_EQ((*list)[0].status, "interrupted");
  EXPECT_TRUE((*list)[0].log.empty());  // lists carry no logs
  EXPECT_EQ(this->store_->ListJobs("mf", 10)->size(), 1u);
  job.id = 999;
  EXPECT_EQ(this->store_->UpdateJob(job).code(), StatusCode::kNotFound);
  EXPECT_FALSE(this->store_->GetJob(999)->has_value());
}

TYPED_TEST(StoreJobsTest, AVersionTwoDatabaseWithDataMigratesToThree) {
  this->Ingest(R"({"id":")" + Id(1) +
                   R"(","type":"insight","timestamp":1795000000000,"model":{"name":"mf"}})"
                   "\n",
               kT0);
  this->store_.reset();
  // Take the database back to version 2.
  {
    const bool pg = this->url_.rfind("postgres", 0) == 0;
    auto conn = pg ? OpenPostgres(this->url_) : OpenSqlite(this->url_.substr(9));
    ASSERT_TRUE(conn.ok()) << conn.status();
    ASSERT_TRUE((*conn)
                    ->Exec("DROP TABLE jobs; DROP TABLE drift_reports; DROP INDEX "
                           "events_site_request; DELETE FROM schema_migrations WHERE version = 3")
                    .ok());
  }
  auto old = Store::Open(this->url_, {.pool_size = 1, .migrate = false});
  EXPECT_EQ(old.status().code(), StatusCode::kFailedPrecondition);
  auto store = Store::Open(this->url_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(*(*store)->SchemaVersion(), 3);
  auto events = (*store)->Events({}, 10);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->rows.size(), 1u);
  EXPECT_TRUE((*store)->ListJobs("", 10)->empty());
}

}  // namespace
}  // namespace edgeloop::hub
