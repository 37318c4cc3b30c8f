#include "functions/upload.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <mutex>

#include "common/test_util.h"
#include "functions/compliance.h"
#include "functions/crypto.h"
#include "http/server.h"

namespace edgeloop::functions {
namespace {

using Json = nlohmann::json;
using edgeloop::testing::TempDir;

// A real ingest endpoint on loopback implementing the protocol of docs/worker.md, with knobs
// to be down, throttle, refuse, or reject some events.
class IngestServer : public http::Handler {
 public:
  struct Received {
    std::map<std::string, std::string> headers;
    std::vector<Json> events;
  };

  IngestServer() {
    http::ServerOptions options;
    options.address = "127.0.0.1";
    options.port = 0;
    options.threads = 1;
    server_ = std::move(*http::Server::Create(options, nullptr));
    server_->Start(this);
  }
  ~IngestServer() override { server_->Shutdown(std::chrono::milliseconds(1000)); }

  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + "/api/v1/ingest";
  }

  void Handle(http::Request request, http::Responder respond) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (request.path() == "/api/v1/health") {
      return respond(http::Response::Json(status_ == 200 ? 200 : 503, "{}"));
    }
    if (status_ != 200) {
      http::Response response = http::Response::Error(status_, "not now");
      if (status_ == 429 || status_ == 503) response.headers.emplace_back("Retry-After", "7");
      return respond(std::move(response));
    }
    Received received;
    for (const char* name :
         {"Content-Encoding", "Idempotency-Key", "Authorization", "Content-Type"}) {
      received.headers[name] = std::string(request.Header(name));
    }
    auto encoding = ParseEncoding(received.headers["Content-Encoding"].empty()
                                      ? "identity"
                                      : received.headers["Content-Encoding"]);
    auto body = Decompress(request.body, *encoding);
    if (!body.ok()) return respond(http::Response::Error(400, body.status().message()));
    Json rejected = Json::array();
    int64_t accepted = 0, duplicates = 0;
    size_t start = 0;
    while (start < body->size()) {
      const size_t end = body->find('\n', start);
      Json event = Json::parse(body->substr(start, end - start));
      start = end + 1;
      const std::string id = event["id"];
      if (reject_ids_.count(id)) {
        rejected.push_back({{"id", id}, {"error", "schema"}});
      } else if (seen_.insert(id).second) {
        ++accepted;
      } else {
        ++duplicates;
      }
      received.events.push_back(std::move(event));
    }
    requests_.push_back(std::move(received));
    respond(http::Response::Json(
        200,
        Json({{"accepted", accepted}, {"duplicates", duplicates}, {"rejected", rejected}}).dump()));
  }

  void set_status(int status) {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
  }
  void reject(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    reject_ids_.insert(id);
  }
  std::vector<Received> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  std::mutex mu_;
  int status_ = 200;
  std::set<std::string> reject_ids_;
  std::set<std::string> seen_;
  std::vector<Received> requests_;
  std::unique_ptr<http::Server> server_;
};

std::vector<Record> MakeRecords(int anomalies, int routine) {
  std::vector<Record> records;
  for (int i = 0; i < routine + anomalies; ++i) {
    Record record;
    const bool anomaly = i % 2 == 0 ? i / 2 < anomalies : false;
    record.id = "id-" + std::to_string(i);
    record.priority = anomaly ? 10 : 0;
    record.type = anomaly ? "anomaly" : "insight";
    record.body = {{"n", i}, {"kind", record.type}};
    records.push_back(std::move(record));
  }
  return records;
}

Context StampedContext(AuditLog* audit) {
  Context context;
  context.compliance = ComplianceStamp{"hub", "p.yaml", std::string(64, 'a'), audit, 0};
  return context;
}

TEST(CompressionTest, RoundTripsBothEncodings) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += R"({"id":"x","n":)" + std::to_string(i) + "}\n";
  for (Encoding encoding : {Encoding::kZstd, Encoding::kGzip, Encoding::kIdentity}) {
    auto packed = Compress(text, encoding);
    ASSERT_TRUE(packed.ok());
    if (encoding != Encoding::kIdentity) {
      EXPECT_LT(packed->size(), text.size() / 4);
    }
    auto unpacked = Decompress(*packed, encoding);
    ASSERT_TRUE(unpacked.ok()) << unpacked.status();
    EXPECT_EQ(*unpacked, text);
  }
  EXPECT_FALSE(Decompress("not zstd", Encoding::kZstd).ok());
  EXPECT_FALSE(Decompress("not gzip", Encoding::kGzip).ok());
  EXPECT_FALSE(Decompress(*Compress(text, Encoding::kZstd), Encoding::kZstd, 100).ok());
  EXPECT_FALSE(ParseEncoding("br").ok());
}

TEST(BatchKeyTest, DependsOnTheSetOfIdsAndTheDestination) {
  EXPECT_EQ(BatchKey("hub", {"a", "b"}), BatchKey("hub", {"b", "a"}));
  EXPECT_NE(BatchKey("hub", {"a", "b"}), BatchKey("hub", {"a"}));
  EXPECT_NE(BatchKey("hub", {"a"}), BatchKey("lab", {"a"}));
  EXPECT_EQ(BatchKey("hub", {"a"}).size(), 64u);
}

TEST(RateLimiterTest, KeepsToTheRateAfterAOneSecondBurst) {
  FakeClock clock;
  RateLimiter limiter(1000, &clock);
  EXPECT_EQ(limiter.Reserve(1000).count(), 0);  // the burst
  EXPECT_EQ(limiter.Reserve(500), std::chrono::milliseconds(500));
  EXPECT_EQ(limiter.Reserve(500), std::chrono::milliseconds(1000));
  clock.Advance(std::chrono::seconds(10));  // idle time earns at most one second
  EXPECT_EQ(limiter.Reserve(1000).count(), 0);
  EXPECT_EQ(limiter.Reserve(2000), std::chrono::seconds(2));
  RateLimiter unlimited(0, &clock);
  EXPECT_EQ(unlimited.Reserve(1 << 30).count(), 0);
}

TEST(UploadTest, RefusesABatchThatPassedNoCompliance) {
  TempDir dir;
  UploadOptions options;
  options.destination = "hub";
  options.sink = MakeFolderSink(dir.path());
  auto upload = UploadFunction::Create(std::move(options));
  ASSERT_TRUE(upload.ok());
  auto records = MakeRecords(1, 1);
  std::vector<Result> results(records.size());
  Context context;
  EXPECT_EQ((*upload)->Run(records, results, context).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(UploadTest, FolderSinkWritesOneFilePerBatchKeyAndDedupes) {
  TempDir dir;
  auto audit = AuditLog::Open(dir.path() / "audit.jsonl");
  const auto outbox = dir.path() / "outbox";
  std::filesystem::create_directories(outbox);
  metrics::Registry registry;
  UploadOptions options;
  options.destination = "hub";
  options.sink = MakeFolderSink(outbox);
  options.metrics = &registry;
  auto upload = UploadFunction::Create(std::move(options));
  ASSERT_TRUE(upload.ok());
  auto records = MakeRecords(2, 3);
  std::vector<Result> results(records.size());
  Context context = StampedContext(audit->get());
  ASSERT_TRUE((*upload)->Run(records, results, context).ok());
  for (const Result& result : results) EXPECT_EQ(result.disposition, Disposition::kDone);
  // Two lanes (priority 10 and 0): two files, named by their keys.
  std::vector<std::string> anomaly_ids = {"id-0", "id-2"};
  const auto anomaly_file = outbox / (BatchKey("hub", anomaly_ids) + ".jsonl.zst");
  ASSERT_TRUE(std::filesystem::exists(anomaly_file));
  std::ifstream in(anomaly_file, std::ios::binary);
  std::string packed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto body = Decompress(packed, Encoding::kZstd);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(*body, R"({"id":"id-0","kind":"anomaly","n":0})"
                   "\n"
                   R"({"id":"id-2","kind":"anomaly","n":2})"
                   "\n");
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(outbox)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 2);

  // The same events again (a redelivery): same names, counted as duplicates.
  auto again = MakeRecords(2, 3);
  std::vector<Result> again_results(again.size());
  ASSERT_TRUE((*upload)->Run(again, again_results, context).ok());
  EXPECT_NE(registry.Render().find(
                "edgeloop_upload_events_total{destination=\"hub\",outcome=\"duplicate\"} 5"),
            std::string::npos);

  // Audit: one record per batch that left, with fields and the hash of the bytes.
  std::ifstream audit_in(dir.path() / "audit.jsonl");
  std::string line;
  std::vector<Json> audit_records;
  while (std::getline(audit_in, line)) audit_records.push_back(Json::parse(line));
  ASSERT_EQ(audit_records.size(), 4u);
  EXPECT_EQ(audit_records[0]["priority"], 10);
  EXPECT_EQ(audit_records[0]["events"], 2);
  EXPECT_EQ(audit_records[0]["fields"], Json::parse(R"(["id","kind","n"])"));
  EXPECT_EQ(audit_records[0]["body_sha256"], Sha256Hex(*body));
  EXPECT_EQ(audit_records[1]["priority"], 0);
}

TEST(UploadTest, MissingFolderIsUnavailableAndProbeSaysSo) {
  TempDir dir;
  UploadOptions options;
  options.destination = "hub";
  options.sink = MakeFolderSink(dir.path() / "absent");
  auto upload = UploadFunction::Create(std::move(options));
  ASSERT_TRUE(upload.ok());
  auto records = MakeRecords(1, 1);
  std::vector<Result> results(records.size());
  Context context = StampedContext(nullptr);
  EXPECT_EQ((*upload)->Run(records, results, context).code(), StatusCode::kUnavailable);
  EXPECT_EQ((*upload)->Probe().code(), StatusCode::kUnavailable);
  std::filesystem::create_directories(dir.path() / "absent");
  EXPECT_TRUE((*upload)->Probe().ok());
}

class HttpUploadTest : public ::testing::Test {
 protected:
  std::unique_ptr<UploadFunction> Make(Encoding encoding) {
    HttpSinkOptions http;
    http.url = server_.url();
    http.token = "site-token-0123456789";
    http.timeout = std::chrono::milliseconds(5000);
    UploadOptions options;
    options.destination = "hub";
    options.sink = std::move(*MakeHttpSink(http));
    options.encoding = encoding;
    return std::move(*UploadFunction::Create(std::move(options)));
  }

  IngestServer server_;
};

TEST_F(HttpUploadTest, SendsLanesInPriorityOrderWithTheProtocolHeaders) {
  for (Encoding encoding : {Encoding::kZstd, Encoding::kGzip}) {
    auto upload = Make(encoding);
    auto records = MakeRecords(2, 4);
    std::vector<Result> results(records.size());
    Context context = StampedContext(nullptr);
    ASSERT_TRUE(upload->Run(records, results, context).ok());
    for (const Result& result : results) EXPECT_EQ(result.disposition, Disposition::kDone);
  }
  auto requests = server_.requests();
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_EQ(requests[0].headers["Content-Encoding"], "zstd");
  EXPECT_EQ(requests[2].headers["Content-Encoding"], "gzip");
  EXPECT_EQ(requests[0].headers["Authorization"], "Bearer site-token-0123456789");
  EXPECT_EQ(requests[0].headers["Content-Type"], "application/x-ndjson");
  EXPECT_EQ(requests[0].headers["Idempotency-Key"], BatchKey("hub", {"id-0", "id-2"}));
  for (const Json& event : requests[0].events) EXPECT_EQ(event["kind"], "anomaly");
  for (const Json& event : requests[1].events) EXPECT_EQ(event["kind"], "insight");
  EXPECT_EQ(requests[1].events.size(), 4u);
}

TEST_F(HttpUploadTest, ThrottledOrDownIsUnavailableWithRetryAfter) {
  auto upload = Make(Encoding::kZstd);
  for (int status : {429, 503, 500}) {
    server_.set_status(status);
    auto records = MakeRecords(1, 1);
    std::vector<Result> results(records.size());
    Context context = StampedContext(nullptr);
    EXPECT_EQ(upload->Run(records, results, context).code(), StatusCode::kUnavailable);
    // The anomaly lane went first and failed; the routine lane was never tried.
    EXPECT_EQ(results[0].disposition, Disposition::kRetry);
    if (status != 500) {
      EXPECT_EQ(results[0].retry_after, std::chrono::milliseconds(7000));
    }
    EXPECT_EQ(results[1].disposition, Disposition::kContinue);
    EXPECT_EQ(upload->Probe().code(), StatusCode::kUnavailable);
  }
  server_.set_status(200);
  EXPECT_TRUE(upload->Probe().ok());
}

TEST_F(HttpUploadTest, OtherClientErrorsFailTheBatchAndRejectionsFailTheirEvents) {
  auto upload = Make(Encoding::kZstd);
  server_.set_status(400);
  auto records = MakeRecords(0, 2);
  std::vector<Result> results(records.size());
  Context context = StampedContext(nullptr);
  ASSERT_TRUE(upload->Run(records, results, context).ok());
  EXPECT_EQ(results[0].disposition, Disposition::kFail);
  EXPECT_NE(results[0].reason.find("not now"), std::string::npos) << results[0].reason;

  server_.set_status(200);
  server_.reject("id-1");
  records = MakeRecords(0, 3);
  results.assign(records.size(), Result{});
  ASSERT_TRUE(upload->Run(records, results, context).ok());
  EXPECT_EQ(results[0].disposition, Disposition::kDone);
  EXPECT_EQ(results[1].disposition, Disposition::kFail);
  EXPECT_NE(results[1].reason.find("schema"), std::string::npos);
  EXPECT_EQ(results[2].disposition, Disposition::kDone);
}

TEST(HttpSinkTest, UnreachableDestinationIsUnavailable) {
  HttpSinkOptions http;
  http.url = "http://127.0.0.1:1/api/v1/ingest";  // nothing listens on port 1
  auto sink = MakeHttpSink(http);
  ASSERT_TRUE(sink.ok());
  EXPECT_EQ((*sink)->Probe().code(), StatusCode::kUnavailable);
  Batch batch;
  batch.key = "k";
  batch.ids = {"a"};
  Context context;
  EXPECT_EQ((*sink)->Send(batch, context).kind, SendOutcome::Kind::kUnavailable);
  HttpSinkOptions ftp;
  ftp.url = "ftp://x";
  EXPECT_FALSE(MakeHttpSink(ftp).ok());
}

TEST(UploadTest, BandwidthCapWaitsBetweenRequests) {
  TempDir dir;
  FakeClock clock;
  std::vector<std::chrono::nanoseconds> waits;
  UploadOptions options;
  options.destination = "hub";
  options.sink = MakeFolderSink(dir.path());
  options.encoding = Encoding::kIdentity;
  options.bandwidth_bytes_per_second = 100;
  options.max_request_bytes = 1;  // one event per request
  options.clock = &clock;
  options.wait = [&](std::chrono::nanoseconds delay, const Context&) {
    waits.push_back(delay);
    clock.Advance(delay);
    return true;
  };
  auto upload = UploadFunction::Create(std::move(options));
  ASSERT_TRUE(upload.ok());
  auto records = MakeRecords(0, 6);  // lines of 36 bytes plus newline
  std::vector<Result> results(records.size());
  Context context = StampedContext(nullptr);
  context.clock = &clock;
  ASSERT_TRUE((*upload)->Run(records, results, context).ok());
  // 6 x 37 bytes at 100 B/s with a 100-byte burst: two go at once, the third once 11 bytes
  // are earned, then one every 0.37 s.
  ASSERT_EQ(waits.size(), 4u);
  EXPECT_NEAR(std::chrono::duration<double>(waits[0]).count(), 0.11, 1e-6);
  for (size_t i = 1; i < waits.size(); ++i) {
    EXPECT_NEAR(std::chrono::duration<double>(waits[i]).count(), 0.37, 1e-6);
  }
}

}  // namespace
}  // namespace edgeloop::functions
