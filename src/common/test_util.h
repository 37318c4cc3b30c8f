// Helpers for tests only (never linked into the binary).
#ifndef EDGELOOP_COMMON_TEST_UTIL_H_
#define EDGELOOP_COMMON_TEST_UTIL_H_

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace edgeloop::testing {

// A fresh, empty directory under the system temp dir, removed with everything in it when the
// object goes away. Names are unique per process and object.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "edgeloop_test") {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The source tree: $EDGELOOP_SOURCE_DIR (ctest sets it), else the nearest folder above the
// working directory that holds examples/models, else ".".
inline std::filesystem::path SourceDir() {
  if (const char* dir = std::getenv("EDGELOOP_SOURCE_DIR")) return dir;
  for (std::filesystem::path dir = std::filesystem::current_path(); !dir.empty();
       dir = dir.parent_path()) {
    if (std::filesystem::exists(dir / "examples/models")) return dir;
    if (dir == dir.parent_path()) break;
  }
  return ".";
}

// The bundled example model's version folder (XGBoost, 20 FP32 features).
inline std::filesystem::path ExampleModelDir() {
  return SourceDir() / "examples/models/machine-failure/1";
}

}  // namespace edgeloop::testing

#endif  // EDGELOOP_COMMON_TEST_UTIL_H_
