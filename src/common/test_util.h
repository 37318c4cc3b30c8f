// Helpers for tests only (never linked into the binary).
#ifndef EDGELOOP_COMMON_TEST_UTIL_H_
#define EDGELOOP_COMMON_TEST_UTIL_H_

#include <unistd.h>

#include <atomic>
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

}  // namespace edgeloop::testing

#endif  // EDGELOOP_COMMON_TEST_UTIL_H_
