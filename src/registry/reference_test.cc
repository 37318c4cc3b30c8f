#include "registry/reference.h"

#include <gtest/gtest.h>

namespace edgeloop::registry {
namespace {

TEST(ReferenceTest, ParsesRegistryReferences) {
  auto ref = ParseReference("oci://localhost:5000/models/fraud:champion");
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->kind, Reference::Kind::kRegistry);
  EXPECT_EQ(ref->host, "localhost:5000");
  EXPECT_EQ(ref->repository, "models/fraud");
  EXPECT_EQ(ref->tag, "champion");
  EXPECT_TRUE(ref->IsLoopback());
  EXPECT_EQ(ref->ToString(), "oci://localhost:5000/models/fraud:champion");

  auto untagged = ParseReference("oci://registry.example.com/fraud");
  ASSERT_TRUE(untagged.ok());
  EXPECT_EQ(untagged->TagOrDigest(), "latest");
  EXPECT_FALSE(untagged->IsLoopback());

  const std::string digest = Digest::Of("x").str();
  auto pinned = ParseReference("oci://127.0.0.1:5000/fraud:v1@" + digest);
  ASSERT_TRUE(pinned.ok());
  EXPECT_EQ(pinned->tag, "v1");
  EXPECT_EQ(pinned->TagOrDigest(), digest);
  EXPECT_TRUE(pinned->IsLoopback());
  EXPECT_TRUE(ParseReference("oci://[::1]:5000/fraud")->IsLoopback());
}

TEST(ReferenceTest, ParsesLayoutReferences) {
  auto ref = ParseReference("layout:///mnt/usb/fraud:v3");
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->kind, Reference::Kind::kLayout);
  EXPECT_EQ(ref->layout_dir, "/mnt/usb/fraud");
  EXPECT_EQ(ref->repository, "fraud");
  EXPECT_EQ(ref->tag, "v3");
  auto relative = ParseReference("layout://models/fraud");
  ASSERT_TRUE(relative.ok());
  EXPECT_EQ(relative->layout_dir, "models/fraud");
  EXPECT_EQ(relative->TagOrDigest(), "latest");
  EXPECT_EQ(ParseReference(relative->WithTag("v9").ToString())->tag, "v9");
}

TEST(ReferenceTest, RejectsBadReferences) {
  for (const char* bad :
       {"", "fraud:v1", "docker://host/fraud", "oci://", "oci://host", "oci:///fraud",
        "oci://host/Fraud", "oci://host/fraud:bad tag", "oci://host/fraud@sha256:123",
        "oci://ho st/fraud", "layout://", "layout://:tag"}) {
    EXPECT_FALSE(ParseReference(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace edgeloop::registry
