// The on-disk model repository: which models and versions exist, their version policies, and a
// fingerprint of each version folder for change detection. Pure file-system reads; loading
// models is ModelManager's job.
//
//   DIR/<model>/serving.yaml        optional: version_policy
//   DIR/<model>/<version>/...       version: a positive integer without leading zeros
#ifndef EDGELOOP_SERVING_REPOSITORY_H_
#define EDGELOOP_SERVING_REPOSITORY_H_

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace edgeloop::serving {

// Which versions of a model are served.
struct VersionPolicy {
  enum class Kind { kLatest, kSpecific, kAll };
  Kind kind = Kind::kLatest;
  int64_t latest = 1;             // kLatest: how many of the highest versions
  std::vector<int64_t> specific;  // kSpecific: exactly these

  // The versions of `available` this policy serves, highest first.
  std::vector<int64_t> Select(std::vector<int64_t> available) const;
  std::string ToString() const;  // "latest 1", "specific [1, 3]", "all"
};

// Parses serving.yaml (`version_policy: {latest: N} | {specific: [..]} | all`). Empty text gives
// the default policy. kInvalidArgument names the problem.
StatusOr<VersionPolicy> ParseServingYaml(std::string_view text);

// Model names: 1-128 of [A-Za-z0-9_.-], not starting with '.'.
bool IsValidModelName(std::string_view name);
// "3" -> 3; "03", "0", "-1", "3.tmp", ".staging-3", "" -> nullopt.
std::optional<int64_t> ParseVersionDirName(std::string_view name);

struct VersionDir {
  int64_t version = 0;
  std::filesystem::path path;
  // Changes whenever a file below the folder is added, removed, resized or rewritten.
  std::string fingerprint;
};

struct ModelDir {
  std::string name;
  std::filesystem::path path;
  VersionPolicy policy;
  Status policy_status;  // not OK when serving.yaml is invalid; `policy` is then the default
  std::vector<VersionDir> versions;  // ascending
};

// Lists the repository's models (sorted by name). Entries that are not models or versions are
// skipped. Fails only when `root` itself cannot be read.
StatusOr<std::vector<ModelDir>> ScanRepository(const std::filesystem::path& root);

// The fingerprint of one folder: relative names, sizes and modification times of everything
// below it, hashed. Unreadable entries make it change rather than fail.
std::string FingerprintDirectory(const std::filesystem::path& dir);

}  // namespace edgeloop::serving

#endif  // EDGELOOP_SERVING_REPOSITORY_H_
