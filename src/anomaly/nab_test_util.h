// Test helper: where the NAB corpus lives (tests skip when it is absent).
#ifndef EDGELOOP_ANOMALY_NAB_TEST_UTIL_H_
#define EDGELOOP_ANOMALY_NAB_TEST_UTIL_H_

#include <cstdlib>
#include <filesystem>

#include "common/test_util.h"

namespace edgeloop::anomaly::testing {

// $EDGELOOP_NAB_DIR, else <source>/../shared/datasets/nab; empty when neither holds the corpus.
inline std::filesystem::path NabRoot() {
  std::filesystem::path root;
  if (const char* dir = std::getenv("EDGELOOP_NAB_DIR")) {
    root = dir;
  } else {
    root = edgeloop::testing::SourceDir() / ".." / "shared" / "datasets" / "nab";
  }
  if (!std::filesystem::exists(root / "labels" / "combined_windows.json")) return {};
  return root;
}

}  // namespace edgeloop::anomaly::testing

#endif  // EDGELOOP_ANOMALY_NAB_TEST_UTIL_H_
