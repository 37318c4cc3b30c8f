#include "functions/compliance.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/logging.h"
#include "functions/crypto.h"

namespace edgeloop::functions {
namespace {

using Json = nlohmann::json;
using Path = std::vector<std::string>;

std::string JoinPath(const Path& path) {
  std::string out;
  for (const std::string& part : path) {
    if (!out.empty()) out.push_back('.');
    out += part;
  }
  return out;
}

StatusOr<Path> ParsePath(const std::string& text, std::string_view where) {
  Path path;
  size_t start = 0;
  for (;;) {
    const size_t dot = text.find('.', start);
    std::string part =
        text.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) {
      return InvalidArgumentError(std::string(where) + ": '" + text +
                                  "' is not a field path (dotted names, no empty parts)");
    }
    path.push_back(std::move(part));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return path;
}

// Wraps yaml-cpp, which throws, so that nothing escapes this file.
Json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Sequence: {
      Json list = Json::array();
      for (const auto& item : node) list.push_back(YamlToJson(item));
      return list;
    }
    case YAML::NodeType::Map: {
      Json object = Json::object();
      for (const auto& item : node) object[item.first.as<std::string>()] = YamlToJson(item.second);
      return object;
    }
    case YAML::NodeType::Scalar: {
      const std::string text = node.Scalar();
      if (node.Tag() == "!") return text;  // quoted
      if (text == "true" || text == "True") return true;
      if (text == "false" || text == "False") return false;
      if (text == "null" || text == "~") return nullptr;
      char* end = nullptr;
      errno = 0;
      const long long integer = std::strtoll(text.c_str(), &end, 10);
      if (!text.empty() && *end == '\0' && errno == 0) return static_cast<int64_t>(integer);
      const double number = std::strtod(text.c_str(), &end);
      if (!text.empty() && *end == '\0') return number;
      return text;
    }
    default:
      return nullptr;
  }
}

Status CheckKeys(const Json& object, std::string_view where,
                 std::initializer_list<std::string_view> allowed) {
  if (!object.is_object()) return InvalidArgumentError(std::string(where) + " must be a mapping");
  for (const auto& [key, value] : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string list;
      for (std::string_view name : allowed) list += (list.empty() ? "" : ", ") + std::string(name);
      return InvalidArgumentError(std::string(where) + ": unknown key '" + key +
                                  "' (known: " + list + ")");
    }
  }
  return Status::Ok();
}

StatusOr<std::vector<Path>> PathList(const Json& value, std::string_view where) {
  if (!value.is_array()) return InvalidArgumentError(std::string(where) + " must be a list");
  std::vector<Path> paths;
  for (const Json& item : value) {
    if (!item.is_string()) {
      return InvalidArgumentError(std::string(where) + " must list field paths (strings)");
    }
    ASSIGN_OR_RETURN(Path path, ParsePath(item.get<std::string>(), where));
    paths.push_back(std::move(path));
  }
  return paths;
}

StatusOr<int64_t> ParseDuration(const Json& value, std::string_view where) {
  if (value.is_number_integer() && value.get<int64_t>() > 0) return value.get<int64_t>();
  if (value.is_string()) {
    const std::string text = value.get<std::string>();
    char* end = nullptr;
    const long long number = std::strtoll(text.c_str(), &end, 10);
    const std::string unit = end;
    int64_t scale = 0;
    if (unit == "s") scale = 1;
    if (unit == "m") scale = 60;
    if (unit == "h") scale = 3600;
    if (unit == "d") scale = 86400;
    if (number > 0 && scale > 0 && end != text.c_str()) return number * scale;
  }
  return InvalidArgumentError(std::string(where) +
                              " must be a positive duration: seconds, or '12h', '30d'");
}

std::string ReadFile(const std::filesystem::path& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  *ok = static_cast<bool>(in) || in.eof();
  return text.str();
}

StatusOr<std::string> LoadKey(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return InvalidArgumentError("the pseudonymisation key file " + path.string() +
                                " does not exist");
  }
  bool ok = false;
  std::string text = ReadFile(path, &ok);
  if (!ok) return InvalidArgumentError("cannot read the key file " + path.string());
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  if (text.size() < 64 || text.size() % 2 != 0 ||
      text.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    return InvalidArgumentError("the key file " + path.string() +
                                " must hold at least 32 random bytes as hex (64+ hex digits); "
                                "make one with: openssl rand -hex 32");
  }
  std::string key;
  for (size_t i = 0; i < text.size(); i += 2) {
    key.push_back(static_cast<char>(std::stoi(text.substr(i, 2), nullptr, 16)));
  }
  return key;
}

const Json* Find(const Json& root, const Path& path) {
  const Json* node = &root;
  for (const std::string& part : path) {
    if (!node->is_object()) return nullptr;
    auto it = node->find(part);
    if (it == node->end()) return nullptr;
    node = &*it;
  }
  return node;
}

// Calls `visit` on every value at `path` (where `*` matches any key).
template <typename Visit>
void ForEachAt(Json& node, const Path& path, size_t depth, std::string& concrete, Visit&& visit) {
  if (depth == path.size()) {
    visit(node, concrete);
    return;
  }
  if (!node.is_object()) return;
  const size_t mark = concrete.size();
  auto descend = [&](const std::string& key, Json& child) {
    concrete.resize(mark);
    if (!concrete.empty()) concrete.push_back('.');
    concrete += key;
    ForEachAt(child, path, depth + 1, concrete, visit);
  };
  if (path[depth] == "*") {
    for (auto& [key, child] : node.items()) descend(key, child);
  } else {
    auto it = node.find(path[depth]);
    if (it != node.end()) descend(path[depth], *it);
  }
  concrete.resize(mark);
}

bool Matches(const std::string& pattern, const std::string& key) {
  return pattern == "*" || pattern == key;
}

// The parts of `node` that the allow-list patterns (each already advanced to this depth) let
// through; nullopt when nothing is allowed.
std::optional<Json> Project(const Json& node, const std::vector<const Path*>& patterns,
                            size_t depth) {
  for (const Path* pattern : patterns) {
    if (pattern->size() == depth) return node;  // the whole subtree is allowed
  }
  if (!node.is_object()) return std::nullopt;
  Json out = Json::object();
  for (const auto& [key, child] : node.items()) {
    std::vector<const Path*> next;
    for (const Path* pattern : patterns) {
      if (pattern->size() > depth && Matches((*pattern)[depth], key)) next.push_back(pattern);
    }
    if (next.empty()) continue;
    if (auto projected = Project(child, next, depth + 1)) out[key] = std::move(*projected);
  }
  if (out.empty()) return std::nullopt;
  return out;
}

bool DropRuleMatches(const DropRule& rule, const Json& event) {
  const Json* value = Find(event, rule.path);
  if (rule.exists) return (value != nullptr) == *rule.exists;
  if (rule.equals) return value != nullptr && *value == *rule.equals;
  if (rule.not_equals) return value == nullptr || *value != *rule.not_equals;
  if (!rule.in.empty()) {
    return value != nullptr && std::find(rule.in.begin(), rule.in.end(), *value) != rule.in.end();
  }
  return false;
}

int64_t TruncateSeconds(const std::string& unit) {
  if (unit == "second") return 1;
  if (unit == "minute") return 60;
  if (unit == "hour") return 3600;
  return 86400;
}

std::string FormatUnixMs(int64_t ms) {
  const auto wall = Clock::WallTime(std::chrono::milliseconds(ms));
  return FormatRfc3339(wall);
}

void Coarsen(const CoarsenRule& rule, Json& value) {
  if (rule.round > 0) {
    auto round = [&](Json& number) {
      if (number.is_number()) number = std::round(number.get<double>() / rule.round) * rule.round;
    };
    if (value.is_array()) {
      for (Json& item : value) round(item);
    } else {
      round(value);
    }
  }
  if (!rule.truncate.empty()) {
    const int64_t step_ms = TruncateSeconds(rule.truncate) * 1000;
    if (value.is_string()) {
      if (auto ms = ParseRfc3339Ms(value.get<std::string>())) {
        const int64_t floored = (*ms >= 0 ? *ms : *ms - step_ms + 1) / step_ms * step_ms;
        value = FormatUnixMs(floored);
      } else {
        value = nullptr;  // fail closed: an unparseable timestamp does not leave as it was
      }
    } else if (value.is_number()) {
      const auto ms = static_cast<int64_t>(value.get<double>());
      value = ms / step_ms * step_ms;
    }
  }
}

}  // namespace

std::optional<int64_t> ParseRfc3339Ms(std::string_view text) {
  int year, month, day, hour, minute, second;
  int consumed = 0;
  const std::string copy(text);
  if (std::sscanf(copy.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &month, &day, &hour, &minute,
                  &second, &consumed) != 6) {
    return std::nullopt;
  }
  std::string_view rest = text.substr(static_cast<size_t>(consumed));
  int64_t millis = 0;
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    int digits = 0;
    while (!rest.empty() && std::isdigit(static_cast<unsigned char>(rest.front()))) {
      if (digits < 3) millis = millis * 10 + (rest.front() - '0');
      ++digits;
      rest.remove_prefix(1);
    }
    for (int i = digits; i < 3; ++i) millis *= 10;
  }
  int64_t offset_s = 0;
  if (rest == "Z" || rest == "z") {
    offset_s = 0;
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    const int oh = std::atoi(std::string(rest.substr(1, 2)).c_str());
    const int om = std::atoi(std::string(rest.substr(4, 2)).c_str());
    offset_s = (oh * 3600 + om * 60) * (rest[0] == '+' ? 1 : -1);
  } else {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const time_t seconds = timegm(&tm);
  return (static_cast<int64_t>(seconds) - offset_s) * 1000 + millis;
}

StatusOr<Policy> ParsePolicy(std::string_view yaml_text, const std::filesystem::path& base_dir) {
  Json root;
  try {
    root = YamlToJson(YAML::Load(std::string(yaml_text)));
  } catch (const std::exception& e) {
    return InvalidArgumentError(std::string("the policy is not valid YAML: ") + e.what());
  }
  RETURN_IF_ERROR(CheckKeys(
      root, "policy",
      {"version", "destination", "allow", "drop", "coarsen", "pseudonymise", "aggregate"}));
  Policy policy;
  if (root.contains("version") && root["version"] != 1) {
    return InvalidArgumentError("policy: version must be 1");
  }
  if (!root.contains("destination") || !root["destination"].is_string() ||
      root["destination"].get<std::string>().empty()) {
    return InvalidArgumentError("policy: 'destination' (a name) is required");
  }
  policy.destination = root["destination"].get<std::string>();
  if (!root.contains("allow")) {
    return InvalidArgumentError("policy: 'allow' (the list of fields that may leave) is required");
  }
  ASSIGN_OR_RETURN(policy.allow, PathList(root["allow"], "policy: allow"));
  if (root.contains("drop")) {
    if (!root["drop"].is_array()) return InvalidArgumentError("policy: drop must be a list");
    for (const Json& item : root["drop"]) {
      RETURN_IF_ERROR(
          CheckKeys(item, "policy: drop rule", {"field", "equals", "not_equals", "in", "exists"}));
      DropRule rule;
      if (!item.contains("field") || !item["field"].is_string()) {
        return InvalidArgumentError("policy: drop rule needs 'field'");
      }
      ASSIGN_OR_RETURN(rule.path, ParsePath(item["field"].get<std::string>(), "policy: drop"));
      int conditions = 0;
      if (item.contains("equals")) rule.equals = item["equals"], ++conditions;
      if (item.contains("not_equals")) rule.not_equals = item["not_equals"], ++conditions;
      if (item.contains("in")) {
        if (!item["in"].is_array() || item["in"].empty()) {
          return InvalidArgumentError("policy: drop rule 'in' must be a non-empty list");
        }
        rule.in = item["in"].get<std::vector<Json>>();
        ++conditions;
      }
      if (item.contains("exists")) {
        if (!item["exists"].is_boolean()) {
          return InvalidArgumentError("policy: drop rule 'exists' must be true or false");
        }
        rule.exists = item["exists"].get<bool>();
        ++conditions;
      }
      if (conditions != 1) {
        return InvalidArgumentError(
            "policy: a drop rule needs exactly one of equals, not_equals, in, exists");
      }
      policy.drop.push_back(std::move(rule));
    }
  }
  if (root.contains("coarsen")) {
    if (!root["coarsen"].is_array()) return InvalidArgumentError("policy: coarsen must be a list");
    for (const Json& item : root["coarsen"]) {
      RETURN_IF_ERROR(CheckKeys(item, "policy: coarsen rule", {"field", "round", "truncate"}));
      CoarsenRule rule;
      if (!item.contains("field") || !item["field"].is_string()) {
        return InvalidArgumentError("policy: coarsen rule needs 'field'");
      }
      ASSIGN_OR_RETURN(rule.path, ParsePath(item["field"].get<std::string>(), "policy: coarsen"));
      if (item.contains("round")) {
        if (!item["round"].is_number() || item["round"].get<double>() <= 0) {
          return InvalidArgumentError("policy: coarsen 'round' must be a positive number");
        }
        rule.round = item["round"].get<double>();
      }
      if (item.contains("truncate")) {
        const Json& unit = item["truncate"];
        if (!unit.is_string() ||
            (unit != "second" && unit != "minute" && unit != "hour" && unit != "day")) {
          return InvalidArgumentError(
              "policy: coarsen 'truncate' must be second, minute, hour or day");
        }
        rule.truncate = unit.get<std::string>();
      }
      if ((rule.round > 0) == !rule.truncate.empty()) {
        return InvalidArgumentError("policy: a coarsen rule needs exactly one of round, truncate");
      }
      policy.coarsen.push_back(std::move(rule));
    }
  }
  if (root.contains("pseudonymise")) {
    const Json& section = root["pseudonymise"];
    RETURN_IF_ERROR(CheckKeys(section, "policy: pseudonymise", {"key_file", "epoch", "fields"}));
    if (!section.contains("fields")) {
      return InvalidArgumentError("policy: pseudonymise needs 'fields'");
    }
    ASSIGN_OR_RETURN(policy.pseudonymise, PathList(section["fields"], "policy: pseudonymise"));
    if (!section.contains("key_file") || !section["key_file"].is_string()) {
      return InvalidArgumentError("policy: pseudonymise needs 'key_file' (the per-site secret)");
    }
    std::filesystem::path key_file = section["key_file"].get<std::string>();
    if (key_file.is_relative()) key_file = base_dir / key_file;
    ASSIGN_OR_RETURN(policy.key, LoadKey(key_file));
    if (section.contains("epoch")) {
      ASSIGN_OR_RETURN(policy.epoch_seconds, ParseDuration(section["epoch"], "policy: epoch"));
    }
  }
  if (root.contains("aggregate")) {
    const Json& section = root["aggregate"];
    RETURN_IF_ERROR(
        CheckKeys(section, "policy: aggregate", {"group_by", "min_group_size", "mean"}));
    AggregateRule rule;
    if (!section.contains("group_by")) {
      return InvalidArgumentError("policy: aggregate needs 'group_by'");
    }
    ASSIGN_OR_RETURN(rule.group_by, PathList(section["group_by"], "policy: aggregate group_by"));
    if (!section.contains("min_group_size") || !section["min_group_size"].is_number_integer() ||
        section["min_group_size"].get<int64_t>() < 1) {
      return InvalidArgumentError("policy: aggregate needs 'min_group_size' (k >= 1)");
    }
    rule.min_group_size = section["min_group_size"].get<int64_t>();
    if (section.contains("mean")) {
      ASSIGN_OR_RETURN(rule.mean, PathList(section["mean"], "policy: aggregate mean"));
    }
    policy.aggregate = std::move(rule);
  }
  return policy;
}

StatusOr<Policy> LoadPolicy(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return NotFoundError("the policy file " + path.string() + " does not exist");
  }
  bool ok = false;
  const std::string text = ReadFile(path, &ok);
  if (!ok) return UnavailableError("cannot read the policy file " + path.string());
  auto policy = ParsePolicy(text, path.parent_path());
  if (!policy.ok()) return policy.status().WithContext(path.string());
  policy->path = path.string();
  policy->sha256 = Sha256Hex(text);
  return policy;
}

std::string Pseudonym(std::string_view site_key, int64_t epoch, std::string_view field,
                      const Json& value) {
  const std::string epoch_key =
      HmacSha256(site_key, "edgeloop pseudonym epoch " + std::to_string(epoch));
  std::string message(field);
  message.push_back('\0');
  message += value.is_string() ? value.get<std::string>() : value.dump();
  return "ps:" + std::to_string(epoch) + ":" +
         HexEncode(HmacSha256(epoch_key, message)).substr(0, 32);
}

int64_t KeyEpoch(const Policy& policy, const Json& event, Clock::WallTime now) {
  int64_t ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  if (auto it = event.find("timestamp"); it != event.end()) {
    if (it->is_string()) {
      if (auto parsed = ParseRfc3339Ms(it->get<std::string>())) ms = *parsed;
    } else if (it->is_number()) {
      ms = static_cast<int64_t>(it->get<double>());
    }
  }
  const int64_t epoch_ms = policy.epoch_seconds * 1000;
  return ms >= 0 ? ms / epoch_ms : (ms - epoch_ms + 1) / epoch_ms;
}

std::optional<Json> ApplyPolicy(const Policy& policy, const Json& event, Clock::WallTime now) {
  for (const DropRule& rule : policy.drop) {
    if (DropRuleMatches(rule, event)) return std::nullopt;
  }
  Json work = event;
  std::string concrete;
  for (const CoarsenRule& rule : policy.coarsen) {
    ForEachAt(work, rule.path, 0, concrete,
              [&](Json& value, const std::string&) { Coarsen(rule, value); });
  }
  if (!policy.pseudonymise.empty()) {
    const int64_t epoch = KeyEpoch(policy, event, now);
    for (const Path& path : policy.pseudonymise) {
      ForEachAt(work, path, 0, concrete, [&](Json& value, const std::string& field) {
        if (!value.is_null()) value = Pseudonym(policy.key, epoch, field, value);
      });
    }
  }
  // Pseudonymised fields leave (as pseudonyms) even when the allow-list does not name them.
  std::vector<const Path*> patterns;
  for (const Path& path : policy.allow) patterns.push_back(&path);
  for (const Path& path : policy.pseudonymise) patterns.push_back(&path);
  auto projected = Project(work, patterns, 0);
  return projected ? std::move(*projected) : Json::object();
}

void CollectLeafPaths(const Json& value, std::vector<std::string>* out) {
  std::set<std::string> paths(out->begin(), out->end());
  std::string prefix;
  auto walk = [&](auto&& self, const Json& node) -> void {
    if (!node.is_object() || node.empty()) {
      if (!prefix.empty()) paths.insert(prefix);
      return;
    }
    for (const auto& [key, child] : node.items()) {
      const size_t mark = prefix.size();
      if (!prefix.empty()) prefix.push_back('.');
      prefix += key;
      self(self, child);
      prefix.resize(mark);
    }
  };
  walk(walk, value);
  out->assign(paths.begin(), paths.end());
}

StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::filesystem::path& path) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) {
    return UnavailableError("cannot open the audit log " + path.string() + ": " +
                            std::strerror(errno));
  }
  return std::unique_ptr<AuditLog>(new AuditLog(path, fd));
}

AuditLog::~AuditLog() { ::close(fd_); }

Status AuditLog::Append(const Json& record) {
  std::string line = record.dump(-1, ' ', false, Json::error_handler_t::replace);
  line.push_back('\n');
  std::lock_guard<std::mutex> lock(mu_);
  size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return UnavailableError("cannot write the audit log " + path_.string() + ": " +
                              std::strerror(errno));
    }
    written += static_cast<size_t>(n);
  }
  if (::fdatasync(fd_) != 0) {
    return UnavailableError("cannot sync the audit log " + path_.string() + ": " +
                            std::strerror(errno));
  }
  return Status::Ok();
}

ComplianceFunction::ComplianceFunction(ComplianceOptions options, std::unique_ptr<AuditLog> audit)
    : options_(std::move(options)), audit_(std::move(audit)) {
  if (options_.metrics != nullptr) {
    const std::string policy = options_.policy_file.string();
    loaded_ = options_.metrics
                  ->AddGauge("edgeloop_compliance_policy_loaded",
                             "1 when the policy file loaded and egress may proceed, 0 when it "
                             "does not load (egress blocked)",
                             {"policy"})
                  ->With({policy});
    auto* events = options_.metrics->AddCounter(
        "edgeloop_compliance_events_total",
        "Events the policy kept from leaving: dropped by a rule, or suppressed in an aggregate "
        "group smaller than k",
        {"policy", "outcome"});
    dropped_counter_ = events->With({policy, "dropped"});
    suppressed_counter_ = events->With({policy, "suppressed"});
  }
}

StatusOr<std::unique_ptr<ComplianceFunction>> ComplianceFunction::Create(
    const ComplianceOptions& options) {
  if (options.audit_log.empty()) {
    return InvalidArgumentError("compliance: an audit log path is required");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<AuditLog> audit, AuditLog::Open(options.audit_log));
  auto function =
      std::unique_ptr<ComplianceFunction>(new ComplianceFunction(options, std::move(audit)));
  (void)function->Current();  // loads (or records why not) and logs it
  return function;
}

StatusOr<std::shared_ptr<const Policy>> ComplianceFunction::Current() {
  std::lock_guard<std::mutex> lock(mu_);
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(options_.policy_file, ec);
  const uintmax_t size = ec ? 0 : std::filesystem::file_size(options_.policy_file, ec);
  const bool changed = !tried_ || ec || mtime != loaded_mtime_ || size != loaded_size_;
  if (changed) {
    tried_ = true;
    loaded_mtime_ = ec ? std::filesystem::file_time_type{} : mtime;
    loaded_size_ = size;
    auto policy = LoadPolicy(options_.policy_file);
    if (policy.ok()) {
      policy_ = std::make_shared<const Policy>(std::move(*policy));
      load_status_ = Status::Ok();
      log::Info("compliance policy loaded", {{"policy", policy_->path},
                                             {"destination", policy_->destination},
                                             {"sha256", policy_->sha256}});
    } else {
      // Fail closed: a policy that no longer loads withdraws the old one too.
      if (policy_ != nullptr || load_status_.ok()) {
        log::Error("compliance policy does not load: egress is blocked",
                   {{"policy", options_.policy_file.string()}, {"error", policy.status()}});
      }
      policy_.reset();
      load_status_ = policy.status();
    }
    if (loaded_) loaded_->Set(policy_ ? 1 : 0);
  }
  if (!policy_) {
    return UnavailableError("egress blocked: the compliance policy does not load: " +
                            load_status_.message());
  }
  return policy_;
}

Status ComplianceFunction::Probe() { return Current().status(); }

Status ComplianceFunction::Run(std::vector<Record>& records, std::vector<Result>& results,
                               Context& context) {
  ASSIGN_OR_RETURN(std::shared_ptr<const Policy> policy, Current());
  const Clock::WallTime now = context.clock->WallNow();
  int64_t dropped = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    if (results[i].disposition != Disposition::kContinue) continue;
    auto filtered = ApplyPolicy(*policy, records[i].body, now);
    if (!filtered) {
      results[i] = {Disposition::kDone, "dropped by the policy", std::nullopt};
      ++dropped;
      if (dropped_counter_) dropped_counter_->Increment();
      continue;
    }
    records[i].body = std::move(*filtered);
  }
  if (policy->aggregate) Aggregate(*policy, records, results, &dropped);
  ComplianceStamp stamp;
  stamp.destination = policy->destination;
  stamp.policy_path = policy->path;
  stamp.policy_sha256 = policy->sha256;
  stamp.audit = audit_.get();
  stamp.dropped = dropped;
  context.compliance = std::move(stamp);
  return Status::Ok();
}

void ComplianceFunction::Aggregate(const Policy& policy, std::vector<Record>& records,
                                   std::vector<Result>& results, int64_t* dropped) {
  const AggregateRule& rule = *policy.aggregate;
  // Groups by the JSON text of their key values; members in record order.
  std::map<std::string, std::vector<size_t>> groups;
  for (size_t i = 0; i < records.size(); ++i) {
    if (results[i].disposition != Disposition::kContinue) continue;
    Json key = Json::array();
    for (const Path& path : rule.group_by) {
      const Json* value = Find(records[i].body, path);
      key.push_back(value != nullptr ? *value : Json());
    }
    groups[key.dump()].push_back(i);
  }
  for (const auto& [key_text, members] : groups) {
    if (static_cast<int64_t>(members.size()) < rule.min_group_size) {
      for (size_t i : members) {
        results[i] = {Disposition::kDone, "suppressed: aggregate group smaller than k",
                      std::nullopt};
        ++*dropped;
        if (suppressed_counter_) suppressed_counter_->Increment();
      }
      continue;
    }
    const Json key = Json::parse(key_text);
    Json group = Json::object();
    for (size_t g = 0; g < rule.group_by.size(); ++g) group[JoinPath(rule.group_by[g])] = key[g];
    Json means = Json::object();
    for (const Path& path : rule.mean) {
      double sum = 0;
      int64_t count = 0;
      for (size_t i : members) {
        const Json* value = Find(records[i].body, path);
        if (value != nullptr && value->is_number()) sum += value->get<double>(), ++count;
      }
      means[JoinPath(path)] = count > 0 ? Json(sum / static_cast<double>(count)) : Json();
    }
    // The aggregate's id depends only on its members, so a redelivered batch with the same
    // members gives the same id (and the hub dedupes it).
    std::vector<std::string> ids;
    for (size_t i : members) ids.push_back(records[i].id);
    std::sort(ids.begin(), ids.end());
    std::string joined;
    for (const std::string& id : ids) joined += id + "\n";
    const std::string hash = Sha256Hex(policy.destination + "\n" + key_text + "\n" + joined);
    const size_t leader = members.front();
    Record& head = records[leader];
    head.body = {{"id", "agg-" + hash.substr(0, 32)},
                 {"type", "aggregate"},
                 {"group", group},
                 {"count", static_cast<int64_t>(members.size())},
                 {"mean", means}};
    for (size_t m = 1; m < members.size(); ++m) {
      records[members[m]].absorbed_into = static_cast<int>(leader);
    }
  }
}

}  // namespace edgeloop::functions
