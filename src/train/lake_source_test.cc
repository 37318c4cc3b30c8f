#include "train/lake_source.h"

#include <gtest/gtest.h>

#include <cmath>

#include "common/test_util.h"
#include "train/train.h"

namespace edgeloop::train {
namespace {

using edgeloop::testing::TempDir;

lake::Schema TestSchema() {
  lake::Schema schema;
  schema.fields = {{1, "temp", lake::Type::kDouble},
                   {2, "count", lake::Type::kInt64},
                   {3, "site", lake::Type::kString},
                   {4, "ts", lake::Type::kTimestamp},
                   {5, "failed", lake::Type::kBool}};
  return schema;
}

Status Append(lake::Lake& lake, int64_t first, int64_t rows) {
  auto schema = std::make_shared<const lake::Schema>(TestSchema());
  lake::Batch batch(schema);
  for (int64_t i = first; i < first + rows; ++i) {
    if (i % 10 == 3) {
      batch.column(0).AppendNull();
    } else {
      batch.column(0).AppendDouble(20.0 + static_cast<double>(i % 7));
    }
    batch.column(1).AppendInt(i);
    batch.column(2).AppendString(i % 2 ? "north" : "south");
    batch.column(3).AppendInt(1'800'000'000'000'000LL + i * 1'000'000);
    batch.column(4).AppendBool(i % 7 >= 4);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<lake::Transaction> txn, lake.Begin());
  ASSIGN_OR_RETURN(lake::TableWriter * writer, txn->Writer("readings"));
  RETURN_IF_ERROR(writer->Write(batch));
  return txn->Commit().status();
}

TEST(LakeSourceTest, ReadsColumnsAtAPinnedSnapshot) {
  TempDir dir;
  auto lake = lake::Lake::Open(dir.path() / "lake", {}, true);
  ASSERT_TRUE(lake.ok()) << lake.status();
  ASSERT_TRUE((*lake)->CreateTable("readings", TestSchema(), {}).ok());
  ASSERT_TRUE(Append(**lake, 0, 100).ok());
  auto first = (*lake)->LatestSnapshot();
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(Append(**lake, 100, 50).ok());

  const std::vector<std::pair<std::string, RawColumn::Kind>> columns = {
      {"temp", RawColumn::Kind::kNumber},
      {"site", RawColumn::Kind::kText},
      {"ts", RawColumn::Kind::kTime},
      {"failed", RawColumn::Kind::kNumber},
      {"count", RawColumn::Kind::kText}};
  auto latest = ReadLakeTable(**lake, "readings", std::nullopt, columns);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->table.num_rows, 150);
  EXPECT_EQ(latest->snapshot, *first + 1);
  EXPECT_FALSE(latest->snapshot_time.empty());

  auto pinned = ReadLakeTable(**lake, "readings", *first, columns);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_EQ(pinned->table.num_rows, 100);
  EXPECT_EQ(pinned->snapshot, *first);
  const RawTable& t = pinned->table;
  int missing = 0;
  for (float v : t.Find("temp")->numbers) missing += std::isnan(v) ? 1 : 0;
  EXPECT_EQ(missing, 10);
  std::set<std::string> sites(t.Find("site")->texts.begin(), t.Find("site")->texts.end());
  EXPECT_EQ(sites, (std::set<std::string>{"north", "south"}));
  EXPECT_EQ(t.Find("count")->texts.size(), 100u);
  EXPECT_EQ(t.Find("ts")->times.size(), 100u);
  double positives = 0;
  for (float v : t.Find("failed")->numbers) positives += v;
  EXPECT_GT(positives, 0);
}

TEST(LakeSourceTest, ClearErrors) {
  TempDir dir;
  auto lake = lake::Lake::Open(dir.path() / "lake", {}, true);
  ASSERT_TRUE(lake.ok());
  ASSERT_TRUE((*lake)->CreateTable("readings", TestSchema(), {}).ok());
  auto missing =
      ReadLakeTable(**lake, "readings", std::nullopt, {{"pressure", RawColumn::Kind::kNumber}});
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("missing column 'pressure'"), std::string::npos);
  EXPECT_NE(missing.status().message().find("temp, count"), std::string::npos);
  auto text = ReadLakeTable(**lake, "readings", std::nullopt, {{"site", RawColumn::Kind::kNumber}});
  EXPECT_NE(text.status().message().find("declare an encoding"), std::string::npos);
  EXPECT_FALSE(ReadLakeTable(**lake, "nope", std::nullopt, {}).ok());

  // An empty snapshot reads as zero rows, and training refuses it clearly.
  auto empty =
      ReadLakeTable(**lake, "readings", std::nullopt,
                    {{"temp", RawColumn::Kind::kNumber}, {"failed", RawColumn::Kind::kNumber}});
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->table.num_rows, 0);
  auto spec =
      ParseTrainSpec("name: m\ntable: readings\ntask: binary\nlabel: failed\nfeatures: [temp]\n");
  ASSERT_TRUE(spec.ok());
  auto result = TrainOnTable(*spec, empty->table, {"lake", "readings", empty->snapshot, "", ""},
                             {dir.path() / "out", std::nullopt, "", nullptr});
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("is empty at snapshot"), std::string::npos);
}

}  // namespace
}  // namespace edgeloop::train
