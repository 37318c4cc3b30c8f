#include "lake/csv.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace edgeloop::lake {
namespace {

using Rows = std::vector<std::vector<std::string>>;

// Tokenizes `text` fed in pieces of `piece` bytes.
StatusOr<Rows> Tokenize(std::string_view text, size_t piece,
                        std::vector<int64_t>* lines = nullptr) {
  CsvTokenizer tok;
  Rows rows;
  auto fn = [&](const CsvRecord& r) {
    rows.emplace_back(r.fields.begin(), r.fields.end());
    if (lines) lines->push_back(r.line);
    return Status::Ok();
  };
  for (size_t i = 0; i < text.size(); i += piece) {
    RETURN_IF_ERROR(tok.Feed(text.substr(i, piece), fn));
  }
  RETURN_IF_ERROR(tok.Finish(fn));
  return rows;
}

TEST(CsvTest, QuotesNewlinesAndCrlfInAnyChunking) {
  const std::string text =
      "a,b,c\r\n\"x,1\",\"say \"\"hi\"\"\",\"line1\nline2\"\n,,\"\"\nlast,\"q\"\"\",z";
  const Rows want = {
      {"a", "b", "c"}, {"x,1", "say \"hi\"", "line1\nline2"}, {"", "", ""}, {"last", "q\"", "z"}};
  for (size_t piece : {1, 2, 3, 5, 7, 16, 1000}) {
    std::vector<int64_t> lines;
    auto rows = Tokenize(text, piece, &lines);
    ASSERT_TRUE(rows.ok()) << rows.status();
    EXPECT_EQ(*rows, want) << piece;
    EXPECT_EQ(lines, (std::vector<int64_t>{1, 2, 4, 5})) << piece;
  }
}

TEST(CsvTest, QuotedFlagsAndRaw) {
  CsvTokenizer tok;
  std::vector<uint8_t> quoted;
  std::string raw;
  ASSERT_TRUE(tok.Feed("\"\",x\r\n",
                       [&](const CsvRecord& r) {
                         quoted = r.quoted;
                         raw = std::string(r.raw);
                         return Status::Ok();
                       })
                  .ok());
  EXPECT_EQ(quoted, (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(raw, "\"\",x");
  EXPECT_EQ(tok.records(), 1);
}

TEST(CsvTest, LiteralQuoteInUnquotedField) {
  auto rows = Tokenize("ab\"c,d\n", 3);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(*rows, (Rows{{"ab\"c", "d"}}));
}

TEST(CsvTest, ErrorsNameTheLine) {
  auto rows = Tokenize("a\nb\n\"x\"y,1\n", 4);
  EXPECT_EQ(rows.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(rows.status().message().find("line 3"), std::string::npos) << rows.status();
  rows = Tokenize("a\n\"never closed,1\n2\n", 64);
  EXPECT_EQ(rows.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(rows.status().message().find("line 2"), std::string::npos) << rows.status();
}

// Tokenizes with recover_malformed; malformed records appear as {"!error", raw}.
Rows TokenizeRecovering(std::string_view text, size_t piece, std::vector<int64_t>* lines,
                        int64_t max_record_bytes = 64 << 20) {
  CsvOptions options;
  options.recover_malformed = true;
  options.max_record_bytes = max_record_bytes;
  CsvTokenizer tok(options);
  Rows rows;
  auto fn = [&](const CsvRecord& r) {
    if (!r.error.empty()) {
      EXPECT_TRUE(r.fields.empty());
      rows.push_back({"!" + r.error, std::string(r.raw)});
    } else {
      rows.emplace_back(r.fields.begin(), r.fields.end());
    }
    lines->push_back(r.line);
    return Status::Ok();
  };
  for (size_t i = 0; i < text.size(); i += piece) {
    const Status s = tok.Feed(text.substr(i, piece), fn);
    EXPECT_TRUE(s.ok()) << s;
  }
  const Status s = tok.Finish(fn);
  EXPECT_TRUE(s.ok()) << s;
  return rows;
}

TEST(CsvTest, StrayQuoteMidFieldIsAMalformedRecordAndParsingResumesAtTheNextLine) {
  const std::string text = "a,b\n1,2\n\"3\"x,4\r\n5,\"6\"\n";
  for (size_t piece : {1, 2, 3, 5, 64}) {
    std::vector<int64_t> lines;
    const Rows rows = TokenizeRecovering(text, piece, &lines);
    EXPECT_EQ(rows, (Rows{{"a", "b"},
                          {"1", "2"},
                          {"!text after the closing quote of field 1", "\"3\"x,4"},
                          {"5", "6"}}))
        << piece;
    EXPECT_EQ(lines, (std::vector<int64_t>{1, 2, 3, 4})) << piece;
  }
}

TEST(CsvTest, UnterminatedQuoteAtEndOfInputCostsOnlyItsLine) {
  const std::string text = "a,b\n1,\"never closed\n2,3\n4,5";
  for (size_t piece : {1, 4, 7, 1000}) {
    std::vector<int64_t> lines;
    const Rows rows = TokenizeRecovering(text, piece, &lines);
    EXPECT_EQ(
        rows,
        (Rows{{"a", "b"},
              {"!quoted field 2 is never closed (the input ends inside it)", "1,\"never closed"},
              {"2", "3"},
              {"4", "5"}}))
        << piece;
    EXPECT_EQ(lines, (std::vector<int64_t>{1, 2, 3, 4})) << piece;
  }
  // The quote on the very last line, without a line end.
  std::vector<int64_t> lines;
  EXPECT_EQ(
      TokenizeRecovering("x\n\"open", 2, &lines),
      (Rows{{"x"}, {"!quoted field 1 is never closed (the input ends inside it)", "\"open"}}));
}

TEST(CsvTest, EmbeddedNewlinesStayValidAndAMalformedMultiLineRecordRejectsItsFirstLine) {
  // A quoted field over two lines is one good record; an unbalanced quote closed by a quote on
  // a later line gives text after the closing quote: only the first line is rejected and the
  // next line is read again as a record.
  const std::string text = "id,note\n1,\"two\nlines\"\n2,\"unbalanced\n3,\"ok\"\n4,\"x\"\"y\"\n";
  for (size_t piece : {1, 3, 8, 1000}) {
    std::vector<int64_t> lines;
    const Rows rows = TokenizeRecovering(text, piece, &lines);
    EXPECT_EQ(rows, (Rows{{"id", "note"},
                          {"1", "two\nlines"},
                          {"!text after the closing quote of field 2", "2,\"unbalanced"},
                          {"3", "ok"},
                          {"4", "x\"y"}}))
        << piece;
    EXPECT_EQ(lines, (std::vector<int64_t>{1, 2, 4, 5, 6})) << piece;
  }
}

TEST(CsvTest, RunawayQuoteIsMalformedAtTheRecordLimitWhenRecovering) {
  // No closing quote within max_record_bytes: the record is rejected at the limit (memory stays
  // bounded) and the lines after it are records again.
  std::string text = "1,\"open\n";
  for (int i = 0; i < 50; ++i) text += std::to_string(i) + ",x\n";
  for (size_t piece : {7, 64, 4096}) {
    std::vector<int64_t> lines;
    const Rows rows = TokenizeRecovering(text, piece, &lines, /*max_record_bytes=*/100);
    ASSERT_EQ(rows.size(), 51u) << piece;
    EXPECT_EQ(rows[0],
              (Rows::value_type{"!quoted field 2 is not closed within 100 bytes", "1,\"open"}));
    EXPECT_EQ(rows[1], (Rows::value_type{"0", "x"}));
    EXPECT_EQ(rows[50], (Rows::value_type{"49", "x"}));
    EXPECT_EQ(lines.back(), 51);
  }
}

TEST(CsvTest, RecordLimitStopsRunawayQuotes) {
  CsvOptions options;
  options.max_record_bytes = 100;
  CsvTokenizer tok(options);
  const std::string text = "\"" + std::string(1000, 'x');
  const Status s = tok.Feed(text, [](const CsvRecord&) { return Status::Ok(); });
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
}

TEST(CsvTest, CallbackErrorStops) {
  CsvTokenizer tok;
  int n = 0;
  const Status s = tok.Feed("1\n2\n3\n", [&](const CsvRecord&) {
    return ++n == 2 ? AbortedError("stop") : Status::Ok();
  });
  EXPECT_EQ(s.code(), StatusCode::kAborted);
  EXPECT_EQ(n, 2);
}

TEST(CsvTest, VeryLongFieldsAcrossChunks) {
  const std::string big(5 << 20, 'q');
  const std::string text = "1,\"" + big + "\"\n2," + big + "\n";
  auto rows = Tokenize(text, 65536);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0][1], big);
  EXPECT_EQ((*rows)[1][1], big);
}

TEST(CsvTest, AppendFieldQuotesOnlyWhenNeeded) {
  std::string out;
  AppendCsvField(&out, "plain");
  out.push_back('|');
  AppendCsvField(&out, "a,b");
  out.push_back('|');
  AppendCsvField(&out, "say \"x\"");
  out.push_back('|');
  AppendCsvField(&out, "", true);
  out.push_back('|');
  AppendCsvField(&out, "");
  out.push_back('|');
  AppendCsvField(&out, " pad");
  EXPECT_EQ(out, "plain|\"a,b\"|\"say \"\"x\"\"\"|\"\"||\" pad\"");
}

TEST(CsvTest, RandomRecordsRoundTripThroughAppendCsvFieldInRandomChunks) {
  std::mt19937 rng(42);
  const std::vector<std::string> atoms = {"a", ",", "\"",   "\n",   "\r",  "\r\n",
                                          " ", "é", "日本", "\"\"", "x y", ""};
  Rows want;
  std::string text;
  for (int r = 0; r < 2000; ++r) {
    std::vector<std::string> row(1 + rng() % 5);
    for (std::string& field : row) {
      const int parts = static_cast<int>(rng() % 6);
      for (int k = 0; k < parts; ++k) field += atoms[rng() % atoms.size()];
    }
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) text.push_back(',');
      AppendCsvField(&text, row[i], /*quote_empty=*/row.size() == 1);
    }
    text += (rng() % 2) ? "\n" : "\r\n";
    want.push_back(std::move(row));
  }
  for (size_t piece : {1, 3, 64, 4096, 1 << 20}) {
    auto rows = Tokenize(text, piece);
    ASSERT_TRUE(rows.ok()) << rows.status();
    ASSERT_EQ(rows->size(), want.size()) << piece;
    EXPECT_EQ(*rows, want) << piece;
  }
}

}  // namespace
}  // namespace edgeloop::lake
