#include "serving/repository.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <system_error>

namespace edgeloop::serving {
namespace fs = std::filesystem;

std::vector<int64_t> VersionPolicy::Select(std::vector<int64_t> available) const {
  std::sort(available.begin(), available.end(), std::greater<>());
  available.erase(std::unique(available.begin(), available.end()), available.end());
  switch (kind) {
    case Kind::kAll:
      return available;
    case Kind::kLatest:
      if (static_cast<int64_t>(available.size()) > latest) {
        available.resize(static_cast<size_t>(latest));
      }
      return available;
    case Kind::kSpecific: {
      std::vector<int64_t> selected;
      for (int64_t version : available) {
        if (std::find(specific.begin(), specific.end(), version) != specific.end()) {
          selected.push_back(version);
        }
      }
      return selected;
    }
  }
  return {};
}

std::string VersionPolicy::ToString() const {
  switch (kind) {
    case Kind::kAll:
      return "all";
    case Kind::kLatest:
      return "latest " + std::to_string(latest);
    case Kind::kSpecific: {
      std::string out = "specific [";
      for (size_t i = 0; i < specific.size(); ++i) {
        if (i > 0) out += ", ";
        out += std::to_string(specific[i]);
      }
      return out + "]";
    }
  }
  return "";
}

namespace {

StatusOr<int64_t> PositiveInt(const YAML::Node& node, const std::string& field) {
  if (node.IsScalar()) {
    if (auto value = ParseVersionDirName(node.Scalar())) return *value;
  }
  return InvalidArgumentError("'" + field + "' must be a positive integer");
}

StatusOr<VersionPolicy> ParsePolicyNode(const YAML::Node& node) {
  VersionPolicy policy;
  if (node.IsScalar()) {
    if (node.Scalar() == "all") {
      policy.kind = VersionPolicy::Kind::kAll;
      return policy;
    }
    return InvalidArgumentError("'version_policy' must be 'all', {latest: N} or {specific: [..]}");
  }
  if (!node.IsMap() || node.size() != 1) {
    return InvalidArgumentError(
        "'version_policy' must be 'all', {latest: N} or {specific: [..]} (exactly one)");
  }
  const std::string key = node.begin()->first.as<std::string>();
  const YAML::Node value = node.begin()->second;
  if (key == "latest") {
    policy.kind = VersionPolicy::Kind::kLatest;
    ASSIGN_OR_RETURN(policy.latest, PositiveInt(value, "version_policy.latest"));
    return policy;
  }
  if (key == "specific") {
    policy.kind = VersionPolicy::Kind::kSpecific;
    if (!value.IsSequence() || value.size() == 0) {
      return InvalidArgumentError("'version_policy.specific' must be a non-empty list");
    }
    for (const auto& element : value) {
      ASSIGN_OR_RETURN(int64_t version, PositiveInt(element, "version_policy.specific"));
      policy.specific.push_back(version);
    }
    return policy;
  }
  if (key == "all") {
    policy.kind = VersionPolicy::Kind::kAll;
    return policy;
  }
  return InvalidArgumentError("unknown version policy '" + key + "' (use latest, specific or all)");
}

uint64_t Fnv1a(uint64_t hash, std::string_view bytes) {
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return hash;
}

}  // namespace

StatusOr<VersionPolicy> ParseServingYaml(std::string_view text) {
  try {
    YAML::Node root = YAML::Load(std::string(text));
    if (root.IsNull()) return VersionPolicy{};
    if (!root.IsMap()) return InvalidArgumentError("serving.yaml must be a mapping");
    for (const auto& entry : root) {
      const std::string key = entry.first.as<std::string>();
      if (key != "version_policy") {
        return InvalidArgumentError("serving.yaml: unknown field '" + key + "'");
      }
    }
    if (!root["version_policy"]) return VersionPolicy{};
    return ParsePolicyNode(root["version_policy"]);
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(std::string("serving.yaml is not valid YAML: ") + e.what());
  }
}

bool IsValidModelName(std::string_view name) {
  if (name.empty() || name.size() > 128 || name.front() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

std::optional<int64_t> ParseVersionDirName(std::string_view name) {
  if (name.empty() || name.size() > 18 || name.front() == '0') return std::nullopt;
  int64_t value = 0;
  for (char c : name) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

std::string FingerprintDirectory(const fs::path& dir) {
  std::vector<std::string> entries;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  if (ec) return "unreadable:" + ec.message();
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) {
      entries.push_back("error:" + ec.message());
      break;
    }
    const fs::directory_entry& entry = *it;
    std::string line = fs::relative(entry.path(), dir, ec).string();
    std::error_code stat_ec;
    const auto status = entry.symlink_status(stat_ec);
    if (fs::is_regular_file(status)) {
      line += "|" + std::to_string(entry.file_size(stat_ec));
      const auto mtime = entry.last_write_time(stat_ec);
      line += "|" + std::to_string(mtime.time_since_epoch().count());
    } else if (fs::is_symlink(status)) {
      // Follow the link for its target's size and time, so a re-pointed link counts as change.
      line += "|link:" + fs::read_symlink(entry.path(), stat_ec).string();
      line += "|" + std::to_string(fs::file_size(entry.path(), stat_ec));
      const auto mtime = fs::last_write_time(entry.path(), stat_ec);
      line += "|" + std::to_string(mtime.time_since_epoch().count());
    }
    if (stat_ec) line += "|error:" + stat_ec.message();
    entries.push_back(std::move(line));
  }
  std::sort(entries.begin(), entries.end());
  uint64_t hash = 14695981039346656037ULL;
  for (const std::string& entry : entries) hash = Fnv1a(Fnv1a(hash, entry), "\n");
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%zu:%016llx", entries.size(),
                static_cast<unsigned long long>(hash));
  return buf;
}

StatusOr<std::vector<ModelDir>> ScanRepository(const fs::path& root) {
  std::error_code ec;
  fs::directory_iterator models(root, ec);
  if (ec)
    return UnavailableError("cannot read model repository " + root.string() + ": " + ec.message());
  std::vector<ModelDir> result;
  for (; models != fs::directory_iterator(); models.increment(ec)) {
    if (ec)
      return UnavailableError("cannot read model repository " + root.string() + ": " +
                              ec.message());
    const fs::directory_entry& model_entry = *models;
    const std::string name = model_entry.path().filename().string();
    std::error_code type_ec;
    if (!model_entry.is_directory(type_ec) || !IsValidModelName(name)) continue;

    ModelDir model;
    model.name = name;
    model.path = model_entry.path();
    const fs::path serving_yaml = model.path / "serving.yaml";
    if (fs::exists(serving_yaml, type_ec)) {
      std::ifstream in(serving_yaml, std::ios::binary);
      std::ostringstream text;
      text << in.rdbuf();
      auto policy = ParseServingYaml(text.str());
      if (policy.ok()) {
        model.policy = *policy;
      } else {
        model.policy_status = policy.status().WithContext(serving_yaml.string());
      }
    }
    std::error_code version_ec;
    for (fs::directory_iterator versions(model.path, version_ec);
         !version_ec && versions != fs::directory_iterator(); versions.increment(version_ec)) {
      const fs::directory_entry& version_entry = *versions;
      auto version = ParseVersionDirName(version_entry.path().filename().string());
      if (!version || !version_entry.is_directory(type_ec)) continue;
      model.versions.push_back(
          {*version, version_entry.path(), FingerprintDirectory(version_entry.path())});
    }
    std::sort(model.versions.begin(), model.versions.end(),
              [](const VersionDir& a, const VersionDir& b) { return a.version < b.version; });
    result.push_back(std::move(model));
  }
  std::sort(result.begin(), result.end(),
            [](const ModelDir& a, const ModelDir& b) { return a.name < b.name; });
  return result;
}

}  // namespace edgeloop::serving
