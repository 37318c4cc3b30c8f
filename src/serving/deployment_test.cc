#include "serving/deployment.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/test_util.h"
#include "registry/layout_store.h"
#include "registry/package.h"
#include "registry/referrers.h"
#include "serving/oip_handler.h"
#include "serving/rollout.h"

namespace edgeloop::serving {
namespace {

namespace fs = std::filesystem;
namespace reg = ::edgeloop::registry;
using edgeloop::testing::ExampleModelDir;
using edgeloop::testing::TempDir;
using Json = nlohmann::json;

constexpr char kModel[] = "mf";

// Passes every call through to a real store, recording the reads, and fails them all while
// `down` is set (a registry that cannot be reached).
class RecordingStore final : public reg::Store {
 public:
  RecordingStore(std::unique_ptr<reg::Store> inner, std::vector<std::string>* log, const bool* down)
      : inner_(std::move(inner)), log_(log), down_(down) {}

  std::string Describe() const override { return inner_->Describe(); }
  StatusOr<bool> HasBlob(const reg::Digest& digest) override {
    RETURN_IF_ERROR(Record("HasBlob " + digest.str()));
    return inner_->HasBlob(digest);
  }
  Status FetchBlob(const reg::Descriptor& blob, const fs::path& dest,
                   const reg::ProgressFn& progress) override {
    RETURN_IF_ERROR(Record("FetchBlob " + blob.digest.str()));
    return inner_->FetchBlob(blob, dest, progress);
  }
  StatusOr<std::string> ReadBlob(const reg::Descriptor& blob) override {
    RETURN_IF_ERROR(Record("ReadBlob " + blob.media_type));
    return inner_->ReadBlob(blob);
  }
  Status PushBlob(const reg::Descriptor& blob, const reg::BlobSource& source,
                  const reg::ProgressFn& progress) override {
    RETURN_IF_ERROR(Record("PushBlob"));
    return inner_->PushBlob(blob, source, progress);
  }
  StatusOr<reg::Descriptor> Resolve(std::string_view tag_or_digest) override {
    RETURN_IF_ERROR(Record("Resolve " + std::string(tag_or_digest)));
    return inner_->Resolve(tag_or_digest);
  }
  StatusOr<reg::FetchedManifest> FetchManifest(std::string_view tag_or_digest) override {
    RETURN_IF_ERROR(Record("FetchManifest " + std::string(tag_or_digest)));
    return inner_->FetchManifest(tag_or_digest);
  }
  Status PushManifest(std::string_view tag_or_digest, std::string_view bytes,
                      std::string_view media_type) override {
    RETURN_IF_ERROR(Record("PushManifest"));
    return inner_->PushManifest(tag_or_digest, bytes, media_type);
  }
  StatusOr<std::vector<std::string>> ListTags() override {
    RETURN_IF_ERROR(Record("ListTags"));
    return inner_->ListTags();
  }
  StatusOr<reg::Index> ReferrersApi(const reg::Digest& subject) override {
    RETURN_IF_ERROR(Record("ReferrersApi"));
    return inner_->ReferrersApi(subject);
  }

 private:
  Status Record(std::string what) {
    if (*down_) return UnavailableError("connection refused (the test took the store down)");
    log_->push_back(std::move(what));
    return Status::Ok();
  }

  std::unique_ptr<reg::Store> inner_;
  std::vector<std::string>* log_;
  const bool* down_;
};

class DeploymentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_.SetWallTime(std::chrono::sys_days(std::chrono::year{2026} / 11 / 27));
    layout_ = dir_.path() / "registry" / kModel;  // a layout's repository is its folder's name
    store_ = std::move(*reg::OpenLayoutStore(layout_, {}, true));
    key_ = *reg::GenerateSigningKey();
    other_key_ = *reg::GenerateSigningKey();
    sign_.repository = kModel;
    sign_.clock = &clock_;
    cache_ = dir_.path() / "cache";
    repository_ = cache_ / "repository";
  }
  void TearDown() override { StopServer(); }

  // The example model packaged as `version` (its card differs, so its digest does), pushed
  // under `tag`. `notes`, when given, adds a file of its own (a blob no other version has);
  // `model_json` replaces the model file.
  reg::Descriptor Push(const std::string& tag, int version, const std::string& notes = "",
                       const std::string& model_json = "") {
    const fs::path dir = dir_.path() / "src" / std::to_string(version) / tag;
    fs::create_directories(dir);
    fs::copy(ExampleModelDir(), dir, fs::copy_options::recursive);
    if (!notes.empty()) std::ofstream(dir / "notes.txt") << notes;
    if (!model_json.empty()) std::ofstream(dir / "model.json", std::ios::trunc) << model_json;
    reg::PackageOptions options;
    options.name = "machine-failure";
    options.version = std::to_string(version);
    auto package = reg::BuildPackage(dir, options);
    EXPECT_TRUE(package.ok()) << package.status();
    EXPECT_TRUE(reg::PushPackage(*store_, *package, tag, nullptr).ok());
    if (!notes.empty()) {
      for (const reg::PackagedFile& file : package->files) {
        if (file.source.filename() == "notes.txt") notes_blobs_[version] = file.descriptor;
      }
    }
    return package->manifest;
  }

  // `edgeloop model promote`: a fresh signature (counter = the fake time in seconds), then the
  // alias moves. The clock moves on so that the next promotion has a higher counter.
  reg::PromotionRecord PromoteToChampion(const std::string& target) {
    auto record = reg::Promote(*store_, target, "champion", "test@site", "better", key_, sign_);
    EXPECT_TRUE(record.ok()) << record.status();
    clock_.Advance(std::chrono::hours(1));
    return *record;
  }

  // Moves a tag without signing anything (what an attacker or a careless `tag` does).
  void MoveTag(const reg::Descriptor& manifest, const std::string& tag) {
    auto fetched = store_->FetchManifest(manifest.digest.str());
    ASSERT_TRUE(fetched.ok());
    ASSERT_TRUE(store_->PushManifest(tag, fetched->bytes, fetched->media_type).ok());
  }

  DeploymentConfig Config() {
    DeploymentConfig config;
    config.cache_dir = cache_;
    config.trusted_keys = {key_.public_key};
    DeployedModel model;
    model.name = kModel;
    model.ref = *reg::ParseReference("layout://" + layout_.string() + ":champion");
    model.repository = kModel;
    model.keep_versions = keep_versions_;
    model.rollout = rollout_;
    config.models.push_back(model);
    return config;
  }

  // What `edgeloop serve` does at start: a manager, the deployer's recovery, the first load.
  void StartServer() {
    metrics_ = std::make_unique<metrics::Registry>();
    fs::create_directories(repository_);
    ModelManagerOptions manager_options;
    manager_options.repository = repository_;
    manager_options.registry = metrics_.get();
    manager_options.clock = &clock_;
    manager_options.runner = &runner_;
    manager_ = std::move(*ModelManager::Create(manager_options));
    DeployerOptions options;
    options.config = Config();
    options.repository = repository_;
    options.manager = manager_.get();
    options.metrics = metrics_.get();
    options.clock = &clock_;
    options.open_store =
        [this](const reg::Reference& ref,
               const reg::StoreOptions& store_options) -> StatusOr<std::unique_ptr<reg::Store>> {
      if (store_down_) return UnavailableError("the store is down");
      ASSIGN_OR_RETURN(std::unique_ptr<reg::Store> inner, reg::OpenStore(ref, store_options));
      return std::unique_ptr<reg::Store>(
          std::make_unique<RecordingStore>(std::move(inner), &calls_, &store_down_));
    };
    auto deployer = Deployer::Create(std::move(options));
    ASSERT_TRUE(deployer.ok()) << deployer.status();
    deployer_ = std::move(*deployer);
    manager_->Reconcile(true);
  }
  void StopServer() {
    deployer_.reset();
    manager_.reset();
  }
  void Check() {
    calls_.clear();
    deployer_->CheckOnce();
  }

  int64_t Served() const {
    auto found = manager_->Find(kModel, std::nullopt);
    return found.ok() ? (*found)->config.version : -1;
  }
  ModelDeploymentReport Report() const { return deployer_->Report().at(0); }
  std::vector<std::string> Folders() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(repository_ / kModel)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  int Calls(const std::string& prefix) const {
    return static_cast<int>(std::count_if(calls_.begin(), calls_.end(), [&](const std::string& c) {
      return c.rfind(prefix, 0) == 0;
    }));
  }
  double Metric(const std::string& series) const {
    const std::string text = metrics_->Render();
    const size_t at = text.find("\n" + series + " ");
    if (at == std::string::npos) return 0;
    return std::stod(text.substr(at + series.size() + 2));
  }
  double Refusals(const std::string& reason) const {
    return Metric(std::string("edgeloop_deploy_refusals_total{model=\"") + kModel + "\",reason=\"" +
                  reason + "\"}");
  }
  fs::path CachedBlob(const reg::Digest& digest) const {
    return cache_ / "blobs" / "sha256" / std::string(digest.hex());
  }

  // The reference points at something that must be refused for `reason`: the check refuses
  // it, `serving` keeps serving, nothing new appears in the repository, and nothing of the
  // model was downloaded unless the signature verified (`downloads`). A second check refuses
  // it again without counting it again.
  void ExpectRefused(const std::string& reason, int64_t serving, bool downloads = false) {
    const std::vector<std::string> folders = Folders();
    Check();
    const ModelDeploymentReport report = Report();
    EXPECT_EQ(report.last_result, CheckResult::kRefused);
    ASSERT_TRUE(report.last_refusal.has_value());
    EXPECT_EQ(report.last_refusal->reason, reason) << report.last_refusal->message;
    EXPECT_FALSE(report.last_refusal->message.empty());
    EXPECT_EQ(report.local_version, serving);
    EXPECT_EQ(Served(), serving);
    EXPECT_EQ(Folders(), folders);
    if (!downloads) {
      EXPECT_EQ(Calls("FetchBlob"), 0);
      EXPECT_EQ(Calls("ReadBlob application/vnd.edgeloop.model.card"), 0);
    }
    EXPECT_EQ(Refusals(reason), 1);
    Check();
    EXPECT_EQ(Report().last_result, CheckResult::kRefused);
    EXPECT_EQ(Refusals(reason), 1);
    EXPECT_EQ(Served(), serving);
  }

  TempDir dir_{"edgeloop_deploy"};
  FakeClock clock_;
  ManualTaskRunner runner_{&clock_};
  fs::path layout_;
  fs::path cache_;
  fs::path repository_;
  std::unique_ptr<reg::Store> store_;
  reg::SigningKey key_;
  reg::SigningKey other_key_;
  reg::SignOptions sign_;
  std::map<int, reg::Descriptor> notes_blobs_;
  int keep_versions_ = 2;
  RolloutPolicy rollout_;  // kImmediate unless a test sets it
  bool store_down_ = false;
  std::vector<std::string> calls_;
  std::unique_ptr<metrics::Registry> metrics_;
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<Deployer> deployer_;
};

TEST_F(DeploymentTest, FirstCheckDeploysTheVerifiedChampion) {
  const reg::Descriptor v1 = Push("v1", 1);
  const reg::PromotionRecord promoted = PromoteToChampion("v1");
  StartServer();
  EXPECT_EQ(Served(), -1);
  EXPECT_EQ(manager_->Readiness().code(), StatusCode::kUnavailable);  // an empty model folder
  EXPECT_EQ(Report().last_result, CheckResult::kNone);

  Check();
  EXPECT_EQ(Served(), 1);
  EXPECT_TRUE(manager_->Readiness().ok());
  const ModelDeploymentReport report = Report();
  EXPECT_EQ(report.last_result, CheckResult::kUpdated);
  EXPECT_EQ(report.digest, v1.digest.str());
  EXPECT_EQ(report.local_version, 1);
  EXPECT_EQ(report.counter, promoted.counter);
  EXPECT_EQ(report.counter_floor, promoted.counter);
  EXPECT_FALSE(report.last_refusal.has_value());
  EXPECT_EQ(report.last_check, "2026-11-27T01:00:00.000Z");
  EXPECT_EQ(Folders(), std::vector<std::string>{"1"});
  // The files come from the content-addressed cache, hard-linked.
  struct stat info {};
  ASSERT_EQ(::stat((repository_ / kModel / "1" / "model.json").c_str(), &info), 0);
  EXPECT_EQ(info.st_nlink, 2u);
  EXPECT_EQ(Metric("edgeloop_deploy_checks_total{model=\"mf\",result=\"updated\"}"), 1);
  EXPECT_EQ(Metric("edgeloop_deploy_local_version{model=\"mf\"}"), 1);
  std::ifstream state(cache_ / "state.json");
  const Json json = Json::parse(state);
  EXPECT_EQ(json["models"]["mf"]["versions"][0]["digest"], v1.digest.str());
  EXPECT_EQ(json["models"]["mf"]["counter_floor"], promoted.counter);
}

TEST_F(DeploymentTest, NothingOfTheModelIsReadBeforeItsSignatureVerifies) {
  Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  ASSERT_EQ(Served(), 1);
  size_t last_signature_read = 0;
  size_t first_model_read = calls_.size();
  for (size_t i = 0; i < calls_.size(); ++i) {
    if (calls_[i] == "ReadBlob application/vnd.edgeloop.signature.payload.v1+json") {
      last_signature_read = i;
    }
    const bool model_read = calls_[i].rfind("FetchBlob", 0) == 0 ||
                            calls_[i] == "ReadBlob application/vnd.edgeloop.model.card.v1+json";
    if (model_read) first_model_read = std::min(first_model_read, i);
  }
  ASSERT_GT(last_signature_read, 0u);
  EXPECT_LT(last_signature_read, first_model_read);
  EXPECT_EQ(Calls("FetchBlob"), 2);  // model.json and model.yaml
}

TEST_F(DeploymentTest, AnUnchangedReferenceCostsOneResolveAndNoDownload) {
  Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  Check();
  EXPECT_EQ(calls_, std::vector<std::string>{"Resolve champion"});
  EXPECT_EQ(Report().last_result, CheckResult::kUnchanged);
  EXPECT_EQ(Report().checks, 2);
  EXPECT_EQ(Metric("edgeloop_deploy_checks_total{model=\"mf\",result=\"unchanged\"}"), 1);
}

TEST_F(DeploymentTest, APromotionIsPickedUpDownloadingOnlyTheMissingBlobs) {
  Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  const reg::Descriptor v2 = Push("v2", 2, "trained on November data");
  const reg::PromotionRecord promoted = PromoteToChampion("v2");
  Check();
  EXPECT_EQ(Served(), 2);
  EXPECT_EQ(Report().digest, v2.digest.str());
  EXPECT_EQ(Report().counter_floor, promoted.counter);
  // model.json and model.yaml are the same as version 1's: only notes.txt is downloaded.
  EXPECT_EQ(calls_.front(), "Resolve champion");
  EXPECT_EQ(Calls("FetchBlob"), 1);
  EXPECT_EQ(Calls("FetchBlob " + notes_blobs_[2].digest.str()), 1);
  EXPECT_EQ(Folders(), (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(manager_->ReadyVersions(kModel).size(), 1u);
}

TEST_F(DeploymentTest, UnsignedModelIsRefused) {
  Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  Push("champion", 2);  // pushed straight onto the alias, never signed
  ExpectRefused("unsigned", 1);
}

TEST_F(DeploymentTest, ModelSignedByAnUntrustedKeyIsRefused) {
  Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  const reg::Descriptor v2 = Push("v2", 2);
  ASSERT_TRUE(reg::SignArtifact(*store_, v2, other_key_, sign_).ok());
  MoveTag(v2, "champion");
  ExpectRefused("untrusted_key", 1);
}

TEST_F(DeploymentTest, TamperedClaimsAreRefused) {
  const reg::Descriptor v1 = Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  // Version 1's genuine signature, with its claims edited to name version 2.
  const reg::Descriptor v2 = Push("v2", 2);
  auto signatures = reg::ListReferrers(*store_, v1.digest, reg::media_type::kSignatureArtifact);
  ASSERT_TRUE(signatures.ok() && !signatures->empty());
  auto fetched = store_->FetchManifest(signatures->front().digest.str());
  ASSERT_TRUE(fetched.ok());
  reg::Manifest forged = *reg::ParseManifest(fetched->bytes);
  std::string claims = *store_->ReadBlob(forged.layers[0]);
  claims.replace(claims.find(v1.digest.str()), v1.digest.str().size(), v2.digest.str());
  forged.layers[0] = reg::DescribeBytes(reg::media_type::kSignaturePayload, claims);
  ASSERT_TRUE(store_->PushBlob(forged.layers[0], reg::BlobSource::Bytes(claims), nullptr).ok());
  reg::Descriptor subject = v2;
  subject.annotations.clear();
  subject.artifact_type.clear();
  forged.subject = subject;
  const std::string bytes = reg::SerializeManifest(forged);
  reg::Descriptor forged_descriptor = reg::DescribeBytes(reg::media_type::kImageManifest, bytes);
  forged_descriptor.artifact_type = reg::media_type::kSignatureArtifact;
  ASSERT_TRUE(
      store_->PushManifest(forged_descriptor.digest.str(), bytes, reg::media_type::kImageManifest)
          .ok());
  ASSERT_TRUE(reg::AddReferrer(*store_, v2.digest, forged_descriptor).ok());
  MoveTag(v2, "champion");
  ExpectRefused("bad_signature", 1);
}

TEST_F(DeploymentTest, ModelSignedForAnotherRepositoryIsRefused) {
  Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  const reg::Descriptor v2 = Push("v2", 2);
  reg::SignOptions other_repository = sign_;
  other_repository.repository = "other";
  ASSERT_TRUE(reg::SignArtifact(*store_, v2, key_, other_repository).ok());
  MoveTag(v2, "champion");
  ExpectRefused("wrong_subject", 1);
}

TEST_F(DeploymentTest, ExpiredSignatureIsRefused) {
  Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  const reg::Descriptor v2 = Push("v2", 2);
  reg::SignOptions short_lived = sign_;
  short_lived.validity = std::chrono::hours(1);
  ASSERT_TRUE(reg::SignArtifact(*store_, v2, key_, short_lived).ok());
  MoveTag(v2, "champion");
  clock_.Advance(std::chrono::hours(2));
  ExpectRefused("expired", 1);
}

TEST_F(DeploymentTest, MovingTheAliasBackWithoutANewSignatureIsARollback) {
  const reg::Descriptor v1 = Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  Push("v2", 2);
  PromoteToChampion("v2");
  Check();
  ASSERT_EQ(Served(), 2);
  MoveTag(v1, "champion");  // v1's signature has the older counter
  ExpectRefused("rollback", 2);
}

TEST_F(DeploymentTest, TamperedBlobIsRefusedAndLeavesNothingBehind) {
  Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  Push("v2", 2, "trained on November data");
  PromoteToChampion("v2");
  // The registry now serves other bytes (of the same size) for version 2's notes.txt.
  const reg::Descriptor notes = notes_blobs_[2];
  const fs::path blob = layout_ / "blobs" / "sha256" / std::string(notes.digest.hex());
  fs::permissions(blob, fs::perms::owner_write, fs::perm_options::add);
  std::ofstream(blob, std::ios::trunc) << std::string(static_cast<size_t>(notes.size), 'x');
  ExpectRefused("blob_mismatch", 1, /*downloads=*/true);
  EXPECT_FALSE(fs::exists(CachedBlob(notes.digest)));
  EXPECT_FALSE(fs::exists(CachedBlob(notes.digest).string() + ".partial"));
  EXPECT_EQ(Report().local_versions.size(), 1u);
}

TEST_F(DeploymentTest, SignedModelThatDoesNotLoadIsRefusedAndRemoved) {
  Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  Push("v2", 2, "", R"({"not": "an xgboost model"})");
  PromoteToChampion("v2");
  ExpectRefused("load_failed", 1, /*downloads=*/true);
  // Not tried again while the alias stays there: one Resolve, nothing else.
  EXPECT_EQ(calls_, std::vector<std::string>{"Resolve champion"});
  EXPECT_EQ(Report().local_versions.size(), 1u);
  // The next good promotion is taken; numbers only grow.
  Push("v3", 3);
  PromoteToChampion("v3");
  Check();
  EXPECT_EQ(Served(), 3);
  EXPECT_EQ(Report().local_version, 3);
}

TEST_F(DeploymentTest, UnreachableStoreIsReportedAndRetried) {
  Push("v1", 1);
  PromoteToChampion("v1");
  store_down_ = true;
  StartServer();
  Check();
  EXPECT_EQ(Report().last_result, CheckResult::kUnreachable);
  EXPECT_NE(Report().last_error.find("down"), std::string::npos);
  EXPECT_EQ(Report().last_contact, "");
  EXPECT_EQ(Metric("edgeloop_deploy_checks_total{model=\"mf\",result=\"unreachable\"}"), 1);
  EXPECT_EQ(Served(), -1);
  store_down_ = false;
  Check();
  EXPECT_EQ(Report().last_result, CheckResult::kUpdated);
  EXPECT_EQ(Report().last_error, "");
  EXPECT_EQ(Served(), 1);
  // Down again after the store was opened: still served, reported.
  store_down_ = true;
  Check();
  EXPECT_EQ(Report().last_result, CheckResult::kUnreachable);
  EXPECT_EQ(Served(), 1);
}

TEST_F(DeploymentTest, RestartServesFromTheCacheWithTheStoreGone) {
  const reg::Descriptor v1 = Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  StopServer();
  store_.reset();
  fs::remove_all(layout_);

  StartServer();
  EXPECT_EQ(Served(), 1);  // before any check
  EXPECT_TRUE(manager_->Readiness().ok());
  EXPECT_EQ(Report().digest, v1.digest.str());
  EXPECT_EQ(Report().local_version, 1);
  Check();
  EXPECT_EQ(Report().last_result, CheckResult::kUnreachable);
  EXPECT_EQ(Served(), 1);
}

TEST_F(DeploymentTest, TheRollbackFloorSurvivesARestart) {
  const reg::Descriptor v1 = Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  Push("v2", 2);
  const reg::PromotionRecord second = PromoteToChampion("v2");
  Check();
  StopServer();

  StartServer();
  EXPECT_EQ(Served(), 2);
  EXPECT_EQ(Report().counter_floor, second.counter);
  MoveTag(v1, "champion");
  ExpectRefused("rollback", 2);
}

TEST_F(DeploymentTest, PromotingAnOlderModelAgainMakesANewLocalVersion) {
  const reg::Descriptor v1 = Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  Push("v2", 2);
  PromoteToChampion("v2");
  Check();
  PromoteToChampion("v1");  // signed afresh with a higher counter: not a rollback
  Check();
  EXPECT_EQ(Served(), 3);
  EXPECT_EQ(Report().digest, v1.digest.str());
  EXPECT_EQ(Calls("FetchBlob"), 0);  // every blob is in the cache
  EXPECT_EQ(Folders(), (std::vector<std::string>{"2", "3"}));
}

TEST_F(DeploymentTest, OldVersionsAndTheirBlobsAreCollected) {
  keep_versions_ = 2;
  Push("v1", 1, "one");
  PromoteToChampion("v1");
  StartServer();
  Check();
  Push("v2", 2, "two");
  PromoteToChampion("v2");
  Check();
  EXPECT_EQ(Folders(), (std::vector<std::string>{"1", "2"}));
  Push("v3", 3, "three");
  PromoteToChampion("v3");
  Check();
  EXPECT_EQ(Served(), 3);
  EXPECT_EQ(Folders(), (std::vector<std::string>{"2", "3"}));
  ASSERT_EQ(Report().local_versions.size(), 2u);
  EXPECT_EQ(Report().local_versions[0].version, 2);
  EXPECT_FALSE(fs::exists(CachedBlob(notes_blobs_[1].digest)));
  EXPECT_TRUE(fs::exists(CachedBlob(notes_blobs_[2].digest)));
  EXPECT_TRUE(fs::exists(CachedBlob(notes_blobs_[3].digest)));

  // keep_versions: 1 keeps only what serves.
  StopServer();
  keep_versions_ = 1;
  StartServer();
  Push("v4", 4, "four");
  PromoteToChampion("v4");
  Check();
  EXPECT_EQ(Served(), 4);
  EXPECT_EQ(Folders(), std::vector<std::string>{"4"});
}

TEST_F(DeploymentTest, LeftoversOfACrashAreRemovedBeforeAnythingLoads) {
  Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  StopServer();
  // A crash during a pull, one after the rename but before the load was recorded, and a
  // folder someone copied in by hand: none of them is known to have verified and loaded.
  const fs::path dir = repository_ / kModel;
  fs::create_directories(dir / ".staging-2-123-456");
  fs::copy(ExampleModelDir(), dir / "3", fs::copy_options::recursive);
  fs::copy(ExampleModelDir(), dir / "7", fs::copy_options::recursive);
  Json state = Json::parse(std::ifstream(cache_ / "state.json"));
  Json pending = state["models"]["mf"]["versions"][0];
  pending["version"] = 3;
  pending["loaded"] = false;
  state["models"]["mf"]["versions"].push_back(pending);
  state["models"]["mf"]["next_version"] = 4;
  std::ofstream(cache_ / "state.json", std::ios::trunc) << state.dump();

  StartServer();
  EXPECT_EQ(Folders(), std::vector<std::string>{"1"});
  EXPECT_EQ(Served(), 1);
  for (const IndexEntry& entry : manager_->Index(false)) EXPECT_EQ(entry.version, "1");
  // Version numbers only grow, past every folder ever seen.
  Push("v2", 2);
  PromoteToChampion("v2");
  Check();
  EXPECT_EQ(Served(), 8);
}

TEST_F(DeploymentTest, ModelsRemovedFromTheDeploymentAreRemovedFromTheRepository) {
  Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  StopServer();
  Json state = Json::parse(std::ifstream(cache_ / "state.json"));
  state["models"]["gone"] = state["models"]["mf"];
  std::ofstream(cache_ / "state.json", std::ios::trunc) << state.dump();
  fs::copy(repository_ / kModel, repository_ / "gone", fs::copy_options::recursive);
  StartServer();
  EXPECT_FALSE(fs::exists(repository_ / "gone"));
  EXPECT_FALSE(manager_->Find("gone", std::nullopt).ok());
}

TEST_F(DeploymentTest, ASecondServerCannotShareTheCache) {
  StartServer();
  DeployerOptions options;
  options.config = Config();
  options.repository = repository_;
  options.manager = manager_.get();
  options.metrics = metrics_.get();
  EXPECT_EQ(Deployer::Create(std::move(options)).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(DeploymentTest, AnUnreadableStateFileStopsTheStart) {
  fs::create_directories(cache_);
  std::ofstream(cache_ / "state.json") << "{not json";
  metrics::Registry metrics;
  fs::create_directories(repository_);
  ModelManagerOptions manager_options;
  manager_options.repository = repository_;
  manager_options.registry = &metrics;
  auto manager = std::move(*ModelManager::Create(manager_options));
  DeployerOptions options;
  options.config = Config();
  options.repository = repository_;
  options.manager = manager.get();
  options.metrics = &metrics;
  auto deployer = Deployer::Create(std::move(options));
  EXPECT_EQ(deployer.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(deployer.status().message().find("rollback floor"), std::string::npos);
}

TEST_F(DeploymentTest, TheDeploymentEndpointReportsEveryModel) {
  const reg::Descriptor v1 = Push("v1", 1);
  PromoteToChampion("v1");
  StartServer();
  Check();
  Push("champion", 2);
  Check();
  std::atomic<bool> draining{false};
  const auto get = [&](OipHandler& handler, const std::string& target) {
    http::Request request;
    request.method = http::Method::kGet;
    request.target = target;
    http::Response response;
    handler.Handle(std::move(request), http::Responder::FromCallback(
                                           [&](http::Response r) { response = std::move(r); }));
    return response;
  };
  OipHandler handler(manager_.get(), metrics_.get(), &clock_, &draining, {"", true},
                     deployer_.get());
  const http::Response response = get(handler, "/v2/deployment");
  ASSERT_EQ(response.status, 200) << response.body;
  const Json json = Json::parse(response.body);
  EXPECT_EQ(json["poll_interval_s"], 60.0);
  ASSERT_EQ(json["models"].size(), 1u);
  const Json& model = json["models"][0];
  EXPECT_EQ(model["name"], "mf");
  EXPECT_EQ(model["ref"], "layout://" + layout_.string() + ":champion");
  EXPECT_EQ(model["digest"], v1.digest.str());
  EXPECT_EQ(model["local_version"], 1);
  EXPECT_EQ(model["last_result"], "refused");
  EXPECT_EQ(model["last_refusal"]["reason"], "unsigned");
  EXPECT_TRUE(model["last_check"].is_string());
  EXPECT_TRUE(model["last_error"].is_null());

  OipHandler without(manager_.get(), metrics_.get(), &clock_, &draining, {"", true});
  EXPECT_EQ(get(without, "/v2/deployment").status, 404);
}

// ---------------------------------------------------------------------------------------------
// The deployment file.

class DeploymentFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(reg::WriteKeyFiles(*reg::GenerateSigningKey(), dir_.path() / "release").ok());
    std::ofstream(dir_.path() / "password") << "s3cret\n";
  }
  StatusOr<DeploymentConfig> Parse(const std::string& yaml) {
    std::ofstream(dir_.path() / "deployment.yaml", std::ios::trunc) << yaml;
    return LoadDeploymentFile(dir_.path() / "deployment.yaml");
  }
  void ExpectError(const std::string& yaml, const std::string& needle) {
    auto config = Parse(yaml);
    ASSERT_FALSE(config.ok()) << yaml;
    EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument) << config.status();
    EXPECT_NE(config.status().message().find(needle), std::string::npos)
        << config.status().message();
    EXPECT_NE(config.status().message().find("deployment.yaml"), std::string::npos);
  }

  TempDir dir_{"edgeloop_deployment_file"};
};

constexpr char kHeader[] = "cache_dir: cache\ntrusted_keys: [release.pub]\n";
constexpr char kModels[] =
    "models:\n  - {name: mf, ref: 'oci://127.0.0.1:5000/models/mf:champion'}\n";

TEST_F(DeploymentFileTest, AFullFileParses) {
  auto config = Parse(R"(
cache_dir: cache
poll_interval_s: 2.5
trusted_keys: [release.pub]
registry:
  allow_http: true
  insecure_tls: false
  username: edge
  password_file: password
models:
  - name: machine-failure
    ref: oci://registry.site:5000/models/machine-failure:champion
    keep_versions: 3
  - name: local
    ref: layout://usb/fraud:v3
    repository: models/fraud
)");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->cache_dir, dir_.path() / "cache");
  EXPECT_EQ(config->poll_interval, std::chrono::milliseconds(2500));
  ASSERT_EQ(config->trusted_keys.size(), 1u);
  EXPECT_EQ(config->trusted_key_files[0], dir_.path() / "release.pub");
  EXPECT_TRUE(config->store_options.allow_http);
  EXPECT_EQ(config->store_options.credentials.username, "edge");
  EXPECT_EQ(config->store_options.credentials.password, "s3cret");
  ASSERT_EQ(config->models.size(), 2u);
  EXPECT_EQ(config->models[0].repository, "models/machine-failure");
  EXPECT_EQ(config->models[0].ref.tag, "champion");
  EXPECT_EQ(config->models[0].keep_versions, 3);
  EXPECT_EQ(config->models[1].ref.layout_dir, dir_.path() / "usb" / "fraud");
  EXPECT_EQ(config->models[1].repository, "models/fraud");
  EXPECT_EQ(config->models[1].keep_versions, 2);
}

TEST_F(DeploymentFileTest, DefaultsApply) {
  auto config = Parse(std::string(kHeader) + kModels);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->poll_interval, std::chrono::seconds(60));
  EXPECT_EQ(config->models[0].repository, "models/mf");
  EXPECT_FALSE(config->store_options.allow_http);
  EXPECT_TRUE(config->store_options.credentials.username.empty());
}

TEST_F(DeploymentFileTest, MistakesAreNamed) {
  ExpectError(std::string(kHeader) + kModels + "pol_interval_s: 5\n",
              "unknown key 'pol_interval_s'");
  ExpectError("trusted_keys: [release.pub]\n" + std::string(kModels), "'cache_dir' is required");
  ExpectError("cache_dir: cache\n" + std::string(kModels), "trusted_keys");
  ExpectError("cache_dir: cache\ntrusted_keys: []\n" + std::string(kModels), "trusted_keys");
  ExpectError("cache_dir: cache\ntrusted_keys: [missing.pub]\n" + std::string(kModels),
              "trusted_keys[0]");
  ExpectError("cache_dir: cache\ntrusted_keys: [password]\n" + std::string(kModels),
              "trusted_keys[0]");
  ExpectError(kHeader, "'models'");
  ExpectError(std::string(kHeader) + "models: []\n", "'models'");
  ExpectError(std::string(kHeader) + "models:\n  - {ref: 'oci://h:1/r:t'}\n", "'name' is required");
  ExpectError(std::string(kHeader) + "models:\n  - {name: mf}\n", "'ref' is required");
  ExpectError(std::string(kHeader) + "models:\n  - {name: mf, ref: 'http://x/y'}\n",
              "models[0].ref");
  ExpectError(std::string(kHeader) + "models:\n  - {name: .hidden, ref: 'oci://h:1/r:t'}\n",
              "models[0].name");
  ExpectError(std::string(kHeader) + "models:\n  - {name: mf, ref: 'oci://h:1/r:t', color: 1}\n",
              "unknown key 'color'");
  ExpectError(
      std::string(kHeader) + "models:\n  - {name: mf, ref: 'oci://h:1/r:t', keep_versions: 0}\n",
      "keep_versions");
  ExpectError(std::string(kHeader) +
                  "models:\n  - {name: mf, ref: 'oci://h:1/r:t'}\n  - {name: mf, ref: "
                  "'oci://h:1/s:t'}\n",
              "appears twice");
  ExpectError(std::string(kHeader) + kModels + "poll_interval_s: soon\n", "poll_interval_s");
  ExpectError(std::string(kHeader) + kModels + "poll_interval_s: 0\n", "poll_interval_s");
  ExpectError(std::string(kHeader) + kModels + "registry: {username: edge}\n", "password_file");
  ExpectError(std::string(kHeader) + kModels + "registry: {password_file: nope}\n",
              "registry.password_file");
  ExpectError(std::string(kHeader) + kModels + "registry: {allow_http: maybe}\n",
              "registry.allow_http");
  ExpectError(std::string(kHeader) + kModels + "registry: {ca_file: nope.pem}\n",
              "registry.ca_file");
  ExpectError(std::string(kHeader) + kModels + "registry: {proxy: x}\n", "unknown key 'proxy'");
  ExpectError("cache_dir: [unclosed\n", "invalid YAML");
  ExpectError("- just\n- a list\n", "mapping");
  EXPECT_EQ(LoadDeploymentFile(dir_.path() / "absent.yaml").status().code(), StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// Canary and shadow rollouts.

class RolloutDeploymentTest : public DeploymentTest {
 protected:
  void SetUp() override {
    DeploymentTest::SetUp();
    rollout_.mode = RolloutMode::kCanary;
    rollout_.share = 0.5;
    rollout_.period = std::chrono::minutes(5);
    rollout_.max_period = std::chrono::minutes(30);
    rollout_.min_requests = 20;
  }

  // v1 serves; v2 (the same model packaged again, so its scores are the same) is promoted in
  // the registry and the next check starts its rollout.
  void StartWithCandidate() {
    Push("v1", 1);
    PromoteToChampion("v1");
    StartServer();
    Check();
    ASSERT_EQ(Served(), 1);
    candidate_ = Push("v2", 2, "second");
    PromoteToChampion("v2");
    Check();
  }

  std::shared_ptr<Rollout> Running() const { return deployer_->router()->Find(kModel); }

  // Both sides see `n` requests: the champion scores around 0.3, the candidate per arguments.
  void Feed(int n, double candidate_shift, bool candidate_fails = false) {
    std::shared_ptr<Rollout> rollout = Running();
    ASSERT_NE(rollout, nullptr);
    for (int i = 0; i < n; ++i) {
      const double score = 0.2 + 0.01 * (i % 20);
      rollout->Observe(rollout->champion(), true, 0.001, std::vector<double>{score});
      rollout->Observe(rollout->candidate(), !candidate_fails, 0.001,
                       std::vector<double>{score + candidate_shift});
    }
  }

  Json RolloutReport() {
    std::atomic<bool> draining{false};
    OipHandler handler(manager_.get(), metrics_.get(), &clock_, &draining, {"", true},
                       deployer_.get());
    http::Request request;
    request.method = http::Method::kGet;
    request.target = "/v2/deployment";
    http::Response response;
    handler.Handle(std::move(request), http::Responder::FromCallback(
                                           [&](http::Response r) { response = std::move(r); }));
    EXPECT_EQ(response.status, 200);
    return Json::parse(response.body)["models"][0]["rollout"];
  }

  Json State() const {
    std::ifstream in(cache_ / "state.json");
    return Json::parse(in)["models"][kModel];
  }

  std::vector<int64_t> Loaded() const {
    std::vector<int64_t> versions;
    for (const auto& servable : manager_->ReadyVersions(kModel)) {
      versions.push_back(servable->config.version);
    }
    return versions;
  }

  reg::Descriptor candidate_;
};

TEST_F(RolloutDeploymentTest, NewVersionStartsACanaryBesideTheChampion) {
  StartWithCandidate();
  EXPECT_EQ(Report().last_result, CheckResult::kUpdated);
  EXPECT_EQ(Served(), 1);  // unversioned lookups still get the champion
  EXPECT_EQ(Loaded(), (std::vector<int64_t>{2, 1}));
  std::shared_ptr<Rollout> rollout = Running();
  ASSERT_NE(rollout, nullptr);
  EXPECT_EQ(rollout->champion(), 1);
  EXPECT_EQ(rollout->candidate(), 2);
  const Json report = RolloutReport();
  EXPECT_EQ(report["state"], "canary");
  EXPECT_EQ(report["candidate_version"], 2);
  EXPECT_EQ(report["champion_version"], 1);
  EXPECT_EQ(report["candidate_digest"], candidate_.digest.str());
  EXPECT_EQ(report["share"], 0.5);
  EXPECT_EQ(report["counts"]["candidate"]["requests"], 0);
  EXPECT_EQ(State()["rollout"]["candidate_version"], 2);
  EXPECT_EQ(Metric("edgeloop_rollout_active{model=\"mf\"}"), 1);
  // Checks with the reference unchanged leave the rollout running until the period is over.
  Feed(30, 0.0);
  clock_.Advance(std::chrono::minutes(4));
  Check();
  EXPECT_NE(Running(), nullptr);
  EXPECT_EQ(Report().last_result, CheckResult::kUnchanged);
}

TEST_F(RolloutDeploymentTest, GoodCandidateIsPromoted) {
  StartWithCandidate();
  Feed(30, 0.0);
  clock_.Advance(std::chrono::minutes(6));
  Check();
  EXPECT_EQ(Running(), nullptr);
  EXPECT_EQ(Served(), 2);
  EXPECT_EQ(Loaded(), (std::vector<int64_t>{2}));
  const Json report = RolloutReport();
  EXPECT_EQ(report["state"], "none");
  ASSERT_EQ(report["history"].size(), 1u);
  EXPECT_EQ(report["history"][0]["outcome"], "promoted");
  EXPECT_EQ(report["history"][0]["candidate_version"], 2);
  EXPECT_EQ(report["history"][0]["counts"]["candidate"]["requests"], 30);
  EXPECT_NE(report["history"][0]["reason"].get<std::string>().find("within limits"),
            std::string::npos);
  EXPECT_TRUE(State()["rollout"].is_null());
  EXPECT_EQ(Metric("edgeloop_rollout_outcomes_total{model=\"mf\",outcome=\"promoted\"}"), 1);
  EXPECT_EQ(Metric("edgeloop_rollout_active{model=\"mf\"}"), 0);
}

struct BadCandidate {
  const char* name;
  double shift;
  bool fails;
  double latency_s;
  const char* reason;
};

class BadCandidateTest : public RolloutDeploymentTest,
                         public ::testing::WithParamInterface<BadCandidate> {};

TEST_P(BadCandidateTest, IsRolledBackWithTheReason) {
  const BadCandidate& c = GetParam();
  StartWithCandidate();
  std::shared_ptr<Rollout> rollout = Running();
  ASSERT_NE(rollout, nullptr);
  for (int i = 0; i < 30; ++i) {
    const double score = 0.2 + 0.01 * (i % 20);
    rollout->Observe(1, true, 0.001, std::vector<double>{score});
    rollout->Observe(2, !c.fails, c.latency_s, std::vector<double>{score + c.shift});
  }
  clock_.Advance(std::chrono::minutes(6));
  Check();
  EXPECT_EQ(Running(), nullptr);
  EXPECT_EQ(Served(), 1);  // the champion kept serving
  EXPECT_EQ(Loaded(), (std::vector<int64_t>{1}));
  EXPECT_EQ(Folders(), std::vector<std::string>{"1"});
  const Json report = RolloutReport();
  ASSERT_EQ(report["history"].size(), 1u);
  EXPECT_EQ(report["history"][0]["outcome"], "rolled_back");
  const std::string reason = report["history"][0]["reason"];
  EXPECT_EQ(reason.rfind(c.reason, 0), 0u) << reason;
  ASSERT_TRUE(Report().last_refusal.has_value());
  EXPECT_EQ(Report().last_refusal->reason, "rolled_back");
  EXPECT_EQ(Report().local_version, 1);
  EXPECT_EQ(Refusals("rolled_back"), 1);
  EXPECT_EQ(State()["rolled_back"]["digest"], candidate_.digest.str());
  EXPECT_EQ(Metric("edgeloop_rollout_outcomes_total{model=\"mf\",outcome=\"rolled_back\"}"), 1);
  // The bad manifest is refused while the reference stays on it.
  Check();
  EXPECT_EQ(Report().last_result, CheckResult::kRefused);
  EXPECT_EQ(Served(), 1);
  EXPECT_EQ(Running(), nullptr);
}

INSTANTIATE_TEST_SUITE_P(Rollout, BadCandidateTest,
                         ::testing::Values(BadCandidate{"errors", 0.0, true, 0.001, "error_rate"},
                                           BadCandidate{"slow", 0.0, false, 0.050, "latency"},
                                           BadCandidate{"shifted", 0.6, false, 0.001, "score_psi"}),
                         [](const auto& test) { return std::string(test.param.name); });

TEST_F(RolloutDeploymentTest, ARolloutThatFailedDoesNotBlockTheNext) {
  StartWithCandidate();
  Feed(30, 0.6);
  clock_.Advance(std::chrono::minutes(6));
  Check();
  ASSERT_EQ(Served(), 1);
  // A restart keeps the refusal.
  StopServer();
  StartServer();
  Check();
  EXPECT_EQ(Report().last_result, CheckResult::kRefused);
  EXPECT_EQ(Served(), 1);

  const reg::Descriptor v3 = Push("v3", 3, "third");
  PromoteToChampion("v3");
  Check();
  std::shared_ptr<Rollout> rollout = Running();
  ASSERT_NE(rollout, nullptr);
  EXPECT_EQ(rollout->champion(), 1);
  EXPECT_EQ(rollout->candidate(), 3);  // local numbers only grow
  Feed(30, 0.0);
  clock_.Advance(std::chrono::minutes(6));
  Check();
  EXPECT_EQ(Served(), 3);
  EXPECT_EQ(Report().digest, v3.digest.str());
  const Json history = RolloutReport()["history"];
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0]["outcome"], "rolled_back");
  EXPECT_EQ(history[1]["outcome"], "promoted");
}

TEST_F(RolloutDeploymentTest, AReferenceThatMovesSupersedesTheRollout) {
  rollout_.max_period = std::chrono::hours(10);  // each promotion moves the fake clock an hour
  StartWithCandidate();
  Push("v3", 3, "third");
  PromoteToChampion("v3");
  Check();
  std::shared_ptr<Rollout> rollout = Running();
  ASSERT_NE(rollout, nullptr);
  EXPECT_EQ(rollout->champion(), 1);
  EXPECT_EQ(rollout->candidate(), 3);
  EXPECT_EQ(Loaded(), (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(Folders(), (std::vector<std::string>{"1", "3"}));
  EXPECT_EQ(RolloutReport()["history"][0]["outcome"], "superseded");
}

TEST_F(RolloutDeploymentTest, RestartDuringACanaryResumesIt) {
  StartWithCandidate();
  Feed(30, 0.0);
  clock_.Advance(std::chrono::minutes(3));
  StopServer();  // kill -9 leaves the same files: the state is written at every step
  StartServer();
  EXPECT_EQ(Served(), 1);
  EXPECT_EQ(Loaded(), (std::vector<int64_t>{2, 1}));
  std::shared_ptr<Rollout> rollout = Running();
  ASSERT_NE(rollout, nullptr);
  EXPECT_EQ(rollout->candidate(), 2);
  // The period counts from the original start; the counts start again.
  EXPECT_EQ(rollout->Numbers(clock_.Now()).candidate.requests, 0);
  EXPECT_NEAR(rollout->Numbers(clock_.Now()).elapsed_s, 180, 1);
  Feed(30, 0.0);
  clock_.Advance(std::chrono::minutes(3));
  Check();
  EXPECT_EQ(Running(), nullptr);
  EXPECT_EQ(Served(), 2);
}

TEST_F(RolloutDeploymentTest, RestartWithTheCandidateGoneRollsBack) {
  StartWithCandidate();
  StopServer();
  fs::remove_all(repository_ / kModel / "2");
  StartServer();
  EXPECT_EQ(Running(), nullptr);
  EXPECT_EQ(Served(), 1);
  const Json history = RolloutReport()["history"];
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0]["outcome"], "rolled_back");
  EXPECT_NE(history[0]["reason"].get<std::string>().find("restart"), std::string::npos);
}

// Through the OIP handler: sticky routing by key, answers name the version that answered, and
// the rollout counts what each side did.
TEST_F(RolloutDeploymentTest, CanaryRoutesStickilyByKey) {
  StartWithCandidate();
  std::atomic<bool> draining{false};
  OipHandler handler(manager_.get(), metrics_.get(), &clock_, &draining, {"", true},
                     deployer_.get());
  std::string row;
  for (int i = 0; i < 20; ++i) row += (i ? "," : "") + std::to_string(10 + i);
  const auto infer = [&](const std::string& key, const std::string& path) {
    http::Request request;
    request.method = http::Method::kPost;
    request.target = path;
    request.body =
        R"({"inputs":[{"name":"features","datatype":"FP32","shape":[1,20],"data":[)" + row + "]}]}";
    if (!key.empty()) request.headers.emplace_back("X-Edgeloop-Route-Key", key);
    http::Response response;
    bool answered = false;
    handler.Handle(std::move(request), http::Responder::FromCallback([&](http::Response r) {
                     response = std::move(r);
                     answered = true;
                   }));
    runner_.RunDue();
    EXPECT_TRUE(answered);
    EXPECT_EQ(response.status, 200) << response.body;
    return Json::parse(response.body)["model_version"].get<std::string>();
  };
  std::map<std::string, int> versions;
  for (int k = 0; k < 40; ++k) {
    const std::string key = "machine-" + std::to_string(k);
    const std::string first = infer(key, "/v2/models/mf/infer");
    EXPECT_EQ(infer(key, "/v2/models/mf/infer"), first) << key;
    versions[first]++;
  }
  EXPECT_GT(versions["1"], 5);
  EXPECT_GT(versions["2"], 5);
  // A request that names its version is not routed and not counted.
  EXPECT_EQ(infer("machine-0", "/v2/models/mf/versions/1/infer"), "1");
  const RolloutNumbers n = Running()->Numbers(clock_.Now());
  EXPECT_EQ(n.champion.requests, 2 * versions["1"]);
  EXPECT_EQ(n.candidate.requests, 2 * versions["2"]);
  EXPECT_EQ(n.candidate.rows, n.candidate.requests);
  EXPECT_EQ(n.candidate.errors, 0);
}

TEST_F(RolloutDeploymentTest, ShadowNeverAnswersButScoresACopy) {
  rollout_.mode = RolloutMode::kShadow;
  StartWithCandidate();
  EXPECT_EQ(RolloutReport()["state"], "shadow");
  std::atomic<bool> draining{false};
  OipHandler handler(manager_.get(), metrics_.get(), &clock_, &draining, {"", true},
                     deployer_.get());
  std::string row;
  for (int i = 0; i < 20; ++i) row += (i ? "," : "") + std::to_string(3 * i);
  for (int k = 0; k < 25; ++k) {
    http::Request request;
    request.method = http::Method::kPost;
    request.target = "/v2/models/mf/infer";
    request.body =
        R"({"inputs":[{"name":"features","datatype":"FP32","shape":[1,20],"data":[)" + row + "]}]}";
    request.headers.emplace_back("X-Edgeloop-Route-Key", "k" + std::to_string(k));
    http::Response response;
    handler.Handle(std::move(request), http::Responder::FromCallback(
                                           [&](http::Response r) { response = std::move(r); }));
    runner_.RunDue();
    ASSERT_EQ(response.status, 200) << response.body;
    EXPECT_EQ(Json::parse(response.body)["model_version"], "1");
  }
  const RolloutNumbers n = Running()->Numbers(clock_.Now());
  EXPECT_EQ(n.champion.requests, 25);
  EXPECT_EQ(n.candidate.requests, 25);
  ASSERT_TRUE(n.score_psi.has_value());
  EXPECT_NEAR(*n.score_psi, 0.0, 1e-9);  // the same model: the same scores
  clock_.Advance(std::chrono::minutes(6));
  Check();
  EXPECT_EQ(Served(), 2);
}

TEST_F(DeploymentFileTest, RolloutAndDriftSectionsParse) {
  auto config = Parse(std::string(kHeader) + R"(models:
  - name: mf
    ref: 'oci://127.0.0.1:5000/models/mf:champion'
    rollout:
      mode: shadow
      share: 0.25
      route_key: input:machine_id
      period_s: 2
      min_requests: 5
      max_period_s: 10
      on_timeout: promote
      limits: {max_error_rate: 0.05, max_latency_ratio: 2, latency_slack_ms: 3, max_score_psi: 0.5}
    drift: {window_rows: 500, window_s: 60, min_rows: 50, psi_threshold: 0.3, ks_threshold: 0.25,
            event_interval_s: 30}
  - name: other
    ref: 'oci://127.0.0.1:5000/models/other:champion'
    rollout: {}
)");
  ASSERT_TRUE(config.ok()) << config.status();
  const RolloutPolicy& r = config->models[0].rollout;
  EXPECT_EQ(r.mode, RolloutMode::kShadow);
  EXPECT_EQ(r.share, 0.25);
  EXPECT_EQ(r.route_key, "input:machine_id");
  EXPECT_EQ(r.period, std::chrono::seconds(2));
  EXPECT_EQ(r.min_requests, 5);
  EXPECT_EQ(r.max_period, std::chrono::seconds(10));
  EXPECT_TRUE(r.promote_on_timeout);
  EXPECT_EQ(r.limits.max_score_psi, 0.5);
  ASSERT_TRUE(config->models[0].drift.has_value());
  EXPECT_EQ(config->models[0].drift->window_rows, 500);
  EXPECT_EQ(config->models[0].drift->window, std::chrono::seconds(60));
  EXPECT_EQ(config->models[0].drift->event_interval, std::chrono::seconds(30));
  EXPECT_EQ(config->models[1].rollout.mode, RolloutMode::kCanary);  // `rollout: {}`
  EXPECT_EQ(config->models[1].rollout.share, 0.1);

  const std::string model = "models:\n  - name: mf\n    ref: 'oci://h:1/r:t'\n";
  ExpectError(std::string(kHeader) + model + "    rollout: {mode: blue}\n", "rollout.mode");
  ExpectError(std::string(kHeader) + model + "    rollout: {share: 2}\n", "rollout.share");
  ExpectError(std::string(kHeader) + model + "    rollout: {route_key: cookie}\n", "route_key");
  ExpectError(std::string(kHeader) + model + "    rollout: {limits: {p50: 1}}\n", "rollout.limits");
  ExpectError(std::string(kHeader) + model + "    rollout: {period_s: 10, max_period_s: 5}\n",
              "max_period_s");
  ExpectError(std::string(kHeader) + model + "    drift: {ks_threshold: 3}\n",
              "drift.ks_threshold");
}

}  // namespace
}  // namespace edgeloop::serving
