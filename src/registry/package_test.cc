#include "registry/package.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/test_util.h"
#include "registry/layout_store.h"

namespace edgeloop::registry {
namespace {

namespace fs = std::filesystem;
using edgeloop::testing::ExampleModelDir;
using edgeloop::testing::TempDir;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class PackageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = dir_.path() / "machine-failure" / "3";
    fs::create_directories(model_);
    fs::copy(ExampleModelDir(), model_, fs::copy_options::recursive);
    std::ofstream(model_ / "card.json")
        << R"({"metrics":{"auc":0.91},"lineage":{"table":"sensors","snapshot":12}})";
    store_ = std::move(*OpenLayoutStore(dir_.path() / "layout", StoreOptions{}, true));
  }
  TempDir dir_;
  fs::path model_;
  std::unique_ptr<Store> store_;
};

TEST_F(PackageTest, PackagingIsReproducible) {
  auto first = BuildPackage(model_, {});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->name, "machine-failure");
  EXPECT_EQ(first->version, "3");
  ASSERT_EQ(first->files.size(), 2u);  // model.json, model.yaml (card.json becomes the config)
  EXPECT_EQ(first->files[0].descriptor.annotations.at(annotation::kTitle), "model.json");
  EXPECT_NE(first->card.find("\"auc\":0.91"), std::string::npos);
  EXPECT_NE(first->card.find("\"framework\":\"xgboost\""), std::string::npos);

  // A copy made later (other inode, other times) packages to the same digest.
  const fs::path copy = dir_.path() / "elsewhere" / "machine-failure" / "3";
  fs::create_directories(copy);
  fs::copy(model_, copy, fs::copy_options::recursive);
  auto second = BuildPackage(copy, {});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->manifest.digest, first->manifest.digest);
  EXPECT_EQ(second->manifest_bytes, first->manifest_bytes);
}

TEST_F(PackageTest, PushPullRoundTrip) {
  auto package = BuildPackage(model_, {});
  ASSERT_TRUE(package.ok());
  ASSERT_TRUE(PushPackage(*store_, *package, "v3", nullptr).ok());
  auto pulled = PullPackage(*store_, "v3", dir_.path() / "pulled", "", nullptr);
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(pulled->name, "machine-failure");
  EXPECT_EQ(ReadAll(dir_.path() / "pulled/model.json"), ReadAll(model_ / "model.json"));
  EXPECT_EQ(ReadAll(dir_.path() / "pulled/model.yaml"), ReadAll(model_ / "model.yaml"));
  EXPECT_EQ(ReadAll(dir_.path() / "pulled/card.json"), package->card);
  // Pulling into an existing folder is refused rather than merged.
  EXPECT_EQ(PullPackage(*store_, "v3", dir_.path() / "pulled", "", nullptr).status().code(),
            StatusCode::kAlreadyExists);
  // The pulled folder packages to the same artifact.
  PackageOptions options;
  options.name = "machine-failure";
  options.version = "3";
  auto again = BuildPackage(dir_.path() / "pulled", options);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->manifest.digest, package->manifest.digest);
}

TEST_F(PackageTest, BlobCacheIsReusedAndHardLinked) {
  auto package = BuildPackage(model_, {});
  ASSERT_TRUE(PushPackage(*store_, *package, "v3", nullptr).ok());
  const fs::path cache = dir_.path() / "cache";
  ASSERT_TRUE(PullPackage(*store_, "v3", dir_.path() / "a", cache, nullptr).ok());
  ASSERT_TRUE(PullPackage(*store_, "v3", dir_.path() / "b", cache, nullptr).ok());
  EXPECT_EQ(fs::hard_link_count(dir_.path() / "b/model.json"), 3u);  // cache, a, b
}

TEST_F(PackageTest, RefusesUnsafeModelFolders) {
  fs::create_symlink("/etc/passwd", model_ / "link");
  EXPECT_EQ(BuildPackage(model_, {}).status().code(), StatusCode::kInvalidArgument);
  fs::remove(model_ / "link");
  fs::remove(model_ / "model.json");
  EXPECT_EQ(BuildPackage(model_, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildPackage(dir_.path() / "none", {}).status().code(), StatusCode::kNotFound);
}

TEST_F(PackageTest, SafeRelativePaths) {
  EXPECT_TRUE(CheckSafeRelativePath("model.json").ok());
  EXPECT_TRUE(CheckSafeRelativePath("sub/dir/file.bin").ok());
  for (const char* bad :
       {"", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/.", "a\\b", "a\nb"}) {
    EXPECT_FALSE(CheckSafeRelativePath(bad).ok()) << bad;
  }
}

// An artifact built by hand with a hostile layer title.
Status PushHostile(Store& store, const std::string& title, const std::string& tag) {
  const std::string card = R"({"name":"evil","version":"1"})";
  const std::string content = "owned";
  Manifest manifest;
  manifest.artifact_type = media_type::kModelArtifact;
  manifest.config = DescribeBytes(media_type::kModelCard, card);
  Descriptor layer = DescribeBytes(media_type::kModelFile, content);
  layer.annotations[annotation::kTitle] = title;
  manifest.layers = {layer, layer};
  RETURN_IF_ERROR(store.PushBlob(manifest.config, BlobSource::Bytes(card), nullptr));
  RETURN_IF_ERROR(store.PushBlob(layer, BlobSource::Bytes(content), nullptr));
  return store.PushManifest(tag, SerializeManifest(manifest), media_type::kImageManifest);
}

TEST_F(PackageTest, PullRefusesUnsafeArtifacts) {
  for (const std::string& title :
       {std::string("../../escape"), std::string("/abs"), std::string("same")}) {
    ASSERT_TRUE(PushHostile(*store_, title, "evil").ok());
    auto pulled = PullPackage(*store_, "evil", dir_.path() / "out", "", nullptr);
    EXPECT_EQ(pulled.status().code(), StatusCode::kInvalidArgument) << title;
    EXPECT_FALSE(fs::exists(dir_.path() / "out"));
    EXPECT_FALSE(fs::exists(dir_.path() / "escape"));
  }
}

TEST_F(PackageTest, PullRefusesTamperedBlobs) {
  auto package = BuildPackage(model_, {});
  ASSERT_TRUE(PushPackage(*store_, *package, "v3", nullptr).ok());
  const Descriptor& file = package->files[0].descriptor;
  std::ofstream(dir_.path() / "layout/blobs/sha256" / std::string(file.digest.hex())) << "tampered";
  EXPECT_EQ(PullPackage(*store_, "v3", dir_.path() / "out", "", nullptr).status().code(),
            StatusCode::kDataLoss);
  EXPECT_FALSE(fs::exists(dir_.path() / "out"));
}

TEST_F(PackageTest, CopyArtifactBetweenStores) {
  auto package = BuildPackage(model_, {});
  ASSERT_TRUE(PushPackage(*store_, *package, "v3", nullptr).ok());
  auto other = OpenLayoutStore(dir_.path() / "other", StoreOptions{}, true);
  auto copied = CopyArtifact(*store_, "v3", **other, "champion", true, nullptr);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(copied->digest, package->manifest.digest);
  EXPECT_EQ((*other)->Resolve("champion")->digest, package->manifest.digest);
}

}  // namespace
}  // namespace edgeloop::registry
