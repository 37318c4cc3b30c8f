#include "functions/chain_config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

#include "functions/compliance.h"
#include "functions/exec.h"
#include "functions/upload.h"

namespace edgeloop::functions {
namespace {

std::filesystem::path Resolve(const std::filesystem::path& base, const std::string& path) {
  std::filesystem::path p(path);
  return p.is_relative() ? base / p : p;
}

Status CheckKeys(const YAML::Node& node, std::string_view where,
                 std::initializer_list<std::string_view> known) {
  if (!node.IsMap()) return InvalidArgumentError(std::string(where) + " must be a mapping");
  for (const auto& item : node) {
    const std::string key = item.first.as<std::string>();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return InvalidArgumentError(std::string(where) + ": unknown key '" + key + "'");
    }
  }
  return Status::Ok();
}

StatusOr<std::string> ReadTokenFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token)) {
    return InvalidArgumentError("cannot read the token file " + path.string());
  }
  const auto first = token.find_first_not_of(" \t\r");
  const auto last = token.find_last_not_of(" \t\r");
  if (first == std::string::npos) return InvalidArgumentError(path.string() + " is empty");
  return token.substr(first, last - first + 1);
}

StatusOr<std::unique_ptr<Function>> MakeStage(const std::string& kind, const YAML::Node& node,
                                              const std::filesystem::path& base, Clock* clock,
                                              metrics::Registry* metrics) {
  if (kind == "exec") {
    RETURN_IF_ERROR(CheckKeys(node, "exec", {"name", "command", "timeout_ms"}));
    ExecOptions options;
    options.metrics = metrics;
    if (node["name"]) options.name = node["name"].as<std::string>();
    if (!node["command"] || !node["command"].IsSequence() || node["command"].size() == 0) {
      return InvalidArgumentError("exec: 'command' must be a non-empty list (argv; no shell)");
    }
    for (const auto& arg : node["command"]) options.argv.push_back(arg.as<std::string>());
    if (options.argv[0].find('/') != std::string::npos) {
      options.argv[0] = Resolve(base, options.argv[0]).string();
    }
    if (node["timeout_ms"])
      options.timeout = std::chrono::milliseconds(node["timeout_ms"].as<int64_t>());
    ASSIGN_OR_RETURN(auto function, ExecFunction::Create(std::move(options)));
    return std::unique_ptr<Function>(std::move(function));
  }
  if (kind == "compliance") {
    RETURN_IF_ERROR(CheckKeys(node, "compliance", {"policy", "audit_log"}));
    if (!node["policy"] || !node["audit_log"]) {
      return InvalidArgumentError("compliance: 'policy' and 'audit_log' are required");
    }
    ComplianceOptions options;
    options.policy_file = Resolve(base, node["policy"].as<std::string>());
    options.audit_log = Resolve(base, node["audit_log"].as<std::string>());
    options.clock = clock;
    options.metrics = metrics;
    ASSIGN_OR_RETURN(auto function, ComplianceFunction::Create(options));
    return std::unique_ptr<Function>(std::move(function));
  }
  if (kind == "upload") {
    RETURN_IF_ERROR(CheckKeys(node, "upload",
                              {"destination", "url", "health_url", "folder", "token_file",
                               "compression", "bandwidth_bytes_per_s", "max_request_bytes",
                               "timeout_ms", "ca_file", "client_cert_file", "client_key_file"}));
    UploadOptions options;
    options.clock = clock;
    options.metrics = metrics;
    if (!node["destination"]) return InvalidArgumentError("upload: 'destination' is required");
    options.destination = node["destination"].as<std::string>();
    if (static_cast<bool>(node["url"]) == static_cast<bool>(node["folder"])) {
      return InvalidArgumentError("upload: give exactly one of 'url' and 'folder'");
    }
    if (node["url"]) {
      HttpSinkOptions http;
      http.url = node["url"].as<std::string>();
      if (node["health_url"]) http.health_url = node["health_url"].as<std::string>();
      if (node["token_file"]) {
        ASSIGN_OR_RETURN(http.token,
                         ReadTokenFile(Resolve(base, node["token_file"].as<std::string>())));
      }
      if (node["timeout_ms"]) {
        http.timeout = std::chrono::milliseconds(node["timeout_ms"].as<int64_t>());
      }
      for (auto [key, field] : {std::pair{"ca_file", &http.ca_file},
                                {"client_cert_file", &http.client_cert_file},
                                {"client_key_file", &http.client_key_file}}) {
        if (!node[key]) continue;
        *field = Resolve(base, node[key].as<std::string>()).string();
        if (!std::filesystem::is_regular_file(*field)) {
          return InvalidArgumentError(std::string("upload: ") + key + " '" + *field +
                                      "' is not a readable file");
        }
      }
      ASSIGN_OR_RETURN(options.sink, MakeHttpSink(std::move(http)));
    } else {
      options.sink = MakeFolderSink(Resolve(base, node["folder"].as<std::string>()));
    }
    if (node["compression"]) {
      ASSIGN_OR_RETURN(options.encoding, ParseEncoding(node["compression"].as<std::string>()));
    }
    if (node["bandwidth_bytes_per_s"]) {
      options.bandwidth_bytes_per_second = node["bandwidth_bytes_per_s"].as<int64_t>();
    }
    if (node["max_request_bytes"]) {
      options.max_request_bytes = node["max_request_bytes"].as<size_t>();
    }
    ASSIGN_OR_RETURN(auto function, UploadFunction::Create(std::move(options)));
    return std::unique_ptr<Function>(std::move(function));
  }
  return InvalidArgumentError("unknown function '" + kind + "' (exec, compliance, upload)");
}

}  // namespace

StatusOr<std::vector<std::unique_ptr<Function>>> ParseChain(std::string_view yaml_text,
                                                            const std::filesystem::path& base_dir,
                                                            Clock* clock,
                                                            metrics::Registry* metrics) {
  std::vector<std::unique_ptr<Function>> chain;
  try {
    const YAML::Node root = YAML::Load(std::string(yaml_text));
    RETURN_IF_ERROR(CheckKeys(root, "function file", {"functions"}));
    const YAML::Node list = root["functions"];
    if (!list || !list.IsSequence() || list.size() == 0) {
      return InvalidArgumentError("function file: 'functions' must be a non-empty list");
    }
    bool compliance_seen = false;
    for (const auto& item : list) {
      if (!item.IsMap() || item.size() != 1) {
        return InvalidArgumentError(
            "function file: each entry is one mapping such as '- upload: {...}'");
      }
      const std::string kind = item.begin()->first.as<std::string>();
      if (kind == "upload" && !compliance_seen) {
        return InvalidArgumentError(
            "function file: an upload must come after a compliance stage (nothing leaves "
            "unfiltered)");
      }
      if (kind == "compliance") compliance_seen = true;
      auto stage = MakeStage(kind, item.begin()->second, base_dir, clock, metrics);
      if (!stage.ok()) return stage.status();
      chain.push_back(std::move(*stage));
    }
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(std::string("function file: ") + e.what());
  }
  return chain;
}

StatusOr<std::vector<std::unique_ptr<Function>>> LoadChain(const std::filesystem::path& path,
                                                           Clock* clock,
                                                           metrics::Registry* metrics) {
  std::ifstream in(path);
  if (!in) return InvalidArgumentError("cannot read the function file " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  auto chain = ParseChain(text.str(), path.parent_path(), clock, metrics);
  if (!chain.ok()) return chain.status().WithContext(path.string());
  return chain;
}

}  // namespace edgeloop::functions
