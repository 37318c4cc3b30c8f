#include "registry/oci.h"

#include <gtest/gtest.h>

namespace edgeloop::registry {
namespace {

Manifest SampleManifest() {
  Manifest manifest;
  manifest.artifact_type = media_type::kModelArtifact;
  manifest.config = DescribeBytes(media_type::kModelCard, "{\"name\":\"m\"}");
  Descriptor layer = DescribeBytes(media_type::kModelFile, "abc");
  layer.annotations[annotation::kTitle] = "model.json";
  manifest.layers.push_back(layer);
  manifest.annotations[annotation::kCreated] = "1970-01-01T00:00:00Z";
  return manifest;
}

TEST(OciTest, ManifestRoundTripsAndIsCanonical) {
  const Manifest manifest = SampleManifest();
  const std::string bytes = SerializeManifest(manifest);
  EXPECT_EQ(bytes, SerializeManifest(manifest));
  EXPECT_EQ(bytes.find(' '), std::string::npos);
  EXPECT_LT(bytes.find("\"annotations\""), bytes.find("\"artifactType\""));  // sorted keys
  auto parsed = ParseManifest(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->artifact_type, media_type::kModelArtifact);
  ASSERT_EQ(parsed->layers.size(), 1u);
  EXPECT_EQ(parsed->layers[0], manifest.layers[0]);
  EXPECT_EQ(parsed->config, manifest.config);
  EXPECT_EQ(ManifestMediaType(bytes), media_type::kImageManifest);
}

TEST(OciTest, IndexRoundTrips) {
  Index index;
  Descriptor d = DescribeBytes(media_type::kImageManifest, "x");
  d.artifact_type = media_type::kSignatureArtifact;
  index.manifests.push_back(d);
  const std::string bytes = SerializeIndex(index);
  auto parsed = ParseIndex(bytes);
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed->manifests.size(), 1u);
  EXPECT_EQ(parsed->manifests[0], d);
  EXPECT_EQ(ManifestMediaType(bytes), media_type::kImageIndex);
}

TEST(OciTest, RejectsMalformedManifests) {
  const std::string digest = Digest::Of("x").str();
  for (const std::string& bad : std::vector<std::string>{
           "", "[]", "{}", R"({"schemaVersion":1})",
           R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"})",
           R"({"schemaVersion":2})",
           R"({"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:00","size":1}})",
           R"({"schemaVersion":2,"config":{"mediaType":"a","digest":")" + digest +
               R"(","size":-1}})",
           R"({"schemaVersion":2,"config":{"mediaType":"a","digest":")" + digest +
               R"(","size":1},"layers":{}})",
           R"({"schemaVersion":2,"config":{"mediaType":"a","digest":")" + digest +
               R"(","size":1},"annotations":{"a":1}})"}) {
    EXPECT_FALSE(ParseManifest(bad).ok()) << bad;
  }
}

TEST(OciTest, NamesAndTags) {
  EXPECT_TRUE(IsValidRepositoryName("models/machine-failure"));
  EXPECT_TRUE(IsValidRepositoryName("a.b_c__d/e-f"));
  for (const char* bad : {"", "Models", "/a", "a/", "a//b", "a..b", "-a", "a b"}) {
    EXPECT_FALSE(IsValidRepositoryName(bad)) << bad;
  }
  EXPECT_TRUE(IsValidTag("champion"));
  EXPECT_TRUE(IsValidTag("v1.2_rc-3"));
  EXPECT_FALSE(IsValidTag(".hidden"));
  EXPECT_FALSE(IsValidTag(std::string(129, 'a')));
  EXPECT_EQ(ReferrersFallbackTag(Digest::Of("")),
            "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace edgeloop::registry
