#include "registry/signing.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "common/test_util.h"
#include "registry/layout_store.h"
#include "registry/referrers.h"

namespace edgeloop::registry {
namespace {

namespace fs = std::filesystem;

class SigningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(*OpenLayoutStore(dir_.path() / "layout", StoreOptions{}, true));
    key_ = *GenerateSigningKey();
    other_key_ = *GenerateSigningKey();
    subject_ = PushModel("v1", "model one");
    clock_.SetWallTime(std::chrono::sys_days(std::chrono::year{2026} / 11 / 27));
    options_.repository = "models/fraud";
    options_.clock = &clock_;
  }

  Descriptor PushModel(const std::string& tag, const std::string& content) {
    Manifest manifest;
    manifest.artifact_type = media_type::kModelArtifact;
    manifest.config = DescribeBytes(media_type::kEmpty, kEmptyJson);
    manifest.layers.push_back(DescribeBytes(media_type::kModelFile, content));
    EXPECT_TRUE(store_->PushBlob(manifest.config, BlobSource::Bytes(kEmptyJson), nullptr).ok());
    EXPECT_TRUE(store_->PushBlob(manifest.layers[0], BlobSource::Bytes(content), nullptr).ok());
    const std::string bytes = SerializeManifest(manifest);
    EXPECT_TRUE(store_->PushManifest(tag, bytes, media_type::kImageManifest).ok());
    return DescribeBytes(media_type::kImageManifest, bytes);
  }

  VerifyOptions Verify(std::vector<PublicKey> trusted) {
    VerifyOptions options;
    options.repository = "models/fraud";
    options.trusted = std::move(trusted);
    options.now = clock_.WallNow();
    return options;
  }

  TrustFailure Check(const Descriptor& subject, const VerifyOptions& options) {
    TrustFailure failure = TrustFailure::kNone;
    auto verified = VerifyArtifact(*store_, subject, options, &failure);
    if (verified.ok()) {
      EXPECT_EQ(failure, TrustFailure::kNone);
    }
    return failure;
  }

  edgeloop::testing::TempDir dir_;
  std::unique_ptr<Store> store_;
  SigningKey key_;
  SigningKey other_key_;
  Descriptor subject_;
  FakeClock clock_;
  SignOptions options_;
};

TEST_F(SigningTest, KeysRoundTripThroughFiles) {
  const fs::path prefix = dir_.path() / "release";
  ASSERT_TRUE(WriteKeyFiles(key_, prefix).ok());
  struct stat info {};
  ASSERT_EQ(::stat((prefix.string() + ".key").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  auto secret = ReadSigningKey(prefix.string() + ".key");
  auto pub = ReadPublicKey(prefix.string() + ".pub");
  ASSERT_TRUE(secret.ok() && pub.ok());
  EXPECT_EQ(secret->public_key.key_id, key_.public_key.key_id);
  EXPECT_EQ(pub->bytes, key_.public_key.bytes);
  EXPECT_EQ(WriteKeyFiles(key_, prefix).code(), StatusCode::kAlreadyExists);
  std::ofstream(dir_.path() / "junk.pub") << "{\"algorithm\":\"rsa\"}";
  EXPECT_FALSE(ReadPublicKey(dir_.path() / "junk.pub").ok());
}

TEST_F(SigningTest, SignedModelsVerify) {
  ASSERT_TRUE(SignArtifact(*store_, subject_, key_, options_).ok());
  TrustFailure failure;
  auto verified = VerifyArtifact(*store_, subject_, Verify({key_.public_key}), &failure);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->claims.repository, "models/fraud");
  EXPECT_EQ(verified->claims.manifest, subject_.digest);
  EXPECT_EQ(verified->claims.counter, 1795737600);  // 2026-11-27 in seconds
  EXPECT_EQ(verified->claims.expires, "2027-11-27T00:00:00Z");
}

TEST_F(SigningTest, EveryRefusalHasItsReason) {
  EXPECT_EQ(Check(subject_, Verify({key_.public_key})), TrustFailure::kUnsigned);

  ASSERT_TRUE(SignArtifact(*store_, subject_, other_key_, options_).ok());
  EXPECT_EQ(Check(subject_, Verify({key_.public_key})), TrustFailure::kUntrustedKey);

  SignOptions wrong_repo = options_;
  wrong_repo.repository = "models/other";
  ASSERT_TRUE(SignArtifact(*store_, subject_, key_, wrong_repo).ok());
  EXPECT_EQ(Check(subject_, Verify({key_.public_key})), TrustFailure::kWrongSubject);

  SignOptions short_lived = options_;
  short_lived.validity = std::chrono::hours(1);
  ASSERT_TRUE(SignArtifact(*store_, subject_, key_, short_lived).ok());
  VerifyOptions later = Verify({key_.public_key});
  later.now += std::chrono::hours(2);
  EXPECT_EQ(Check(subject_, later), TrustFailure::kExpired);

  ASSERT_TRUE(SignArtifact(*store_, subject_, key_, options_).ok());
  VerifyOptions after_newer = Verify({key_.public_key});
  after_newer.min_counter = 1795737600 + 1;
  EXPECT_EQ(Check(subject_, after_newer), TrustFailure::kRollback);
  EXPECT_EQ(Check(subject_, Verify({key_.public_key})), TrustFailure::kNone);
}

TEST_F(SigningTest, TamperedClaimsDoNotVerify) {
  // Re-sign the claims of a valid signature for another model, keeping the old signature.
  auto signature = SignArtifact(*store_, subject_, key_, options_);
  ASSERT_TRUE(signature.ok());
  const Descriptor target = PushModel("v2", "model two");
  auto fetched = store_->FetchManifest(signature->digest.str());
  Manifest forged = *ParseManifest(fetched->bytes);
  std::string claims = *store_->ReadBlob(forged.layers[0]);
  const size_t at = claims.find(subject_.digest.str());
  claims.replace(at, subject_.digest.str().size(), target.digest.str());
  forged.layers[0] = DescribeBytes(media_type::kSignaturePayload, claims);
  ASSERT_TRUE(store_->PushBlob(forged.layers[0], BlobSource::Bytes(claims), nullptr).ok());
  Descriptor target_subject = target;
  forged.subject = target_subject;
  const std::string bytes = SerializeManifest(forged);
  Descriptor forged_descriptor = DescribeBytes(media_type::kImageManifest, bytes);
  forged_descriptor.artifact_type = media_type::kSignatureArtifact;
  ASSERT_TRUE(
      store_->PushManifest(forged_descriptor.digest.str(), bytes, media_type::kImageManifest).ok());
  ASSERT_TRUE(AddReferrer(*store_, target.digest, forged_descriptor).ok());
  EXPECT_EQ(Check(target, Verify({key_.public_key})), TrustFailure::kBadSignature);
}

TEST_F(SigningTest, PromotionMovesTheAliasAndKeepsHistory) {
  const Descriptor second = PushModel("v2", "model two");
  auto first = Promote(*store_, "v1", "champion", "ana@site", "first release", key_, options_);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->from, "");
  EXPECT_EQ(store_->Resolve("champion")->digest, subject_.digest);
  clock_.Advance(std::chrono::hours(24));
  auto next = Promote(*store_, "v2", "champion", "bo@site", "better AUC", key_, options_);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->from, subject_.digest.str());
  EXPECT_EQ(store_->Resolve("champion")->digest, second.digest);
  clock_.Advance(std::chrono::hours(24));
  // Back to v1: a fresh signature with a higher counter keeps edges from calling it a rollback.
  auto back = Promote(*store_, "v1", "champion", "ana@site", "v2 drifted", key_, options_);
  ASSERT_TRUE(back.ok());
  VerifyOptions edge = Verify({key_.public_key});
  edge.now = clock_.WallNow();
  edge.min_counter = next->counter;
  EXPECT_EQ(Check(subject_, edge), TrustFailure::kNone);

  auto history = ReadHistory(*store_, "champion", {key_.public_key});
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->size(), 3u);
  EXPECT_EQ((*history)[1].reason, "better AUC");
  EXPECT_EQ((*history)[1].by, "bo@site");
  EXPECT_EQ((*history)[2].to, subject_.digest);
  EXPECT_TRUE(ReadHistory(*store_, "champion", {other_key_.public_key})->empty());
  EXPECT_FALSE(Promote(*store_, "v1", "sha256-abc", "x", "y", key_, options_).ok());
}

}  // namespace
}  // namespace edgeloop::registry
