// `edgeloop train SPEC.yaml`: trains a model from a lake table snapshot, writes the model folder
// and its card, and with --push/--promote publishes it when the gate passes. docs/train.md.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "common/build_info.h"
#include "lake/lake.h"
#include "registry/digest.h"
#include "registry/package.h"
#include "registry/signing.h"
#include "registry/store.h"
#include "train/lake_source.h"
#include "train/train.h"

namespace edgeloop::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct TrainCliOptions {
  std::string spec;
  std::string lake;
  int64_t snapshot = 0;
  std::string out;
  std::string champion;
  std::string push;
  std::string promote;
  std::string key_file;
  std::string reason;
  bool json = false;
  bool quiet = false;
  // Store access, as in `edgeloop model`.
  bool allow_http = false;
  bool insecure_tls = false;
  std::string ca_file;
  std::string username;
  std::string password_file;
};

constexpr int kGateRefused = 6;

int Fail(const Status& status) {
  std::cerr << "edgeloop train: " << status.message() << "\n";
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kAlreadyExists:
      return 2;
    case StatusCode::kPermissionDenied:
    case StatusCode::kUnauthenticated:
      return 3;
    case StatusCode::kNotFound:
      return 4;
    case StatusCode::kUnavailable:
      return 5;
    default:
      return 1;
  }
}

StatusOr<registry::StoreOptions> StoreOptionsFrom(const TrainCliOptions& o) {
  registry::StoreOptions options;
  options.allow_http = o.allow_http;
  options.insecure_tls = o.insecure_tls;
  options.ca_file = o.ca_file;
  options.credentials.username = o.username;
  if (const char* user = std::getenv("EDGELOOP_REGISTRY_USERNAME");
      user != nullptr && o.username.empty()) {
    options.credentials.username = user;
  }
  if (!o.password_file.empty()) {
    std::ifstream in(o.password_file);
    if (!in || !std::getline(in, options.credentials.password)) {
      return InvalidArgumentError("cannot read the password file " + o.password_file);
    }
  } else if (const char* password = std::getenv("EDGELOOP_REGISTRY_PASSWORD")) {
    options.credentials.password = password;
  }
  return options;
}

std::string Actor() {
  const char* user = std::getenv("USER");
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  return std::string(user != nullptr ? user : "unknown") + "@" + host;
}

// A temporary folder removed with its content when the object goes away.
class ScratchDir {
 public:
  ScratchDir() {
    char pattern[] = "/tmp/edgeloop-train-XXXXXX";
    if (::mkdtemp(pattern) != nullptr) path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A folder is used as it is; anything else is a reference to pull into `scratch`.
StatusOr<train::ChampionSource> FetchChampion(const TrainCliOptions& o, const fs::path& scratch) {
  std::error_code ec;
  if (fs::is_directory(o.champion, ec)) return train::ChampionSource{o.champion, o.champion, ""};
  if (o.champion.find("://") == std::string::npos) {
    return NotFoundError("the champion " + o.champion +
                         " is neither a model folder nor a reference (oci://, layout://)");
  }
  ASSIGN_OR_RETURN(registry::Reference ref, registry::ParseReference(o.champion));
  ASSIGN_OR_RETURN(registry::StoreOptions options, StoreOptionsFrom(o));
  ASSIGN_OR_RETURN(std::unique_ptr<registry::Store> store, registry::OpenStore(ref, options));
  ASSIGN_OR_RETURN(
      registry::PulledModel pulled,
      registry::PullPackage(*store, ref.TagOrDigest(), scratch / "champion", "", nullptr));
  return train::ChampionSource{scratch / "champion", o.champion, pulled.manifest.digest.str()};
}

struct Published {
  Json json = Json::object();
  std::string text;
};

StatusOr<Published> Publish(const TrainCliOptions& o, const fs::path& dir,
                            const train::TrainResult& result) {
  Published out;
  ASSIGN_OR_RETURN(registry::Reference ref, registry::ParseReference(o.push));
  ASSIGN_OR_RETURN(registry::StoreOptions options, StoreOptionsFrom(o));
  ASSIGN_OR_RETURN(std::unique_ptr<registry::Store> store, registry::OpenStore(ref, options, true));
  ASSIGN_OR_RETURN(registry::ModelPackage package, registry::BuildPackage(dir, {}));
  const std::string tag = ref.digest ? "" : ref.tag;
  RETURN_IF_ERROR(registry::PushPackage(*store, package, tag, nullptr));
  out.json["pushed"] = {{"reference", ref.ToString()}, {"digest", package.manifest.digest.str()}};
  out.text = "pushed " + ref.ToString() + " (" + package.manifest.digest.str() + ")\n";
  if (o.key_file.empty()) return out;
  ASSIGN_OR_RETURN(registry::SigningKey key, registry::ReadSigningKey(o.key_file));
  registry::SignOptions sign;
  sign.repository = ref.repository;
  if (o.promote.empty()) {
    RETURN_IF_ERROR(registry::SignArtifact(*store, package.manifest, key, sign).status());
    out.text += "signed with key " + key.public_key.key_id + "\n";
    return out;
  }
  std::string reason = o.reason;
  if (reason.empty()) {
    reason = "edgeloop train: gate passed";
    const Json& gate = result.card.contains("gate") ? result.card["gate"] : Json();
    if (gate.is_object()) {
      for (const Json& check : gate["checks"]) {
        if (check["check"].get<std::string>().rfind("beats champion", 0) == 0) {
          reason += " (" + check["check"].get<std::string>() + " by " +
                    std::to_string(check["value"].get<double>()) + ")";
        }
      }
    }
  }
  ASSIGN_OR_RETURN(registry::PromotionRecord record,
                   registry::Promote(*store, package.manifest.digest.str(), o.promote, Actor(),
                                     reason, key, sign));
  out.json["promoted"] = {{"alias", record.alias}, {"to", record.to.str()}, {"from", record.from}};
  out.text += "promoted " + ref.WithTag(record.alias).ToString() + " -> " + record.to.str() + "\n";
  return out;
}

std::string Metric(const Json& metrics, const char* key) {
  if (!metrics.contains(key)) return "";
  char text[64];
  std::snprintf(text, sizeof(text), " %s=%.4f", key, metrics[key].get<double>());
  return text;
}

int Run(const TrainCliOptions& o) {
  StatusOr<train::TrainSpec> spec = train::LoadTrainSpec(o.spec);
  if (!spec.ok()) return Fail(spec.status());
  std::ifstream spec_file(o.spec, std::ios::binary);
  std::stringstream spec_bytes;
  spec_bytes << spec_file.rdbuf();
  const std::string lake_root = o.lake.empty() ? spec->lake : o.lake;
  if (lake_root.empty()) return Fail(InvalidArgumentError("no lake: give --lake or 'lake:'"));
  if (o.out.empty() && o.push.empty()) {
    return Fail(InvalidArgumentError("give --out DIR (the model folder) or --push REF"));
  }
  if (!o.promote.empty() && (o.push.empty() || o.key_file.empty())) {
    return Fail(InvalidArgumentError("--promote needs --push REF and --key FILE"));
  }
  if (!o.push.empty()) {
    if (StatusOr<registry::Reference> ref = registry::ParseReference(o.push); !ref.ok()) {
      return Fail(ref.status().WithContext("--push"));
    }
  }

  ScratchDir scratch;
  if (scratch.path().empty()) return Fail(InternalError("cannot create a temporary folder"));
  train::TrainOptions options;
  options.out_dir = o.out.empty() ? scratch.path() / "model" : fs::path(o.out);
  options.code_version =
      std::string("edgeloop ") + build_info::kVersion + " (" + build_info::kGitCommit + ")";
  auto columns = train::RequiredColumns(*spec);
  if (!o.champion.empty()) {
    StatusOr<train::ChampionSource> champion = FetchChampion(o, scratch.path());
    if (!champion.ok()) return Fail(champion.status().WithContext("--champion"));
    options.champion = *champion;
    // The champion may read columns the challenger does not.
    auto extra = train::ChampionColumns(champion->dir);
    if (!extra.ok()) return Fail(extra.status().WithContext("--champion"));
    for (const auto& column : *extra) {
      bool present = false;
      for (const auto& existing : columns) present = present || existing.first == column.first;
      if (!present) columns.push_back(column);
    }
  }

  StatusOr<std::unique_ptr<lake::Lake>> lake = lake::Lake::Open(lake_root, {}, false);
  if (!lake.ok()) return Fail(lake.status());
  std::optional<int64_t> snapshot = spec->snapshot;
  if (o.snapshot > 0) snapshot = o.snapshot;
  const auto read_started = std::chrono::steady_clock::now();
  StatusOr<train::TableRead> read =
      train::ReadLakeTable(**lake, spec->table, snapshot, columns, train::TrainThreads(*spec));
  if (!read.ok()) return Fail(read.status());
  const double read_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - read_started)
          .count();

  if (!o.quiet) {
    std::fprintf(stderr, "training %s on %s@%lld (%lld rows)\n", spec->name.c_str(),
                 spec->table.c_str(), static_cast<long long>(read->snapshot),
                 static_cast<long long>(read->table.num_rows));
    options.progress = [](const train::RoundReport& r) {
      std::fprintf(stderr, "%s%s\n", r.eval_line.c_str(), r.improved ? "  *" : "");
    };
  }
  train::Lineage lineage{fs::absolute(lake_root).lexically_normal().string(), spec->table,
                         read->snapshot, read->snapshot_time,
                         registry::Digest::Of(spec_bytes.str()).str()};
  StatusOr<train::TrainResult> result = train::TrainOnTable(*spec, read->table, lineage, options);
  if (!result.ok()) return Fail(result.status());

  Json summary = result->summary;
  summary["timings_ms"]["read snapshot"] = std::round(read_ms * 10) / 10;
  std::string text;
  const Json& test = result->card.contains("metrics") ? result->card["metrics"]["test"] : Json();
  text += "model " + spec->name + " version " + summary["version"].get<std::string>();
  if (!o.out.empty()) text += " in " + o.out;
  text += "\n";
  if (test.is_object()) {
    text += "test:" + Metric(test, "roc_auc") + Metric(test, "pr_auc") + Metric(test, "log_loss") +
            Metric(test, "accuracy") + Metric(test, "f1") + Metric(test, "rmse") +
            Metric(test, "mae") + Metric(test, "r2") + "\n";
  }
  if (result->card.contains("gate")) {
    const Json& gate = result->card["gate"];
    text += std::string("gate: ") + (gate["passed"].get<bool>() ? "passed" : "refused") + "\n";
    for (const Json& failure : gate["failures"]) text += "  " + failure.get<std::string>() + "\n";
  }
  int code = 0;
  if (!result->gate_passed) {
    code = kGateRefused;
    if (!o.push.empty()) text += "not pushed: the gate refused the model\n";
  } else if (!o.push.empty()) {
    StatusOr<Published> published = Publish(o, options.out_dir, *result);
    if (!published.ok()) return Fail(published.status());
    summary.update(published->json);
    text += published->text;
  }
  if (o.out.empty()) summary.erase("out");
  if (o.json) {
    std::cout << summary.dump(2) << "\n";
  } else {
    std::cout << text;
  }
  return code;
}

}  // namespace

Command AddTrainCommand(CLI::App& root) {
  CLI::App* app = root.add_subcommand(
      "train", "Train and evaluate a model from a lake table snapshot (docs/train.md)");
  auto o = std::make_shared<TrainCliOptions>();
  app->add_option("spec", o->spec, "Training spec (YAML)")->required();
  app->add_option("--lake", o->lake, "Lake folder (default: the spec's 'lake')");
  app->add_option("--snapshot", o->snapshot, "Lake snapshot to read (default: spec, else latest)")
      ->check(CLI::PositiveNumber);
  app->add_option("--out", o->out, "Model folder to write (must not exist or be empty)");
  app->add_option("--champion", o->champion,
                  "The current champion (model folder or oci:// / layout:// reference) to "
                  "evaluate on the same test rows and gate against");
  app->add_option("--push", o->push, "Push the model to REF when the gate passes");
  app->add_option("--promote", o->promote, "Move this alias to the pushed model (needs --key)");
  app->add_option("--key", o->key_file, "Signing key (PREFIX.key) for --push and --promote");
  app->add_option("--reason", o->reason, "Promotion reason (default: the gate's numbers)");
  app->add_flag("--json", o->json, "Print the summary as JSON on stdout");
  app->add_flag("--quiet", o->quiet, "No per-round progress on stderr");
  app->add_flag("--allow-http", o->allow_http, "Allow plain HTTP to a registry off loopback");
  app->add_flag("--insecure-tls", o->insecure_tls, "Do not verify the registry's certificate");
  app->add_option("--ca-file", o->ca_file, "Extra CA bundle for the registry's certificate");
  app->add_option("--username", o->username, "Registry user (or EDGELOOP_REGISTRY_USERNAME)");
  app->add_option("--password-file", o->password_file,
                  "File holding the registry password (or EDGELOOP_REGISTRY_PASSWORD)");
  return {app, [o] { return Run(*o); }};
}

}  // namespace edgeloop::cli
