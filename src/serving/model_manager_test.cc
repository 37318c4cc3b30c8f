#include "serving/model_manager.h"

#include <gtest/gtest.h>

#include <future>

#include "serving/test_repository.h"

namespace edgeloop::serving {
namespace {

using testing::TestRepository;

class ModelManagerTest : public ::testing::Test {
 protected:
  std::unique_ptr<ModelManager> Make() {
    ModelManagerOptions options;
    options.repository = repo_.root();
    options.registry = &registry_;
    options.clock = &clock_;
    options.runner = &runner_;
    auto manager = ModelManager::Create(options);
    EXPECT_TRUE(manager.ok()) << manager.status();
    return std::move(*manager);
  }
  std::string StateOf(const ModelManager& manager, const std::string& model,
                      const std::string& version) {
    for (const IndexEntry& entry : manager.Index(false)) {
      if (entry.name == model && entry.version == version) {
        return std::string(VersionStateName(entry.state)) + ": " + entry.reason;
      }
    }
    return "absent";
  }
  int64_t ServedVersion(const ModelManager& manager, const std::string& model) {
    auto found = manager.Find(model, std::nullopt);
    return found.ok() ? (*found)->config.version : -1;
  }

  TestRepository repo_;
  metrics::Registry registry_;
  FakeClock clock_;
  ManualTaskRunner runner_{&clock_};
};

TEST_F(ModelManagerTest, LoadsTheRepositoryAtStart) {
  repo_.AddVersion("m", 1);
  auto manager = Make();
  EXPECT_EQ(manager->Readiness().code(), StatusCode::kUnavailable);  // nothing loaded yet
  manager->Reconcile(true);
  EXPECT_TRUE(manager->Readiness().ok()) << manager->Readiness();
  EXPECT_EQ(ServedVersion(*manager, "m"), 1);
  EXPECT_EQ(StateOf(*manager, "m", "1"), "READY: ");
  EXPECT_NE(registry_.Render().find("edgeloop_model_loaded{model=\"m\",version=\"1\"} 1"),
            std::string::npos);
}

TEST_F(ModelManagerTest, NewVersionLoadsOnceItsFolderHoldsStillThenReplacesTheOld) {
  repo_.AddVersion("m", 1);
  auto manager = Make();
  manager->Reconcile(true);
  auto held = manager->Find("m", std::nullopt);  // a request in flight on version 1
  ASSERT_TRUE(held.ok());

  repo_.AddVersion("m", 2);
  manager->Reconcile(false);  // first sight: might still be copying
  EXPECT_EQ(ServedVersion(*manager, "m"), 1);
  EXPECT_EQ(StateOf(*manager, "m", "2"),
            "UNAVAILABLE: waiting for the version folder to stop changing");
  manager->Reconcile(false);  // unchanged since: load, publish, unload version 1
  EXPECT_EQ(ServedVersion(*manager, "m"), 2);
  EXPECT_EQ(manager->Find("m", 1).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(StateOf(*manager, "m", "1").substr(0, 9), "UNLOADING");

  // The request that held version 1 can still run on it.
  const ServableVersion& v1 = **held;
  inference::Tensor x("features", inference::DataType::kFp32, {1, 20});
  std::vector<inference::Tensor> outputs;
  EXPECT_TRUE(v1.model->Predict({&x, 1}, std::vector<int>{0}, &outputs).ok());
  held = NotFoundError("released");
  EXPECT_EQ(StateOf(*manager, "m", "1").substr(0, 11), "UNAVAILABLE");
}

TEST_F(ModelManagerTest, AFailedVersionLeavesTheOldOneServingAndRetriesOnChange) {
  repo_.AddVersion("m", 1);
  auto manager = Make();
  manager->Reconcile(true);
  repo_.AddVersion("m", 2);
  repo_.Write("m/2/model.json", "{\"learner\": trunc");
  manager->Reconcile(false);
  manager->Reconcile(false);
  EXPECT_EQ(ServedVersion(*manager, "m"), 1);
  const std::string state = StateOf(*manager, "m", "2");
  EXPECT_EQ(state.substr(0, 11), "UNAVAILABLE") << state;
  EXPECT_NE(
      registry_.Render().find("edgeloop_model_load_failures_total{model=\"m\",version=\"2\"} 1"),
      std::string::npos);
  EXPECT_TRUE(manager->Readiness().ok());

  manager->Reconcile(false);  // unchanged: not retried
  EXPECT_NE(
      registry_.Render().find("edgeloop_model_load_failures_total{model=\"m\",version=\"2\"} 1"),
      std::string::npos);

  repo_.AddVersion("m", 2);  // fixed
  manager->Reconcile(false);
  manager->Reconcile(false);
  EXPECT_EQ(ServedVersion(*manager, "m"), 2);
}

TEST_F(ModelManagerTest, VersionPoliciesChooseWhatIsServed) {
  repo_.AddVersion("m", 1);
  repo_.AddVersion("m", 2);
  repo_.AddVersion("m", 3);
  repo_.Write("m/serving.yaml", "version_policy: {latest: 2}");
  auto manager = Make();
  manager->Reconcile(true);
  EXPECT_EQ(ServedVersion(*manager, "m"), 3);
  EXPECT_TRUE(manager->Find("m", 2).ok());
  EXPECT_EQ(manager->Find("m", 1).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(manager->Find("m", 9).status().code(), StatusCode::kNotFound);

  repo_.Write("m/serving.yaml", "version_policy: {specific: [1]}");
  manager->Reconcile(false);
  EXPECT_EQ(ServedVersion(*manager, "m"), 1);
  EXPECT_FALSE(manager->Find("m", 3).ok());

  repo_.Write("m/serving.yaml", "version_policy: all");
  manager->Reconcile(false);
  EXPECT_EQ(manager->ReadyVersions("m").size(), 3u);
}

TEST_F(ModelManagerTest, InvalidPolicyKeepsWhatIsLoaded) {
  repo_.AddVersion("m", 1);
  auto manager = Make();
  manager->Reconcile(true);
  repo_.Write("m/serving.yaml", "version_policy: {newest: 1}");
  manager->Reconcile(false);
  EXPECT_EQ(ServedVersion(*manager, "m"), 1);
  bool reported = false;
  for (const IndexEntry& entry : manager->Index(false)) {
    reported |= entry.version.empty() && entry.reason.find("newest") != std::string::npos;
  }
  EXPECT_TRUE(reported);
}

TEST_F(ModelManagerTest, RemovedFoldersUnload) {
  repo_.AddVersion("m", 1);
  repo_.AddVersion("other", 1);
  auto manager = Make();
  manager->Reconcile(true);
  repo_.Remove("other");
  manager->Reconcile(false);
  EXPECT_EQ(manager->Find("other", std::nullopt).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ServedVersion(*manager, "m"), 1);
}

TEST_F(ModelManagerTest, BadModelYamlIsReportedWithTheField) {
  repo_.AddVersion("m", 1);
  repo_.Write("m/1/model.yaml", "framework: xgboost\nmodel_file: model.json\ninputs: []\n");
  auto manager = Make();
  manager->Reconcile(true);
  const std::string state = StateOf(*manager, "m", "1");
  EXPECT_NE(state.find("'inputs' must be a non-empty list"), std::string::npos) << state;
  EXPECT_EQ(manager->Readiness().code(), StatusCode::kUnavailable);
  EXPECT_EQ(manager->Find("m", std::nullopt).status().code(), StatusCode::kUnavailable);
}

TEST_F(ModelManagerTest, UnloadAndLoadThroughTheApi) {
  repo_.AddVersion("m", 1);
  auto manager = Make();
  manager->Reconcile(true);
  manager->Start(std::chrono::milliseconds(0));
  ASSERT_TRUE(manager->Unload("m").ok());
  EXPECT_EQ(manager->Find("m", std::nullopt).status().code(), StatusCode::kUnavailable);
  manager->Reconcile(false);  // a scan does not bring it back
  EXPECT_FALSE(manager->Find("m", std::nullopt).ok());
  EXPECT_TRUE(manager->Readiness().ok());  // unloaded on purpose does not count against ready
  EXPECT_EQ(manager->Unload("nope").code(), StatusCode::kNotFound);

  std::promise<Status> loaded;
  manager->LoadAsync("m", [&](Status status) { loaded.set_value(status); });
  EXPECT_TRUE(loaded.get_future().get().ok());
  EXPECT_EQ(ServedVersion(*manager, "m"), 1);

  std::promise<Status> missing;
  manager->LoadAsync("nope", [&](Status status) { missing.set_value(status); });
  EXPECT_EQ(missing.get_future().get().code(), StatusCode::kNotFound);
}

TEST_F(ModelManagerTest, ChangedContentOfAReadyVersionIsReloaded) {
  repo_.AddVersion("m", 1);
  auto manager = Make();
  manager->Reconcile(true);
  auto before = manager->Find("m", 1);
  repo_.Write("m/1/model.yaml",
              "framework: xgboost\nbackend: capi\nmodel_file: model.json\n"
              "inputs: [{name: features, datatype: FP32, shape: [-1, 20]}]\n"
              "outputs: [{name: probability, datatype: FP32, shape: [-1]}]\n");
  manager->Reconcile(false);
  manager->Reconcile(false);
  auto after = manager->Find("m", 1);
  ASSERT_TRUE(after.ok());
  EXPECT_NE(before->get(), after->get());
  EXPECT_EQ((*after)->model->platform(), "xgboost");
}

}  // namespace
}  // namespace edgeloop::serving
