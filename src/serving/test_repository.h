// Test helper: a temporary model repository built from the bundled example model.
#ifndef EDGELOOP_SERVING_TEST_REPOSITORY_H_
#define EDGELOOP_SERVING_TEST_REPOSITORY_H_

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/test_util.h"

namespace edgeloop::serving::testing {

class TestRepository {
 public:
  const std::filesystem::path& root() const { return dir_.path(); }

  // Copies the example model in as `model`/`version`.
  void AddVersion(const std::string& model, int version) {
    const auto dest = root() / model / std::to_string(version);
    std::filesystem::create_directories(dest);
    std::filesystem::copy(edgeloop::testing::ExampleModelDir(), dest,
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::overwrite_existing);
  }
  void Write(const std::string& relative, const std::string& text) {
    std::filesystem::create_directories((root() / relative).parent_path());
    std::ofstream(root() / relative, std::ios::trunc) << text;
  }
  void Remove(const std::string& relative) { std::filesystem::remove_all(root() / relative); }

 private:
  edgeloop::testing::TempDir dir_{"edgeloop_repository"};
};

}  // namespace edgeloop::serving::testing

#endif  // EDGELOOP_SERVING_TEST_REPOSITORY_H_
