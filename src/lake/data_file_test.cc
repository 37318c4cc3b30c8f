#include "lake/data_file.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "common/test_util.h"
#include "lake/data_file_test_util.h"
#include "lake/value_text.h"

namespace edgeloop::lake {
namespace {

using data_file_testing::ExpectSameBatch;
using data_file_testing::ReadAll;
using data_file_testing::Sha256;
using data_file_testing::Slurp;

std::shared_ptr<const Schema> AllTypes() {
  return std::make_shared<Schema>(Schema{1,
                                         {{1, "b", Type::kBool},
                                          {2, "i", Type::kInt64},
                                          {3, "d", Type::kDouble},
                                          {4, "s", Type::kString},
                                          {5, "ts", Type::kTimestamp},
                                          {6, "day", Type::kDate}}});
}

// Rows that exercise every type's edges, nulls, and the string cases CSV gets wrong.
Batch AllTypesBatch() {
  Batch b(AllTypes());
  const std::vector<std::string> strings = {
      "plain",      "",         "comma,inside", "quote \"inside\"", "new\nline",
      "crlf\r\nin", " leading", "trailing ",    "ünïcödé ✓ 日本",   std::string(300000, 'L'),
      "\"",         ",",        "__null__"};
  for (size_t r = 0; r < strings.size() + 2; ++r) {
    const bool null_row = r >= strings.size();
    auto& c = b.columns();
    if (null_row) {
      for (auto& col : c) col.AppendNull();
      continue;
    }
    c[0].AppendBool(r % 2 == 0);
    c[1].AppendInt(r == 0 ? INT64_MIN : r == 1 ? INT64_MAX : static_cast<int64_t>(r) * -37);
    c[2].AppendDouble(r == 0 ? 0.1 : r == 1 ? -1e300 : r == 2 ? INFINITY : r * 1.25);
    c[3].AppendString(strings[r]);
    c[4].AppendInt(r == 0   ? kMinTimestamp
                   : r == 1 ? kMaxTimestamp
                            : static_cast<int64_t>(r) * 1'000'001);
    c[5].AppendInt(r == 0 ? kMinDate : r == 1 ? kMaxDate : static_cast<int64_t>(r) * -400);
  }
  return b;
}

StatusOr<FileStats> WriteFile(const std::filesystem::path& p, const Batch& b) {
  ASSIGN_OR_RETURN(auto writer, OpenDataFileWriter(p, b.schema()));
  RETURN_IF_ERROR(writer->Write(b));
  RETURN_IF_ERROR(writer->Write(b));
  return writer->Finish();
}

TEST(DataFileTest, EveryTypeRoundTripsWithNullsQuotesNewlinesUtf8AndLongFields) {
  testing::TempDir dir;
  const auto path = dir.path() / "sub" / "f.csv.zst";
  const Batch b = AllTypesBatch();
  auto stats = WriteFile(path, b);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->rows, 2 * b.num_rows());
  EXPECT_EQ(stats->bytes, static_cast<int64_t>(std::filesystem::file_size(path)));
  EXPECT_EQ(stats->sha256, Sha256(Slurp(path)));
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".tmp"));
  auto back = ReadAll(path, b.schema(), b.schema());
  ASSERT_TRUE(back.ok()) << back.status();
  Batch twice(b.schema());
  for (int k = 0; k < 2; ++k) {
    for (int64_t i = 0; i < b.num_rows(); ++i) twice.AppendRow(b, i);
  }
  ExpectSameBatch(*back, twice);
  // Null and empty string stay apart.
  EXPECT_FALSE(back->column(3).IsNull(1));
  EXPECT_EQ(back->column(3).GetString(1), "");
  EXPECT_TRUE(back->column(3).IsNull(b.num_rows() - 1));
  EXPECT_EQ(back->column(1).GetInt(0), INT64_MIN);
  EXPECT_EQ(back->column(2).GetDouble(0), 0.1);
}

TEST(DataFileTest, StatisticsPerColumn) {
  testing::TempDir dir;
  const Batch b = AllTypesBatch();
  auto stats = WriteFile(dir.path() / "f.csv.zst", b);
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->columns.size(), 6u);
  EXPECT_EQ(stats->columns[1].field_id, 2);
  EXPECT_EQ(stats->columns[1].null_count, 4);
  EXPECT_EQ(*stats->columns[1].min, "-9223372036854775808");
  EXPECT_EQ(*stats->columns[1].max, "9223372036854775807");
  EXPECT_EQ(*stats->columns[2].max, "inf");
  EXPECT_EQ(*stats->columns[3].min, "");
  EXPECT_EQ(*stats->columns[3].max, "ünïcödé ✓ 日本");
  EXPECT_EQ(*stats->columns[4].min, "0000-01-01T00:00:00Z");
  EXPECT_EQ(*stats->columns[5].max, "9999-12-31");
  EXPECT_EQ(*stats->columns[0].min, "false");
}

TEST(DataFileTest, OnlyNullsHaveNoMinMax) {
  testing::TempDir dir;
  auto schema = std::make_shared<Schema>(Schema{1, {{1, "x", Type::kInt64}}});
  Batch b(schema);
  b.column(0).AppendNull();
  b.column(0).AppendNull();
  auto stats = WriteFile(dir.path() / "f.csv.zst", b);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->columns[0].null_count, 4);
  EXPECT_FALSE(stats->columns[0].min.has_value());
  auto back = ReadAll(dir.path() / "f.csv.zst", schema, schema);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->num_rows(), 4);  // one-column null rows are empty lines and are kept
}

TEST(DataFileTest, ZstdcatReadsItAsCsv) {
  testing::TempDir dir;
  auto schema =
      std::make_shared<Schema>(Schema{1, {{1, "n", Type::kInt64}, {2, "s", Type::kString}}});
  Batch b(schema);
  b.column(0).AppendInt(1);
  b.column(1).AppendString("a,b");
  b.column(0).AppendNull();
  b.column(1).AppendString("");
  const auto path = dir.path() / "f.csv.zst";
  auto writer = OpenDataFileWriter(path, schema);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Write(b).ok());
  ASSERT_TRUE((*writer)->Finish().ok());
  FILE* p = ::popen(("zstdcat " + path.string()).c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string text;
  char buf[256];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) text.append(buf, n);
  ASSERT_EQ(::pclose(p), 0);
  EXPECT_EQ(text, "n,s\n1,\"a,b\"\n,\"\"\n");
}

TEST(DataFileTest, CorruptTruncatedAndMissingFilesAreDataLoss) {
  testing::TempDir dir;
  const Batch b = AllTypesBatch();
  const auto path = dir.path() / "f.csv.zst";
  ASSERT_TRUE(WriteFile(path, b).ok());
  const std::string good = Slurp(path);

  auto expect_data_loss = [&](const std::string& bytes, const std::string& what) {
    const auto bad = dir.path() / "bad.csv.zst";
    std::ofstream(bad, std::ios::binary | std::ios::trunc) << bytes;
    auto back = ReadAll(bad, b.schema(), b.schema(), 1000);
    EXPECT_EQ(back.status().code(), StatusCode::kDataLoss) << what << ": " << back.status();
    EXPECT_NE(back.status().message().find("bad.csv.zst"), std::string::npos) << what;
  };
  expect_data_loss(good.substr(0, good.size() / 2), "truncated");
  expect_data_loss(good.substr(0, good.size() - 1), "one byte short");
  expect_data_loss("", "empty");
  expect_data_loss("not zstd at all", "garbage");
  for (size_t at : {size_t{20}, good.size() / 3, good.size() - 8}) {
    std::string flipped = good;
    flipped[at] = static_cast<char>(flipped[at] ^ 0x55);
    expect_data_loss(flipped, "flipped byte at " + std::to_string(at));
  }
  auto missing = ReadAll(dir.path() / "nope.csv.zst", b.schema(), b.schema());
  EXPECT_EQ(missing.status().code(), StatusCode::kDataLoss);
}

TEST(DataFileTest, MalformedCsvInsideIsDataLoss) {
  testing::TempDir dir;
  auto schema =
      std::make_shared<Schema>(Schema{1, {{1, "n", Type::kInt64}, {2, "s", Type::kString}}});
  const auto path = dir.path() / "m.csv.zst";
  auto check = [&](const std::string& csv) {
    const auto raw = dir.path() / "m.csv";
    std::ofstream(raw, std::ios::binary | std::ios::trunc) << csv;
    ASSERT_EQ(std::system(("zstd -q -f " + raw.string() + " -o " + path.string()).c_str()), 0);
    auto back = ReadAll(path, schema, schema);
    EXPECT_EQ(back.status().code(), StatusCode::kDataLoss) << csv << " " << back.status();
  };
  check("n,s\nabc,x\n");             // not an int64
  check("n,s\n1,x,extra\n");         // too many fields
  check("n,s\n1,\"unterminated\n");  // ends inside quotes
  check("x,y\n1,a\n");               // header does not match
}

TEST(DataFileTest, ReadsThroughSchemaEvolution) {
  testing::TempDir dir;
  auto v1 = std::make_shared<Schema>(Schema{1,
                                            {{1, "n", Type::kInt64},
                                             {2, "day", Type::kDate},
                                             {3, "flag", Type::kBool},
                                             {4, "gone", Type::kString}}});
  Batch b(v1);
  b.column(0).AppendInt(5);
  b.column(1).AppendInt(*ParseDate("2026-11-27"));
  b.column(2).AppendBool(true);
  b.column(3).AppendString("x");
  const auto path = dir.path() / "f.csv.zst";
  auto writer = OpenDataFileWriter(path, v1);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Write(b).ok());
  ASSERT_TRUE((*writer)->Finish().ok());
  // Widened, renamed, dropped, added, reordered.
  auto v2 = std::make_shared<Schema>(Schema{5,
                                            {{9, "added", Type::kInt64},
                                             {3, "flag_text", Type::kString},
                                             {1, "n", Type::kDouble},
                                             {2, "when", Type::kTimestamp}}});
  auto back = ReadAll(path, v1, v2);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->num_rows(), 1);
  EXPECT_TRUE(back->column(0).IsNull(0));
  EXPECT_EQ(back->column(1).GetString(0), "true");
  EXPECT_EQ(back->column(2).GetDouble(0), 5.0);
  EXPECT_EQ(FormatValue(back->column(3), 0), "2026-11-27T00:00:00Z");
  // Narrowing is refused.
  auto v3 = std::make_shared<Schema>(Schema{6, {{2, "day", Type::kInt64}}});
  EXPECT_EQ(OpenDataFileReader(path, v1, v3).status().code(), StatusCode::kInvalidArgument);
}

TEST(DataFileTest, WrongBatchIsRefusedAndAbandonedFileLeavesNothing) {
  testing::TempDir dir;
  auto schema = std::make_shared<Schema>(Schema{1, {{1, "n", Type::kInt64}}});
  auto other = std::make_shared<Schema>(Schema{1, {{1, "n", Type::kString}}});
  const auto path = dir.path() / "f.csv.zst";
  {
    auto writer = OpenDataFileWriter(path, schema);
    ASSERT_TRUE(writer.ok());
    EXPECT_EQ((*writer)->Write(Batch(other)).code(), StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(DataFileTest, WriterMemoryStaysBoundedWhateverTheBatchSizeAndFileLength) {
  // Batches of 50k rows (about 4.5 MB of CSV each) into one file: the text buffer is handed to
  // zstd as it fills and zstd's worker uses small jobs, so the writer's memory (buffers and
  // compression contexts as allocated, not as timed) stays under a constant.
  constexpr int64_t kBound = 8 << 20;
  testing::TempDir dir;
  auto schema = std::make_shared<Schema>(
      Schema{1, {{1, "id", Type::kInt64}, {2, "note", Type::kString}, {3, "x", Type::kDouble}}});
  auto note = [](int64_t id) {
    return "machine-" + std::to_string(id % 977) + " reading " +
           std::string(40 + id % 23, static_cast<char>('a' + id % 26));
  };
  auto writer = OpenDataFileWriter(dir.path() / "big.csv.zst", schema);
  ASSERT_TRUE(writer.ok()) << writer.status();
  int64_t id = 0;
  int64_t largest = 0;
  for (int b = 0; b < 5; ++b) {
    Batch batch(schema);
    for (int r = 0; r < 50'000; ++r, ++id) {
      batch.column(0).AppendInt(id * 7919);
      batch.column(1).AppendString(note(id));
      batch.column(2).AppendDouble(static_cast<double>(id) / 3);
    }
    ASSERT_TRUE((*writer)->Write(batch).ok());
    largest = std::max(largest, (*writer)->memory_bytes());
    EXPECT_LE((*writer)->memory_bytes(), kBound) << "after batch " << b;
  }
  EXPECT_GT(largest, 0);
  auto stats = (*writer)->Finish();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->rows, id);
  auto back = ReadAll(dir.path() / "big.csv.zst", schema, schema, 65536);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->num_rows(), id);
  EXPECT_EQ(back->column(1).GetString(id - 1), note(id - 1));
}

}  // namespace
}  // namespace edgeloop::lake
