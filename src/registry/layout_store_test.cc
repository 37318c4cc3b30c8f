#include "registry/layout_store.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/test_util.h"
#include "registry/referrers.h"

namespace edgeloop::registry {
namespace {

namespace fs = std::filesystem;

class LayoutStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenLayoutStore(dir_.path() / "layout", StoreOptions{}, true);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  // Pushes a one-layer manifest; returns its bytes.
  std::string PushSample(const std::string& tag, const std::string& content) {
    Manifest manifest;
    manifest.config = DescribeBytes(media_type::kEmpty, kEmptyJson);
    manifest.layers.push_back(DescribeBytes(media_type::kModelFile, content));
    EXPECT_TRUE(store_->PushBlob(manifest.config, BlobSource::Bytes(kEmptyJson), nullptr).ok());
    EXPECT_TRUE(store_->PushBlob(manifest.layers[0], BlobSource::Bytes(content), nullptr).ok());
    const std::string bytes = SerializeManifest(manifest);
    EXPECT_TRUE(store_->PushManifest(tag, bytes, media_type::kImageManifest).ok());
    return bytes;
  }

  edgeloop::testing::TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(LayoutStoreTest, CreatesAValidLayout) {
  EXPECT_TRUE(fs::exists(dir_.path() / "layout/oci-layout"));
  EXPECT_TRUE(fs::exists(dir_.path() / "layout/index.json"));
  EXPECT_TRUE(OpenLayoutStore(dir_.path() / "layout", StoreOptions{}, false).ok());
  EXPECT_EQ(OpenLayoutStore(dir_.path() / "nothing", StoreOptions{}, false).status().code(),
            StatusCode::kNotFound);
}

TEST_F(LayoutStoreTest, BlobsRoundTripVerified) {
  const Descriptor blob = DescribeBytes(media_type::kModelFile, "payload");
  EXPECT_FALSE(*store_->HasBlob(blob.digest));
  ASSERT_TRUE(store_->PushBlob(blob, BlobSource::Bytes("payload"), nullptr).ok());
  EXPECT_TRUE(*store_->HasBlob(blob.digest));
  EXPECT_EQ(*store_->ReadBlob(blob), "payload");
  ASSERT_TRUE(store_->FetchBlob(blob, dir_.path() / "out", nullptr).ok());
  std::ifstream in(dir_.path() / "out");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "payload");

  // Bytes that do not match their descriptor are refused.
  const Descriptor fresh = DescribeBytes(media_type::kModelFile, "fresh");
  EXPECT_EQ(store_->PushBlob(fresh, BlobSource::Bytes("other"), nullptr).code(),
            StatusCode::kDataLoss);
  EXPECT_FALSE(*store_->HasBlob(fresh.digest));
  // A blob file corrupted on disk is detected when read.
  std::ofstream(dir_.path() / "layout/blobs/sha256" / std::string(blob.digest.hex())) << "PAYLOAD";
  EXPECT_EQ(store_->ReadBlob(blob).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(store_->FetchBlob(blob, dir_.path() / "out2", nullptr).code(), StatusCode::kDataLoss);
  EXPECT_FALSE(fs::exists(dir_.path() / "out2"));
}

TEST_F(LayoutStoreTest, FileSourcesAreCopiedAndChecked) {
  std::ofstream(dir_.path() / "big") << std::string(3 << 20, 'z');
  const Descriptor blob{
      media_type::kModelFile, *Digest::OfFile(dir_.path() / "big"), 3 << 20, "", {}};
  int64_t last = 0;
  ASSERT_TRUE(store_
                  ->PushBlob(blob, BlobSource::File(dir_.path() / "big"),
                             [&](int64_t done, int64_t) { last = done; })
                  .ok());
  EXPECT_EQ(last, 3 << 20);
  Descriptor wrong = blob;
  wrong.size = 10;
  wrong.digest = Digest::Of("nope");
  EXPECT_EQ(store_->PushBlob(wrong, BlobSource::File(dir_.path() / "big"), nullptr).code(),
            StatusCode::kDataLoss);
}

TEST_F(LayoutStoreTest, TagsResolveAndMove) {
  const std::string v1 = PushSample("v1", "one");
  const std::string v2 = PushSample("v2", "two");
  EXPECT_EQ(*store_->ListTags(), (std::vector<std::string>{"v1", "v2"}));
  EXPECT_EQ(store_->Resolve("v1")->digest, Digest::Of(v1));
  EXPECT_EQ(store_->FetchManifest("v2")->bytes, v2);
  EXPECT_EQ(store_->FetchManifest(Digest::Of(v1).str())->bytes, v1);
  ASSERT_TRUE(store_->PushManifest("v1", v2, media_type::kImageManifest).ok());
  EXPECT_EQ(store_->Resolve("v1")->digest, Digest::Of(v2));
  EXPECT_EQ(store_->Resolve("v3").status().code(), StatusCode::kNotFound);
}

TEST_F(LayoutStoreTest, ManifestsNeedTheirBlobs) {
  Manifest manifest;
  manifest.config = DescribeBytes(media_type::kEmpty, kEmptyJson);
  const std::string bytes = SerializeManifest(manifest);
  EXPECT_EQ(store_->PushManifest("x", bytes, media_type::kImageManifest).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      store_->PushManifest(Digest::Of("other").str(), bytes, media_type::kImageManifest).code(),
      StatusCode::kFailedPrecondition);
}

TEST_F(LayoutStoreTest, ReferrersUseTheFallbackTag) {
  const std::string subject_bytes = PushSample("v1", "one");
  const Digest subject = Digest::Of(subject_bytes);
  EXPECT_TRUE(ListReferrers(*store_, subject, "")->empty());
  const std::string referrer_bytes = PushSample("r", "sig");
  Descriptor referrer = DescribeBytes(media_type::kImageManifest, referrer_bytes);
  referrer.artifact_type = media_type::kSignatureArtifact;
  ASSERT_TRUE(AddReferrer(*store_, subject, referrer).ok());
  ASSERT_TRUE(AddReferrer(*store_, subject, referrer).ok());  // no duplicate
  auto listed = ListReferrers(*store_, subject, media_type::kSignatureArtifact);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].digest, referrer.digest);
  EXPECT_TRUE(ListReferrers(*store_, subject, media_type::kPromotionArtifact)->empty());
}

}  // namespace
}  // namespace edgeloop::registry
