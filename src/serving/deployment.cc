#include "serving/deployment.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/logging.h"
#include "registry/file_util.h"
#include "registry/package.h"
#include "serving/repository.h"

namespace edgeloop::serving {
namespace {

namespace fs = std::filesystem;
namespace reg = ::edgeloop::registry;
using Json = nlohmann::json;

constexpr char kStateFile[] = "state.json";
constexpr char kStateSchema[] = "edgeloop.deploy.state.v1";
constexpr char kLockFile[] = ".lock";
constexpr char kBlobDir[] = "blobs";
constexpr char kStagingPrefix[] = ".staging-";
constexpr int64_t kMaxDeploymentBytes = 1 << 20;
constexpr int64_t kMaxStateBytes = 16 << 20;
constexpr int64_t kMaxPasswordBytes = 64 << 10;
constexpr int kMaxKeepVersions = 1000;
constexpr size_t kMaxHistory = 20;

// ---------------------------------------------------------------------------------------------
// The deployment file.

std::string JoinKeys(std::initializer_list<std::string_view> keys) {
  std::string out;
  for (std::string_view key : keys) out += (out.empty() ? "" : ", ") + std::string(key);
  return out;
}

Status CheckKeys(const YAML::Node& node, std::initializer_list<std::string_view> allowed,
                 const std::string& where) {
  if (!node.IsMap()) return InvalidArgumentError(where + " must be a mapping");
  for (const auto& item : node) {
    if (!item.first.IsScalar()) return InvalidArgumentError(where + " has a key that is not text");
    const std::string key = item.first.Scalar();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return InvalidArgumentError(where + ": unknown key '" + key +
                                  "' (known: " + JoinKeys(allowed) + ")");
    }
  }
  return Status::Ok();
}

StatusOr<std::string> NonEmptyString(const YAML::Node& node, const std::string& where) {
  if (!node.IsScalar() || node.Scalar().empty()) {
    return InvalidArgumentError(where + " must be a non-empty string");
  }
  return node.Scalar();
}

StatusOr<bool> Bool(const YAML::Node& node, const std::string& where) {
  bool value = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
    return InvalidArgumentError(where + " must be true or false");
  }
  return value;
}

fs::path Absolute(const fs::path& base_dir, const fs::path& path) {
  return (path.is_absolute() ? path : base_dir / path).lexically_normal();
}

// The first line of a secret file, without surrounding whitespace. Its content is never logged.
StatusOr<std::string> ReadPasswordFile(const fs::path& path, const std::string& where) {
  auto text = reg::ReadSmallFile(path, kMaxPasswordBytes);
  if (!text.ok()) {
    return InvalidArgumentError(where + ": cannot read " + path.string() + ": " +
                                text.status().message());
  }
  std::string line = text->substr(0, text->find('\n'));
  const auto first = line.find_first_not_of(" \t\r");
  const auto last = line.find_last_not_of(" \t\r");
  line = first == std::string::npos ? "" : line.substr(first, last - first + 1);
  if (line.empty()) return InvalidArgumentError(where + ": " + path.string() + " is empty");
  return line;
}

Status ParseRegistrySection(const YAML::Node& node, const fs::path& base_dir,
                            reg::StoreOptions* options) {
  RETURN_IF_ERROR(CheckKeys(
      node, {"allow_http", "insecure_tls", "ca_file", "username", "password_file"}, "registry"));
  if (node["allow_http"]) {
    ASSIGN_OR_RETURN(options->allow_http, Bool(node["allow_http"], "registry.allow_http"));
  }
  if (node["insecure_tls"]) {
    ASSIGN_OR_RETURN(options->insecure_tls, Bool(node["insecure_tls"], "registry.insecure_tls"));
  }
  if (node["ca_file"]) {
    ASSIGN_OR_RETURN(std::string ca_file, NonEmptyString(node["ca_file"], "registry.ca_file"));
    const fs::path path = Absolute(base_dir, ca_file);
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      return InvalidArgumentError("registry.ca_file: " + path.string() + " is not a file");
    }
    options->ca_file = path.string();
  }
  if (node["username"]) {
    ASSIGN_OR_RETURN(options->credentials.username,
                     NonEmptyString(node["username"], "registry.username"));
  }
  if (node["password_file"]) {
    ASSIGN_OR_RETURN(std::string file,
                     NonEmptyString(node["password_file"], "registry.password_file"));
    ASSIGN_OR_RETURN(options->credentials.password,
                     ReadPasswordFile(Absolute(base_dir, file), "registry.password_file"));
  }
  if (options->credentials.username.empty() != options->credentials.password.empty()) {
    return InvalidArgumentError(
        "registry: username and password_file go together (neither: anonymous access)");
  }
  return Status::Ok();
}

std::string FormatNumber(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

StatusOr<double> Number(const YAML::Node& node, const std::string& where, double min, double max) {
  double value = 0;
  if (!node.IsScalar() || !YAML::convert<double>::decode(node, value) || !(value >= min) ||
      !(value <= max)) {
    return InvalidArgumentError(where + " must be a number from " + FormatNumber(min) + " to " +
                                FormatNumber(max));
  }
  return value;
}

std::chrono::milliseconds Milliseconds(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000 + 0.5));
}

StatusOr<RolloutPolicy> ParseRollout(const YAML::Node& node, const std::string& where) {
  RolloutPolicy policy;
  policy.mode = RolloutMode::kCanary;  // a `rollout:` section asks for a trial
  if (node.IsNull()) return policy;
  RETURN_IF_ERROR(CheckKeys(node,
                            {"mode", "share", "route_key", "period_s", "min_requests",
                             "max_period_s", "on_timeout", "limits"},
                            where));
  if (node["mode"]) {
    ASSIGN_OR_RETURN(std::string mode, NonEmptyString(node["mode"], where + ".mode"));
    if (mode == "canary") {
      policy.mode = RolloutMode::kCanary;
    } else if (mode == "shadow") {
      policy.mode = RolloutMode::kShadow;
    } else if (mode == "immediate") {
      policy.mode = RolloutMode::kImmediate;
    } else {
      return InvalidArgumentError(where + ".mode must be canary, shadow or immediate, not '" +
                                  mode + "'");
    }
  }
  if (node["share"]) {
    ASSIGN_OR_RETURN(policy.share, Number(node["share"], where + ".share", 0, 1));
  }
  if (node["route_key"]) {
    ASSIGN_OR_RETURN(policy.route_key, NonEmptyString(node["route_key"], where + ".route_key"));
  }
  if (node["period_s"]) {
    ASSIGN_OR_RETURN(double seconds, Number(node["period_s"], where + ".period_s", 0, 31'536'000));
    policy.period = Milliseconds(seconds);
  }
  if (node["max_period_s"]) {
    ASSIGN_OR_RETURN(double seconds,
                     Number(node["max_period_s"], where + ".max_period_s", 0, 31'536'000));
    policy.max_period = Milliseconds(seconds);
  } else {
    policy.max_period = std::max(policy.max_period, policy.period);
  }
  if (node["min_requests"]) {
    ASSIGN_OR_RETURN(double n, Number(node["min_requests"], where + ".min_requests", 1, 1e12));
    policy.min_requests = static_cast<int64_t>(n);
  }
  if (node["on_timeout"]) {
    ASSIGN_OR_RETURN(std::string action, NonEmptyString(node["on_timeout"], where + ".on_timeout"));
    if (action != "rollback" && action != "promote") {
      return InvalidArgumentError(where + ".on_timeout must be rollback or promote");
    }
    policy.promote_on_timeout = action == "promote";
  }
  if (const YAML::Node limits = node["limits"]) {
    const std::string at = where + ".limits";
    RETURN_IF_ERROR(CheckKeys(
        limits, {"max_error_rate", "max_latency_ratio", "latency_slack_ms", "max_score_psi"}, at));
    RolloutLimits& l = policy.limits;
    if (limits["max_error_rate"]) {
      ASSIGN_OR_RETURN(l.max_error_rate,
                       Number(limits["max_error_rate"], at + ".max_error_rate", 0, 1));
    }
    if (limits["max_latency_ratio"]) {
      ASSIGN_OR_RETURN(l.max_latency_ratio,
                       Number(limits["max_latency_ratio"], at + ".max_latency_ratio", 1, 1e6));
    }
    if (limits["latency_slack_ms"]) {
      ASSIGN_OR_RETURN(l.latency_slack_ms,
                       Number(limits["latency_slack_ms"], at + ".latency_slack_ms", 0, 1e9));
    }
    if (limits["max_score_psi"]) {
      ASSIGN_OR_RETURN(l.max_score_psi,
                       Number(limits["max_score_psi"], at + ".max_score_psi", 1e-9, 1e9));
    }
  }
  if (Status valid = ValidateRolloutPolicy(policy); !valid.ok()) {
    return valid.WithContext(where);
  }
  return policy;
}

StatusOr<DriftSettings> ParseDrift(const YAML::Node& node, const std::string& where,
                                   DriftSettings settings) {
  if (node.IsNull()) return settings;
  RETURN_IF_ERROR(CheckKeys(
      node,
      {"window_rows", "window_s", "min_rows", "psi_threshold", "ks_threshold", "event_interval_s"},
      where));
  if (node["window_rows"]) {
    ASSIGN_OR_RETURN(double n, Number(node["window_rows"], where + ".window_rows", 0,
                                      static_cast<double>(kMaxDriftWindowRows)));
    settings.window_rows = static_cast<int64_t>(n);
  }
  if (node["window_s"]) {
    ASSIGN_OR_RETURN(double seconds, Number(node["window_s"], where + ".window_s", 0, 31'536'000));
    settings.window = Milliseconds(seconds);
  }
  if (node["min_rows"]) {
    ASSIGN_OR_RETURN(double n, Number(node["min_rows"], where + ".min_rows", 1, 1e12));
    settings.min_rows = static_cast<int64_t>(n);
  }
  if (node["psi_threshold"]) {
    ASSIGN_OR_RETURN(settings.psi_threshold,
                     Number(node["psi_threshold"], where + ".psi_threshold", 1e-9, 1e9));
  }
  if (node["ks_threshold"]) {
    ASSIGN_OR_RETURN(settings.ks_threshold,
                     Number(node["ks_threshold"], where + ".ks_threshold", 1e-9, 1));
  }
  if (node["event_interval_s"]) {
    ASSIGN_OR_RETURN(double seconds,
                     Number(node["event_interval_s"], where + ".event_interval_s", 0, 31'536'000));
    settings.event_interval = Milliseconds(seconds);
  }
  if (Status valid = ValidateDriftSettings(settings); !valid.ok()) return valid.WithContext(where);
  return settings;
}

StatusOr<DeployedModel> ParseModel(const YAML::Node& node, const fs::path& base_dir,
                                   const std::string& where) {
  RETURN_IF_ERROR(
      CheckKeys(node, {"name", "ref", "repository", "keep_versions", "rollout", "drift"}, where));
  DeployedModel model;
  if (!node["name"]) return InvalidArgumentError(where + ": 'name' is required");
  ASSIGN_OR_RETURN(model.name, NonEmptyString(node["name"], where + ".name"));
  if (!IsValidModelName(model.name)) {
    return InvalidArgumentError(where + ".name: '" + model.name +
                                "' is not a model name (1-128 of A-Z a-z 0-9 _ . -, not "
                                "starting with '.')");
  }
  if (!node["ref"]) return InvalidArgumentError(where + ": 'ref' is required");
  ASSIGN_OR_RETURN(std::string ref_text, NonEmptyString(node["ref"], where + ".ref"));
  auto ref = reg::ParseReference(ref_text);
  if (!ref.ok()) return ref.status().WithContext(where + ".ref");
  model.ref = std::move(*ref);
  if (model.ref.kind == reg::Reference::Kind::kLayout) {
    model.ref.layout_dir = Absolute(base_dir, model.ref.layout_dir);
  }
  model.repository = model.ref.repository;
  if (node["repository"]) {
    ASSIGN_OR_RETURN(model.repository, NonEmptyString(node["repository"], where + ".repository"));
  }
  if (node["keep_versions"]) {
    int keep = 0;
    if (!node["keep_versions"].IsScalar() ||
        !YAML::convert<int>::decode(node["keep_versions"], keep) || keep < 1 ||
        keep > kMaxKeepVersions) {
      return InvalidArgumentError(where + ".keep_versions must be an integer from 1 to " +
                                  std::to_string(kMaxKeepVersions));
    }
    model.keep_versions = keep;
  }
  if (node["rollout"]) {
    ASSIGN_OR_RETURN(model.rollout, ParseRollout(node["rollout"], where + ".rollout"));
  }
  if (node["drift"]) {
    ASSIGN_OR_RETURN(model.drift, ParseDrift(node["drift"], where + ".drift", DriftSettings{}));
  }
  return model;
}

StatusOr<DeploymentConfig> ParseDeploymentImpl(std::string_view text, const fs::path& base_dir) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(std::string("invalid YAML: ") + e.what());
  }
  RETURN_IF_ERROR(CheckKeys(root,
                            {"cache_dir", "poll_interval_s", "trusted_keys", "registry", "models"},
                            "the deployment"));
  DeploymentConfig config;

  if (!root["cache_dir"]) return InvalidArgumentError("'cache_dir' is required");
  ASSIGN_OR_RETURN(std::string cache_dir, NonEmptyString(root["cache_dir"], "cache_dir"));
  config.cache_dir = Absolute(base_dir, cache_dir);

  if (root["poll_interval_s"]) {
    double seconds = 0;
    if (!root["poll_interval_s"].IsScalar() ||
        !YAML::convert<double>::decode(root["poll_interval_s"], seconds) || !(seconds >= 0.01) ||
        seconds > 86'400) {
      return InvalidArgumentError("poll_interval_s must be a number of seconds from 0.01 to 86400");
    }
    config.poll_interval = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000 + 0.5));
  }

  const YAML::Node keys = root["trusted_keys"];
  if (!keys || !keys.IsSequence() || keys.size() == 0) {
    return InvalidArgumentError(
        "'trusted_keys' must list at least one public key file (PREFIX.pub from `edgeloop model "
        "keygen`): models are never loaded unverified");
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string where = "trusted_keys[" + std::to_string(i) + "]";
    ASSIGN_OR_RETURN(std::string file, NonEmptyString(keys[i], where));
    const fs::path path = Absolute(base_dir, file);
    auto key = reg::ReadPublicKey(path);
    if (!key.ok()) return InvalidArgumentError(where + ": " + key.status().message());
    config.trusted_key_files.push_back(path);
    config.trusted_keys.push_back(std::move(*key));
  }

  if (root["registry"]) {
    RETURN_IF_ERROR(ParseRegistrySection(root["registry"], base_dir, &config.store_options));
  }

  const YAML::Node models = root["models"];
  if (!models || !models.IsSequence() || models.size() == 0) {
    return InvalidArgumentError("'models' must list at least one model ({name, ref})");
  }
  std::set<std::string> names;
  for (size_t i = 0; i < models.size(); ++i) {
    ASSIGN_OR_RETURN(DeployedModel model,
                     ParseModel(models[i], base_dir, "models[" + std::to_string(i) + "]"));
    if (!names.insert(model.name).second) {
      return InvalidArgumentError("models[" + std::to_string(i) + "]: the name '" + model.name +
                                  "' appears twice");
    }
    config.models.push_back(std::move(model));
  }
  return config;
}

// ---------------------------------------------------------------------------------------------
// Helpers for checks.

bool IsTransient(StatusCode code) {
  return code == StatusCode::kUnavailable || code == StatusCode::kDeadlineExceeded ||
         code == StatusCode::kResourceExhausted || code == StatusCode::kAborted ||
         code == StatusCode::kCancelled;
}

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

}  // namespace

StatusOr<DeploymentConfig> ParseDeployment(std::string_view yaml, const fs::path& base_dir) {
  // yaml-cpp reports problems by throwing; none of that leaves this component.
  try {
    return ParseDeploymentImpl(yaml, fs::absolute(base_dir));
  } catch (const std::exception& e) {
    return InvalidArgumentError(std::string("invalid deployment: ") + e.what());
  }
}

StatusOr<DeploymentConfig> LoadDeploymentFile(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return NotFoundError("deployment file " + path.string() + " does not exist");
  }
  auto text = reg::ReadSmallFile(path, kMaxDeploymentBytes);
  if (!text.ok()) return text.status().WithContext("deployment file " + path.string());
  auto config = ParseDeployment(*text, fs::absolute(path).parent_path());
  if (!config.ok()) return config.status().WithContext("deployment file " + path.string());
  return config;
}

std::string_view CheckResultName(CheckResult result) {
  switch (result) {
    case CheckResult::kNone:
      return "none";
    case CheckResult::kUnchanged:
      return "unchanged";
    case CheckResult::kUpdated:
      return "updated";
    case CheckResult::kRefused:
      return "refused";
    case CheckResult::kUnreachable:
      return "unreachable";
    case CheckResult::kFailed:
      return "failed";
  }
  return "none";
}

// ---------------------------------------------------------------------------------------------
// Persistent state: what was accepted, per model.

struct Deployer::State {
  struct Version {
    int64_t version = 0;
    reg::Digest digest;
    int64_t counter = 0;
    std::string accepted_at;
    bool loaded = false;
  };
  struct Model {
    std::string repository;
    int64_t counter_floor = 0;
    int64_t next_version = 1;
    std::vector<Version> versions;  // ascending; the last one is the current version
    // The rollout in progress (null when none): {mode, share, champion_version,
    // candidate_version, candidate_digest, started, started_ms}. During it the candidate is the
    // last of `versions`.
    Json rollout;
    Json history = Json::array();  // past rollouts, oldest first, at most kMaxHistory
    // The manifest the last rollout rolled back, refused until the reference moves.
    std::string rolled_back_digest;
    std::string rolled_back_reason;
  };
  std::map<std::string, Model> models;

  std::string Serialize() const {
    Json json_models = Json::object();
    for (const auto& [name, model] : models) {
      Json versions = Json::array();
      for (const Version& v : model.versions) {
        versions.push_back({{"version", v.version},
                            {"digest", v.digest.str()},
                            {"counter", v.counter},
                            {"accepted_at", v.accepted_at},
                            {"loaded", v.loaded}});
      }
      json_models[name] = {
          {"repository", model.repository},     {"counter_floor", model.counter_floor},
          {"next_version", model.next_version}, {"versions", std::move(versions)},
          {"rollout", model.rollout},           {"rollout_history", model.history}};
      if (!model.rolled_back_digest.empty()) {
        json_models[name]["rolled_back"] = {{"digest", model.rolled_back_digest},
                                            {"reason", model.rolled_back_reason}};
      }
    }
    Json json = {{"schema", kStateSchema}, {"models", std::move(json_models)}};
    return json.dump(2) + "\n";
  }

  static StatusOr<State> Parse(std::string_view text) {
    Json json = Json::parse(text, nullptr, false);
    if (json.is_discarded() || !json.is_object()) return DataLossError("not a JSON object");
    if (json.value("schema", "") != kStateSchema) {
      return DataLossError("unknown schema (want " + std::string(kStateSchema) + ")");
    }
    State state;
    try {
      for (const auto& [name, model_json] : json.at("models").items()) {
        Model model;
        model.repository = model_json.at("repository").get<std::string>();
        model.counter_floor = model_json.at("counter_floor").get<int64_t>();
        model.next_version = model_json.at("next_version").get<int64_t>();
        for (const Json& v : model_json.at("versions")) {
          Version version;
          version.version = v.at("version").get<int64_t>();
          auto digest = reg::Digest::Parse(v.at("digest").get<std::string>());
          if (!digest.ok()) return DataLossError(digest.status().message());
          version.digest = *digest;
          version.counter = v.at("counter").get<int64_t>();
          version.accepted_at = v.at("accepted_at").get<std::string>();
          version.loaded = v.at("loaded").get<bool>();
          if (version.version < 1 ||
              (!model.versions.empty() && version.version <= model.versions.back().version)) {
            return DataLossError("model '" + name + "': versions must be positive and ascending");
          }
          model.versions.push_back(std::move(version));
        }
        // Written by later servers only; older state files have none.
        if (model_json.contains("rollout") && model_json["rollout"].is_object()) {
          model.rollout = model_json["rollout"];
        }
        if (model_json.contains("rollout_history") && model_json["rollout_history"].is_array()) {
          model.history = model_json["rollout_history"];
        }
        if (model_json.contains("rolled_back") && model_json["rolled_back"].is_object()) {
          model.rolled_back_digest = model_json["rolled_back"].value("digest", "");
          model.rolled_back_reason = model_json["rolled_back"].value("reason", "");
        }
        state.models[name] = std::move(model);
      }
    } catch (const Json::exception& e) {
      return DataLossError(e.what());
    }
    return state;
  }
};

// What the deployer keeps in memory per deployed model.
struct Deployer::Runtime {
  DeployedModel spec;
  size_t index = 0;  // into report_
  std::unique_ptr<reg::Store> store;
  std::set<std::string> reported;                   // "<digest> <reason>": logged and counted
  std::map<std::string, std::string> failed_loads;  // digest -> why it did not load
  std::string last_logged_error;
};

Deployer::Deployer(DeployerOptions options)
    : options_(std::move(options)), state_(std::make_unique<State>()) {
  metrics::Registry* registry = options_.metrics;
  checks_ = registry->AddCounter("edgeloop_deploy_checks_total",
                                 "Checks of deployed models against their store, by result.",
                                 {"model", "result"});
  refusals_ = registry->AddCounter(
      "edgeloop_deploy_refusals_total",
      "Model versions the deployer refused, once per model, manifest and reason.",
      {"model", "reason"});
  local_version_ =
      registry->AddGauge("edgeloop_deploy_local_version",
                         "The current local version of each deployed model (0: none).", {"model"});
  last_contact_ = registry->AddGauge(
      "edgeloop_deploy_last_contact_timestamp_seconds",
      "When the deployer last reached each model's store (Unix time).", {"model"});
  rollout_active_ = registry->AddGauge(
      "edgeloop_rollout_active", "The rollout in progress per model: 0 none, 1 canary, 2 shadow.",
      {"model"});
  rollout_requests_ = registry->AddGauge(
      "edgeloop_rollout_requests",
      "Requests the rollout in progress routed, by role (champion, candidate) and result.",
      {"model", "role", "result"});
  rollout_score_psi_ = registry->AddGauge(
      "edgeloop_rollout_score_psi",
      "PSI of the candidate's scores against the champion's in the rollout in progress.",
      {"model"});
  rollout_outcomes_ = registry->AddCounter(
      "edgeloop_rollout_outcomes_total",
      "Finished rollouts by outcome: promoted, rolled_back, superseded.", {"model", "outcome"});
  router_ = std::make_unique<RolloutRouter>();
}

StatusOr<std::unique_ptr<Deployer>> Deployer::Create(DeployerOptions options) {
  if (options.manager == nullptr || options.metrics == nullptr) {
    return InvalidArgumentError("the deployer needs a model manager and a metrics registry");
  }
  if (options.config.trusted_keys.empty()) {
    return InvalidArgumentError("the deployer needs at least one trusted key");
  }
  if (!options.open_store) {
    options.open_store = [](const reg::Reference& ref, const reg::StoreOptions& store_options) {
      return reg::OpenStore(ref, store_options);
    };
  }
  const fs::path cache_dir = options.config.cache_dir;
  std::error_code ec;
  fs::create_directories(cache_dir / kBlobDir, ec);
  if (ec) return UnavailableError("cannot create " + cache_dir.string() + ": " + ec.message());
  fs::create_directories(options.repository, ec);
  if (ec) {
    return UnavailableError("cannot create " + options.repository.string() + ": " + ec.message());
  }

  std::unique_ptr<Deployer> deployer(new Deployer(std::move(options)));
  const fs::path lock_path = cache_dir / kLockFile;
  deployer->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (deployer->lock_fd_ < 0) {
    return UnavailableError("cannot open " + lock_path.string() + ": " + std::strerror(errno));
  }
  if (::flock(deployer->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return FailedPreconditionError("the deployment cache " + cache_dir.string() +
                                   " is in use by another edgeloop serve");
  }

  const fs::path state_path = cache_dir / kStateFile;
  if (fs::exists(state_path, ec)) {
    auto text = reg::ReadSmallFile(state_path, kMaxStateBytes);
    StatusOr<State> state = text.ok() ? State::Parse(*text) : StatusOr<State>(text.status());
    if (!state.ok()) {
      return DataLossError("the deployment state " + state_path.string() + " is unreadable (" +
                           state.status().message() +
                           "); repair or remove it (removing it forgets the rollback floor)");
    }
    *deployer->state_ = std::move(*state);
  }

  std::lock_guard<std::mutex> lock(deployer->check_mu_);
  for (const DeployedModel& spec : deployer->options_.config.models) {
    auto runtime = std::make_unique<Runtime>();
    runtime->spec = spec;
    runtime->index = deployer->models_.size();
    ModelDeploymentReport report;
    report.name = spec.name;
    report.ref = spec.ref.ToString();
    report.repository = spec.repository;
    deployer->report_.push_back(std::move(report));
    deployer->models_.push_back(std::move(runtime));
  }
  RETURN_IF_ERROR(deployer->Recover());
  deployer->ResumeRollouts();
  for (const auto& model : deployer->models_) deployer->PublishState(*model);
  return deployer;
}

Deployer::~Deployer() {
  Stop();
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the cache lock
}

Status Deployer::Recover() {
  std::error_code ec;
  // Temporary files of an interrupted state write.
  std::vector<fs::path> temporary;
  for (fs::directory_iterator it(options_.config.cache_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (StartsWith(it->path().filename().string(), std::string(".tmp-") + kStateFile)) {
      temporary.push_back(it->path());
    }
  }
  for (const fs::path& path : temporary) fs::remove(path, ec);

  for (const auto& runtime : models_) {
    const DeployedModel& spec = runtime->spec;
    State::Model& model = state_->models[spec.name];
    if (!model.repository.empty() && model.repository != spec.repository) {
      log::Warn("the deployed model's repository changed; its rollback floor starts again",
                {{"model", spec.name},
                 {"was", model.repository},
                 {"now", spec.repository},
                 {"counter_floor", model.counter_floor}});
      model.counter_floor = 0;
    }
    model.repository = spec.repository;

    const fs::path dir = options_.repository / spec.name;
    fs::create_directories(dir, ec);
    if (ec) return UnavailableError("cannot create " + dir.string() + ": " + ec.message());
    std::set<int64_t> keep;
    for (const State::Version& version : model.versions) {
      if (version.loaded) keep.insert(version.version);
    }
    int64_t highest = 0;
    std::vector<fs::path> remove;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (StartsWith(name, kStagingPrefix)) {
        remove.push_back(it->path());  // an interrupted pull
        continue;
      }
      const std::optional<int64_t> number = ParseVersionDirName(name);
      if (!number) continue;
      highest = std::max(highest, *number);
      if (!keep.count(*number)) {
        // Never seen to load (a crash before that was recorded), or never pulled by the
        // deployer: only verified versions that loaded survive a restart. If the reference
        // still points at it, the next check pulls it again from the blob cache.
        log::Warn("removing a version folder the deployer did not see load",
                  {{"model", spec.name}, {"version", *number}});
        remove.push_back(it->path());
      }
    }
    if (ec) return UnavailableError("cannot list " + dir.string() + ": " + ec.message());
    for (const fs::path& path : remove) {
      fs::remove_all(path, ec);
      if (ec) return UnavailableError("cannot remove " + path.string() + ": " + ec.message());
    }
    std::erase_if(model.versions, [&](const State::Version& version) {
      return !version.loaded || !fs::is_directory(dir / std::to_string(version.version), ec);
    });
    model.next_version = std::max(model.next_version, highest + 1);
  }

  // Models that left the deployment: the deployment file says what is served. Their rollback
  // floor stays in the state in case they come back.
  for (auto& [name, model] : state_->models) {
    const bool deployed = std::any_of(models_.begin(), models_.end(), [&](const auto& runtime) {
      return runtime->spec.name == name;
    });
    if (deployed || model.versions.empty()) continue;
    log::Warn("removing a model that is no longer in the deployment", {{"model", name}});
    fs::remove_all(options_.repository / name, ec);  // the deployer owned the whole folder
    model.versions.clear();
  }

  struct stat blobs_info {};
  struct stat repository_info {};
  hard_links_ = ::stat((options_.config.cache_dir / kBlobDir).c_str(), &blobs_info) == 0 &&
                ::stat(options_.repository.c_str(), &repository_info) == 0 &&
                blobs_info.st_dev == repository_info.st_dev;
  if (!hard_links_) {
    log::Info(
        "the blob cache and the model repository are on different file systems: model files "
        "are copied, and cached blobs are not collected",
        {{"cache_dir", options_.config.cache_dir.string()},
         {"repository", options_.repository.string()}});
  }
  return SaveState();
}

Status Deployer::SaveState() {
  return reg::WriteFileAtomic(options_.config.cache_dir / kStateFile, state_->Serialize());
}

void Deployer::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Deployer::Stop() {
  {
    std::lock_guard<std::mutex> lock(thread_mu_);
    stopping_ = true;
  }
  thread_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Deployer::Loop() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(thread_mu_);
      if (stopping_) return;
    }
    CheckOnce();
    std::unique_lock<std::mutex> lock(thread_mu_);
    if (thread_cv_.wait_for(lock, options_.config.poll_interval, [this] { return stopping_; })) {
      return;
    }
  }
}

void Deployer::CheckOnce() {
  std::lock_guard<std::mutex> lock(check_mu_);
  for (const auto& model : models_) CheckModel(*model);
}

void Deployer::CheckModel(Runtime& model) {
  AdvanceRollout(model);
  const Outcome outcome = Check(model);
  const bool failed =
      outcome.result == CheckResult::kUnreachable || outcome.result == CheckResult::kFailed;
  checks_->With({model.spec.name, std::string(CheckResultName(outcome.result))})->Increment();
  if (failed && outcome.error != model.last_logged_error) {
    log::Warn("deployment check failed; still serving what is in the cache",
              {{"model", model.spec.name},
               {"ref", model.spec.ref.ToString()},
               {"result", CheckResultName(outcome.result)},
               {"error", outcome.error}});
    model.last_logged_error = outcome.error;
  } else if (!failed && !model.last_logged_error.empty()) {
    log::Info("deployment check works again", {{"model", model.spec.name}});
    model.last_logged_error.clear();
  }
  PublishState(model);
  std::lock_guard<std::mutex> lock(report_mu_);
  ModelDeploymentReport& report = report_[model.index];
  report.last_check = FormatRfc3339(options_.clock->WallNow());
  report.last_result = outcome.result;
  report.last_error = failed ? outcome.error : "";
  ++report.checks;
}

Deployer::Outcome Deployer::Check(Runtime& model) {
  const DeployedModel& spec = model.spec;
  const auto unreachable_or_failed = [](const Status& status) {
    return Outcome{IsTransient(status.code()) ? CheckResult::kUnreachable : CheckResult::kFailed,
                   status.ToString()};
  };
  if (!model.store) {
    auto store = options_.open_store(spec.ref, options_.config.store_options);
    if (!store.ok()) {
      // A layout directory that is gone (an unplugged disk) is as unreachable as a registry.
      const Status& status = store.status();
      return {status.code() == StatusCode::kInvalidArgument ? CheckResult::kFailed
                                                            : CheckResult::kUnreachable,
              status.ToString()};
    }
    model.store = std::move(*store);
  }
  reg::Store& store = *model.store;

  // The one request per interval when nothing changed (a HEAD for a registry).
  auto resolved = store.Resolve(spec.ref.TagOrDigest());
  if (!resolved.ok()) {
    const Status& status = resolved.status();
    if (status.code() == StatusCode::kNotFound) {
      return {CheckResult::kFailed, spec.ref.TagOrDigest() + " is not in " + store.Describe()};
    }
    return unreachable_or_failed(status);
  }
  const double contact_s =
      std::chrono::duration<double>(options_.clock->WallNow().time_since_epoch()).count();
  last_contact_->With({spec.name})->Set(contact_s);
  {
    std::lock_guard<std::mutex> lock(report_mu_);
    report_[model.index].last_contact = FormatRfc3339(options_.clock->WallNow());
  }

  State::Model& state = state_->models[spec.name];
  const std::string digest = resolved->digest.str();
  if (!state.versions.empty() && state.versions.back().digest == resolved->digest) {
    return {CheckResult::kUnchanged, ""};
  }
  if (auto failed = model.failed_loads.find(digest); failed != model.failed_loads.end()) {
    return {CheckResult::kRefused, failed->second};
  }
  if (!state.rolled_back_digest.empty()) {
    if (state.rolled_back_digest == digest) {
      return Refuse(model, digest, "rolled_back", state.rolled_back_reason);
    }
    state.rolled_back_digest.clear();  // the reference moved: the next rollout may start
    state.rolled_back_reason.clear();
  }

  // 1. Verify before a single model blob is read.
  reg::VerifyOptions verify;
  verify.repository = spec.repository;
  verify.trusted = options_.config.trusted_keys;
  verify.now = options_.clock->WallNow();
  verify.min_counter = state.counter_floor;
  reg::TrustFailure failure = reg::TrustFailure::kNone;
  auto verified = reg::VerifyArtifact(store, *resolved, verify, &failure);
  if (!verified.ok()) {
    if (failure == reg::TrustFailure::kUnreadable ||
        verified.status().code() != StatusCode::kPermissionDenied) {
      return unreachable_or_failed(Status(StatusCode::kUnavailable, verified.status().message()));
    }
    return Refuse(model, digest, reg::TrustFailureName(failure), verified.status().message());
  }

  // A rollout in progress is superseded by the new manifest: its candidate goes, and the new
  // one is tried against the same champion.
  std::optional<int64_t> champion;
  if (std::shared_ptr<Rollout> running = router_->Find(spec.name)) {
    champion = running->champion();
    EndRollout(model, "superseded", "the reference moved to " + digest,
               running->Numbers(options_.clock->Now()));
    DropVersion(model, running->candidate());
  } else if (spec.rollout.mode != RolloutMode::kImmediate && !state.versions.empty() &&
             state.versions.back().loaded &&
             options_.manager->Find(spec.name, state.versions.back().version).ok()) {
    champion = state.versions.back().version;
  }

  // 2. Record the acceptance before the download: the rollback floor and the version number
  // must survive a crash in what follows.
  const int64_t previous_floor = state.counter_floor;
  State::Version version;
  version.version = state.next_version;
  version.digest = resolved->digest;
  version.counter = verified->claims.counter;
  version.accepted_at = FormatRfc3339(options_.clock->WallNow());
  state.next_version = version.version + 1;
  state.counter_floor = std::max(state.counter_floor, version.counter);
  state.versions.push_back(version);
  if (Status saved = SaveState(); !saved.ok()) {
    state.versions.pop_back();
    state.counter_floor = previous_floor;
    return {CheckResult::kFailed, saved.WithContext("cannot record the new version").ToString()};
  }
  const auto forget = [&] {
    std::erase_if(state.versions,
                  [&](const State::Version& v) { return v.version == version.version; });
    if (Status saved = SaveState(); !saved.ok()) {
      log::Error("cannot write the deployment state", {{"error", saved}});
    }
  };

  // 3. Pull through the blob cache into <repository>/<name>/<N> (staging, then rename).
  const fs::path dir = options_.repository / spec.name;
  const fs::path version_dir = dir / std::to_string(version.version);
  auto pulled =
      reg::PullPackage(store, digest, version_dir, options_.config.cache_dir / kBlobDir, nullptr);
  if (!pulled.ok()) {
    forget();
    const Status& status = pulled.status();
    if (status.code() == StatusCode::kDataLoss) {
      return Refuse(model, digest, "blob_mismatch", status.message());
    }
    if (status.code() == StatusCode::kInvalidArgument ||
        status.code() == StatusCode::kFailedPrecondition) {
      return Refuse(model, digest, "invalid_artifact", status.message());
    }
    return unreachable_or_failed(status.WithContext("pulling " + digest));
  }

  // 4. Load: the manager hot-swaps it in, or keeps the old version serving. With a rollout the
  // champion stays loaded and keeps answering until the candidate is promoted.
  options_.manager->SetPreferredVersion(spec.name, champion);
  options_.manager->Reconcile(/*trust_new_folders=*/true);
  std::optional<IndexEntry> entry;
  for (IndexEntry& e : options_.manager->Index(false)) {
    if (e.name == spec.name && e.version == std::to_string(version.version)) entry = std::move(e);
  }
  if (entry && entry->state != VersionState::kReady && entry->reason.empty()) {
    // Not selected: the model was unloaded through the repository API, or its serving.yaml
    // does not pick the newest version. Keep it; a restart pulls it again if it never loaded.
    log::Warn("deployed a new model version that the model manager does not serve",
              {{"model", spec.name}, {"version", version.version}, {"digest", digest}});
    return {CheckResult::kUpdated, ""};
  }
  if (!entry || entry->state != VersionState::kReady) {
    const std::string why = entry ? entry->reason : "the version folder disappeared";
    std::error_code ec;
    fs::remove_all(version_dir, ec);
    forget();
    options_.manager->Reconcile(false);  // drops the failed entry at once
    options_.manager->SetPreferredVersion(spec.name, std::nullopt);
    model.failed_loads[digest] = "the model did not load: " + why;
    return Refuse(model, digest, "load_failed", model.failed_loads[digest]);
  }

  // 5. Known good.
  state.versions.back().loaded = true;
  if (champion) {
    StartRollout(model, *champion, version.version, digest);  // saves the state
  } else if (Status saved = SaveState(); !saved.ok()) {
    log::Error("cannot write the deployment state", {{"error", saved}});
  }
  log::Info("deployed a new model version", {{"model", spec.name},
                                             {"version", version.version},
                                             {"digest", digest},
                                             {"counter", version.counter},
                                             {"ref", spec.ref.ToString()}});
  CollectGarbage(model);
  return {CheckResult::kUpdated, ""};
}

Deployer::Outcome Deployer::Refuse(Runtime& model, const std::string& digest,
                                   std::string_view reason, const std::string& message) {
  if (model.reported.insert(digest + " " + std::string(reason)).second) {
    log::Warn("refused a model version; still serving the current one",
              {{"model", model.spec.name},
               {"ref", model.spec.ref.ToString()},
               {"digest", digest},
               {"reason", reason},
               {"error", message}});
    refusals_->With({model.spec.name, std::string(reason)})->Increment();
  }
  std::lock_guard<std::mutex> lock(report_mu_);
  report_[model.index].last_refusal =
      RefusalReport{digest, std::string(reason), message, FormatRfc3339(options_.clock->WallNow())};
  return {CheckResult::kRefused, message};
}

// ---------------------------------------------------------------------------------------------
// Rollouts.

namespace {

int64_t WallMs(Clock::WallTime wall) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(wall.time_since_epoch()).count();
}

Json CountsJson(const RolloutNumbers& n) {
  const auto side = [](const RolloutSideCounts& c) {
    return Json{{"requests", c.requests}, {"errors", c.errors}, {"rows", c.rows}};
  };
  return {{"champion", side(n.champion)}, {"candidate", side(n.candidate)}};
}

Json NumbersJson(const RolloutNumbers& n, const RolloutLimits& limits) {
  const auto opt = [](const std::optional<double>& v) { return v ? Json(*v) : Json(); };
  return {{"champion_error_rate", n.champion_error_rate},
          {"candidate_error_rate", n.candidate_error_rate},
          {"error_rate_delta", n.candidate_error_rate - n.champion_error_rate},
          {"max_error_rate", limits.max_error_rate},
          {"champion_p99_ms", opt(n.champion_p99_ms)},
          {"candidate_p99_ms", opt(n.candidate_p99_ms)},
          {"latency_limit_ms", opt(n.latency_limit_ms)},
          {"score_psi", opt(n.score_psi)},
          {"max_score_psi", limits.max_score_psi}};
}

}  // namespace

void Deployer::StartRollout(Runtime& model, int64_t champion, int64_t candidate,
                            const std::string& digest) {
  const DeployedModel& spec = model.spec;
  State::Model& state = state_->models[spec.name];
  const Clock::WallTime wall = options_.clock->WallNow();
  state.rollout = {{"mode", std::string(RolloutModeName(spec.rollout.mode))},
                   {"share", spec.rollout.share},
                   {"champion_version", champion},
                   {"candidate_version", candidate},
                   {"candidate_digest", digest},
                   {"started", FormatRfc3339(wall)},
                   {"started_ms", WallMs(wall)}};
  if (Status saved = SaveState(); !saved.ok()) {
    log::Error("cannot write the deployment state", {{"error", saved}});
  }
  router_->Set(spec.name, std::make_shared<Rollout>(spec.name, spec.rollout, champion, candidate,
                                                    digest, options_.clock->Now()));
  rollout_active_->With({spec.name})->Set(spec.rollout.mode == RolloutMode::kShadow ? 2.0 : 1.0);
  log::Info("started a rollout: the new version is tried before it replaces the current one",
            {{"model", spec.name},
             {"mode", RolloutModeName(spec.rollout.mode)},
             {"share", spec.rollout.share},
             {"champion", champion},
             {"candidate", candidate},
             {"digest", digest},
             {"period_s", static_cast<double>(spec.rollout.period.count()) / 1000.0}});
}

void Deployer::EndRollout(Runtime& model, std::string_view outcome, const std::string& reason,
                          const std::optional<RolloutNumbers>& numbers) {
  const DeployedModel& spec = model.spec;
  State::Model& state = state_->models[spec.name];
  router_->Clear(spec.name);
  rollout_active_->With({spec.name})->Set(0);
  if (state.rollout.is_null()) return;
  Json entry = state.rollout;
  entry.erase("started_ms");
  entry["ended"] = FormatRfc3339(options_.clock->WallNow());
  entry["outcome"] = std::string(outcome);
  entry["reason"] = reason;
  if (numbers) {
    entry["counts"] = CountsJson(*numbers);
    entry["numbers"] = NumbersJson(*numbers, spec.rollout.limits);
  }
  state.history.push_back(std::move(entry));
  while (state.history.size() > kMaxHistory) state.history.erase(state.history.begin());
  const Json ended = state.rollout;
  state.rollout = Json();
  if (Status saved = SaveState(); !saved.ok()) {
    log::Error("cannot write the deployment state", {{"error", saved}});
  }
  rollout_outcomes_->With({spec.name, std::string(outcome)})->Increment();
  const auto fields =
      std::initializer_list<log::Field>{{"model", spec.name},
                                        {"outcome", outcome},
                                        {"reason", reason},
                                        {"candidate", ended.value("candidate_version", int64_t{0})},
                                        {"champion", ended.value("champion_version", int64_t{0})},
                                        {"digest", ended.value("candidate_digest", std::string())}};
  if (outcome == "promoted") {
    log::Info("rollout finished: the new version is promoted", fields);
  } else {
    log::Warn("rollout finished: the new version is not promoted", fields);
  }
}

void Deployer::DropVersion(Runtime& model, int64_t version) {
  State::Model& state = state_->models[model.spec.name];
  std::error_code ec;
  fs::remove_all(options_.repository / model.spec.name / std::to_string(version), ec);
  if (ec) {
    log::Warn("cannot remove a model version",
              {{"model", model.spec.name}, {"version", version}, {"error", ec.message()}});
  }
  std::erase_if(state.versions, [&](const State::Version& v) { return v.version == version; });
  if (Status saved = SaveState(); !saved.ok()) {
    log::Error("cannot write the deployment state", {{"error", saved}});
  }
  options_.manager->Reconcile(false);  // unloads it (requests in flight finish first)
}

void Deployer::AdvanceRollout(Runtime& model) {
  std::shared_ptr<Rollout> rollout = router_->Find(model.spec.name);
  if (!rollout) return;
  const DeployedModel& spec = model.spec;
  const RolloutVerdict verdict = rollout->Evaluate(options_.clock->Now());
  const RolloutNumbers& n = verdict.numbers;
  rollout_requests_->With({spec.name, "champion", "ok"})
      ->Set(static_cast<double>(n.champion.requests - n.champion.errors));
  rollout_requests_->With({spec.name, "champion", "error"})
      ->Set(static_cast<double>(n.champion.errors));
  rollout_requests_->With({spec.name, "candidate", "ok"})
      ->Set(static_cast<double>(n.candidate.requests - n.candidate.errors));
  rollout_requests_->With({spec.name, "candidate", "error"})
      ->Set(static_cast<double>(n.candidate.errors));
  if (n.score_psi) rollout_score_psi_->With({spec.name})->Set(*n.score_psi);
  if (verdict.action == RolloutVerdict::Action::kWait) return;

  State::Model& state = state_->models[spec.name];
  const std::string digest = rollout->candidate_digest();
  if (verdict.action == RolloutVerdict::Action::kPromote) {
    EndRollout(model, "promoted", verdict.reason, n);
    options_.manager->SetPreferredVersion(spec.name, std::nullopt);
    options_.manager->Reconcile(false);  // the champion leaves (the policy serves the newest)
    CollectGarbage(model);
    PublishState(model);
    return;
  }
  // Roll back: requests stop going to the candidate at once (the router forgets it, the
  // champion is still preferred), then the candidate is unloaded and removed.
  EndRollout(model, "rolled_back", verdict.reason, n);
  state.rolled_back_digest = digest;
  state.rolled_back_reason = "rolled back: " + verdict.reason;
  DropVersion(model, rollout->candidate());  // saves the state
  options_.manager->SetPreferredVersion(spec.name, std::nullopt);
  Refuse(model, digest, "rolled_back", state.rolled_back_reason);
  PublishState(model);
}

void Deployer::ResumeRollouts() {
  const Clock::WallTime wall = options_.clock->WallNow();
  for (const auto& runtime : models_) {
    Runtime& model = *runtime;
    State::Model& state = state_->models[model.spec.name];
    if (state.rollout.is_null()) continue;
    const int64_t champion = state.rollout.value("champion_version", int64_t{0});
    const int64_t candidate = state.rollout.value("candidate_version", int64_t{0});
    const std::string digest = state.rollout.value("candidate_digest", std::string());
    const auto has = [&](int64_t number) {
      return std::any_of(state.versions.begin(), state.versions.end(),
                         [&](const State::Version& v) { return v.version == number; });
    };
    const bool candidate_is_current = !state.versions.empty() &&
                                      state.versions.back().version == candidate &&
                                      state.versions.back().digest.str() == digest;
    if (!candidate_is_current) {
      // Recover() removed it (it never loaded) or the state is inconsistent: the champion serves.
      EndRollout(model, "rolled_back", "restart: the candidate is not on disk", std::nullopt);
      continue;
    }
    if (!has(champion)) {
      EndRollout(model, "promoted", "restart: the champion is not on disk", std::nullopt);
      continue;
    }
    if (model.spec.rollout.mode == RolloutMode::kImmediate) {
      EndRollout(model, "promoted", "restart: the deployment no longer asks for a rollout",
                 std::nullopt);
      continue;
    }
    // Resume with the original start time; the counts start again.
    const int64_t started_ms = state.rollout.value("started_ms", WallMs(wall));
    const auto elapsed = std::max(std::chrono::milliseconds(0),
                                  std::chrono::milliseconds(WallMs(wall) - started_ms));
    options_.manager->SetPreferredVersion(model.spec.name, champion);
    router_->Set(model.spec.name,
                 std::make_shared<Rollout>(model.spec.name, model.spec.rollout, champion, candidate,
                                           digest, options_.clock->Now() - elapsed));
    rollout_active_->With({model.spec.name})
        ->Set(model.spec.rollout.mode == RolloutMode::kShadow ? 2.0 : 1.0);
    log::Info("resuming a rollout after a restart (its counts start again)",
              {{"model", model.spec.name},
               {"champion", champion},
               {"candidate", candidate},
               {"elapsed_s", static_cast<double>(elapsed.count()) / 1000.0}});
  }
}

void Deployer::CollectGarbage(Runtime& model) {
  State::Model& state = state_->models[model.spec.name];
  std::set<int64_t> serving;
  for (const auto& servable : options_.manager->ReadyVersions(model.spec.name)) {
    serving.insert(servable->config.version);
  }
  const fs::path dir = options_.repository / model.spec.name;
  std::set<int64_t> remove;
  int kept = 0;
  for (auto it = state.versions.rbegin(); it != state.versions.rend(); ++it) {
    if (kept < model.spec.keep_versions) {
      ++kept;
    } else if (!serving.count(it->version)) {
      remove.insert(it->version);
    }
  }
  if (remove.empty()) return;
  for (int64_t number : remove) {
    std::error_code ec;
    fs::remove_all(dir / std::to_string(number), ec);
    if (ec) {
      log::Warn("cannot remove an old model version",
                {{"model", model.spec.name}, {"version", number}, {"error", ec.message()}});
      continue;
    }
    std::erase_if(state.versions, [&](const State::Version& v) { return v.version == number; });
    log::Info("removed an old model version", {{"model", model.spec.name}, {"version", number}});
  }
  if (Status saved = SaveState(); !saved.ok()) {
    log::Error("cannot write the deployment state", {{"error", saved}});
  }
  CollectBlobs();
}

void Deployer::CollectBlobs() {
  // Version folders hard-link their files to the cache, so a cached blob with one link is used
  // by no version on disk. Across file systems the files are copies and this says nothing.
  if (!hard_links_) return;
  std::error_code ec;
  const fs::path blobs = options_.config.cache_dir / kBlobDir / "sha256";
  std::vector<fs::path> unused;
  for (fs::directory_iterator it(blobs, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.find('.') != std::string::npos) continue;  // a partial download, kept to resume
    struct stat info {};
    if (::lstat(it->path().c_str(), &info) == 0 && S_ISREG(info.st_mode) && info.st_nlink == 1) {
      unused.push_back(it->path());
    }
  }
  for (const fs::path& path : unused) fs::remove(path, ec);
}

void Deployer::PublishState(const Runtime& model) {
  const State::Model& state = state_->models[model.spec.name];
  std::vector<LocalVersionReport> versions;
  for (const State::Version& v : state.versions) {
    versions.push_back({v.version, v.digest.str(), v.counter, v.accepted_at, v.loaded});
  }
  local_version_->With({model.spec.name})
      ->Set(state.versions.empty() ? 0.0 : static_cast<double>(state.versions.back().version));
  Json rollout = state.rollout;
  if (rollout.is_object()) rollout.erase("started_ms");
  std::lock_guard<std::mutex> lock(report_mu_);
  ModelDeploymentReport& report = report_[model.index];
  report.rollout_json = rollout.dump();
  report.rollout_history_json = state.history.dump();
  report.local_versions = std::move(versions);
  report.counter_floor = state.counter_floor;
  if (state.versions.empty()) {
    report.digest.clear();
    report.local_version = 0;
    report.counter = 0;
  } else {
    report.digest = state.versions.back().digest.str();
    report.local_version = state.versions.back().version;
    report.counter = state.versions.back().counter;
  }
}

std::vector<ModelDeploymentReport> Deployer::Report() const {
  std::lock_guard<std::mutex> lock(report_mu_);
  return report_;
}

Json Deployer::RolloutJson(const ModelDeploymentReport& report) const {
  Json json = Json::parse(report.rollout_json, nullptr, false);
  Json history = Json::parse(report.rollout_history_json, nullptr, false);
  const DeployedModel* spec = nullptr;
  for (const DeployedModel& m : options_.config.models) {
    if (m.name == report.name) spec = &m;
  }
  if (!json.is_object()) {
    json = {{"state", "none"},
            {"mode", spec ? std::string(RolloutModeName(spec->rollout.mode)) : "immediate"}};
  } else {
    json["state"] = json.value("mode", "canary");
    if (std::shared_ptr<Rollout> live = router_->Find(report.name)) {
      const RolloutNumbers n = live->Numbers(options_.clock->Now());
      json["elapsed_s"] = n.elapsed_s;
      json["counts"] = CountsJson(n);
      json["numbers"] = NumbersJson(n, live->policy().limits);
      json["period_s"] = static_cast<double>(live->policy().period.count()) / 1000.0;
      json["min_requests"] = live->policy().min_requests;
    }
  }
  json["history"] = history.is_array() ? history : Json::array();
  return json;
}

std::string Deployer::ReportJson() const {
  const auto or_null = [](const std::string& text) { return text.empty() ? Json() : Json(text); };
  Json models = Json::array();
  for (const ModelDeploymentReport& r : Report()) {
    Json versions = Json::array();
    for (const LocalVersionReport& v : r.local_versions) {
      versions.push_back({{"version", v.version},
                          {"digest", v.digest},
                          {"counter", v.counter},
                          {"accepted_at", v.accepted_at},
                          {"loaded", v.loaded}});
    }
    Json refusal;
    if (r.last_refusal) {
      refusal = {{"digest", r.last_refusal->digest},
                 {"reason", r.last_refusal->reason},
                 {"message", r.last_refusal->message},
                 {"at", r.last_refusal->at}};
    }
    models.push_back({{"name", r.name},
                      {"ref", r.ref},
                      {"repository", r.repository},
                      {"digest", or_null(r.digest)},
                      {"local_version", r.local_version},
                      {"counter", r.counter},
                      {"counter_floor", r.counter_floor},
                      {"local_versions", std::move(versions)},
                      {"last_check", or_null(r.last_check)},
                      {"last_contact", or_null(r.last_contact)},
                      {"last_result", std::string(CheckResultName(r.last_result))},
                      {"last_error", or_null(r.last_error)},
                      {"last_refusal", std::move(refusal)},
                      {"checks", r.checks},
                      {"rollout", RolloutJson(r)}});
  }
  Json keys = Json::array();
  for (const reg::PublicKey& key : options_.config.trusted_keys) keys.push_back(key.key_id);
  Json json = {{"poll_interval_s", static_cast<double>(poll_interval().count()) / 1000.0},
               {"cache_dir", options_.config.cache_dir.string()},
               {"repository", options_.repository.string()},
               {"trusted_key_ids", std::move(keys)},
               {"models", std::move(models)}};
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace edgeloop::serving
