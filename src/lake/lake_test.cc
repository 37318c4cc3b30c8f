#include "lake/lake.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <thread>

#include "common/test_util.h"
#include "lake/value_text.h"

namespace edgeloop::lake {
namespace {

namespace fs = std::filesystem;

Schema EventSchema() {
  return Schema{1,
                {{0, "id", Type::kInt64},
                 {0, "ts", Type::kTimestamp},
                 {0, "region", Type::kString},
                 {0, "value", Type::kDouble}}};
}

// `n` rows with ids from `first`, one per hour starting 2026-11-27T00:00Z.
Batch Events(const Schema& schema, int64_t first, int64_t n) {
  Batch b(std::make_shared<Schema>(schema));
  const int64_t t0 = *ParseTimestamp("2026-11-27T00:00:00Z");
  for (int64_t i = first; i < first + n; ++i) {
    b.column(0).AppendInt(i);
    b.column(1).AppendInt(t0 + i * 3600 * kMicrosPerSecond);
    b.column(2).AppendString(i % 3 == 0 ? "eu" : "us \"west\",\n2");
    if (i % 5 == 0) {
      b.column(3).AppendNull();
    } else {
      b.column(3).AppendDouble(static_cast<double>(i) / 4);
    }
  }
  return b;
}

struct ScanResult {
  std::vector<int64_t> ids;
  Batch rows;
};

StatusOr<ScanResult> ScanAll(Lake* lake, const std::string& table, ScanOptions options = {}) {
  ASSIGN_OR_RETURN(auto reader, lake->Scan(table, options));
  ScanResult out{{}, Batch(reader->schema())};
  Batch b;
  while (true) {
    ASSIGN_OR_RETURN(const bool more, reader->Next(&b));
    if (!more) break;
    for (int64_t i = 0; i < b.num_rows(); ++i) out.rows.AppendRow(b, i);
  }
  const int id = reader->schema()->IndexOf("id");
  if (id >= 0 && reader->schema()->fields[id].type == Type::kInt64) {
    for (int64_t i = 0; i < out.rows.num_rows(); ++i)
      out.ids.push_back(out.rows.column(id).GetInt(i));
    std::sort(out.ids.begin(), out.ids.end());
  }
  return out;
}

std::vector<int64_t> Range(int64_t first, int64_t n) {
  std::vector<int64_t> v;
  for (int64_t i = first; i < first + n; ++i) v.push_back(i);
  return v;
}

StatusOr<SnapshotInfo> Append(Lake* lake, const std::string& table, int64_t first, int64_t n,
                              bool overwrite = false) {
  ASSIGN_OR_RETURN(auto txn, lake->Begin());
  ASSIGN_OR_RETURN(TableWriter * w, txn->Writer(table, overwrite));
  ASSIGN_OR_RETURN(const TableInfo info, lake->Describe(table));
  RETURN_IF_ERROR(w->Write(Events(info.schema, first, n)));
  return txn->Commit();
}

class LakeTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen(LakeOptions options = {}) {
    lake_.reset();
    options.clock = &clock_;
    auto lake = Lake::Open(dir_.path() / "lake", options, true);
    ASSERT_TRUE(lake.ok()) << lake.status();
    lake_ = std::move(*lake);
  }
  void CreateEvents(const std::string& partition = "day(ts)") {
    auto spec = ParsePartitionSpec(partition);
    ASSERT_TRUE(spec.ok());
    auto s = lake_->CreateTable("events", EventSchema(), *spec);
    ASSERT_TRUE(s.ok()) << s.status();
  }

  FakeClock clock_;
  testing::TempDir dir_;
  std::unique_ptr<Lake> lake_;
};

TEST_F(LakeTest, OpenWithoutCreateIsNotFound) {
  EXPECT_EQ(Lake::Open(dir_.path() / "nowhere", {}, false).status().code(), StatusCode::kNotFound);
}

TEST_F(LakeTest, PartitionedAppendsRoundTripInHiveFolders) {
  CreateEvents();
  auto s = Append(lake_.get(), "events", 0, 100);  // 100 hours: 5 days
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->id, 2);
  EXPECT_EQ(s->operation, "append");
  EXPECT_EQ(s->rows_added, 100);
  auto files = lake_->Files("events");
  ASSERT_TRUE(files.ok());
  std::set<std::string> partitions;
  for (const DataFileInfo& f : *files) {
    partitions.insert(f.partition);
    EXPECT_TRUE(fs::exists(lake_->root() / f.path)) << f.path;
    EXPECT_EQ(f.path.rfind("tables/events/" + f.partition + "/", 0), 0u) << f.path;
    EXPECT_EQ(f.stats.columns.size(), 4u);
    EXPECT_EQ(f.stats.sha256.rfind("sha256:", 0), 0u);
  }
  EXPECT_EQ(partitions, (std::set<std::string>{"day=2026-11-27", "day=2026-11-28", "day=2026-11-29",
                                               "day=2026-11-30", "day=2026-12-01"}));
  auto all = ScanAll(lake_.get(), "events");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->ids, Range(0, 100));
  // Values survive, including quotes, newlines and nulls.
  for (int64_t i = 0; i < all->rows.num_rows(); ++i) {
    const int64_t id = all->rows.column(0).GetInt(i);
    EXPECT_EQ(all->rows.column(2).GetString(i), id % 3 == 0 ? "eu" : "us \"west\",\n2");
    EXPECT_EQ(all->rows.column(3).IsNull(i), id % 5 == 0);
  }
  ScanOptions one;
  one.partitions = {"day=2026-11-28"};
  one.columns = {"value", "id"};
  auto day = ScanAll(lake_.get(), "events", one);
  ASSERT_TRUE(day.ok()) << day.status();
  EXPECT_EQ(day->ids, Range(24, 24));
  EXPECT_EQ(day->rows.schema()->fields.front().name, "value");
  auto info = lake_->Describe("events");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->rows, 100);
  EXPECT_EQ(PartitionSpecToString(info->partition), "day(ts)");
  EXPECT_EQ(info->schema.fields[0].id, 1);
  ScanOptions bad;
  bad.columns = {"nope"};
  EXPECT_EQ(lake_->Scan("events", bad).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(LakeTest, EveryTypeRoundTripsThroughMonthPartitionsOfADateColumn) {
  Schema schema{1,
                {{0, "b", Type::kBool},
                 {0, "i", Type::kInt64},
                 {0, "d", Type::kDouble},
                 {0, "s", Type::kString},
                 {0, "ts", Type::kTimestamp},
                 {0, "day", Type::kDate}}};
  ASSERT_TRUE(lake_->CreateTable("all", schema, *ParsePartitionSpec("month(day)")).ok());
  const Schema table = lake_->Describe("all")->schema;
  Batch b(std::make_shared<Schema>(table));
  const std::vector<std::string> strings = {
      "", "a,b", "q\"q", "line\nbreak", "ü✓", std::string(100000, 'z')};
  for (int r = 0; r < 12; ++r) {
    auto& c = b.columns();
    if (r == 11) {
      for (auto& col : c) col.AppendNull();
      continue;
    }
    c[0].AppendBool(r % 2 == 1);
    c[1].AppendInt(r == 0 ? INT64_MIN : r * 1000003);
    c[2].AppendDouble(r == 0 ? -0.0 : 1.0 / (r + 1));
    c[3].AppendString(strings[r % strings.size()]);
    c[4].AppendInt(r == 0 ? kMinTimestamp : r == 1 ? kMaxTimestamp : r * 86'400'000'001);
    c[5].AppendInt(r == 0 ? kMinDate : r == 1 ? kMaxDate : r * 40);
  }
  auto txn = lake_->Begin();
  ASSERT_TRUE((*(*txn)->Writer("all"))->Write(b).ok());
  ASSERT_TRUE((*txn)->Commit().ok());
  std::set<std::string> partitions;
  auto files = lake_->Files("all");
  ASSERT_TRUE(files.ok());
  for (const DataFileInfo& f : *files) partitions.insert(f.partition);
  EXPECT_TRUE(partitions.contains("month=0000-01"));
  EXPECT_TRUE(partitions.contains("month=9999-12"));
  EXPECT_TRUE(partitions.contains("month=__null__"));
  auto all = ScanAll(lake_.get(), "all");
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->rows.num_rows(), b.num_rows());
  std::multiset<std::string> want, got;
  for (int64_t r = 0; r < b.num_rows(); ++r) {
    std::string w, g;
    for (size_t c = 0; c < b.columns().size(); ++c) {
      w += (b.column(c).IsNull(r) ? "<null>" : "=" + FormatValue(b.column(c), r)) + "|";
      g += (all->rows.column(c).IsNull(r) ? "<null>" : "=" + FormatValue(all->rows.column(c), r)) +
           "|";
    }
    want.insert(w);
    got.insert(g);
  }
  EXPECT_EQ(got, want);
}

TEST_F(LakeTest, NamesAndSpecsAreValidated) {
  EXPECT_EQ(lake_->CreateTable("../evil", EventSchema(), {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(lake_->CreateTable("", EventSchema(), {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(lake_->CreateTable(std::string(129, 'a'), EventSchema(), {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      lake_->CreateTable("t", EventSchema(), *ParsePartitionSpec("day(region)")).status().code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(lake_->CreateTable("t", EventSchema(), *ParsePartitionSpec("missing")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(ParsePartitionSpec("hour(ts)").ok());
  EXPECT_FALSE(ParsePartitionSpec("day(ts").ok());
  EXPECT_EQ(ParsePartitionSpec("month( ts )")->transform, PartitionSpec::Transform::kMonth);
  ASSERT_TRUE(lake_->CreateTable("t-1_x", EventSchema(), {}).ok());
  EXPECT_EQ(lake_->CreateTable("t-1_x", EventSchema(), {}).status().code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(lake_->Describe("nope").status().code(), StatusCode::kNotFound);
  auto tables = lake_->ListTables();
  ASSERT_TRUE(tables.ok());
  ASSERT_EQ(tables->size(), 1u);
  EXPECT_EQ(tables->front().name, "t-1_x");
}

TEST_F(LakeTest, IdentityPartitionValuesCannotEscapeTheTable) {
  Schema schema{1, {{0, "id", Type::kInt64}, {0, "key", Type::kString}}};
  ASSERT_TRUE(lake_->CreateTable("p", schema, *ParsePartitionSpec("key")).ok());
  const std::vector<std::string> keys = {
      "../../../etc",       "a/b", ".", "..", "", "__null__", "ünï", std::string(400, 'k'),
      std::string(400, '/')};
  auto txn = lake_->Begin();
  ASSERT_TRUE(txn.ok());
  auto w = (*txn)->Writer("p");
  ASSERT_TRUE(w.ok());
  auto desc = lake_->Describe("p");
  Batch b(std::make_shared<Schema>(desc->schema));
  for (size_t i = 0; i < keys.size(); ++i) {
    b.column(0).AppendInt(static_cast<int64_t>(i));
    b.column(1).AppendString(keys[i]);
  }
  b.column(0).AppendInt(99);
  b.column(1).AppendNull();
  ASSERT_TRUE((*w)->Write(b).ok());
  ASSERT_TRUE((*txn)->Commit().ok());
  auto files = lake_->Files("p");
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(files->size(), keys.size() + 1);
  const fs::path table_dir = fs::weakly_canonical(lake_->root() / "tables/p");
  std::set<std::string> partitions;
  for (const DataFileInfo& f : *files) {
    const fs::path p = fs::weakly_canonical(lake_->root() / f.path);
    EXPECT_EQ(p.parent_path().parent_path(), table_dir) << f.path;
    EXPECT_LE(p.parent_path().filename().string().size(), 200u);
    partitions.insert(f.partition);
  }
  EXPECT_EQ(partitions.size(), keys.size() + 1);
  EXPECT_TRUE(partitions.contains("key=__null__"));
  auto all = ScanAll(lake_.get(), "p");
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->rows.num_rows(), static_cast<int64_t>(keys.size() + 1));
  for (int64_t i = 0; i < all->rows.num_rows(); ++i) {
    const int64_t id = all->rows.column(0).GetInt(i);
    if (id == 99) {
      EXPECT_TRUE(all->rows.column(1).IsNull(i));
    } else {
      EXPECT_EQ(all->rows.column(1).GetString(i), keys[id]);
    }
  }
}

TEST_F(LakeTest, TimeTravelHistoryAndWatermarks) {
  CreateEvents();
  {
    auto txn = lake_->Begin();
    auto w = (*txn)->Writer("events");
    ASSERT_TRUE((*w)->Write(Events(lake_->Describe("events")->schema, 0, 10)).ok());
    (*txn)->SetWatermark("events", "ingest", "2026-11-27T10:00:00Z");
    (*txn)->SetSummary("pipeline", "p1");
    clock_.Advance(std::chrono::seconds(60));
    auto s = (*txn)->Commit();
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->summary.at("pipeline"), "p1");
    EXPECT_EQ(s->summary.at("table"), "events");
    EXPECT_EQ(s->summary.at("schema_version"), "1");
  }
  ASSERT_TRUE(Append(lake_.get(), "events", 10, 10).ok());
  ASSERT_TRUE(Append(lake_.get(), "events", 100, 5, /*overwrite=*/true).ok());
  ASSERT_EQ(*lake_->LatestSnapshot(), 4);
  ScanOptions at;
  at.snapshot = 2;
  EXPECT_EQ(ScanAll(lake_.get(), "events", at)->ids, Range(0, 10));
  at.snapshot = 3;
  EXPECT_EQ(ScanAll(lake_.get(), "events", at)->ids, Range(0, 20));
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids, Range(100, 5));
  EXPECT_EQ(lake_->Describe("events", 3)->rows, 20);
  at.snapshot = 1;
  EXPECT_TRUE(ScanAll(lake_.get(), "events", at)->ids.empty());
  at.snapshot = 9;
  EXPECT_EQ(lake_->Scan("events", at).status().code(), StatusCode::kNotFound);

  auto history = lake_->History("events");
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 4u);
  EXPECT_EQ((*history)[0].operation, "overwrite");
  EXPECT_EQ((*history)[0].rows_removed, 20);
  EXPECT_EQ((*history)[3].operation, "create");
  EXPECT_EQ((*history)[2].time, clock_.WallNow());
  EXPECT_EQ(lake_->History("nope").status().code(), StatusCode::kNotFound);

  EXPECT_EQ(**lake_->Watermark("events", "ingest"), "2026-11-27T10:00:00Z");
  EXPECT_FALSE(lake_->Watermark("events", "ingest", 1)->has_value());
  EXPECT_FALSE(lake_->Watermark("events", "other")->has_value());
}

TEST_F(LakeTest, OverwriteConflictAbortsAndRetrySucceeds) {
  CreateEvents("");
  ASSERT_TRUE(Append(lake_.get(), "events", 0, 10).ok());
  const Schema schema = lake_->Describe("events")->schema;
  auto a = lake_->Begin();
  auto b = lake_->Begin();
  ASSERT_TRUE((*(*a)->Writer("events", true))->Write(Events(schema, 100, 3)).ok());
  ASSERT_TRUE((*(*b)->Writer("events", true))->Write(Events(schema, 200, 3)).ok());
  ASSERT_TRUE((*a)->Commit().ok());
  auto lost = (*b)->Commit();
  EXPECT_EQ(lost.status().code(), StatusCode::kAborted) << lost.status();
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids, Range(100, 3));
  ASSERT_TRUE(Append(lake_.get(), "events", 200, 3, true).ok());
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids, Range(200, 3));
  // Appends never conflict.
  auto c = lake_->Begin();
  auto d = lake_->Begin();
  ASSERT_TRUE((*(*c)->Writer("events"))->Write(Events(schema, 300, 2)).ok());
  ASSERT_TRUE((*(*d)->Writer("events"))->Write(Events(schema, 400, 2)).ok());
  ASSERT_TRUE((*d)->Commit().ok());
  ASSERT_TRUE((*c)->Commit().ok());
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids.size(), 7u);
}

TEST_F(LakeTest, TwoThreadsAppendingBothLand) {
  CreateEvents();
  std::vector<Status> results(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10 && results[t].ok(); ++i) {
        auto s = Append(lake_.get(), "events", t * 1000 + i * 10, 10);
        if (!s.ok()) results[t] = s.status();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_TRUE(results[0].ok()) << results[0];
  EXPECT_TRUE(results[1].ok()) << results[1];
  auto all = ScanAll(lake_.get(), "events");
  ASSERT_TRUE(all.ok());
  std::vector<int64_t> want = Range(0, 100);
  for (int64_t v : Range(1000, 100)) want.push_back(v);
  EXPECT_EQ(all->ids, want);
  EXPECT_EQ(*lake_->LatestSnapshot(), 21);
}

TEST_F(LakeTest, TwoProcessesAppendingBothLand) {
  CreateEvents();
  const fs::path root = lake_->root();
  std::vector<pid_t> children;
  for (int p = 0; p < 2; ++p) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto lake = Lake::Open(root, {}, false);
      int rc = lake.ok() ? 0 : 1;
      for (int i = 0; i < 10 && rc == 0; ++i) {
        if (!Append(lake->get(), "events", p * 1000 + i * 10, 10).ok()) rc = 2;
      }
      ::_exit(rc);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  auto all = ScanAll(lake_.get(), "events");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->ids.size(), 200u);
  EXPECT_EQ(*lake_->LatestSnapshot(), 21);
}

TEST_F(LakeTest, SchemaEvolution) {
  CreateEvents("");
  ASSERT_TRUE(Append(lake_.get(), "events", 0, 10).ok());
  using K = SchemaChange::Kind;
  ASSERT_TRUE(lake_->AlterTable("events", {K::kAddColumn, "score", "", Type::kInt64}).ok());
  ASSERT_TRUE(
      lake_->AlterTable("events", {K::kRenameColumn, "value", "amount", Type::kString}).ok());
  ASSERT_TRUE(lake_->AlterTable("events", {K::kWidenColumn, "score", "", Type::kDouble}).ok());
  ASSERT_TRUE(lake_->AlterTable("events", {K::kWidenColumn, "id", "", Type::kString}).ok());
  ASSERT_TRUE(lake_->AlterTable("events", {K::kDropColumn, "region", "", Type::kString}).ok());
  auto info = lake_->Describe("events");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->schema.version, 6);
  ASSERT_EQ(info->schema.fields.size(), 4u);
  EXPECT_EQ(info->schema.fields[2].name, "amount");
  EXPECT_EQ(info->schema.fields[2].id, 4);
  EXPECT_EQ(info->schema.fields[3].id, 5);
  EXPECT_EQ(info->schema.fields[0].type, Type::kString);
  // Old rows read through the new schema: renamed column keeps its data, added one is null.
  auto all = ScanAll(lake_.get(), "events");
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->rows.num_rows(), 10);
  for (int64_t i = 0; i < 10; ++i) {
    const int64_t id = std::stoll(std::string(all->rows.column(0).GetString(i)));
    EXPECT_EQ(all->rows.column(2).IsNull(i), id % 5 == 0);
    if (id % 5 != 0) {
      EXPECT_EQ(all->rows.column(2).GetDouble(i), static_cast<double>(id) / 4);
    }
    EXPECT_TRUE(all->rows.column(3).IsNull(i));
  }
  // New rows with the new schema.
  {
    auto txn = lake_->Begin();
    Batch b(std::make_shared<Schema>(info->schema));
    b.column(0).AppendString("new");
    b.column(1).AppendInt(0);
    b.column(2).AppendDouble(1.5);
    b.column(3).AppendDouble(9.5);
    ASSERT_TRUE((*(*txn)->Writer("events"))->Write(b).ok());
    EXPECT_EQ((*(*txn)->Writer("events"))->Write(Events(EventSchema(), 0, 1)).code(),
              StatusCode::kInvalidArgument);
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  EXPECT_EQ(ScanAll(lake_.get(), "events")->rows.num_rows(), 11);
  // The table at snapshot 2 still has its first schema.
  auto old = lake_->Describe("events", 2);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->schema.fields[3].name, "value");
  // Refused changes.
  for (const SchemaChange& bad :
       std::vector<SchemaChange>{{K::kWidenColumn, "score", "", Type::kInt64},
                                 {K::kWidenColumn, "amount", "", Type::kBool},
                                 {K::kAddColumn, "amount", "", Type::kInt64},
                                 {K::kRenameColumn, "amount", "score", Type::kString},
                                 {K::kDropColumn, "nope", "", Type::kString},
                                 {K::kAddColumn, "", "", Type::kInt64}}) {
    auto s = lake_->AlterTable("events", bad);
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << bad.column;
  }
  // Field ids are not reused after a drop.
  ASSERT_TRUE(lake_->AlterTable("events", {K::kAddColumn, "region", "", Type::kString}).ok());
  EXPECT_EQ(lake_->Describe("events")->schema.fields.back().id, 6);
}

TEST_F(LakeTest, PartitionColumnCannotBeDropped) {
  CreateEvents();
  auto s = lake_->AlterTable("events", {SchemaChange::Kind::kDropColumn, "ts", "", Type::kString});
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(
      lake_->AlterTable("events", {SchemaChange::Kind::kRenameColumn, "ts", "when", Type::kString})
          .ok());
  EXPECT_EQ(PartitionSpecToString(lake_->Describe("events")->partition), "day(when)");
  ASSERT_TRUE(Append(lake_.get(), "events", 0, 30).ok());
  EXPECT_EQ(lake_->Files("events")->size(), 2u);
}

TEST_F(LakeTest, CompactionKeepsRowsAndTimeTravel) {
  CreateEvents();
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(Append(lake_.get(), "events", i * 4, 4).ok());  // day 1
  ASSERT_TRUE(Append(lake_.get(), "events", 30, 2).ok());                                 // day 2
  const int64_t before = *lake_->LatestSnapshot();
  ASSERT_EQ(lake_->Files("events")->size(), 7u);
  auto s = lake_->Compact("events", {});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->operation, "compact");
  EXPECT_EQ(s->rows_added, 24);
  EXPECT_EQ(s->rows_removed, 24);
  EXPECT_EQ(s->files_removed, 6);
  auto files = lake_->Files("events");
  ASSERT_EQ(files->size(), 2u);
  std::vector<int64_t> want = Range(0, 24);
  want.push_back(30);
  want.push_back(31);
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids, want);
  ScanOptions at;
  at.snapshot = before;
  EXPECT_EQ(ScanAll(lake_.get(), "events", at)->ids, want);
  EXPECT_EQ(lake_->Files("events", before)->size(), 7u);
  // Nothing left to compact: no new snapshot.
  auto again = lake_->Compact("events", {});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, s->id);
}

TEST_F(LakeTest, CompactionConflictsWithOverwrite) {
  CreateEvents("");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Append(lake_.get(), "events", i * 4, 4).ok());
  // An overwrite that starts before the compaction commits after it.
  auto txn = lake_->Begin();
  ASSERT_TRUE((*(*txn)->Writer("events", true))
                  ->Write(Events(lake_->Describe("events")->schema, 50, 1))
                  .ok());
  ASSERT_TRUE(lake_->Compact("events", {}).ok());
  EXPECT_EQ((*txn)->Commit().status().code(), StatusCode::kAborted);
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids, Range(0, 12));
}

TEST_F(LakeTest, ExpireKeepsRetainedSnapshotsReadable) {
  CreateEvents("");
  ASSERT_TRUE(Append(lake_.get(), "events", 0, 5).ok());         // 2
  ASSERT_TRUE(Append(lake_.get(), "events", 5, 5).ok());         // 3
  ASSERT_TRUE(Append(lake_.get(), "events", 10, 5, true).ok());  // 4: removes two files
  ASSERT_TRUE(Append(lake_.get(), "events", 15, 5).ok());        // 5
  ExpireOptions options;
  options.keep_last = 2;
  auto deleted = lake_->Expire(options);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 2);
  ScanOptions at;
  at.snapshot = 3;
  auto gone = lake_->Scan("events", at);
  EXPECT_EQ(gone.status().code(), StatusCode::kNotFound);
  EXPECT_NE(gone.status().message().find("expired"), std::string::npos) << gone.status();
  at.snapshot = 4;
  EXPECT_EQ(ScanAll(lake_.get(), "events", at)->ids, Range(10, 5));
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids, Range(10, 10));
  EXPECT_EQ(lake_->History("")->size(), 2u);
  // Time-based retention keeps everything newer than the cut.
  clock_.Advance(std::chrono::hours(1));
  ASSERT_TRUE(Append(lake_.get(), "events", 20, 1).ok());  // 6
  options.keep_last = 1;
  options.older_than = clock_.WallNow() - std::chrono::minutes(1);
  ASSERT_TRUE(lake_->Expire(options).ok());
  EXPECT_EQ(lake_->History("")->size(), 1u);
}

TEST_F(LakeTest, ExpireSparesReadersOfRetainedSnapshotsAndFailsOthersClearly) {
  LakeOptions options;
  options.read_batch_rows = 3;
  Reopen(options);
  CreateEvents("");
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Append(lake_.get(), "events", i * 5, 5).ok());
  auto reader = lake_->Scan("events", {});
  ASSERT_TRUE(reader.ok());
  Batch b;
  std::vector<int64_t> ids;
  ASSERT_TRUE(*(*reader)->Next(&b));
  for (int64_t i = 0; i < b.num_rows(); ++i) ids.push_back(b.column(0).GetInt(i));
  // The files the reader has not opened yet are replaced by a compaction, and then every
  // snapshot but the latest is expired: the reader's snapshot is gone, and with it the files.
  // Reading the latest snapshot still works, and a reader opened on it is unaffected by a
  // second expire.
  ASSERT_TRUE(lake_->Compact("events", {}).ok());
  auto latest = lake_->Scan("events", {});
  ASSERT_TRUE(latest.ok());
  ExpireOptions expire;
  expire.keep_last = 1;
  ASSERT_TRUE(lake_->Expire(expire).ok());
  std::vector<int64_t> all;
  while (true) {
    auto more = (*latest)->Next(&b);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    for (int64_t i = 0; i < b.num_rows(); ++i) all.push_back(b.column(0).GetInt(i));
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, Range(0, 20));
  // The old reader's snapshot was not retained: its files are gone, which it reports as
  // DATA_LOSS instead of crashing or returning partial data silently.
  Status old_reader = Status::Ok();
  while (old_reader.ok()) {
    auto more = (*reader)->Next(&b);
    if (!more.ok()) {
      old_reader = more.status();
    } else if (!*more) {
      break;
    }
  }
  EXPECT_EQ(old_reader.code(), StatusCode::kDataLoss) << old_reader;
}

TEST_F(LakeTest, ExpireRemovesOrphansButNotLiveTransactions) {
  CreateEvents("");
  const Schema schema = lake_->Describe("events")->schema;
  {
    auto abandoned = lake_->Begin();
    ASSERT_TRUE((*(*abandoned)->Writer("events"))->Write(Events(schema, 0, 5)).ok());
    // Destroyed without Commit: its files were never finished; nothing may remain.
  }
  auto live = lake_->Begin();
  ASSERT_TRUE((*(*live)->Writer("events"))->Write(Events(schema, 100, 5)).ok());
  // A finished but uncommitted file of a dead transaction: forge one by copying a committed
  // file under a name that no catalog row knows, with no lock held.
  ASSERT_TRUE(Append(lake_.get(), "events", 0, 5).ok());
  const auto files = *lake_->Files("events");
  const fs::path orphan = lake_->root() / "tables/events" / (std::string(32, 'a') + "-0.csv.zst");
  fs::copy_file(lake_->root() / files[0].path, orphan);
  auto deleted = lake_->Expire({});
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 1);
  EXPECT_FALSE(fs::exists(orphan));
  // The live transaction still commits with all its rows.
  ASSERT_TRUE((*live)->Commit().ok());
  std::vector<int64_t> want = Range(0, 5);
  for (int64_t v : Range(100, 5)) want.push_back(v);
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids, want);
}

TEST_F(LakeTest, CorruptOrMissingDataFileIsDataLossNamingIt) {
  CreateEvents("");
  ASSERT_TRUE(Append(lake_.get(), "events", 0, 50).ok());
  const std::string path = (*lake_->Files("events"))[0].path;
  const fs::path full = lake_->root() / path;
  {
    std::fstream f(full, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(30);
    f.put('\x7f');
  }
  auto r = ScanAll(lake_.get(), "events");
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status();
  EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status();
  fs::resize_file(full, 10);
  EXPECT_EQ(ScanAll(lake_.get(), "events").status().code(), StatusCode::kDataLoss);
  fs::remove(full);
  r = ScanAll(lake_.get(), "events");
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("missing"), std::string::npos) << r.status();
}

TEST_F(LakeTest, SmallTargetRollsFiles) {
  LakeOptions options;
  options.target_file_bytes = 1;
  Reopen(options);
  CreateEvents("");
  auto txn = lake_->Begin();
  auto w = (*txn)->Writer("events");
  const Schema schema = lake_->Describe("events")->schema;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*w)->Write(Events(schema, i * 10, 10)).ok());
  EXPECT_EQ((*w)->rows_written(), 30);
  ASSERT_TRUE((*txn)->Commit().ok());
  EXPECT_EQ(lake_->Files("events")->size(), 3u);
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids, Range(0, 30));
}

TEST_F(LakeTest, OpenPartitionFilesHoldBoundedMemory) {
  // 12 days of rows, about 1.5 MB of CSV per day, in batches that each span more than one day:
  // every partition file compresses, at most 8 are open, and each holds a few MiB. (With zstd's
  // default worker jobs each open file held about 34 MiB, so memory grew with the partitions
  // a load touched.)
  CreateEvents();
  const Schema schema = lake_->Describe("events")->schema;
  auto txn = lake_->Begin();
  ASSERT_TRUE(txn.ok());
  auto w = (*txn)->Writer("events");
  ASSERT_TRUE(w.ok());
  const int64_t t0 = *ParseTimestamp("2026-11-01T00:00:00Z");
  constexpr int64_t kRowsPerDay = 16'000;
  constexpr int64_t kRows = 12 * kRowsPerDay;
  const std::string pad(80, 'p');
  int64_t largest = 0;
  for (int64_t first = 0; first < kRows; first += 20'000) {
    Batch b(std::make_shared<Schema>(schema));
    for (int64_t i = first; i < std::min(kRows, first + 20'000); ++i) {
      b.column(0).AppendInt(i);
      b.column(1).AppendInt(t0 + i * (kMicrosPerDay / kRowsPerDay));
      b.column(2).AppendString(pad + std::to_string(i));
      b.column(3).AppendDouble(static_cast<double>(i) / 8);
    }
    ASSERT_TRUE((*w)->Write(b).ok());
    largest = std::max(largest, (*w)->memory_bytes());
  }
  EXPECT_GT(largest, 0);
  EXPECT_LE(largest, 8 * (6 << 20));
  ASSERT_TRUE((*txn)->Commit().ok());
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids, Range(0, kRows));
  std::set<std::string> days;
  auto files = lake_->Files("events");
  ASSERT_TRUE(files.ok());
  for (const DataFileInfo& f : *files) days.insert(f.partition);
  EXPECT_EQ(days.size(), 12u);
}

TEST_F(LakeTest, ParallelScanGivesTheSameRowsInTheSameOrder) {
  // About 12 MB of CSV in one file (several 4 MiB blocks), with quoted fields that hold commas,
  // quotes and line ends, so that block cuts must respect quotes.
  CreateEvents("");
  const Schema schema = lake_->Describe("events")->schema;
  auto txn = lake_->Begin();
  auto w = (*txn)->Writer("events");
  for (int64_t first = 0; first < 300'000; first += 50'000) {
    ASSERT_TRUE((*w)->Write(Events(schema, first, 50'000)).ok());
  }
  ASSERT_TRUE((*txn)->Commit().ok());
  ScanOptions parallel;
  parallel.threads = 3;
  auto one = ScanAll(lake_.get(), "events");
  auto three = ScanAll(lake_.get(), "events", parallel);
  ASSERT_TRUE(one.ok() && three.ok());
  ASSERT_EQ(three->rows.num_rows(), 300'000);
  for (int64_t i = 0; i < 300'000; i += 997) {
    for (size_t c = 0; c < schema.fields.size(); ++c) {
      ASSERT_EQ(FormatValue(one->rows.column(c), i), FormatValue(three->rows.column(c), i))
          << "row " << i << " column " << c;
    }
  }
  EXPECT_EQ(three->rows.column(0).GetInt(299'999), 299'999);  // file order kept
}

TEST_F(LakeTest, NumericTablesWriteColumnarFilesAndOldCsvFilesStillRead) {
  // The table starts with a string column, so its first file is csv.zst (as every file of a
  // lake written before col.zst); once the column is dropped, new files are col.zst. Both read
  // through the current schema, in order, at any snapshot, on one thread or several, and
  // compaction merges them into a col.zst file.
  CreateEvents("");
  ASSERT_TRUE(Append(lake_.get(), "events", 0, 100).ok());
  using K = SchemaChange::Kind;
  ASSERT_TRUE(lake_->AlterTable("events", {K::kDropColumn, "region", "", Type::kString}).ok());
  const int64_t before = *lake_->LatestSnapshot();
  const Schema schema = lake_->Describe("events")->schema;
  ASSERT_EQ(DataFormatFor(schema).name, "col.zst");
  {
    auto txn = lake_->Begin();
    auto w = (*txn)->Writer("events");
    for (int64_t first = 100; first < 100'100; first += 25'000) {
      Batch b(std::make_shared<Schema>(schema));
      for (int64_t i = first; i < first + 25'000; ++i) {
        b.column(0).AppendInt(i);
        b.column(1).AppendInt(i * kMicrosPerSecond);
        if (i % 5 == 0) {
          b.column(2).AppendNull();
        } else {
          b.column(2).AppendDouble(static_cast<double>(i) / 4);
        }
      }
      ASSERT_TRUE((*w)->Write(b).ok());
    }
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  auto files = lake_->Files("events");
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 2u);
  EXPECT_TRUE((*files)[0].path.ends_with(".csv.zst")) << (*files)[0].path;
  EXPECT_TRUE((*files)[1].path.ends_with(".col.zst")) << (*files)[1].path;
  for (int threads : {1, 2}) {
    ScanOptions options;
    options.threads = threads;
    auto all = ScanAll(lake_.get(), "events", options);
    ASSERT_TRUE(all.ok()) << all.status();
    ASSERT_EQ(all->ids, Range(0, 100'100));
    for (int64_t i = 0; i < all->rows.num_rows(); i += 331) {
      EXPECT_EQ(all->rows.column(0).GetInt(i), i);  // file order
      EXPECT_EQ(all->rows.column(2).IsNull(i), i % 5 == 0) << i;
      if (i % 5 != 0) {
        EXPECT_EQ(all->rows.column(2).GetDouble(i), static_cast<double>(i) / 4);
      }
    }
  }
  ScanOptions at;
  at.snapshot = before;
  EXPECT_EQ(ScanAll(lake_.get(), "events", at)->ids, Range(0, 100));
  auto compacted = lake_->Compact("events", {});
  ASSERT_TRUE(compacted.ok()) << compacted.status();
  files = lake_->Files("events");
  ASSERT_EQ(files->size(), 1u);
  EXPECT_TRUE((*files)[0].path.ends_with(".col.zst")) << (*files)[0].path;
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids, Range(0, 100'100));
  // A damaged col.zst file is data loss naming it, as a csv.zst one is.
  const fs::path full = lake_->root() / (*files)[0].path;
  {
    std::fstream f(full, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');
  }
  auto r = ScanAll(lake_.get(), "events");
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status();
  EXPECT_NE(r.status().message().find((*files)[0].path), std::string::npos) << r.status();
}

// A child process commits; a fault hook kills it with SIGKILL at `point`.
void CommitAndDieAt(const fs::path& root, const std::string& point, int64_t first) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    LakeOptions options;
    options.fault_hook = [&](std::string_view p) {
      if (p == point) ::kill(::getpid(), SIGKILL);
    };
    auto lake = Lake::Open(root, options, false);
    if (lake.ok()) (void)Append(lake->get(), "events", first, 7);
    ::_exit(3);  // not reached when the hook fires
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
}

TEST_F(LakeTest, KillDuringCommitLeavesPreviousSnapshot) {
  CreateEvents();
  ASSERT_TRUE(Append(lake_.get(), "events", 0, 10).ok());
  const fs::path root = lake_->root();
  lake_.reset();
  CommitAndDieAt(root, "files_written", 100);
  CommitAndDieAt(root, "catalog_commit", 200);
  Reopen();
  EXPECT_EQ(*lake_->LatestSnapshot(), 2);
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids, Range(0, 10));
  // The dead commits' files are orphans that Expire collects; the table still works.
  auto deleted = lake_->Expire({});
  ASSERT_TRUE(deleted.ok());
  EXPECT_GE(*deleted, 2);
  EXPECT_TRUE(fs::is_empty(root / "txn"));
  ASSERT_TRUE(Append(lake_.get(), "events", 10, 5).ok());
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids, Range(0, 15));
}

TEST_F(LakeTest, KillAtRandomMomentsLeavesACommittedSnapshot) {
  CreateEvents();
  const fs::path root = lake_->root();
  for (int round = 0; round < 4; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      auto lake = Lake::Open(root, {}, false);
      if (!lake.ok()) ::_exit(1);
      for (int64_t i = 0;; ++i) {
        auto s = Append(lake->get(), "events", (round * 1000 + i) * 10, 10);
        if (!s.ok()) ::_exit(2);
        if (::write(fds[1], "x", 1) != 1) ::_exit(3);
      }
    }
    ::close(fds[1]);
    // Let it commit a few times, then kill it wherever it is (round-dependent count).
    char c;
    for (int i = 0; i < 2 + round; ++i) ASSERT_EQ(::read(fds[0], &c, 1), 1);
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ::close(fds[0]);
  }
  Reopen();
  auto info = lake_->Describe("events");
  ASSERT_TRUE(info.ok());
  auto all = ScanAll(lake_.get(), "events");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(static_cast<int64_t>(all->ids.size()), info->rows);
  EXPECT_EQ(info->rows % 10, 0);
  EXPECT_EQ(info->rows, (*lake_->LatestSnapshot() - 1) * 10);
  std::set<int64_t> unique(all->ids.begin(), all->ids.end());
  EXPECT_EQ(unique.size(), all->ids.size());
  ASSERT_TRUE(lake_->Expire({}).ok());
  EXPECT_EQ(ScanAll(lake_.get(), "events")->ids.size(), all->ids.size());
}

}  // namespace
}  // namespace edgeloop::lake
