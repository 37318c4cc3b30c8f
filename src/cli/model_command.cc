// `edgeloop model ...`: package, push, pull, tag, list, inspect, sign, verify and promote model
// artifacts in OCI stores (registries and image-layout folders).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/containerize.h"
#include "common/clock.h"
#include "registry/package.h"
#include "registry/referrers.h"
#include "registry/signing.h"
#include "registry/store.h"

namespace edgeloop::cli {
namespace {

using Json = nlohmann::json;
using registry::Descriptor;
using registry::Reference;

struct ModelOptions {
  // Store access.
  bool allow_http = false;
  bool insecure_tls = false;
  std::string ca_file;
  std::string username;
  std::string password_file;
  int64_t chunk_size = 0;
  bool json = false;
  // Subcommand arguments.
  std::string dir;
  std::string ref;
  std::string dest;
  std::string tag;
  std::string name;
  std::string version;
  std::string created;
  std::string key_file;
  std::vector<std::string> trusted_keys;
  std::string repository;
  int64_t counter = 0;
  int64_t expires_days = 365;
  int64_t min_counter = 0;
  std::string alias;
  std::string reason;
  std::string by;
  std::string cache;
  std::string out;
  bool all_tags = false;
  bool no_referrers = false;
  std::string base;  // containerize: the base server image
};

// Prints progress for large transfers on a terminal: one line, rewritten.
class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled && ::isatty(2)) {}
  ~Progress() {
    if (shown_) std::fputc('\n', stderr);
  }
  registry::ProgressFn Callback() {
    if (!enabled_) return nullptr;
    return [this](int64_t done, int64_t total) {
      if (total < (8 << 20)) return;  // small blobs are not worth a line
      const int percent = total > 0 ? static_cast<int>(done * 100 / total) : 100;
      if (percent == last_percent_) return;
      last_percent_ = percent;
      shown_ = true;
      std::fprintf(stderr, "\r  %3d%%  %lld / %lld MB", percent, static_cast<long long>(done >> 20),
                   static_cast<long long>(total >> 20));
      std::fflush(stderr);
    };
  }

 private:
  bool enabled_;
  bool shown_ = false;
  int last_percent_ = -1;
};

int Fail(const Status& status) {
  std::cerr << "edgeloop model: " << status.message() << "\n";
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

StatusOr<registry::StoreOptions> MakeStoreOptions(const ModelOptions& o) {
  registry::StoreOptions options;
  options.allow_http = o.allow_http;
  options.insecure_tls = o.insecure_tls;
  options.ca_file = o.ca_file;
  options.chunk_size = o.chunk_size;
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

struct Opened {
  Reference ref;
  std::unique_ptr<registry::Store> store;
};

StatusOr<Opened> Open(const ModelOptions& o, const std::string& text, bool create) {
  ASSIGN_OR_RETURN(Reference ref, registry::ParseReference(text));
  ASSIGN_OR_RETURN(registry::StoreOptions options, MakeStoreOptions(o));
  ASSIGN_OR_RETURN(std::unique_ptr<registry::Store> store,
                   registry::OpenStore(ref, options, create));
  return Opened{std::move(ref), std::move(store)};
}

std::string RepositoryFor(const ModelOptions& o, const Reference& ref) {
  return o.repository.empty() ? ref.repository : o.repository;
}

StatusOr<std::vector<registry::PublicKey>> LoadTrusted(const ModelOptions& o) {
  std::vector<registry::PublicKey> keys;
  for (const std::string& path : o.trusted_keys) {
    ASSIGN_OR_RETURN(registry::PublicKey key, registry::ReadPublicKey(path));
    keys.push_back(std::move(key));
  }
  return keys;
}

void Print(const ModelOptions& o, const Json& json, const std::string& text) {
  if (o.json) {
    std::cout << json.dump(2) << "\n";
  } else if (!text.empty()) {
    std::cout << text << (text.back() == '\n' ? "" : "\n");
  }
}

Json DescriptorJson(const Descriptor& d) {
  Json json = {{"mediaType", d.media_type}, {"digest", d.digest.str()}, {"size", d.size}};
  if (!d.artifact_type.empty()) json["artifactType"] = d.artifact_type;
  if (!d.annotations.empty()) json["annotations"] = d.annotations;
  return json;
}

Status RunKeygen(const ModelOptions& o) {
  ASSIGN_OR_RETURN(registry::SigningKey key, registry::GenerateSigningKey());
  RETURN_IF_ERROR(registry::WriteKeyFiles(key, o.out));
  Print(o,
        {{"key_id", key.public_key.key_id},
         {"secret_key_file", o.out + ".key"},
         {"public_key_file", o.out + ".pub"}},
        "key " + key.public_key.key_id + ": secret " + o.out + ".key (keep it private), public " +
            o.out + ".pub (give it to the edges)");
  return Status::Ok();
}

Status RunPackage(const ModelOptions& o) {
  registry::PackageOptions options{o.name, o.version, o.created};
  ASSIGN_OR_RETURN(registry::ModelPackage package, registry::BuildPackage(o.dir, options));
  ASSIGN_OR_RETURN(Opened target, Open(o, o.ref, true));
  Progress progress(!o.json);
  RETURN_IF_ERROR(
      registry::PushPackage(*target.store, package, target.ref.tag, progress.Callback()));
  Print(o,
        {{"reference", target.ref.ToString()},
         {"name", package.name},
         {"version", package.version},
         {"digest", package.manifest.digest.str()},
         {"files", package.files.size()}},
        "packaged " + package.name + " version " + package.version + " as " +
            target.ref.ToString() + "\ndigest " + package.manifest.digest.str());
  return Status::Ok();
}

Status RunPush(const ModelOptions& o) {
  ASSIGN_OR_RETURN(Opened source, Open(o, o.ref, false));
  ASSIGN_OR_RETURN(Opened target, Open(o, o.dest, true));
  std::string tag = target.ref.digest ? "" : target.ref.tag;
  if (tag.empty() && !target.ref.digest && !source.ref.tag.empty()) tag = source.ref.tag;
  Progress progress(!o.json);
  ASSIGN_OR_RETURN(Descriptor copied,
                   registry::CopyArtifact(*source.store, source.ref.TagOrDigest(), *target.store,
                                          tag, !o.no_referrers, progress.Callback()));
  const std::string where = tag.empty() ? target.ref.WithDigest(copied.digest).ToString()
                                        : target.ref.WithTag(tag).ToString();
  Print(o, {{"reference", where}, {"digest", copied.digest.str()}},
        "copied to " + where + "\ndigest " + copied.digest.str());
  return Status::Ok();
}

// Verifies `subject` when trusted keys are given; returns the claims as JSON (null when not
// checked).
StatusOr<Json> MaybeVerify(const ModelOptions& o, registry::Store& store, const Reference& ref,
                           const Descriptor& subject) {
  if (o.trusted_keys.empty()) return Json();
  ASSIGN_OR_RETURN(std::vector<registry::PublicKey> trusted, LoadTrusted(o));
  registry::VerifyOptions options;
  options.repository = RepositoryFor(o, ref);
  options.trusted = std::move(trusted);
  options.now = Clock::Real()->WallNow();
  options.min_counter = o.min_counter;
  registry::TrustFailure failure;
  ASSIGN_OR_RETURN(registry::VerifiedSignature verified,
                   registry::VerifyArtifact(store, subject, options, &failure));
  return Json{{"key_id", verified.claims.key_id},
              {"counter", verified.claims.counter},
              {"expires", verified.claims.expires},
              {"signed_at", verified.claims.signed_at},
              {"repository", verified.claims.repository}};
}

Status RunPull(const ModelOptions& o) {
  ASSIGN_OR_RETURN(Opened source, Open(o, o.ref, false));
  ASSIGN_OR_RETURN(Descriptor subject, source.store->Resolve(source.ref.TagOrDigest()));
  // Verify before downloading anything but the manifest.
  ASSIGN_OR_RETURN(Json verified, MaybeVerify(o, *source.store, source.ref, subject));
  Progress progress(!o.json);
  ASSIGN_OR_RETURN(registry::PulledModel pulled,
                   registry::PullPackage(*source.store, subject.digest.str(), o.dest, o.cache,
                                         progress.Callback()));
  Print(o,
        {{"directory", o.dest},
         {"name", pulled.name},
         {"version", pulled.version},
         {"digest", pulled.manifest.digest.str()},
         {"signature", verified}},
        "pulled " + pulled.name + " version " + pulled.version + " (" +
            pulled.manifest.digest.str() + ") into " + o.dest +
            (verified.is_null()
                 ? "\nnot verified: pass --trusted-key to check its signature"
                 : "\nsignature verified (key " + verified["key_id"].get<std::string>() + ")"));
  return Status::Ok();
}

Status RunTag(const ModelOptions& o) {
  ASSIGN_OR_RETURN(Opened source, Open(o, o.ref, false));
  if (!registry::IsValidTag(o.tag)) return InvalidArgumentError("invalid tag '" + o.tag + "'");
  ASSIGN_OR_RETURN(registry::FetchedManifest manifest,
                   source.store->FetchManifest(source.ref.TagOrDigest()));
  RETURN_IF_ERROR(source.store->PushManifest(o.tag, manifest.bytes, manifest.media_type));
  Print(o, {{"reference", source.ref.WithTag(o.tag).ToString()}, {"digest", manifest.digest.str()}},
        source.ref.WithTag(o.tag).ToString() + " -> " + manifest.digest.str());
  return Status::Ok();
}

Status RunList(const ModelOptions& o) {
  ASSIGN_OR_RETURN(Opened source, Open(o, o.ref, false));
  ASSIGN_OR_RETURN(std::vector<std::string> tags, source.store->ListTags());
  Json list = Json::array();
  std::string text;
  for (const std::string& tag : tags) {
    const bool internal = tag.rfind("sha256-", 0) == 0 || tag.rfind("edgeloop-history-", 0) == 0;
    if (internal && !o.all_tags) continue;
    auto resolved = source.store->Resolve(tag);
    const std::string digest = resolved.ok() ? resolved->digest.str() : "?";
    list.push_back({{"tag", tag}, {"digest", digest}});
    text += tag + "\t" + digest + "\n";
  }
  Print(o, list, text.empty() ? "(no tags)" : text);
  return Status::Ok();
}

Status RunResolve(const ModelOptions& o) {
  ASSIGN_OR_RETURN(Opened source, Open(o, o.ref, false));
  ASSIGN_OR_RETURN(Descriptor d, source.store->Resolve(source.ref.TagOrDigest()));
  Print(o, DescriptorJson(d), d.digest.str());
  return Status::Ok();
}

Status RunInspect(const ModelOptions& o) {
  ASSIGN_OR_RETURN(Opened source, Open(o, o.ref, false));
  ASSIGN_OR_RETURN(registry::FetchedManifest fetched,
                   source.store->FetchManifest(source.ref.TagOrDigest()));
  Json out = {{"reference", source.ref.ToString()},
              {"digest", fetched.digest.str()},
              {"mediaType", fetched.media_type},
              {"manifest", Json::parse(fetched.bytes, nullptr, false)}};
  std::string text = "digest " + fetched.digest.str() + "\n";
  auto manifest = registry::ParseManifest(fetched.bytes);
  if (manifest.ok()) {
    if (manifest->config.media_type == registry::media_type::kModelCard) {
      ASSIGN_OR_RETURN(std::string card, source.store->ReadBlob(manifest->config));
      out["card"] = Json::parse(card, nullptr, false);
      text += "card " + out["card"].dump(2) + "\n";
    }
    text += "files:\n";
    for (const Descriptor& layer : manifest->layers) {
      auto title = layer.annotations.find(registry::annotation::kTitle);
      text += "  " + (title == layer.annotations.end() ? std::string("?") : title->second) + "  " +
              std::to_string(layer.size) + " bytes  " + layer.digest.str() + "\n";
    }
  }
  ASSIGN_OR_RETURN(std::vector<Descriptor> referrers,
                   registry::ListReferrers(*source.store, fetched.digest, ""));
  out["referrers"] = Json::array();
  for (const Descriptor& referrer : referrers) {
    out["referrers"].push_back(DescriptorJson(referrer));
    text += "referrer " + referrer.artifact_type + " " + referrer.digest.str() + "\n";
  }
  Print(o, out, text);
  return Status::Ok();
}

Status RunSign(const ModelOptions& o) {
  ASSIGN_OR_RETURN(registry::SigningKey key, registry::ReadSigningKey(o.key_file));
  ASSIGN_OR_RETURN(Opened target, Open(o, o.ref, false));
  ASSIGN_OR_RETURN(Descriptor subject, target.store->Resolve(target.ref.TagOrDigest()));
  registry::SignOptions options;
  options.repository = RepositoryFor(o, target.ref);
  options.counter = o.counter;
  options.validity = std::chrono::hours(24 * o.expires_days);
  ASSIGN_OR_RETURN(Descriptor signature,
                   registry::SignArtifact(*target.store, subject, key, options));
  Print(o,
        {{"subject", subject.digest.str()},
         {"signature", signature.digest.str()},
         {"key_id", key.public_key.key_id},
         {"repository", options.repository}},
        "signed " + subject.digest.str() + " for " + options.repository + " with key " +
            key.public_key.key_id + "\nsignature " + signature.digest.str());
  return Status::Ok();
}

Status RunVerify(const ModelOptions& o) {
  if (o.trusted_keys.empty()) return InvalidArgumentError("give at least one --trusted-key");
  ASSIGN_OR_RETURN(Opened target, Open(o, o.ref, false));
  ASSIGN_OR_RETURN(Descriptor subject, target.store->Resolve(target.ref.TagOrDigest()));
  ASSIGN_OR_RETURN(Json verified, MaybeVerify(o, *target.store, target.ref, subject));
  verified["digest"] = subject.digest.str();
  Print(o, verified,
        "verified " + subject.digest.str() + ": key " + verified["key_id"].get<std::string>() +
            ", counter " + std::to_string(verified["counter"].get<int64_t>()) + ", expires " +
            verified["expires"].get<std::string>());
  return Status::Ok();
}

std::string DefaultActor() {
  const char* user = std::getenv("USER");
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  return std::string(user != nullptr ? user : "unknown") + "@" + host;
}

Status RunPromote(const ModelOptions& o) {
  ASSIGN_OR_RETURN(registry::SigningKey key, registry::ReadSigningKey(o.key_file));
  ASSIGN_OR_RETURN(Opened target, Open(o, o.ref, false));
  registry::SignOptions options;
  options.repository = RepositoryFor(o, target.ref);
  options.counter = o.counter;
  options.validity = std::chrono::hours(24 * o.expires_days);
  ASSIGN_OR_RETURN(registry::PromotionRecord record,
                   registry::Promote(*target.store, target.ref.TagOrDigest(), o.alias,
                                     o.by.empty() ? DefaultActor() : o.by, o.reason, key, options));
  Print(o,
        {{"alias", record.alias},
         {"to", record.to.str()},
         {"from", record.from},
         {"by", record.by},
         {"at", record.at},
         {"reason", record.reason},
         {"counter", record.counter}},
        target.ref.WithTag(record.alias).ToString() + " -> " + record.to.str() +
            (record.from.empty() ? "" : " (was " + record.from + ")") + "\nby " + record.by +
            " at " + record.at + ": " + record.reason);
  return Status::Ok();
}

Status RunHistory(const ModelOptions& o) {
  ASSIGN_OR_RETURN(Opened target, Open(o, o.ref, false));
  ASSIGN_OR_RETURN(std::vector<registry::PublicKey> trusted, LoadTrusted(o));
  ASSIGN_OR_RETURN(std::vector<registry::PromotionRecord> records,
                   registry::ReadHistory(*target.store, o.alias, trusted));
  Json list = Json::array();
  std::string text;
  for (const registry::PromotionRecord& r : records) {
    list.push_back({{"at", r.at},
                    {"by", r.by},
                    {"to", r.to.str()},
                    {"from", r.from},
                    {"reason", r.reason},
                    {"key_id", r.key_id},
                    {"counter", r.counter}});
    text += r.at + "  " + r.to.str().substr(0, 19) + "  " + r.by + "  " + r.reason + "\n";
  }
  Print(o, list, text.empty() ? "(no promotions of '" + o.alias + "')" : text);
  return Status::Ok();
}

Status RunContainerize(const ModelOptions& o) {
  ContainerizeOptions options;
  options.model_ref = o.ref;
  options.image_ref = o.dest;
  options.base_ref = o.base;
  options.model_name = o.name;
  options.model_version = o.version;
  ASSIGN_OR_RETURN(options.store, MakeStoreOptions(o));
  ASSIGN_OR_RETURN(ContainerizeResult r, Containerize(options));
  Print(o,
        {{"image", r.image},
         {"digest", r.manifest.digest.str()},
         {"model", r.model_name},
         {"version", r.model_version},
         {"model_digest", r.model_digest}},
        "image " + r.image + " serves " + r.model_name + " version " + r.model_version + " (" +
            r.model_digest + ")\ndigest " + r.manifest.digest.str());
  return Status::Ok();
}

}  // namespace

Command AddModelCommand(CLI::App& root) {
  CLI::App* app =
      root.add_subcommand("model", "Package, sign, push, pull and promote models as OCI artifacts");
  app->require_subcommand(1);
  auto o = std::make_shared<ModelOptions>();
  auto run = std::make_shared<std::function<Status(const ModelOptions&)>>();

  // Options every store-touching subcommand takes.
  const auto store_flags = [o](CLI::App* sub) {
    sub->add_flag("--allow-http", o->allow_http,
                  "Allow plain HTTP to a registry that is not on loopback");
    sub->add_flag("--insecure-tls", o->insecure_tls, "Do not verify the registry's certificate");
    sub->add_option("--ca-file", o->ca_file, "Extra CA bundle for the registry's certificate");
    sub->add_option("--username", o->username, "Registry user (or EDGELOOP_REGISTRY_USERNAME)");
    sub->add_option("--password-file", o->password_file,
                    "File holding the registry password or token (or "
                    "EDGELOOP_REGISTRY_PASSWORD)");
    sub->add_option("--chunk-size", o->chunk_size, "Upload blobs in chunks of this many bytes");
    sub->add_flag("--json", o->json, "Print the result as JSON");
  };
  const auto command = [&](const char* name, const char* help,
                           std::function<Status(const ModelOptions&)> fn) {
    CLI::App* sub = app->add_subcommand(name, help);
    store_flags(sub);
    sub->callback([run, fn] { *run = fn; });
    return sub;
  };

  CLI::App* keygen = app->add_subcommand("keygen", "Create an Ed25519 signing key pair");
  keygen->add_option("--out", o->out, "Path prefix: writes PREFIX.key and PREFIX.pub")->required();
  keygen->add_flag("--json", o->json, "Print the result as JSON");
  keygen->callback([run] { *run = RunKeygen; });

  CLI::App* package = command("package", "Package a model version folder into REF", RunPackage);
  package->add_option("dir", o->dir, "Model folder (model.yaml, the model file, card.json)")
      ->required()
      ->check(CLI::ExistingDirectory);
  package->add_option("ref", o->ref, "oci://HOST/REPO:TAG or layout://DIR:TAG")->required();
  package->add_option("--name", o->name, "Model name (default: card.json, else the folders)");
  package->add_option("--version", o->version, "Model version (default: card.json, else folder)");
  package->add_option("--created", o->created, "Creation time, RFC 3339 (default: card.json)");

  CLI::App* push = command("push", "Copy a model (and its signatures) from SRC to DST", RunPush);
  push->add_option("src", o->ref, "Source reference")->required();
  push->add_option("dst", o->dest, "Destination reference (keeps the source tag when none)")
      ->required();
  push->add_flag("--no-referrers", o->no_referrers, "Leave signatures and promotion records");

  CLI::App* pull = command("pull", "Download a model into a new folder", RunPull);
  pull->add_option("ref", o->ref, "Reference")->required();
  pull->add_option("dir", o->dest, "Folder to create")->required();
  pull->add_option("--trusted-key", o->trusted_keys, "Verify with these public keys first");
  pull->add_option("--repository", o->repository, "Repository the signature must name");
  pull->add_option("--cache", o->cache, "Content-addressed blob cache folder");

  CLI::App* tag = command("tag", "Point another tag at REF's manifest", RunTag);
  tag->add_option("ref", o->ref, "Reference")->required();
  tag->add_option("tag", o->tag, "New tag")->required();

  CLI::App* ls = command("ls", "List the tags of REF's repository", RunList);
  ls->add_option("ref", o->ref, "Reference (its tag is ignored)")->required();
  ls->add_flag("--all", o->all_tags, "Include internal tags (sha256-*, edgeloop-history-*)");

  CLI::App* resolve =
      command("resolve", "Print the digest REF points at (one request)", RunResolve);
  resolve->add_option("ref", o->ref, "Reference")->required();

  CLI::App* inspect = command("inspect", "Show a model's manifest, card and referrers", RunInspect);
  inspect->add_option("ref", o->ref, "Reference")->required();

  CLI::App* sign = command("sign", "Sign REF with an Ed25519 key", RunSign);
  sign->add_option("ref", o->ref, "Reference")->required();
  sign->add_option("--key", o->key_file, "Secret key file (PREFIX.key)")->required();
  sign->add_option("--repository", o->repository, "Repository to bind (default: REF's)");
  sign->add_option("--counter", o->counter, "Anti-rollback counter (default: now, in seconds)");
  sign->add_option("--expires-days", o->expires_days, "Validity in days")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{3650}));

  CLI::App* verify = command("verify", "Check REF's signature against trusted keys", RunVerify);
  verify->add_option("ref", o->ref, "Reference")->required();
  verify->add_option("--trusted-key", o->trusted_keys, "Public key files")->required();
  verify->add_option("--repository", o->repository, "Repository the signature must name");
  verify->add_option("--min-counter", o->min_counter, "Refuse counters below this (rollback)");

  CLI::App* promote =
      command("promote", "Move an alias (e.g. champion) to REF, with a signed record", RunPromote);
  promote->add_option("ref", o->ref, "The model to promote")->required();
  promote->add_option("alias", o->alias, "Alias tag to move")->required();
  promote->add_option("--key", o->key_file, "Secret key file (PREFIX.key)")->required();
  promote->add_option("--reason", o->reason, "Why (kept in the history)")->required();
  promote->add_option("--by", o->by, "Who (default: $USER@host)");
  promote->add_option("--repository", o->repository, "Repository to bind (default: REF's)");
  promote->add_option("--expires-days", o->expires_days, "Validity of the new signature")
      ->capture_default_str();

  CLI::App* history = command("history", "The promotions of an alias, oldest first", RunHistory);
  history->add_option("ref", o->ref, "Reference (its tag is ignored)")->required();
  history->add_option("alias", o->alias, "Alias tag")->required();
  history->add_option("--trusted-key", o->trusted_keys, "Show only records signed by these");

  CLI::App* containerize =
      command("containerize", "Build a server image with REF baked in at /models (docs/deploy.md)",
              RunContainerize);
  containerize->add_option("ref", o->ref, "The model")->required();
  containerize->add_option("image", o->dest, "Where the image goes (oci://... or layout://...)")
      ->required();
  containerize->add_option("--base", o->base, "Base image from scripts/build-image")->required();
  containerize->add_option("--model-name", o->name, "Served name (default: the package's)");
  containerize->add_option("--model-version", o->version,
                           "Version folder, a positive integer (default: the package's)");

  return {app, [o, run] {
            if (!*run) return 2;
            const Status status = (*run)(*o);
            return status.ok() ? 0 : Fail(status);
          }};
}

}  // namespace edgeloop::cli
