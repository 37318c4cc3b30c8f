// Test helper: a temporary model repository built from the bundled example model.
#ifndef EDGELOOP_SERVING_TEST_REPOSITORY_H_
#define EDGELOOP_SERVING_TEST_REPOSITORY_H_

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace edgeloop::serving::testing {

inline std::filesystem::path SourceDir() {
  if (const char* dir = std::getenv("EDGELOOP_SOURCE_DIR")) return dir;
  std::filesystem::path here = std::filesystem::current_path();
  for (int i = 0; i < 4; ++i) {
    if (std::filesystem::exists(here / "examples/models")) return here;
    here = here.parent_path();
  }
  return ".";
}

inline std::filesystem::path ExampleVersionDir() {
  return SourceDir() / "examples/models/machine-failure/1";
}

class TestRepository {
 public:
  TestRepository() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = std::filesystem::temp_directory_path() /
            ("edgeloop_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" +
             std::to_string(::getpid()));
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
  }
  ~TestRepository() { std::filesystem::remove_all(root_); }

  const std::filesystem::path& root() const { return root_; }

  // Copies the example model in as `model`/`version`.
  void AddVersion(const std::string& model, int version) {
    const auto dest = root_ / model / std::to_string(version);
    std::filesystem::create_directories(dest);
    std::filesystem::copy(ExampleVersionDir(), dest,
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::overwrite_existing);
  }
  void Write(const std::string& relative, const std::string& text) {
    std::filesystem::create_directories((root_ / relative).parent_path());
    std::ofstream(root_ / relative, std::ios::trunc) << text;
  }
  void Remove(const std::string& relative) { std::filesystem::remove_all(root_ / relative); }

 private:
  std::filesystem::path root_;
};

}  // namespace edgeloop::serving::testing

#endif  // EDGELOOP_SERVING_TEST_REPOSITORY_H_
