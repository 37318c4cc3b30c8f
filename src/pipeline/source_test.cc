#include "pipeline/source.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <thread>

#include "common/test_util.h"

namespace edgeloop::pipeline {
namespace {

using lake::Type;
using ::testing::HasSubstr;

// Keeps everything a source produces.
class CollectingSink : public SourceSink {
 public:
  Status Rows(Chunk chunk) override {
    chunks.push_back(std::move(chunk));
    return Status::Ok();
  }
  Status Rejected(Reject reject) override {
    rejects.push_back(std::move(reject));
    return Status::Ok();
  }
  void Progress(int64_t bytes) override { last_progress = bytes; }

  // Every row as "v1|v2|..." with NULL for nulls.
  std::vector<std::string> Rows() const {
    std::vector<std::string> out;
    for (const Chunk& c : chunks) {
      for (int64_t i = 0; i < c.batch.num_rows(); ++i) {
        std::string row;
        for (size_t k = 0; k < c.batch.columns().size(); ++k) {
          if (k) row += "|";
          row += c.batch.column(k).IsNull(i) ? "NULL" : lake::FormatValue(c.batch.column(k), i);
        }
        out.push_back(row);
      }
    }
    return out;
  }

  std::vector<Chunk> chunks;
  std::vector<Reject> rejects;
  int64_t last_progress = 0;
};

class SourceTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    const auto path = dir_.path() / name;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }

  PipelineSpec Spec(SourceSpec::Kind kind, const std::string& path,
                    std::vector<std::pair<std::string, Type>> schema = {}) {
    PipelineSpec spec;
    spec.name = "p";
    spec.source.kind = kind;
    spec.source.path = path;
    spec.schema = std::move(schema);
    spec.base_dir = dir_.path();
    spec.target.table = "t";
    return spec;
  }

  testing::TempDir dir_;
};

TEST_F(SourceTest, CsvWithSchemaParsesTypesAndRejectsBadRows) {
  const std::string path = Write("a.csv",
                                 "machine,temp,ts,extra\n"
                                 "m1,71.5,2026-11-27T04:50:00Z,x\n"
                                 "m2,hot,2026-11-27T04:51:00Z,x\n"
                                 "m3,,2026-11-27 04:52,x\n"
                                 "\n"
                                 "\"m,4\",1e2,2026-11-27,x\n"
                                 "m5,1\n"
                                 "\"\",3,2026-11-28,x\n");
  auto source = OpenSource(
      Spec(SourceSpec::Kind::kCsv, "a.csv",
           {{"ts", Type::kTimestamp}, {"machine", Type::kString}, {"temp", Type::kDouble}}),
      {});
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ((*source)->schema()->fields.size(), 3u);
  CollectingSink sink;
  ASSERT_TRUE((*source)->Run(&sink).ok());
  EXPECT_EQ(sink.Rows(), (std::vector<std::string>{
                             "2026-11-27T04:50:00Z|m1|71.5", "2026-11-27T04:52:00Z|m3|NULL",
                             "2026-11-27T00:00:00Z|m,4|100",
                             "2026-11-28T00:00:00Z||3",  // "" is an empty string, not NULL
                         }));
  ASSERT_EQ(sink.chunks.size(), 1u);
  EXPECT_EQ(sink.chunks[0].origin, path);
  EXPECT_EQ(sink.chunks[0].lines, (std::vector<int64_t>{2, 4, 6, 8}));
  ASSERT_EQ(sink.rejects.size(), 2u);
  EXPECT_EQ(sink.rejects[0].origin, path);
  EXPECT_EQ(sink.rejects[0].line, 3);
  EXPECT_EQ(sink.rejects[0].raw, "m2,hot,2026-11-27T04:51:00Z,x");
  EXPECT_EQ(sink.rejects[0].reason, "column 'temp': cannot parse 'hot' as double");
  EXPECT_EQ(sink.rejects[1].line, 7);
  EXPECT_EQ(sink.rejects[1].reason, "expected 4 fields, got 2");
  EXPECT_EQ((*source)->files_read().size(), 1u);
  EXPECT_EQ(sink.last_progress, (*source)->total_bytes());
}

TEST_F(SourceTest, CsvWithoutSchemaUsesTheHeaderAsStrings) {
  Write("d/1.csv", "a,b\n1,x\n");
  Write("d/2.csv", "a,b\n2,y\n");
  Write("d/notes.txt", "a,b\n3,z\n");
  auto source = OpenSource(Spec(SourceSpec::Kind::kCsv, "d/*.csv"), {});
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ((*source)->schema()->fields[0].type, Type::kString);
  CollectingSink sink;
  ASSERT_TRUE((*source)->Run(&sink).ok());
  EXPECT_EQ(sink.Rows(), (std::vector<std::string>{"1|x", "2|y"}));
  ASSERT_EQ(sink.chunks.size(), 2u);  // one per file, so every row knows its file

  auto folder = OpenSource(Spec(SourceSpec::Kind::kCsv, "d"), {});
  ASSERT_TRUE(folder.ok());
  CollectingSink all;
  ASSERT_TRUE((*folder)->Run(&all).ok());
  EXPECT_EQ(all.Rows().size(), 3u);
}

TEST_F(SourceTest, HeaderlessCsvUsesConfiguredColumns) {
  Write("h.csv", "1;x\n2;y\n");
  PipelineSpec spec = Spec(SourceSpec::Kind::kCsv, "h.csv", {{"n", Type::kInt64}});
  spec.source.header = false;
  spec.source.delimiter = ';';
  spec.source.columns = {"n", "s"};
  auto source = OpenSource(spec, {});
  ASSERT_TRUE(source.ok()) << source.status();
  CollectingSink sink;
  ASSERT_TRUE((*source)->Run(&sink).ok());
  EXPECT_EQ(sink.Rows(), (std::vector<std::string>{"1", "2"}));
}

TEST_F(SourceTest, SmallBatches) {
  std::string text = "n\n";
  for (int i = 0; i < 10; ++i) text += std::to_string(i) + "\n";
  Write("n.csv", text);
  SourceOptions options;
  options.batch_rows = 4;
  auto source = OpenSource(Spec(SourceSpec::Kind::kCsv, "n.csv", {{"n", Type::kInt64}}), options);
  ASSERT_TRUE(source.ok());
  CollectingSink sink;
  ASSERT_TRUE((*source)->Run(&sink).ok());
  ASSERT_EQ(sink.chunks.size(), 3u);
  EXPECT_EQ(sink.chunks[2].lines, (std::vector<int64_t>{10, 11}));
}

TEST_F(SourceTest, MalformedCsvQuotesAreRejectedRowsWithFileLineAndReason) {
  // A stray quote mid-field, an unbalanced quote closed by a later line's quote, and a quote
  // that never closes: each rejects the line that holds it; the other rows load.
  const std::string path = Write("bad.csv",
                                 "a,b\n"
                                 "1,2\n"
                                 "\"3\"x,4\n"
                                 "5,\"multi\nline\"\n"
                                 "6,\"unbalanced\n"
                                 "7,\"q\"\n"
                                 "8,\"never closed\n"
                                 "9,10\n");
  auto source = OpenSource(Spec(SourceSpec::Kind::kCsv, "bad.csv"), {});
  ASSERT_TRUE(source.ok());
  CollectingSink sink;
  const Status status = (*source)->Run(&sink);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(sink.Rows(), (std::vector<std::string>{"1|2", "5|multi\nline", "7|q", "9|10"}));
  ASSERT_EQ(sink.chunks.size(), 1u);
  EXPECT_EQ(sink.chunks[0].lines, (std::vector<int64_t>{2, 4, 7, 9}));
  ASSERT_EQ(sink.rejects.size(), 3u);
  EXPECT_EQ(sink.rejects[0].origin, path);
  EXPECT_EQ(sink.rejects[0].line, 3);
  EXPECT_EQ(sink.rejects[0].raw, "\"3\"x,4");
  EXPECT_EQ(sink.rejects[0].reason, "malformed CSV: text after the closing quote of field 1");
  EXPECT_EQ(sink.rejects[1].line, 6);
  EXPECT_EQ(sink.rejects[1].raw, "6,\"unbalanced");
  EXPECT_EQ(sink.rejects[2].line, 8);
  EXPECT_EQ(sink.rejects[2].raw, "8,\"never closed");
  EXPECT_EQ(sink.rejects[2].reason,
            "malformed CSV: quoted field 2 is never closed (the input ends inside it)");
  EXPECT_EQ((*source)->files_read().size(), 1u);
}

TEST_F(SourceTest, MalformedHeaderFailsNamingFileAndLine) {
  const std::string path = Write("bad.csv", "\"a\"x,b\n1,2\n");
  auto source = OpenSource(Spec(SourceSpec::Kind::kCsv, "bad.csv", {{"b", Type::kInt64}}), {});
  if (!source.ok()) {
    // The header is read when the source opens.
    EXPECT_EQ(source.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(source.status().message(), HasSubstr(path));
    return;
  }
  CollectingSink sink;
  const Status status = (*source)->Run(&sink);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(path));
  EXPECT_THAT(status.message(), HasSubstr("line 1"));
}

TEST_F(SourceTest, MissingColumnsAndFiles) {
  Write("a.csv", "x,y\n1,2\n");
  auto source = OpenSource(Spec(SourceSpec::Kind::kCsv, "a.csv", {{"z", Type::kInt64}}), {});
  ASSERT_TRUE(source.ok());
  CollectingSink sink;
  EXPECT_THAT((*source)->Run(&sink).message(), HasSubstr("the header has no column 'z'"));
  EXPECT_EQ(OpenSource(Spec(SourceSpec::Kind::kCsv, "nope.csv"), {}).status().code(),
            StatusCode::kNotFound);
  EXPECT_THAT(OpenSource(Spec(SourceSpec::Kind::kCsv, "*.none"), {}).status().message(),
              HasSubstr("no files match"));
  auto empty_glob = OpenSource(Spec(SourceSpec::Kind::kCsv, "*.none", {{"z", Type::kInt64}}), {});
  ASSERT_TRUE(empty_glob.ok());
  EXPECT_TRUE((*empty_glob)->Run(&sink).ok());
}

TEST_F(SourceTest, JsonLines) {
  const std::string path = Write("e.jsonl",
                                 "{\"ts\": \"2026-11-27T04:50:00Z\", \"temp\": 71, \"ok\": true, "
                                 "\"tags\": [1]}\n"
                                 "{\"ts\": \"2026-11-27T04:51:00Z\", \"temp\": null}\n"
                                 "not json\n"
                                 "\n"
                                 "[1, 2]\n"
                                 "{\"ts\": \"yesterday\", \"temp\": 1}\n"
                                 "{\"ts\": \"2026-11-27T04:52:00Z\", \"temp\": \"7.5\", "
                                 "\"ok\": 1}\n"
                                 "{\"ts\": \"2026-11-27T04:53:00Z\", \"temp\": -2.5e1}");
  auto source = OpenSource(Spec(SourceSpec::Kind::kJsonLines, "e.jsonl",
                                {{"ts", Type::kTimestamp},
                                 {"temp", Type::kDouble},
                                 {"ok", Type::kBool},
                                 {"tags", Type::kString}}),
                           {});
  ASSERT_TRUE(source.ok()) << source.status();
  CollectingSink sink;
  ASSERT_TRUE((*source)->Run(&sink).ok());
  EXPECT_EQ(sink.Rows(), (std::vector<std::string>{
                             "2026-11-27T04:50:00Z|71|true|[1]",
                             "2026-11-27T04:51:00Z|NULL|NULL|NULL",
                             "2026-11-27T04:53:00Z|-25|NULL|NULL",
                         }));
  EXPECT_EQ(sink.chunks[0].lines, (std::vector<int64_t>{1, 2, 8}));
  ASSERT_EQ(sink.rejects.size(), 4u);
  EXPECT_EQ(sink.rejects[0].line, 3);
  EXPECT_THAT(sink.rejects[0].reason, HasSubstr("invalid JSON"));
  EXPECT_EQ(sink.rejects[1].reason, "not a JSON object");
  EXPECT_THAT(sink.rejects[2].reason, HasSubstr("column 'ts'"));
  EXPECT_EQ(sink.rejects[3].line, 7);
  EXPECT_THAT(sink.rejects[3].reason, HasSubstr("column 'ok'"));  // 1 is not a bool

  // Without a schema: the first object's keys, as strings.
  auto untyped = OpenSource(Spec(SourceSpec::Kind::kJsonLines, "e.jsonl"), {});
  ASSERT_TRUE(untyped.ok()) << untyped.status();
  EXPECT_EQ((*untyped)->schema()->fields.size(), 4u);
  EXPECT_EQ((*untyped)->schema()->fields[1].name, "temp");
}

TEST_F(SourceTest, UnchangedFilesAreSkipped) {
  const std::string a = Write("in/a.csv", "n\n1\n");
  Write("in/b.csv", "n\n2\n");
  auto first = OpenSource(Spec(SourceSpec::Kind::kCsv, "in"), {});
  ASSERT_TRUE(first.ok());
  CollectingSink sink;
  ASSERT_TRUE((*first)->Run(&sink).ok());
  const auto read = (*first)->files_read();
  ASSERT_EQ(read.size(), 2u);

  Write("in/b.csv", "n\n2\n3\n");  // changed
  SourceOptions options;
  options.skip_files = read;
  auto second = OpenSource(Spec(SourceSpec::Kind::kCsv, "in"), options);
  ASSERT_TRUE(second.ok());
  CollectingSink again;
  ASSERT_TRUE((*second)->Run(&again).ok());
  EXPECT_EQ(again.Rows(), (std::vector<std::string>{"2", "3"}));
  EXPECT_EQ((*second)->files_skipped(), 1);
  EXPECT_EQ((*second)->files_read().count(a), 0u);
}

TEST_F(SourceTest, HttpSourceThatCannotConnectFails) {
  PipelineSpec spec = Spec(SourceSpec::Kind::kHttp, "", {{"n", Type::kInt64}});
  spec.source.url = "http://127.0.0.1:1/data.csv";
  spec.source.timeout_ms = 2000;
  auto source = OpenSource(spec, {});
  ASSERT_TRUE(source.ok()) << source.status();
  CollectingSink sink;
  const Status status = (*source)->Run(&sink);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr("127.0.0.1:1"));
  spec.schema.clear();
  EXPECT_THAT(OpenSource(spec, {}).status().message(), HasSubstr("needs a 'schema'"));
}

// Answers every request with `body` (HTTP/1.0, one request per connection) and records the
// request heads. For the hub source's test; stops when destroyed.
class TinyHttpServer {
 public:
  explicit TinyHttpServer(std::string body) : body_(std::move(body)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(fd_, 8);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        const int client = ::accept(fd_, nullptr, nullptr);
        if (client < 0) return;
        std::string head;
        char buffer[4096];
        while (head.find("\r\n\r\n") == std::string::npos) {
          const ssize_t n = ::read(client, buffer, sizeof(buffer));
          if (n <= 0) break;
          head.append(buffer, static_cast<size_t>(n));
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          requests_.push_back(head);
        }
        const std::string reply =
            "HTTP/1.0 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: " +
            std::to_string(body_.size()) + "\r\n\r\n" + body_;
        (void)!::write(client, reply.data(), reply.size());
        ::close(client);
      }
    });
  }
  ~TinyHttpServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  std::string body_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> requests_;
};

TEST_F(SourceTest, HubSourceReadsLabelledEventsWithTheTokenAfterTheWatermark) {
  TinyHttpServer hub(
      R"({"id":"e1","site":"s","ts":"2026-11-27T04:50:00Z","model":"m","label":"1",)"
      R"("correct":null,"labelled_at":"2026-11-27T05:00:00.250Z","temp":71.5,"ok":true,)"
      R"("mode":"auto","label_failure":1})"
      "\n"
      R"({"id":"e2","site":"s","ts":"2026-11-27T04:51:00Z","model":"m","label":"0",)"
      R"("correct":true,"labelled_at":"2026-11-27T05:00:01Z","temp":3,"ok":false,"mode":7})"
      "\n");
  Write("hub.token", "elh_secret\n");
  PipelineSpec spec = Spec(SourceSpec::Kind::kHub, "");
  spec.source.url = "http://127.0.0.1:" + std::to_string(hub.port()) + "/";
  spec.source.model = "machine failure";
  spec.source.token_file = "hub.token";
  spec.watermark = "labelled_at";
  SourceOptions options;
  options.watermark = "2026-11-27 05:00:00";
  auto source = OpenSource(spec, options);
  ASSERT_TRUE(source.ok()) << source.status();
  const lake::Schema& schema = *(*source)->schema();
  auto type_of = [&](const std::string& name) {
    const int i = schema.IndexOf(name);
    EXPECT_GE(i, 0) << name;
    return i < 0 ? Type::kString : schema.fields[static_cast<size_t>(i)].type;
  };
  EXPECT_EQ(type_of("ts"), Type::kTimestamp);
  EXPECT_EQ(type_of("labelled_at"), Type::kTimestamp);
  EXPECT_EQ(type_of("correct"), Type::kBool);
  EXPECT_EQ(type_of("temp"), Type::kDouble);
  EXPECT_EQ(type_of("ok"), Type::kBool);
  EXPECT_EQ(type_of("mode"), Type::kString);  // a string and a number: text
  EXPECT_EQ(type_of("label_failure"), Type::kDouble);
  CollectingSink sink;
  ASSERT_TRUE((*source)->Run(&sink).ok());
  ASSERT_EQ(sink.chunks.size(), 1u);
  EXPECT_EQ(sink.chunks[0].batch.num_rows(), 2);
  EXPECT_TRUE(sink.rejects.empty());
  const auto requests = hub.requests();
  ASSERT_EQ(requests.size(), 2u);  // the schema sample, then the read
  for (const std::string& head : requests) {
    EXPECT_THAT(head, HasSubstr("GET /api/v1/labelled?format=jsonl&model=machine%20failure"));
    EXPECT_THAT(head, HasSubstr("&after=1795755600000"));  // the watermark, in ms
    EXPECT_THAT(head, HasSubstr("Authorization: Bearer elh_secret\r\n"));
  }

  spec.source.token_file = "missing.token";
  EXPECT_EQ(OpenSource(spec, options).status().code(), StatusCode::kNotFound);
  spec.source.token_file.clear();
  ::unsetenv("EDGELOOP_HUB_TOKEN");
  EXPECT_THAT(OpenSource(spec, options).status().message(), HasSubstr("token_file"));
  spec.source.url.clear();
  ::unsetenv("EDGELOOP_HUB_URL");
  EXPECT_THAT(OpenSource(spec, options).status().message(), HasSubstr("EDGELOOP_HUB_URL"));
}

}  // namespace
}  // namespace edgeloop::pipeline
