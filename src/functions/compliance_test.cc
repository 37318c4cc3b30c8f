#include "functions/compliance.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/test_util.h"
#include "functions/crypto.h"

namespace edgeloop::functions {
namespace {

using Json = nlohmann::json;
using edgeloop::testing::TempDir;

constexpr char kKeyHex[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
constexpr char kOtherKeyHex[] = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

void WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

Json Event() {
  return Json::parse(R"({
    "id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "type": "insight", "site": "plant-7",
    "timestamp": "2026-11-27T10:47:31.250Z",
    "model": {"name": "fraud", "version": "3", "digest": "sha256:abc"},
    "inputs": {"customer_id": "C-1001", "amount": 123.4, "email": "a@example.com"},
    "outputs": {"probability": [0.91]},
    "anomaly": {"verdict": true, "score": 0.91},
    "request_id": "r-1", "latency_ms": 0.4})");
}

class PolicyTest : public ::testing::Test {
 protected:
  void SetUp() override { WriteFile(dir_.path() / "site.key", std::string(kKeyHex) + "\n"); }

  Policy Parse(const std::string& yaml) {
    auto policy = ParsePolicy(yaml, dir_.path());
    EXPECT_TRUE(policy.ok()) << policy.status();
    return policy.ok() ? *policy : Policy{};
  }

  TempDir dir_;
};

TEST_F(PolicyTest, OnlyAllowListedFieldsLeave) {
  const Policy policy = Parse(R"(
destination: hub
allow: [id, model.name, anomaly, outputs.*]
)");
  auto out = ApplyPolicy(policy, Event(), Clock::WallTime{});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Json::parse(R"({"id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
      "model": {"name": "fraud"}, "anomaly": {"verdict": true, "score": 0.91},
      "outputs": {"probability": [0.91]}})"));
  EXPECT_EQ(out->dump().find("C-1001"), std::string::npos);
  EXPECT_EQ(out->dump().find("email"), std::string::npos);
}

TEST_F(PolicyTest, DeeperPatternDoesNotAllowALeafWithThatName) {
  const Policy policy = Parse("destination: hub\nallow: [inputs.amount.cents]\n");
  auto out = ApplyPolicy(policy, Event(), Clock::WallTime{});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, Json::object());
}

TEST_F(PolicyTest, DropRulesFinishEvents) {
  const Policy policy = Parse(R"(
destination: hub
allow: [id]
drop:
  - {field: anomaly.verdict, equals: false}
  - {field: type, in: [feedback, debug]}
  - {field: secret, exists: true}
)");
  Json event = Event();
  EXPECT_TRUE(ApplyPolicy(policy, event, {}));
  event["anomaly"]["verdict"] = false;
  EXPECT_FALSE(ApplyPolicy(policy, event, {}));
  event = Event();
  event["type"] = "feedback";
  EXPECT_FALSE(ApplyPolicy(policy, event, {}));
  event = Event();
  event["secret"] = 1;
  EXPECT_FALSE(ApplyPolicy(policy, event, {}));
}

TEST_F(PolicyTest, CoarseningRoundsAndTruncates) {
  const Policy policy = Parse(R"(
destination: hub
allow: [inputs.amount, timestamp, outputs.probability]
coarsen:
  - {field: inputs.amount, round: 50}
  - {field: timestamp, truncate: hour}
  - {field: outputs.probability, round: 0.1}
)");
  auto out = ApplyPolicy(policy, Event(), {});
  ASSERT_TRUE(out);
  EXPECT_EQ((*out)["inputs"]["amount"], 100.0);
  EXPECT_EQ((*out)["timestamp"], "2026-11-27T10:00:00.000Z");
  EXPECT_NEAR((*out)["outputs"]["probability"][0].get<double>(), 0.9, 1e-12);
}

TEST_F(PolicyTest, UnparseableTimestampDoesNotLeaveAsItWas) {
  const Policy policy = Parse(R"(
destination: hub
allow: [timestamp]
coarsen: [{field: timestamp, truncate: day}]
)");
  Json event = Event();
  event["timestamp"] = "yesterday at noon";
  EXPECT_EQ((*ApplyPolicy(policy, event, {}))["timestamp"], nullptr);
}

TEST_F(PolicyTest, PseudonymsAreStablePerKeyEpochAndNeverClear) {
  const Policy policy = Parse(R"(
destination: hub
allow: [id]
pseudonymise:
  key_file: site.key
  epoch: 1d
  fields: [inputs.customer_id]
)");
  Json a = Event();
  Json b = Event();
  b["timestamp"] = "2026-11-27T23:59:59.999Z";  // same day: same epoch
  Json c = Event();
  c["timestamp"] = "2026-11-28T00:00:00.000Z";  // next epoch
  auto pa = (*ApplyPolicy(policy, a, {}))["inputs"]["customer_id"].get<std::string>();
  auto pb = (*ApplyPolicy(policy, b, {}))["inputs"]["customer_id"].get<std::string>();
  auto pc = (*ApplyPolicy(policy, c, {}))["inputs"]["customer_id"].get<std::string>();
  EXPECT_EQ(pa, pb);
  EXPECT_NE(pa, pc);
  EXPECT_EQ(pa.rfind("ps:", 0), 0u);
  EXPECT_EQ(pa.find("C-1001"), std::string::npos);
  const int64_t epoch = 1795737600 / 86400;  // 2026-11-27
  EXPECT_EQ(pa, Pseudonym(policy.key, epoch, "inputs.customer_id", "C-1001"));
  // Another site key gives another pseudonym; another value too.
  WriteFile(dir_.path() / "site.key", kOtherKeyHex);
  const Policy other = Parse(
      "destination: hub\nallow: [id]\npseudonymise: {key_file: site.key, epoch: 1d, fields: "
      "[inputs.customer_id]}\n");
  EXPECT_NE(pa, (*ApplyPolicy(other, a, {}))["inputs"]["customer_id"].get<std::string>());
  a["inputs"]["customer_id"] = "C-1002";
  EXPECT_NE(pa, (*ApplyPolicy(policy, a, {}))["inputs"]["customer_id"].get<std::string>());
}

TEST_F(PolicyTest, KnownHmacVector) {
  // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
  EXPECT_EQ(HexEncode(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_F(PolicyTest, AggregatesSuppressGroupsSmallerThanK) {
  ComplianceOptions options;
  WriteFile(dir_.path() / "p.yaml", R"(
destination: hub
allow: [model.name, anomaly]
aggregate: {group_by: [model.name], min_group_size: 3, mean: [anomaly.score]}
)");
  options.policy_file = dir_.path() / "p.yaml";
  options.audit_log = dir_.path() / "audit.jsonl";
  auto function = ComplianceFunction::Create(options);
  ASSERT_TRUE(function.ok()) << function.status();
  std::vector<Record> records(5);
  std::vector<Result> results(5);
  for (int i = 0; i < 5; ++i) {
    records[i].id = "e" + std::to_string(i);
    records[i].body = Event();
    records[i].body["model"]["name"] = i < 3 ? "fraud" : "churn";
    records[i].body["anomaly"]["score"] = 0.1 * (i + 1);
  }
  Context context;
  ASSERT_TRUE((*function)->Run(records, results, context).ok());
  EXPECT_EQ(records[0].body["type"], "aggregate");
  EXPECT_EQ(records[0].body["count"], 3);
  EXPECT_NEAR(records[0].body["mean"]["anomaly.score"].get<double>(), 0.2, 1e-12);
  EXPECT_EQ(records[1].absorbed_into, 0);
  EXPECT_EQ(records[2].absorbed_into, 0);
  EXPECT_EQ(results[3].disposition, Disposition::kDone);  // churn: 2 < k
  EXPECT_EQ(results[4].disposition, Disposition::kDone);
  EXPECT_EQ(context.compliance->dropped, 2);
}

TEST_F(PolicyTest, BadPoliciesAreRefusedWithTheirReason) {
  auto expect_error = [&](const std::string& yaml, const std::string& needle) {
    auto policy = ParsePolicy(yaml, dir_.path());
    ASSERT_FALSE(policy.ok()) << yaml;
    EXPECT_NE(policy.status().message().find(needle), std::string::npos)
        << policy.status().message();
  };
  expect_error("destination: hub\n", "'allow'");
  expect_error("allow: [id]\n", "'destination'");
  expect_error("destination: hub\nallow: [id]\nalow: [x]\n", "unknown key 'alow'");
  expect_error("destination: hub\nallow: [id]\npseudonymise: {key_file: none.key, fields: [a]}\n",
               "does not exist");
  WriteFile(dir_.path() / "short.key", "abcd\n");
  expect_error("destination: hub\nallow: [id]\npseudonymise: {key_file: short.key, fields: [a]}\n",
               "at least 32");
  expect_error("destination: hub\nallow: [id]\ndrop: [{field: a}]\n", "exactly one");
  expect_error("destination: hub\nallow: [id..x]\n", "not a field path");
  expect_error("destination: hub\nallow: [id\n", "not valid YAML");
}

TEST_F(PolicyTest, PolicyThatDoesNotLoadBlocksEgressUntilFixed) {
  ComplianceOptions options;
  options.policy_file = dir_.path() / "hub.yaml";
  options.audit_log = dir_.path() / "audit" / "hub.jsonl";
  metrics::Registry registry;
  options.metrics = &registry;
  WriteFile(options.policy_file, "destination: hub\nallow: [id\n");  // broken
  auto function = ComplianceFunction::Create(options);
  ASSERT_TRUE(function.ok()) << function.status();
  std::vector<Record> records(1);
  records[0].id = "e1";
  records[0].body = Event();
  std::vector<Result> results(1);
  Context context;
  Status status = (*function)->Run(records, results, context);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status;
  EXPECT_EQ((*function)->Probe().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(context.compliance);
  EXPECT_NE(registry.Render().find("edgeloop_compliance_policy_loaded{policy=\"" +
                                   options.policy_file.string() + "\"} 0"),
            std::string::npos);
  EXPECT_EQ(records[0].body, Event());  // untouched

  WriteFile(options.policy_file, "destination: hub\nallow: [id, site]\n");
  EXPECT_TRUE((*function)->Probe().ok());
  ASSERT_TRUE((*function)->Run(records, results, context).ok());
  EXPECT_EQ(records[0].body,
            Json::parse(R"({"id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "site": "plant-7"})"));
  ASSERT_TRUE(context.compliance);
  EXPECT_EQ(context.compliance->destination, "hub");
  EXPECT_EQ(context.compliance->policy_sha256.size(), 64u);

  // Breaking it again withdraws the loaded policy (fail closed), even though one had loaded.
  WriteFile(options.policy_file, "destination: hub\nallow: [id]\nunknown: 1\n");
  EXPECT_EQ((*function)->Probe().code(), StatusCode::kUnavailable);
}

TEST_F(PolicyTest, AuditLogAppendsOneLinePerRecord) {
  auto log = AuditLog::Open(dir_.path() / "a" / "audit.jsonl");
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->Append({{"n", 1}}).ok());
  ASSERT_TRUE((*log)->Append({{"n", 2}}).ok());
  std::ifstream in(dir_.path() / "a" / "audit.jsonl");
  std::string a, b, c;
  std::getline(in, a);
  std::getline(in, b);
  EXPECT_FALSE(std::getline(in, c));
  EXPECT_EQ(Json::parse(a)["n"], 1);
  EXPECT_EQ(Json::parse(b)["n"], 2);
}

TEST(Rfc3339Test, ParsesOffsetsAndFractions) {
  EXPECT_EQ(ParseRfc3339Ms("1970-01-01T00:00:01Z"), 1000);
  EXPECT_EQ(ParseRfc3339Ms("1970-01-01T00:00:01.5Z"), 1500);
  EXPECT_EQ(ParseRfc3339Ms("1970-01-01T01:00:00+01:00"), 0);
  EXPECT_FALSE(ParseRfc3339Ms("1970-01-01 00:00:00"));
  EXPECT_FALSE(ParseRfc3339Ms("soon"));
}

}  // namespace
}  // namespace edgeloop::functions
