#include "functions/exec.h"

#include <gtest/gtest.h>

namespace edgeloop::functions {
namespace {

using Json = nlohmann::json;

std::vector<Record> Records(int n) {
  std::vector<Record> records(n);
  for (int i = 0; i < n; ++i) {
    records[i].id = "e" + std::to_string(i);
    records[i].body = {{"n", i}};
  }
  return records;
}

std::unique_ptr<ExecFunction> Python(const std::string& script,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  ExecOptions options;
  options.name = "test";
  options.argv = {"/usr/bin/python3", "-c", script};
  options.timeout = timeout;
  return std::move(*ExecFunction::Create(std::move(options)));
}

TEST(ExecTest, TransformsDropsAndFailsPerLine) {
  auto function = Python(R"(
import json, sys
for line in sys.stdin:
    item = json.loads(line)
    n = item["event"]["n"]
    if n == 1:
        print(json.dumps({"id": item["id"], "drop": True}))
    elif n == 2:
        print(json.dumps({"id": item["id"], "error": "n is two"}))
    elif n == 3:
        pass  # no answer
    else:
        item["event"]["doubled"] = n * 2
        print(json.dumps({"id": item["id"], "event": item["event"]}))
)");
  auto records = Records(5);
  std::vector<Result> results(records.size());
  Context context;
  ASSERT_TRUE(function->Run(records, results, context).ok());
  EXPECT_EQ(results[0].disposition, Disposition::kContinue);
  EXPECT_EQ(records[0].body, Json::parse(R"({"n": 0, "doubled": 0})"));
  EXPECT_EQ(results[1].disposition, Disposition::kDone);
  EXPECT_EQ(results[2].disposition, Disposition::kFail);
  EXPECT_NE(results[2].reason.find("n is two"), std::string::npos);
  EXPECT_EQ(results[3].disposition, Disposition::kFail);
  EXPECT_NE(results[3].reason.find("no answer"), std::string::npos);
  EXPECT_EQ(records[4].body["doubled"], 8);
}

TEST(ExecTest, SkipsRecordsAlreadyDecided) {
  auto function = Python(R"(
import json, sys
for line in sys.stdin:
    item = json.loads(line)
    print(json.dumps({"id": item["id"], "event": {"seen": True}}))
)");
  auto records = Records(2);
  std::vector<Result> results(records.size());
  results[0] = {Disposition::kDone, "earlier", std::nullopt};
  Context context;
  ASSERT_TRUE(function->Run(records, results, context).ok());
  EXPECT_EQ(records[0].body, Json::parse(R"({"n": 0})"));
  EXPECT_EQ(records[1].body, Json::parse(R"({"seen": true})"));
}

TEST(ExecTest, NonZeroExitFailsTheUnanswered) {
  ExecOptions options;
  options.argv = {"/bin/sh", "-c", "cat > /dev/null; exit 3"};
  auto function = std::move(*ExecFunction::Create(options));
  auto records = Records(2);
  std::vector<Result> results(records.size());
  Context context;
  ASSERT_TRUE(function->Run(records, results, context).ok());
  EXPECT_EQ(results[0].disposition, Disposition::kFail);
  EXPECT_NE(results[0].reason.find("exited with status 3"), std::string::npos);
}

TEST(ExecTest, AChildThatClosesItsStdinDoesNotKillTheCaller) {
  // This test binary keeps SIGPIPE's default disposition (death), unlike the worker; the child
  // exits without reading 4 MB of input, so the parent's writes hit a closed pipe.
  ExecOptions options;
  options.argv = {"/bin/sh", "-c", "exit 3"};
  auto function = std::move(*ExecFunction::Create(options));
  auto records = Records(2000);
  for (Record& record : records) record.body["pad"] = std::string(2000, 'y');
  std::vector<Result> results(records.size());
  Context context;
  ASSERT_TRUE(function->Run(records, results, context).ok());
  EXPECT_EQ(results[0].disposition, Disposition::kFail);
  EXPECT_NE(results[0].reason.find("exited with status 3"), std::string::npos);
}

TEST(ExecTest, MissingProgramFails) {
  ExecOptions options;
  options.argv = {"/nonexistent/program"};
  auto function = std::move(*ExecFunction::Create(options));
  auto records = Records(1);
  std::vector<Result> results(records.size());
  Context context;
  ASSERT_TRUE(function->Run(records, results, context).ok());
  EXPECT_EQ(results[0].disposition, Disposition::kFail);
  EXPECT_NE(results[0].reason.find("127"), std::string::npos);
}

TEST(ExecTest, TimeoutKillsTheProcessGroupAndRetries) {
  ExecOptions options;
  // The shell's child (sleep) holds stdout too: only killing the group ends it.
  options.argv = {"/bin/sh", "-c", "sleep 30; echo late"};
  options.timeout = std::chrono::milliseconds(300);
  auto function = std::move(*ExecFunction::Create(options));
  auto records = Records(1);
  std::vector<Result> results(records.size());
  Context context;
  const auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(function->Run(records, results, context).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  EXPECT_EQ(results[0].disposition, Disposition::kRetry);
  EXPECT_NE(results[0].reason.find("timed out"), std::string::npos);
}

TEST(ExecTest, LargeBatchesDoNotDeadlockOnFullPipes) {
  // The child answers each line as it reads it, so both pipes fill up unless the parent reads
  // while it writes.
  auto function = Python(R"(
import json, sys
for line in sys.stdin:
    item = json.loads(line)
    print(json.dumps({"id": item["id"], "event": {"pad": "x" * 2000}}), flush=True)
)");
  auto records = Records(2000);
  for (Record& record : records) record.body["pad"] = std::string(2000, 'y');
  std::vector<Result> results(records.size());
  Context context;
  ASSERT_TRUE(function->Run(records, results, context).ok());
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(results[i].disposition, Disposition::kContinue) << results[i].reason;
    ASSERT_EQ(records[i].body["pad"].get<std::string>().size(), 2000u);
  }
}

TEST(ExecTest, CreateValidates) {
  EXPECT_FALSE(ExecFunction::Create({}).ok());
  ExecOptions options;
  options.argv = {"x"};
  options.timeout = std::chrono::milliseconds(0);
  EXPECT_FALSE(ExecFunction::Create(options).ok());
}

}  // namespace
}  // namespace edgeloop::functions
