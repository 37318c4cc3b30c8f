#include "serving/repository.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/test_util.h"

namespace edgeloop::serving {
namespace {
namespace fs = std::filesystem;

class RepositoryTest : public ::testing::Test {
 protected:
  void Write(const fs::path& relative, const std::string& text) {
    fs::create_directories((root_ / relative).parent_path());
    std::ofstream(root_ / relative) << text;
  }
  edgeloop::testing::TempDir dir_{"edgeloop_repository_test"};
  const fs::path& root_ = dir_.path();
};

TEST(VersionPolicyTest, SelectsVersions) {
  VersionPolicy latest;
  EXPECT_EQ(latest.Select({1, 3, 2}), (std::vector<int64_t>{3}));
  latest.latest = 2;
  EXPECT_EQ(latest.Select({1, 3, 2}), (std::vector<int64_t>{3, 2}));
  VersionPolicy specific{VersionPolicy::Kind::kSpecific, 1, {1, 4}};
  EXPECT_EQ(specific.Select({1, 2, 3}), (std::vector<int64_t>{1}));
  VersionPolicy all;
  all.kind = VersionPolicy::Kind::kAll;
  EXPECT_EQ(all.Select({2, 1}), (std::vector<int64_t>{2, 1}));
}

TEST(VersionPolicyTest, ParsesServingYaml) {
  EXPECT_EQ(ParseServingYaml("")->ToString(), "latest 1");
  EXPECT_EQ(ParseServingYaml("version_policy: {latest: 3}")->ToString(), "latest 3");
  EXPECT_EQ(ParseServingYaml("version_policy: {specific: [1, 3]}")->ToString(), "specific [1, 3]");
  EXPECT_EQ(ParseServingYaml("version_policy: all")->ToString(), "all");
  for (const char* bad : {"version_policy: {latest: 0}", "version_policy: {latest: -1}",
                          "version_policy: {specific: []}", "version_policy: {newest: 2}",
                          "version_policy: some", "policy: all", "[1, 2]",
                          "version_policy: {latest: 1, all: x}", "version_policy: {latest: [1"}) {
    EXPECT_FALSE(ParseServingYaml(bad).ok()) << bad;
  }
}

TEST(RepositoryNamesTest, ModelAndVersionNames) {
  EXPECT_TRUE(IsValidModelName("machine-failure_v2.1"));
  EXPECT_FALSE(IsValidModelName(".staging"));
  EXPECT_FALSE(IsValidModelName("a b"));
  EXPECT_FALSE(IsValidModelName(""));
  EXPECT_EQ(ParseVersionDirName("12"), 12);
  for (const char* bad :
       {"0", "01", "-1", "3.tmp", ".staging-3", "", "1e3", "99999999999999999999"}) {
    EXPECT_FALSE(ParseVersionDirName(bad).has_value()) << bad;
  }
}

TEST_F(RepositoryTest, ScanListsModelsVersionsAndPolicies) {
  Write("b/1/model.yaml", "x");
  Write("b/2/model.yaml", "x");
  Write("b/.staging-3/model.yaml", "x");
  Write("b/3.tmp/model.yaml", "x");
  Write("b/serving.yaml", "version_policy: {latest: 2}");
  Write("a/10/model.yaml", "x");
  Write("a/serving.yaml", "version_policy: {bad: 1}");
  Write("not-a-model.txt", "x");
  Write(".hidden/1/model.yaml", "x");
  auto scan = ScanRepository(root_);
  ASSERT_TRUE(scan.ok()) << scan.status();
  ASSERT_EQ(scan->size(), 2u);
  EXPECT_EQ((*scan)[0].name, "a");
  EXPECT_FALSE((*scan)[0].policy_status.ok());
  EXPECT_EQ((*scan)[1].name, "b");
  EXPECT_EQ((*scan)[1].policy.ToString(), "latest 2");
  ASSERT_EQ((*scan)[1].versions.size(), 2u);
  EXPECT_EQ((*scan)[1].versions[0].version, 1);
  EXPECT_EQ((*scan)[1].versions[1].version, 2);
}

TEST_F(RepositoryTest, MissingRootIsAnError) { EXPECT_FALSE(ScanRepository(root_ / "nope").ok()); }

TEST_F(RepositoryTest, FingerprintChangesWithContent) {
  Write("m/1/model.yaml", "a");
  const std::string before = FingerprintDirectory(root_ / "m/1");
  EXPECT_EQ(FingerprintDirectory(root_ / "m/1"), before);
  Write("m/1/model.json", "{}");
  const std::string added = FingerprintDirectory(root_ / "m/1");
  EXPECT_NE(added, before);
  Write("m/1/model.json", "{\"a\":1}");
  EXPECT_NE(FingerprintDirectory(root_ / "m/1"), added);
}

}  // namespace
}  // namespace edgeloop::serving
