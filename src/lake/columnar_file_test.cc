// The col.zst data file format, through the data_file.h interface.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "common/test_util.h"
#include "lake/data_file.h"
#include "lake/data_file_test_util.h"
#include "lake/value_text.h"

namespace edgeloop::lake {
namespace {

using data_file_testing::ExpectSameBatch;
using data_file_testing::ReadAll;
using data_file_testing::Sha256;
using data_file_testing::Slurp;

std::shared_ptr<const Schema> Numeric() {
  return std::make_shared<Schema>(Schema{1,
                                         {{1, "b", Type::kBool},
                                          {2, "i", Type::kInt64},
                                          {3, "d", Type::kDouble},
                                          {5, "ts", Type::kTimestamp},
                                          {6, "day", Type::kDate}}});
}

// `rows` rows from `first` with every type's edges and a null in every seventh row of a column.
Batch NumericBatch(int64_t first, int64_t rows) {
  Batch b(Numeric());
  auto& c = b.columns();
  for (int64_t r = first; r < first + rows; ++r) {
    for (size_t k = 0; k < c.size(); ++k) {
      if ((r + static_cast<int64_t>(k)) % 7 == 0) {
        c[k].AppendNull();
        continue;
      }
      switch (k) {
        case 0:
          c[k].AppendBool(r % 3 == 0);
          break;
        case 1:
          c[k].AppendInt(r == 1 ? INT64_MIN : r == 2 ? INT64_MAX : r * -37);
          break;
        case 2:
          c[k].AppendDouble(r == 1   ? -1e300
                            : r == 3 ? INFINITY
                            : r == 4 ? std::nan("")
                                     : static_cast<double>(r) / 3);
          break;
        case 3:
          c[k].AppendInt(r == 1 ? kMinTimestamp : r == 3 ? kMaxTimestamp : r * 1'000'001);
          break;
        default:
          c[k].AppendInt(r == 1 ? kMinDate : r == 2 ? kMaxDate : r * -4);
      }
    }
  }
  return b;
}

TEST(ColumnarFileTest, NumericTablesGetTheColumnarFormat) {
  EXPECT_EQ(DataFormatFor(*Numeric()).name, "col.zst");
  EXPECT_EQ(DataFormatFor(Schema{1, {{1, "n", Type::kInt64}, {2, "s", Type::kString}}}).name,
            "csv.zst");
  testing::TempDir dir;
  auto strings = std::make_shared<Schema>(Schema{1, {{1, "s", Type::kString}}});
  EXPECT_EQ(OpenDataFileWriter(dir.path() / "f.col.zst", strings).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ColumnarFileTest, EveryTypeRoundTripsAcrossRowGroupsInAnyBatchSizeAndThreads) {
  // 150k rows: three row groups, the last one partial, written in batches that straddle them.
  testing::TempDir dir;
  const auto path = dir.path() / "sub" / "f.col.zst";
  auto writer = OpenDataFileWriter(path, Numeric());
  ASSERT_TRUE(writer.ok()) << writer.status();
  Batch expected(Numeric());
  for (int64_t first = 0; first < 150'000; first += 40'000) {
    const Batch b = NumericBatch(first, std::min<int64_t>(40'000, 150'000 - first));
    ASSERT_TRUE((*writer)->Write(b).ok());
    for (int64_t i = 0; i < b.num_rows(); ++i) expected.AppendRow(b, i);
    EXPECT_LE((*writer)->memory_bytes(), 16 << 20);
  }
  auto stats = (*writer)->Finish();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".tmp"));
  EXPECT_EQ(stats->rows, 150'000);
  EXPECT_EQ(stats->bytes, static_cast<int64_t>(std::filesystem::file_size(path)));
  EXPECT_EQ(stats->sha256, Sha256(Slurp(path)));
  ASSERT_EQ(stats->columns.size(), 5u);
  EXPECT_EQ(*stats->columns[1].min, "-9223372036854775808");
  EXPECT_EQ(*stats->columns[3].max, FormatTimestamp(kMaxTimestamp));
  for (const auto& [batch_rows, threads] :
       std::vector<std::pair<int64_t, int>>{{8192, 1}, {100'000, 1}, {1'000'000, 2}, {777, 2}}) {
    auto back = ReadAll(path, Numeric(), Numeric(), batch_rows, threads);
    ASSERT_TRUE(back.ok()) << back.status();
    ExpectSameBatch(*back, expected);
    EXPECT_EQ(back->column(1).GetInt(1), INT64_MIN);
    EXPECT_TRUE(std::isnan(back->column(2).GetDouble(4)));
  }
}

TEST(ColumnarFileTest, EmptyFileReadsNoRows) {
  testing::TempDir dir;
  const auto path = dir.path() / "e.col.zst";
  auto writer = OpenDataFileWriter(path, Numeric());
  ASSERT_TRUE(writer.ok());
  auto stats = (*writer)->Finish();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->rows, 0);
  for (int threads : {1, 2}) {
    auto back = ReadAll(path, Numeric(), Numeric(), 100, threads);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->num_rows(), 0);
  }
}

TEST(ColumnarFileTest, CorruptTruncatedAndMissingFilesAreDataLoss) {
  testing::TempDir dir;
  const auto path = dir.path() / "f.col.zst";
  {
    auto writer = OpenDataFileWriter(path, Numeric());
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Write(NumericBatch(0, 70'000)).ok());
    ASSERT_TRUE((*writer)->Finish().ok());
  }
  const std::string good = Slurp(path);
  auto expect_data_loss = [&](const std::string& bytes, const std::string& what) {
    for (int threads : {1, 2}) {
      const auto bad = dir.path() / "bad.col.zst";
      std::ofstream(bad, std::ios::binary | std::ios::trunc) << bytes;
      auto back = ReadAll(bad, Numeric(), Numeric(), 100'000, threads);
      EXPECT_EQ(back.status().code(), StatusCode::kDataLoss) << what << ": " << back.status();
      EXPECT_NE(back.status().message().find("bad.col.zst"), std::string::npos) << what;
    }
  };
  expect_data_loss(good.substr(0, good.size() / 2), "truncated");
  expect_data_loss(good.substr(0, good.size() - 1), "one byte short");
  expect_data_loss("", "empty");
  expect_data_loss(std::string(100, 'x'), "garbage");
  for (size_t at : {size_t{8}, size_t{40}, good.size() / 3, good.size() - 30, good.size() - 12}) {
    std::string flipped = good;
    flipped[at] = static_cast<char>(flipped[at] ^ 0x55);
    expect_data_loss(flipped, "flipped byte at " + std::to_string(at));
  }
  // A file of another schema.
  auto other = std::make_shared<Schema>(Schema{1, {{1, "x", Type::kInt64}}});
  EXPECT_EQ(OpenDataFileReader(path, other, other).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(OpenDataFileReader(dir.path() / "nope.col.zst", Numeric(), Numeric()).status().code(),
            StatusCode::kDataLoss);
}

TEST(ColumnarFileTest, ReadsThroughSchemaEvolution) {
  testing::TempDir dir;
  auto v1 = std::make_shared<Schema>(
      Schema{1, {{1, "n", Type::kInt64}, {2, "day", Type::kDate}, {3, "flag", Type::kBool}}});
  Batch b(v1);
  b.column(0).AppendInt(5);
  b.column(1).AppendInt(*ParseDate("2026-11-27"));
  b.column(2).AppendBool(true);
  b.column(0).AppendNull();
  b.column(1).AppendNull();
  b.column(2).AppendNull();
  const auto path = dir.path() / "f.col.zst";
  auto writer = OpenDataFileWriter(path, v1);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Write(b).ok());
  ASSERT_TRUE((*writer)->Finish().ok());
  // Widened, renamed, added, reordered.
  auto v2 = std::make_shared<Schema>(Schema{5,
                                            {{9, "added", Type::kInt64},
                                             {3, "flag_text", Type::kString},
                                             {1, "n", Type::kDouble},
                                             {2, "when", Type::kTimestamp}}});
  auto back = ReadAll(path, v1, v2, 10);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->num_rows(), 2);
  EXPECT_TRUE(back->column(0).IsNull(0));
  EXPECT_EQ(back->column(1).GetString(0), "true");
  EXPECT_EQ(back->column(2).GetDouble(0), 5.0);
  EXPECT_EQ(FormatValue(back->column(3), 0), "2026-11-27T00:00:00Z");
  for (size_t c = 0; c < 4; ++c) EXPECT_TRUE(back->column(c).IsNull(1)) << c;
  // Narrowing is refused.
  auto v3 = std::make_shared<Schema>(Schema{6, {{2, "day", Type::kInt64}}});
  EXPECT_EQ(OpenDataFileReader(path, v1, v3).status().code(), StatusCode::kInvalidArgument);
}

TEST(ColumnarFileTest, OutOfRangeTimesWrongBatchesAndAbandonedFilesLeaveNothing) {
  testing::TempDir dir;
  const auto path = dir.path() / "f.col.zst";
  {
    auto writer = OpenDataFileWriter(path, Numeric());
    ASSERT_TRUE(writer.ok());
    Batch b = NumericBatch(10, 1);
    b.column(3).ints()[0] = kMaxTimestamp + 1;
    b.column(3).valid()[0] = 1;
    EXPECT_EQ((*writer)->Write(b).code(), StatusCode::kInvalidArgument);
    auto other = std::make_shared<Schema>(Schema{1, {{1, "n", Type::kInt64}}});
    EXPECT_EQ((*writer)->Write(Batch(other)).code(), StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace edgeloop::lake
