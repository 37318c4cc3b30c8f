#include "registry/remote_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "registry/http_client.h"
#include "registry/layout_store.h"
#include "registry/oci.h"
#include "registry/package.h"
#include "registry/test_registry.h"

namespace edgeloop::registry {
namespace {

using edgeloop::testing::TempDir;
using testing::ScriptedHttpServer;
using testing::ScriptedRequest;
using testing::ScriptedResponse;
using testing::TestRegistry;
using testing::TestRegistryOptions;

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

void WriteFile(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// Traffic sent by all clients between construction and Delta().
class TrafficMeter {
 public:
  TrafficMeter() : start_(GetHttpTraffic()) {}
  HttpTraffic Delta() const {
    const HttpTraffic now = GetHttpTraffic();
    HttpTraffic d;
    d.requests = now.requests - start_.requests;
    d.gets = now.gets - start_.gets;
    d.heads = now.heads - start_.heads;
    d.puts = now.puts - start_.puts;
    d.posts = now.posts - start_.posts;
    d.patches = now.patches - start_.patches;
    d.deletes = now.deletes - start_.deletes;
    d.range_requests = now.range_requests - start_.range_requests;
    d.bytes_sent = now.bytes_sent - start_.bytes_sent;
    d.bytes_received = now.bytes_received - start_.bytes_received;
    return d;
  }

 private:
  HttpTraffic start_;
};

StoreOptions DefaultOptions() {
  StoreOptions options;
  options.timeout_ms = 10'000;
  return options;
}

std::unique_ptr<Store> OpenOrDie(const Reference& ref, const StoreOptions& options) {
  StatusOr<std::unique_ptr<Store>> store = OpenRemoteStore(ref, options);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

// A model artifact: a config blob, two file layers on disk and the manifest that ties them.
struct Artifact {
  std::string config;
  std::string layer1;
  std::string layer2;
  std::filesystem::path layer1_path;
  std::filesystem::path layer2_path;
  Descriptor config_desc;
  Descriptor layer1_desc;
  Descriptor layer2_desc;
  std::string manifest;
  Digest manifest_digest;

  static Artifact Make(const std::filesystem::path& dir, uint32_t seed) {
    Artifact a;
    a.config = R"({"name":"fraud","seed":)" + std::to_string(seed) + "}";
    a.layer1 = RandomBytes((2 << 20) + 17, seed);
    a.layer2 = "threshold: 0.7\n";
    a.layer1_path = dir / ("model-" + std::to_string(seed) + ".bin");
    a.layer2_path = dir / ("params-" + std::to_string(seed) + ".yaml");
    WriteFile(a.layer1_path, a.layer1);
    WriteFile(a.layer2_path, a.layer2);
    a.config_desc = DescribeBytes(media_type::kModelCard, a.config);
    a.layer1_desc = DescribeBytes(media_type::kModelFile, a.layer1);
    a.layer1_desc.annotations[annotation::kTitle] = "model.bin";
    a.layer2_desc = DescribeBytes(media_type::kModelFile, a.layer2);
    a.layer2_desc.annotations[annotation::kTitle] = "params.yaml";
    Manifest m;
    m.artifact_type = media_type::kModelArtifact;
    m.config = a.config_desc;
    m.layers = {a.layer1_desc, a.layer2_desc};
    m.annotations[annotation::kCreated] = "2026-01-01T00:00:00Z";
    a.manifest = SerializeManifest(m);
    a.manifest_digest = Digest::Of(a.manifest);
    return a;
  }

  Status Push(Store& store, const std::string& tag) const {
    RETURN_IF_ERROR(store.PushBlob(config_desc, BlobSource::Bytes(config), {}));
    RETURN_IF_ERROR(store.PushBlob(layer1_desc, BlobSource::File(layer1_path), {}));
    RETURN_IF_ERROR(store.PushBlob(layer2_desc, BlobSource::File(layer2_path), {}));
    return store.PushManifest(tag, manifest, media_type::kImageManifest);
  }
};

// One plain registry shared by the tests that need no special configuration; each test uses
// its own repository.
class RemoteStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    StatusOr<std::unique_ptr<TestRegistry>> started = TestRegistry::Start();
    if (started.ok()) {
      registry_ = started->release();
    } else {
      start_error_ = new Status(started.status());
    }
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(registry_, nullptr) << *start_error_; }

  static TestRegistry* registry_;
  static Status* start_error_;
  TempDir dir_{"edgeloop_remote_store_test"};
};

TestRegistry* RemoteStoreTest::registry_ = nullptr;
Status* RemoteStoreTest::start_error_ = nullptr;

TEST_F(RemoteStoreTest, PushThenPullMultiBlobArtifactGivesIdenticalBytes) {
  const Artifact a = Artifact::Make(dir_.path(), 1);
  {
    std::unique_ptr<Store> store = OpenOrDie(registry_->Ref("models/fraud"), DefaultOptions());
    ASSERT_NE(store, nullptr);
    int64_t last_done = 0;
    int64_t last_total = 0;
    ASSERT_TRUE(store
                    ->PushBlob(a.layer1_desc, BlobSource::File(a.layer1_path),
                               [&](int64_t done, int64_t total) {
                                 EXPECT_GE(done, last_done);
                                 last_done = done;
                                 last_total = total;
                               })
                    .ok());
    EXPECT_EQ(last_done, a.layer1_desc.size);
    EXPECT_EQ(last_total, a.layer1_desc.size);
    const Status pushed = a.Push(*store, "v1");
    ASSERT_TRUE(pushed.ok()) << pushed;
  }

  // A fresh store: nothing cached from the push.
  std::unique_ptr<Store> store = OpenOrDie(registry_->Ref("models/fraud"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Describe(), "oci://" + registry_->host() + "/models/fraud");

  StatusOr<Descriptor> resolved = store->Resolve("v1");
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->digest, a.manifest_digest);
  EXPECT_EQ(resolved->size, static_cast<int64_t>(a.manifest.size()));
  EXPECT_EQ(resolved->media_type, media_type::kImageManifest);

  for (const std::string& ref : {std::string("v1"), a.manifest_digest.str()}) {
    StatusOr<FetchedManifest> fetched = store->FetchManifest(ref);
    ASSERT_TRUE(fetched.ok()) << fetched.status();
    EXPECT_EQ(fetched->bytes, a.manifest);
    EXPECT_EQ(fetched->digest, a.manifest_digest);
    EXPECT_EQ(fetched->media_type, media_type::kImageManifest);
  }
  StatusOr<FetchedManifest> fetched = store->FetchManifest("v1");
  ASSERT_TRUE(fetched.ok());
  StatusOr<Manifest> manifest = ParseManifest(fetched->bytes);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  ASSERT_EQ(manifest->layers.size(), 2u);
  EXPECT_EQ(manifest->layers[0], a.layer1_desc);
  EXPECT_EQ(manifest->layers[1], a.layer2_desc);

  StatusOr<std::string> config = store->ReadBlob(manifest->config);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config, a.config);

  const std::filesystem::path out1 = dir_.path() / "out1";
  const std::filesystem::path out2 = dir_.path() / "out2";
  int64_t progress_done = 0;
  Status status = store->FetchBlob(manifest->layers[0], out1,
                                   [&](int64_t done, int64_t) { progress_done = done; });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(progress_done, a.layer1_desc.size);
  status = store->FetchBlob(manifest->layers[1], out2, {});
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(ReadFile(out1), a.layer1);
  EXPECT_EQ(ReadFile(out2), a.layer2);
  EXPECT_EQ(*Digest::OfFile(out1), a.layer1_desc.digest);

  StatusOr<bool> has = store->HasBlob(a.layer1_desc.digest);
  ASSERT_TRUE(has.ok()) << has.status();
  EXPECT_TRUE(*has);
}

TEST_F(RemoteStoreTest, RepushUploadsNoBlob) {
  const Artifact a = Artifact::Make(dir_.path(), 2);
  std::unique_ptr<Store> store = OpenOrDie(registry_->Ref("models/repush"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(a.Push(*store, "v1").ok());

  TrafficMeter meter;
  const Status again = a.Push(*store, "v1");
  ASSERT_TRUE(again.ok()) << again;
  const HttpTraffic d = meter.Delta();
  EXPECT_EQ(d.heads, 3);  // one existence check per blob
  EXPECT_EQ(d.posts, 0);  // no upload started
  EXPECT_EQ(d.patches, 0);
  EXPECT_EQ(d.puts, 1);  // the manifest only
  EXPECT_LT(d.bytes_sent, 4096);
}

TEST_F(RemoteStoreTest, ListTagsReturnsEveryTagSorted) {
  std::unique_ptr<Store> store = OpenOrDie(registry_->Ref("models/many-tags"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  const Descriptor config = DescribeBytes(media_type::kEmpty, kEmptyJson);
  ASSERT_TRUE(store->PushBlob(config, BlobSource::Bytes(kEmptyJson), {}).ok());
  Manifest m;
  m.artifact_type = media_type::kModelArtifact;
  m.config = config;
  const std::string manifest = SerializeManifest(m);
  // Distribution 2.8 answers in its own order and ignores `n` (no pagination; see the scripted
  // test for that), so the client must sort.
  std::vector<std::string> expected;
  for (int i = 11; i >= 0; --i) {
    const std::string tag = "v" + std::to_string(i);
    expected.push_back(tag);
    const Status pushed = store->PushManifest(tag, manifest, media_type::kImageManifest);
    ASSERT_TRUE(pushed.ok()) << pushed;
  }
  std::sort(expected.begin(), expected.end());

  StatusOr<std::vector<std::string>> tags = store->ListTags();
  ASSERT_TRUE(tags.ok()) << tags.status();
  EXPECT_EQ(*tags, expected);
}

TEST_F(RemoteStoreTest, ListTagsOfUnknownRepositoryIsNotFound) {
  std::unique_ptr<Store> store = OpenOrDie(registry_->Ref("models/never-pushed"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  StatusOr<std::vector<std::string>> tags = store->ListTags();
  EXPECT_EQ(tags.status().code(), StatusCode::kNotFound) << tags.status();
  EXPECT_NE(tags.status().message().find("NAME_UNKNOWN"), std::string::npos) << tags.status();
}

TEST_F(RemoteStoreTest, ChunkedUploadOfMultiMegabyteBlob) {
  const std::string bytes = RandomBytes((5 << 20) + 123, 3);
  const std::filesystem::path file = dir_.path() / "big.bin";
  WriteFile(file, bytes);
  const Descriptor blob = DescribeBytes(media_type::kModelFile, bytes);

  StoreOptions options = DefaultOptions();
  options.chunk_size = 1 << 20;
  std::unique_ptr<Store> store = OpenOrDie(registry_->Ref("models/chunked"), options);
  ASSERT_NE(store, nullptr);
  TrafficMeter meter;
  std::vector<int64_t> progress;
  const Status pushed = store->PushBlob(blob, BlobSource::File(file),
                                        [&](int64_t done, int64_t) { progress.push_back(done); });
  ASSERT_TRUE(pushed.ok()) << pushed;
  const HttpTraffic d = meter.Delta();
  EXPECT_EQ(d.posts, 1);
  EXPECT_EQ(d.patches, 6);  // 5 full chunks and a 123-byte one
  EXPECT_EQ(d.puts, 1);     // closes the upload with the digest
  EXPECT_GE(d.bytes_sent, blob.size);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), blob.size);
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));

  const std::filesystem::path out = dir_.path() / "big.out";
  ASSERT_TRUE(store->FetchBlob(blob, out, {}).ok());
  EXPECT_EQ(*Digest::OfFile(out), blob.digest);
  EXPECT_EQ(ReadFile(out), bytes);
}

TEST_F(RemoteStoreTest, InterruptedDownloadResumesWithRange) {
  const std::string bytes = RandomBytes(3 << 20, 4);
  const Descriptor blob = DescribeBytes(media_type::kModelFile, bytes);
  std::unique_ptr<Store> store = OpenOrDie(registry_->Ref("models/resume"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->PushBlob(blob, BlobSource::Bytes(bytes), {}).ok());

  // What an interrupted download left behind: the first MiB.
  const std::filesystem::path dest = dir_.path() / "partial";
  WriteFile(dest, std::string_view(bytes).substr(0, 1 << 20));
  TrafficMeter meter;
  int64_t first_progress = -1;
  const Status fetched = store->FetchBlob(blob, dest, [&](int64_t done, int64_t) {
    if (first_progress < 0) first_progress = done;
  });
  ASSERT_TRUE(fetched.ok()) << fetched;
  const HttpTraffic d = meter.Delta();
  EXPECT_EQ(d.range_requests, 1);
  EXPECT_EQ(d.bytes_received, (3 << 20) - (1 << 20));  // only the rest
  EXPECT_GT(first_progress, 1 << 20);
  EXPECT_EQ(ReadFile(dest), bytes);

  // A complete file is verified locally and needs no request at all.
  TrafficMeter again;
  ASSERT_TRUE(store->FetchBlob(blob, dest, {}).ok());
  EXPECT_EQ(again.Delta().requests, 0);
}

TEST_F(RemoteStoreTest, WrongPrefixInDestIsDataLossAndRemovesIt) {
  const std::string bytes = RandomBytes(300'000, 5);
  const Descriptor blob = DescribeBytes(media_type::kModelFile, bytes);
  std::unique_ptr<Store> store =
      OpenOrDie(registry_->Ref("models/tampered-prefix"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->PushBlob(blob, BlobSource::Bytes(bytes), {}).ok());

  const std::filesystem::path dest = dir_.path() / "partial";
  WriteFile(dest, RandomBytes(1000, 99));  // not a prefix of the blob
  const Status status = store->FetchBlob(blob, dest, {});
  EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status;
  EXPECT_FALSE(std::filesystem::exists(dest));

  // The caller's retry then starts from scratch and succeeds.
  const Status retried = store->FetchBlob(blob, dest, {});
  ASSERT_TRUE(retried.ok()) << retried;
  EXPECT_EQ(ReadFile(dest), bytes);
}

TEST_F(RemoteStoreTest, TamperedBlobInRegistryIsDataLoss) {
  const std::string bytes = RandomBytes(100'000, 6);
  const Descriptor blob = DescribeBytes(media_type::kModelCard, bytes);
  std::unique_ptr<Store> store =
      OpenOrDie(registry_->Ref("models/tampered-blob"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->PushBlob(blob, BlobSource::Bytes(bytes), {}).ok());
  const std::filesystem::path stored = registry_->BlobDataPath(blob.digest);
  ASSERT_TRUE(std::filesystem::exists(stored)) << stored;
  WriteFile(stored, RandomBytes(bytes.size(), 7));  // same size, other bytes

  const std::filesystem::path dest = dir_.path() / "blob";
  const Status status = store->FetchBlob(blob, dest, {});
  EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status;
  EXPECT_FALSE(std::filesystem::exists(dest));
  StatusOr<std::string> read = store->ReadBlob(blob);
  EXPECT_EQ(read.status().code(), StatusCode::kDataLoss) << read.status();
}

TEST_F(RemoteStoreTest, TamperedManifestIsDataLoss) {
  const Artifact a = Artifact::Make(dir_.path(), 8);
  std::unique_ptr<Store> store =
      OpenOrDie(registry_->Ref("models/tampered-manifest"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(a.Push(*store, "v1").ok());
  // Same length, still valid JSON, different bytes: the registry serves it under the old digest.
  std::string tampered = a.manifest;
  const size_t year = tampered.find("2026-01-01");
  ASSERT_NE(year, std::string::npos);
  tampered.replace(year, 4, "2027");
  WriteFile(registry_->BlobDataPath(a.manifest_digest), tampered);

  for (const std::string& ref : {std::string("v1"), a.manifest_digest.str()}) {
    StatusOr<FetchedManifest> fetched = store->FetchManifest(ref);
    EXPECT_EQ(fetched.status().code(), StatusCode::kDataLoss) << ref << ": " << fetched.status();
  }
}

TEST_F(RemoteStoreTest, ManifestLargerThanTheLimitIsRefused) {
  const Artifact a = Artifact::Make(dir_.path(), 9);
  StoreOptions options = DefaultOptions();
  std::unique_ptr<Store> store = OpenOrDie(registry_->Ref("models/limits"), options);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(a.Push(*store, "v1").ok());
  options.max_manifest_bytes = 64;
  std::unique_ptr<Store> small = OpenOrDie(registry_->Ref("models/limits"), options);
  ASSERT_NE(small, nullptr);
  StatusOr<FetchedManifest> fetched = small->FetchManifest("v1");
  // kFailedPrecondition, as for a layout store.
  EXPECT_EQ(fetched.status().code(), StatusCode::kFailedPrecondition) << fetched.status();
  StatusOr<std::string> config = small->ReadBlob(a.layer1_desc);
  EXPECT_EQ(config.status().code(), StatusCode::kFailedPrecondition) << config.status();
}

TEST_F(RemoteStoreTest, UnknownTagAndBlobAreNotFound) {
  const Artifact a = Artifact::Make(dir_.path(), 10);
  std::unique_ptr<Store> store = OpenOrDie(registry_->Ref("models/unknown"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(a.Push(*store, "v1").ok());

  StatusOr<Descriptor> resolved = store->Resolve("v2");
  EXPECT_EQ(resolved.status().code(), StatusCode::kNotFound) << resolved.status();
  StatusOr<FetchedManifest> fetched = store->FetchManifest("v2");
  EXPECT_EQ(fetched.status().code(), StatusCode::kNotFound) << fetched.status();
  EXPECT_NE(fetched.status().message().find("MANIFEST_UNKNOWN"), std::string::npos)
      << fetched.status();

  const Descriptor missing = DescribeBytes(media_type::kModelFile, "not pushed");
  StatusOr<bool> has = store->HasBlob(missing.digest);
  ASSERT_TRUE(has.ok()) << has.status();
  EXPECT_FALSE(*has);
  const std::filesystem::path dest = dir_.path() / "missing";
  const Status status = store->FetchBlob(missing, dest, {});
  EXPECT_EQ(status.code(), StatusCode::kNotFound) << status;
  EXPECT_FALSE(std::filesystem::exists(dest));
  EXPECT_EQ(store->ReadBlob(missing).status().code(), StatusCode::kNotFound);

  EXPECT_EQ(store->Resolve("not a tag!").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->FetchManifest("sha256:abc").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RemoteStoreTest, PushBlobRefusesSourceThatDoesNotMatchDescriptor) {
  const std::string bytes = RandomBytes(3 << 20, 11);
  const Descriptor blob = DescribeBytes(media_type::kModelFile, bytes);
  std::string other = bytes;
  other[other.size() - 1] ^= 1;  // same size, last byte differs
  const std::filesystem::path file = dir_.path() / "other.bin";
  WriteFile(file, other);

  for (int64_t chunk_size : {int64_t{0}, int64_t{1} << 20}) {
    SCOPED_TRACE("chunk_size " + std::to_string(chunk_size));
    StoreOptions options = DefaultOptions();
    options.chunk_size = chunk_size;
    std::unique_ptr<Store> store = OpenOrDie(registry_->Ref("models/mismatch"), options);
    ASSERT_NE(store, nullptr);

    TrafficMeter meter;
    Status status = store->PushBlob(blob, BlobSource::Bytes(std::string_view(bytes).substr(1)), {});
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status;
    // The size is compared before an upload starts.
    EXPECT_EQ(meter.Delta().posts, 0);

    TrafficMeter upload;

    status = store->PushBlob(blob, BlobSource::File(file), {});
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status;
    EXPECT_NE(status.message().find(blob.digest.str()), std::string::npos) << status;
    EXPECT_EQ(upload.Delta().deletes, 1);  // the aborted upload is cancelled
    // The registry committed neither the announced digest nor the actual bytes.
    EXPECT_FALSE(*store->HasBlob(blob.digest));
    EXPECT_FALSE(*store->HasBlob(Digest::Of(other)));
  }
}

TEST_F(RemoteStoreTest, ReferrersApiIsUnimplementedOnDistribution2) {
  const Artifact a = Artifact::Make(dir_.path(), 12);
  std::unique_ptr<Store> store = OpenOrDie(registry_->Ref("models/referrers"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(a.Push(*store, "v1").ok());
  StatusOr<Index> referrers = store->ReferrersApi(a.manifest_digest);
  EXPECT_EQ(referrers.status().code(), StatusCode::kUnimplemented) << referrers.status();
}

TEST_F(RemoteStoreTest, PlainHttpToNonLoopbackHostIsRefused) {
  // registry.localhost resolves to 127.0.0.1 but is not a loopback name: HTTPS is used, and the
  // plain-HTTP registry's answer to a TLS handshake fails; there is no fallback to HTTP.
  const Reference named = registry_->NamedRef("models/plain");
  std::unique_ptr<Store> store = OpenOrDie(named, DefaultOptions());
  ASSERT_NE(store, nullptr);
  StatusOr<bool> has = store->HasBlob(Digest::Of("x"));
  EXPECT_EQ(has.status().code(), StatusCode::kUnavailable) << has.status();
  EXPECT_NE(has.status().message().find("TLS"), std::string::npos) << has.status();
  EXPECT_NE(has.status().message().find("allow_http"), std::string::npos) << has.status();

  StoreOptions options = DefaultOptions();
  options.allow_http = true;
  std::unique_ptr<Store> allowed = OpenOrDie(named, options);
  ASSERT_NE(allowed, nullptr);
  has = allowed->HasBlob(Digest::Of("x"));
  ASSERT_TRUE(has.ok()) << has.status();
  EXPECT_FALSE(*has);
}

TEST_F(RemoteStoreTest, SkopeoCopiesWhatWePushAndWeReadWhatItPushes) {
  const Artifact a = Artifact::Make(dir_.path(), 13);
  std::unique_ptr<Store> store = OpenOrDie(registry_->Ref("models/interop"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(a.Push(*store, "v1").ok());

  // registry -> OCI layout -> another repository, byte for byte.
  const std::string source = "docker://" + registry_->host() + "/models/interop:v1";
  const std::string layout = "oci:" + (dir_.path() / "layout").string() + ":v1";
  const std::string dest = "docker://" + registry_->host() + "/models/interop-copy:v1";
  const std::filesystem::path log = dir_.path() / "skopeo.log";
  Status status =
      testing::RunCommand({"/usr/bin/skopeo", "--insecure-policy", "copy", "--preserve-digests",
                           "--src-tls-verify=false", source, layout},
                          log);
  ASSERT_TRUE(status.ok()) << status;
  status = testing::RunCommand({"/usr/bin/skopeo", "--insecure-policy", "copy",
                                "--preserve-digests", "--dest-tls-verify=false", layout, dest},
                               log);
  ASSERT_TRUE(status.ok()) << status;
  std::string raw;
  status = testing::RunCommand(
      {"/usr/bin/skopeo", "inspect", "--raw", "--tls-verify=false", source}, log, &raw);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(raw, a.manifest);

  std::unique_ptr<Store> copy = OpenOrDie(registry_->Ref("models/interop-copy"), DefaultOptions());
  ASSERT_NE(copy, nullptr);
  StatusOr<Descriptor> resolved = copy->Resolve("v1");
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->digest, a.manifest_digest);
  const std::filesystem::path out = dir_.path() / "copied-layer";
  ASSERT_TRUE(copy->FetchBlob(a.layer1_desc, out, {}).ok());
  EXPECT_EQ(ReadFile(out), a.layer1);
}

TEST_F(RemoteStoreTest, SkopeoCarriesOurLayoutToTheRegistryAndBackWithTheSameDigests) {
  // Our layout (a packaged model) -> skopeo -> registry -> skopeo -> another layout.
  StatusOr<ModelPackage> package =
      BuildPackage(edgeloop::testing::ExampleModelDir(), PackageOptions{});
  ASSERT_TRUE(package.ok()) << package.status();
  const std::filesystem::path ours = dir_.path() / "ours";
  auto layout = OpenLayoutStore(ours, StoreOptions{}, true);
  ASSERT_TRUE(layout.ok()) << layout.status();
  ASSERT_TRUE(PushPackage(**layout, *package, "v1", {}).ok());

  const std::filesystem::path log = dir_.path() / "skopeo.log";
  const std::string remote = "docker://" + registry_->host() + "/models/from-layout:v1";
  const std::filesystem::path back = dir_.path() / "back";
  ASSERT_TRUE(
      testing::RunCommand({"/usr/bin/skopeo", "--insecure-policy", "copy", "--preserve-digests",
                           "--dest-tls-verify=false", "oci:" + ours.string() + ":v1", remote},
                          log)
          .ok());
  ASSERT_TRUE(
      testing::RunCommand({"/usr/bin/skopeo", "--insecure-policy", "copy", "--preserve-digests",
                           "--src-tls-verify=false", remote, "oci:" + back.string() + ":v1"},
                          log)
          .ok());

  std::unique_ptr<Store> store = OpenOrDie(registry_->Ref("models/from-layout"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Resolve("v1")->digest, package->manifest.digest);
  auto returned = OpenLayoutStore(back, StoreOptions{}, false);
  ASSERT_TRUE(returned.ok()) << returned.status();
  EXPECT_EQ((*returned)->Resolve("v1")->digest, package->manifest.digest);
  auto pulled = PullPackage(**returned, "v1", dir_.path() / "model", "", {});
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(ReadFile(dir_.path() / "model/model.json"),
            ReadFile(edgeloop::testing::ExampleModelDir() / "model.json"));
}

TEST(RemoteStoreOpenTest, RefusesLayoutReferencesAndMissingCaFile) {
  StatusOr<Reference> layout = ParseReference("layout://models/fraud:v1");
  ASSERT_TRUE(layout.ok());
  EXPECT_EQ(OpenRemoteStore(*layout, {}).status().code(), StatusCode::kInvalidArgument);

  StoreOptions options;
  options.ca_file = "/nonexistent/ca.pem";
  StatusOr<Reference> remote = ParseReference("oci://registry.example.com/models/fraud");
  ASSERT_TRUE(remote.ok());
  EXPECT_EQ(OpenRemoteStore(*remote, options).status().code(), StatusCode::kInvalidArgument);
  // Opening does not contact the registry.
  EXPECT_TRUE(OpenRemoteStore(*remote, {}).ok());
}

TEST(RemoteStoreDownTest, RegistryThatIsDownIsUnavailableQuickly) {
  const int port = testing::UnusedLoopbackPort();
  ASSERT_GT(port, 0);
  StatusOr<Reference> ref =
      ParseReference("oci://127.0.0.1:" + std::to_string(port) + "/models/fraud");
  ASSERT_TRUE(ref.ok());
  std::unique_ptr<Store> store = OpenOrDie(*ref, DefaultOptions());
  ASSERT_NE(store, nullptr);
  const auto start = std::chrono::steady_clock::now();
  StatusOr<Descriptor> resolved = store->Resolve("v1");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(resolved.status().code(), StatusCode::kUnavailable) << resolved.status();
  EXPECT_NE(resolved.status().message().find("127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << resolved.status();
  EXPECT_LT(elapsed, std::chrono::seconds(2));
}

// --- Authentication ----------------------------------------------------------------------------

TEST(RemoteStoreAuthTest, BasicAuth) {
  TestRegistryOptions options;
  options.auth = TestRegistryOptions::Auth::kBasic;
  StatusOr<std::unique_ptr<TestRegistry>> registry = TestRegistry::Start(options);
  ASSERT_TRUE(registry.ok()) << registry.status();
  TempDir dir;
  const Artifact a = Artifact::Make(dir.path(), 20);
  const Reference ref = (*registry)->Ref("models/basic");

  std::unique_ptr<Store> anonymous = OpenOrDie(ref, DefaultOptions());
  ASSERT_NE(anonymous, nullptr);
  Status status = a.Push(*anonymous, "v1");
  EXPECT_EQ(status.code(), StatusCode::kUnauthenticated) << status;

  StoreOptions wrong = DefaultOptions();
  wrong.credentials = {options.username, "wrong password"};
  std::unique_ptr<Store> intruder = OpenOrDie(ref, wrong);
  ASSERT_NE(intruder, nullptr);
  status = a.Push(*intruder, "v1");
  EXPECT_EQ(status.code(), StatusCode::kUnauthenticated) << status;
  EXPECT_EQ(status.message().find("wrong password"), std::string::npos) << status;
  StatusOr<Descriptor> resolved = intruder->Resolve("v1");
  EXPECT_EQ(resolved.status().code(), StatusCode::kUnauthenticated) << resolved.status();

  StoreOptions right = DefaultOptions();
  right.credentials = {options.username, options.password};
  std::unique_ptr<Store> owner = OpenOrDie(ref, right);
  ASSERT_NE(owner, nullptr);
  status = a.Push(*owner, "v1");
  ASSERT_TRUE(status.ok()) << status;
  StatusOr<FetchedManifest> fetched = owner->FetchManifest("v1");
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(fetched->bytes, a.manifest);
  const std::filesystem::path out = dir.path() / "layer";
  ASSERT_TRUE(owner->FetchBlob(a.layer1_desc, out, {}).ok());
  EXPECT_EQ(ReadFile(out), a.layer1);
  EXPECT_EQ(*owner->ListTags(), std::vector<std::string>{"v1"});
}

TEST(RemoteStoreAuthTest, BearerTokenAuth) {
  TestRegistryOptions options;
  options.auth = TestRegistryOptions::Auth::kToken;
  StatusOr<std::unique_ptr<TestRegistry>> started = TestRegistry::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  TestRegistry& registry = **started;
  TempDir dir;
  const Artifact a = Artifact::Make(dir.path(), 21);
  const Reference ref = registry.Ref("models/token");

  // Anonymous callers get a token without access, which the registry refuses.
  std::unique_ptr<Store> anonymous = OpenOrDie(ref, DefaultOptions());
  ASSERT_NE(anonymous, nullptr);
  Status status = a.Push(*anonymous, "v1");
  EXPECT_EQ(status.code(), StatusCode::kUnauthenticated) << status;
  EXPECT_EQ(anonymous->Resolve("v1").status().code(), StatusCode::kUnauthenticated);

  StoreOptions wrong = DefaultOptions();
  wrong.credentials = {options.username, "wrong password"};
  std::unique_ptr<Store> intruder = OpenOrDie(ref, wrong);
  ASSERT_NE(intruder, nullptr);
  const int denied_before = registry.TokensDenied();
  status = a.Push(*intruder, "v1");
  EXPECT_EQ(status.code(), StatusCode::kUnauthenticated) << status;
  EXPECT_EQ(status.message().find("wrong password"), std::string::npos) << status;
  EXPECT_GT(registry.TokensDenied(), denied_before);

  StoreOptions right = DefaultOptions();
  right.credentials = {options.username, options.password};
  std::unique_ptr<Store> owner = OpenOrDie(ref, right);
  ASSERT_NE(owner, nullptr);
  const int issued_before = registry.TokensIssued();
  status = a.Push(*owner, "v1");
  ASSERT_TRUE(status.ok()) << status;
  StatusOr<FetchedManifest> fetched = owner->FetchManifest("v1");
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(fetched->bytes, a.manifest);
  const std::filesystem::path out = dir.path() / "layer";
  ASSERT_TRUE(owner->FetchBlob(a.layer1_desc, out, {}).ok());
  EXPECT_EQ(ReadFile(out), a.layer1);
  // One push token, cached, served every request above (it also grants pull).
  EXPECT_EQ(registry.TokensIssued() - issued_before, 1);

  // A reader with credentials gets a pull token.
  std::unique_ptr<Store> reader = OpenOrDie(ref, right);
  ASSERT_NE(reader, nullptr);
  StatusOr<Descriptor> resolved = reader->Resolve("v1");
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->digest, a.manifest_digest);
}

TEST(RemoteStoreTlsTest, HttpsWithCaFileOrInsecureTls) {
  TestRegistryOptions options;
  options.tls = true;
  StatusOr<std::unique_ptr<TestRegistry>> started = TestRegistry::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  TestRegistry& registry = **started;
  TempDir dir;
  const Artifact a = Artifact::Make(dir.path(), 22);
  const Reference ref = registry.NamedRef("models/tls");

  std::unique_ptr<Store> untrusting = OpenOrDie(ref, DefaultOptions());
  ASSERT_NE(untrusting, nullptr);
  StatusOr<bool> has = untrusting->HasBlob(a.config_desc.digest);
  EXPECT_EQ(has.status().code(), StatusCode::kFailedPrecondition) << has.status();

  StoreOptions trusting = DefaultOptions();
  trusting.ca_file = registry.ca_file().string();
  std::unique_ptr<Store> store = OpenOrDie(ref, trusting);
  ASSERT_NE(store, nullptr);
  const Status pushed = a.Push(*store, "v1");
  ASSERT_TRUE(pushed.ok()) << pushed;

  StoreOptions insecure = DefaultOptions();
  insecure.insecure_tls = true;
  std::unique_ptr<Store> reader = OpenOrDie(ref, insecure);
  ASSERT_NE(reader, nullptr);
  StatusOr<FetchedManifest> fetched = reader->FetchManifest("v1");
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(fetched->bytes, a.manifest);
}

// --- Behaviour only a scripted server shows on demand --------------------------------------------

ScriptedResponse Json200(std::string body) {
  return {200, {{"Content-Type", "application/json"}}, std::move(body), false};
}

TEST(RemoteStoreScriptedTest, AnUpToDateCheckIsOneRequest) {
  const std::string manifest = R"({"schemaVersion":2})";
  const std::string digest = Digest::Of(manifest).str();
  StatusOr<std::unique_ptr<ScriptedHttpServer>> server =
      ScriptedHttpServer::Start([&](const ScriptedRequest& r) -> ScriptedResponse {
        if (r.target == "/v2/m/manifests/champion") {
          return {200,
                  {{"Content-Type", media_type::kImageManifest},
                   {"Docker-Content-Digest", digest},
                   {"Content-Length", std::to_string(manifest.size())}},
                  manifest,
                  false};
        }
        return {404, {}, "", false};
      });
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<Store> store =
      OpenOrDie(*ParseReference("oci://" + (*server)->host() + "/m"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  StatusOr<Descriptor> resolved = store->Resolve("champion");
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->digest.str(), digest);
  const std::vector<ScriptedRequest> requests = (*server)->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "HEAD");
}

TEST(RemoteStoreScriptedTest, ServerIgnoringRangeRestartsFromZero) {
  const std::string bytes = RandomBytes(50'000, 30);
  const Descriptor blob = DescribeBytes(media_type::kModelFile, bytes);
  StatusOr<std::unique_ptr<ScriptedHttpServer>> server =
      ScriptedHttpServer::Start([&](const ScriptedRequest& r) -> ScriptedResponse {
        if (r.target == "/v2/") return Json200("{}");
        if (r.target == "/v2/m/blobs/" + blob.digest.str()) return {200, {}, bytes, false};
        return {404, {}, "", false};
      });
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<Store> store =
      OpenOrDie(*ParseReference("oci://" + (*server)->host() + "/m"), DefaultOptions());
  ASSERT_NE(store, nullptr);

  TempDir dir;
  const std::filesystem::path dest = dir.path() / "blob";
  WriteFile(dest, std::string_view(bytes).substr(0, 20'000));
  const Status status = store->FetchBlob(blob, dest, {});
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(ReadFile(dest), bytes);
  const std::vector<ScriptedRequest> requests = (*server)->requests();
  ASSERT_EQ(requests.size(), 1u);  // no ping: straight to the ranged GET
  EXPECT_EQ(requests[0].Header("range"), "bytes=20000-");
}

TEST(RemoteStoreScriptedTest, RetryAfterIsHonouredForIdempotentRequests) {
  std::atomic<int> heads{0};
  StatusOr<std::unique_ptr<ScriptedHttpServer>> server =
      ScriptedHttpServer::Start([&](const ScriptedRequest& r) -> ScriptedResponse {
        if (r.target == "/v2/") return Json200("{}");
        if (r.method == "HEAD") {
          if (++heads <= 2) return {429, {{"Retry-After", "0"}}, "", false};
          return {200, {}, "", false};
        }
        if (r.method == "GET") return {503, {{"Retry-After", "0"}}, "", false};
        return {404, {}, "", false};
      });
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<Store> store =
      OpenOrDie(*ParseReference("oci://" + (*server)->host() + "/m"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  StatusOr<bool> has = store->HasBlob(Digest::Of("x"));
  ASSERT_TRUE(has.ok()) << has.status();
  EXPECT_TRUE(*has);
  EXPECT_EQ(heads.load(), 3);

  // Busy for good: a few retries, then kUnavailable.
  const size_t before = (*server)->requests().size();
  StatusOr<std::vector<std::string>> tags = store->ListTags();
  EXPECT_EQ(tags.status().code(), StatusCode::kUnavailable) << tags.status();
  EXPECT_EQ((*server)->requests().size() - before, 4u);
}

TEST(RemoteStoreScriptedTest, RedirectIsFollowedWithoutSendingCredentialsElsewhere) {
  const std::string bytes = "blob bytes in object storage";
  const Descriptor blob = DescribeBytes(media_type::kModelFile, bytes);
  StatusOr<std::unique_ptr<ScriptedHttpServer>> storage =
      ScriptedHttpServer::Start([&](const ScriptedRequest& r) -> ScriptedResponse {
        if (r.target == "/bucket/object?sig=1") return {200, {}, bytes, false};
        return {404, {}, "", false};
      });
  ASSERT_TRUE(storage.ok()) << storage.status();
  const std::string expected_auth = "Basic ZWRnZWxvb3A6c2VjcmV0";  // edgeloop:secret
  StatusOr<std::unique_ptr<ScriptedHttpServer>> server =
      ScriptedHttpServer::Start([&](const ScriptedRequest& r) -> ScriptedResponse {
        if (r.Header("authorization") != expected_auth) {
          return {401, {{"WWW-Authenticate", "Basic realm=\"test\""}}, "", false};
        }
        if (r.target == "/v2/") return Json200("{}");
        if (r.target == "/v2/m/blobs/" + blob.digest.str()) {
          return {307,
                  {{"Location", "http://" + (*storage)->host() + "/bucket/object?sig=1"}},
                  "",
                  false};
        }
        return {404, {}, "", false};
      });
  ASSERT_TRUE(server.ok()) << server.status();
  StoreOptions options = DefaultOptions();
  options.credentials = {"edgeloop", "secret"};
  std::unique_ptr<Store> store =
      OpenOrDie(*ParseReference("oci://" + (*server)->host() + "/m"), options);
  ASSERT_NE(store, nullptr);
  StatusOr<std::string> read = store->ReadBlob(blob);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, bytes);
  const std::vector<ScriptedRequest> at_storage = (*storage)->requests();
  ASSERT_EQ(at_storage.size(), 1u);
  EXPECT_EQ(at_storage[0].Header("authorization"), "");
}

TEST(RemoteStoreScriptedTest, ChunkedUploadFollowsRelativeLocationsWithChangingState) {
  const std::string bytes = RandomBytes(10'000, 31);
  const Descriptor blob = DescribeBytes(media_type::kModelFile, bytes);
  std::string received;
  int state = 0;
  std::vector<std::string> problems;
  StatusOr<std::unique_ptr<ScriptedHttpServer>> server =
      ScriptedHttpServer::Start([&](const ScriptedRequest& r) -> ScriptedResponse {
        const std::string upload = "/v2/m/blobs/uploads/u1";
        const std::string current = upload + "?_state=s" + std::to_string(state);
        if (r.target == "/v2/") return Json200("{}");
        if (r.method == "HEAD") return {404, {}, "", false};
        if (r.method == "POST" && r.target == "/v2/m/blobs/uploads/") {
          return {202, {{"Location", current}, {"Range", "0-0"}}, "", false};
        }
        if (r.method == "PATCH") {
          if (r.target != current) problems.push_back("PATCH to stale " + r.target);
          const std::string expected_range = std::to_string(received.size()) + "-" +
                                             std::to_string(received.size() + r.body.size() - 1);
          if (r.Header("content-range") != expected_range) {
            problems.push_back("Content-Range " + r.Header("content-range"));
          }
          received += r.body;
          ++state;
          return {202,
                  {{"Location", upload + "?_state=s" + std::to_string(state)},
                   {"Range", "0-" + std::to_string(received.size() - 1)}},
                  "",
                  false};
        }
        if (r.method == "PUT") {
          if (r.target != current + "&digest=" + blob.digest.str()) {
            problems.push_back("PUT to " + r.target);
          }
          if (Digest::Of(received) != blob.digest) problems.push_back("wrong bytes");
          return {201, {{"Docker-Content-Digest", blob.digest.str()}}, "", false};
        }
        return {404, {}, "", false};
      });
  ASSERT_TRUE(server.ok()) << server.status();
  StoreOptions options = DefaultOptions();
  options.chunk_size = 4096;
  std::unique_ptr<Store> store =
      OpenOrDie(*ParseReference("oci://" + (*server)->host() + "/m"), options);
  ASSERT_NE(store, nullptr);
  const Status status = store->PushBlob(blob, BlobSource::Bytes(bytes), {});
  ASSERT_TRUE(status.ok()) << status;
  // The handler ran on the server's thread; requests() synchronises with it.
  EXPECT_EQ((*server)->requests().size(), 6u);  // HEAD, POST, 3 PATCH, PUT
  EXPECT_TRUE(problems.empty()) << problems.front();
  EXPECT_EQ(state, 3);  // 4096 + 4096 + 1808
  EXPECT_EQ(received, bytes);
}

TEST(RemoteStoreScriptedTest, BearerTokenIsRefreshedOnUnauthorized) {
  std::atomic<int> issued{0};
  std::atomic<int> valid{1};  // the token number the registry accepts
  std::string token_host;
  StatusOr<std::unique_ptr<ScriptedHttpServer>> tokens =
      ScriptedHttpServer::Start([&](const ScriptedRequest& r) -> ScriptedResponse {
        if (r.target.rfind("/token?", 0) != 0) return {404, {}, "", false};
        // The newer field name; some services send only this one.
        return Json200(R"({"access_token":"tok-)" + std::to_string(++issued) +
                       R"(","expires_in":300})");
      });
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  const std::string challenge = "Bearer realm=\"http://" + (*tokens)->host() +
                                "/token\",service=\"scripted\",scope=\"repository:m:pull\"";
  StatusOr<std::unique_ptr<ScriptedHttpServer>> server =
      ScriptedHttpServer::Start([&](const ScriptedRequest& r) -> ScriptedResponse {
        if (r.Header("authorization") != "Bearer tok-" + std::to_string(valid.load())) {
          return {401, {{"WWW-Authenticate", challenge}}, "", false};
        }
        return {200, {}, "", false};
      });
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<Store> store =
      OpenOrDie(*ParseReference("oci://" + (*server)->host() + "/m"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  StatusOr<bool> has = store->HasBlob(Digest::Of("x"));
  ASSERT_TRUE(has.ok()) << has.status();
  EXPECT_EQ(issued.load(), 1);
  EXPECT_TRUE(*store->HasBlob(Digest::Of("y")));
  EXPECT_EQ(issued.load(), 1);  // cached

  valid = 2;  // the registry revokes tok-1
  has = store->HasBlob(Digest::Of("z"));
  ASSERT_TRUE(has.ok()) << has.status();
  EXPECT_EQ(issued.load(), 2);
  const std::vector<ScriptedRequest> asked = (*tokens)->requests();
  ASSERT_FALSE(asked.empty());
  EXPECT_NE(asked[0].target.find("service=scripted"), std::string::npos);
  EXPECT_NE(asked[0].target.find("scope=repository:m:pull"), std::string::npos) << asked[0].target;
}

TEST(RemoteStoreScriptedTest, ListTagsFollowsLinkPagination) {
  std::string self;
  StatusOr<std::unique_ptr<ScriptedHttpServer>> server =
      ScriptedHttpServer::Start([&](const ScriptedRequest& r) -> ScriptedResponse {
        if (r.target == "/v2/") return Json200("{}");
        if (r.target == "/v2/m/tags/list?n=100") {
          // A relative link, as Distribution 3 sends.
          ScriptedResponse page = Json200(R"({"name":"m","tags":["v3","v1"]})");
          page.headers.emplace_back("Link", "</v2/m/tags/list?last=v1&n=100>; rel=\"next\"");
          return page;
        }
        if (r.target == "/v2/m/tags/list?last=v1&n=100") {
          // An absolute one.
          ScriptedResponse page = Json200(R"({"name":"m","tags":["v2","latest"]})");
          page.headers.emplace_back(
              "Link", "<http://" + self + "/v2/m/tags/list?last=v2&n=100>; rel=\"next\"");
          return page;
        }
        if (r.target == "/v2/m/tags/list?last=v2&n=100") {
          return Json200(R"({"name":"m","tags":["v0"]})");
        }
        return {404, {}, "", false};
      });
  ASSERT_TRUE(server.ok()) << server.status();
  self = (*server)->host();
  std::unique_ptr<Store> store =
      OpenOrDie(*ParseReference("oci://" + (*server)->host() + "/m"), DefaultOptions());
  ASSERT_NE(store, nullptr);
  StatusOr<std::vector<std::string>> tags = store->ListTags();
  ASSERT_TRUE(tags.ok()) << tags.status();
  EXPECT_EQ(*tags, (std::vector<std::string>{"latest", "v0", "v1", "v2", "v3"}));
  EXPECT_EQ((*server)->requests().size(), 3u);  // three pages
}

TEST(RemoteStoreScriptedTest, StalledServerTimesOut) {
  StatusOr<std::unique_ptr<ScriptedHttpServer>> server =
      ScriptedHttpServer::Start([](const ScriptedRequest&) {
        ScriptedResponse response;
        response.stall = true;
        return response;
      });
  ASSERT_TRUE(server.ok()) << server.status();
  StoreOptions options = DefaultOptions();
  options.timeout_ms = 1000;
  std::unique_ptr<Store> store =
      OpenOrDie(*ParseReference("oci://" + (*server)->host() + "/m"), options);
  ASSERT_NE(store, nullptr);
  const auto start = std::chrono::steady_clock::now();
  StatusOr<Descriptor> resolved = store->Resolve("v1");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(resolved.status().code(), StatusCode::kDeadlineExceeded) << resolved.status();
  EXPECT_LT(elapsed, std::chrono::seconds(5));
}

}  // namespace
}  // namespace edgeloop::registry
