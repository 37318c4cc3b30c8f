#include "registry/package.h"

#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "inference/model_config.h"
#include "registry/file_util.h"
#include "registry/referrers.h"

namespace edgeloop::registry {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr char kCardFile[] = "card.json";
constexpr char kDefaultCreated[] = "1970-01-01T00:00:00Z";
constexpr int64_t kMaxCardBytes = 4 << 20;

bool IsNumber(const std::string& text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Json SpecsToJson(const std::vector<inference::TensorSpec>& specs, bool with_kind) {
  Json list = Json::array();
  for (const inference::TensorSpec& spec : specs) {
    Json item = {{"name", spec.name},
                 {"datatype", std::string(inference::DataTypeName(spec.datatype))},
                 {"shape", spec.shape}};
    if (with_kind && !spec.kind.empty()) item["kind"] = spec.kind;
    list.push_back(std::move(item));
  }
  return list;
}

StatusOr<Json> ReadCardJson(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir / kCardFile, ec)) return Json::object();
  ASSIGN_OR_RETURN(std::string text, ReadSmallFile(dir / kCardFile, kMaxCardBytes));
  Json card = Json::parse(text, nullptr, false);
  if (card.is_discarded() || !card.is_object()) {
    return InvalidArgumentError((dir / kCardFile).string() + " is not a JSON object");
  }
  return card;
}

std::string StringField(const Json& card, const char* key) {
  if (card.contains(key) && card[key].is_string()) return card[key].get<std::string>();
  if (card.contains(key) && card[key].is_number_integer()) {
    return std::to_string(card[key].get<int64_t>());
  }
  return "";
}

// Every regular file below `dir` (relative paths, sorted), except card.json at the top.
StatusOr<std::vector<std::string>> ListFiles(const fs::path& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path relative = it->path().lexically_relative(dir);
    const auto status = it->symlink_status(ec);
    if (fs::is_symlink(status)) {
      return InvalidArgumentError("refusing to package the symlink " + relative.string() +
                                  "; copy the file in instead");
    }
    if (fs::is_directory(status)) continue;
    if (!fs::is_regular_file(status)) {
      return InvalidArgumentError("refusing to package " + relative.string() +
                                  ": not a regular file");
    }
    const std::string name = relative.generic_string();
    if (name == kCardFile) continue;
    RETURN_IF_ERROR(CheckSafeRelativePath(name));
    files.push_back(name);
  }
  if (ec) return UnavailableError("cannot list " + dir.string() + ": " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

std::string TempSuffix() {
  thread_local std::mt19937_64 random(std::random_device{}());
  return std::to_string(::getpid()) + "-" + std::to_string(random() % 1000000007);
}

// Fetches `blob` into `dest` directly, or through the content-addressed cache and a hard link.
Status FetchInto(Store& store, const Descriptor& blob, const fs::path& dest, const fs::path& cache,
                 const ProgressFn& progress) {
  std::error_code ec;
  if (cache.empty()) return store.FetchBlob(blob, dest, progress);
  const fs::path cached = cache / "sha256" / std::string(blob.digest.hex());
  if (!fs::exists(cached, ec)) {
    fs::create_directories(cached.parent_path(), ec);
    const fs::path partial = cached.string() + ".partial";
    RETURN_IF_ERROR(store.FetchBlob(blob, partial, progress));
    if (::rename(partial.c_str(), cached.c_str()) != 0) {
      return UnavailableError("cannot move " + partial.string() + " into the cache");
    }
    RETURN_IF_ERROR(SyncDirectory(cached.parent_path()));
  } else if (static_cast<int64_t>(fs::file_size(cached, ec)) != blob.size) {
    // A damaged cache entry: drop it and fetch again.
    fs::remove(cached, ec);
    return FetchInto(store, blob, dest, cache, progress);
  } else if (progress) {
    progress(blob.size, blob.size);
  }
  fs::create_hard_link(cached, dest, ec);
  if (ec) {
    // Another file system: copy, verifying again.
    return CopyVerified(cached, dest, blob, nullptr);
  }
  return Status::Ok();
}

}  // namespace

Status CheckSafeRelativePath(std::string_view path) {
  const auto invalid = [&](const char* why) {
    return InvalidArgumentError("unsafe file name '" + std::string(path) + "': " + why);
  };
  if (path.empty()) return invalid("empty");
  if (path.size() > 1024) return invalid("too long");
  if (path.front() == '/') return invalid("absolute path");
  for (char c : path) {
    if (static_cast<unsigned char>(c) < 0x20 || c == '\\') return invalid("control or '\\'");
  }
  size_t start = 0;
  while (start <= path.size()) {
    const size_t slash = std::min(path.find('/', start), path.size());
    const std::string_view part = path.substr(start, slash - start);
    if (part.empty()) return invalid("empty path component");
    if (part == "." || part == "..") return invalid("'.' or '..' component");
    start = slash + 1;
    if (slash == path.size()) break;
  }
  return Status::Ok();
}

StatusOr<ModelPackage> BuildPackage(const fs::path& dir, const PackageOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFoundError(dir.string() + " is not a directory");
  ASSIGN_OR_RETURN(Json card, ReadCardJson(dir));

  ModelPackage package;
  const fs::path absolute = fs::absolute(dir).lexically_normal();
  const std::string folder =
      (absolute.has_filename() ? absolute : absolute.parent_path()).filename().string();
  const std::string parent = (absolute.has_filename() ? absolute : absolute.parent_path())
                                 .parent_path()
                                 .filename()
                                 .string();
  package.name = StringField(card, "name");
  if (package.name.empty()) package.name = options.name;
  if (package.name.empty()) package.name = IsNumber(folder) ? parent : folder;
  package.version = StringField(card, "version");
  if (package.version.empty()) package.version = options.version;
  if (package.version.empty()) package.version = IsNumber(folder) ? folder : "1";
  std::string created = StringField(card, "created");
  if (created.empty()) created = options.created;
  if (created.empty()) created = kDefaultCreated;

  // The model must be servable: model.yaml parses and names an existing file.
  auto config = inference::LoadModelConfig(dir, package.name, 1);
  if (!config.ok()) return config.status().WithContext("packaging " + dir.string());
  if (!fs::is_regular_file(config->model_file, ec)) {
    return InvalidArgumentError("model.yaml names " + config->model_file.string() +
                                ", which does not exist");
  }

  card["schema"] = "edgeloop.model.card.v1";
  card["name"] = package.name;
  card["version"] = package.version;
  card["created"] = created;
  card["framework"] = config->framework;
  if (!config->backend.empty()) card["backend"] = config->backend;
  card["inputs"] = SpecsToJson(config->inputs, false);
  card["outputs"] = SpecsToJson(config->outputs, true);
  if (!config->feature_names.empty()) card["feature_names"] = config->feature_names;
  package.card = card.dump(-1, ' ', false, Json::error_handler_t::replace);
  package.config = DescribeBytes(media_type::kModelCard, package.card);

  ASSIGN_OR_RETURN(std::vector<std::string> files, ListFiles(dir));
  Manifest manifest;
  manifest.artifact_type = media_type::kModelArtifact;
  manifest.config = package.config;
  for (const std::string& relative : files) {
    PackagedFile file;
    file.source = dir / relative;
    ASSIGN_OR_RETURN(Digest digest, Digest::OfFile(file.source));
    file.descriptor.media_type = media_type::kModelFile;
    file.descriptor.digest = std::move(digest);
    file.descriptor.size = static_cast<int64_t>(fs::file_size(file.source, ec));
    file.descriptor.annotations[annotation::kTitle] = relative;
    manifest.layers.push_back(file.descriptor);
    package.files.push_back(std::move(file));
  }
  manifest.annotations[annotation::kCreated] = created;
  manifest.annotations[annotation::kTitle] = package.name;
  manifest.annotations[annotation::kVersion] = package.version;
  package.manifest_bytes = SerializeManifest(manifest);
  package.manifest = DescribeBytes(media_type::kImageManifest, package.manifest_bytes);
  package.manifest.artifact_type = media_type::kModelArtifact;
  return package;
}

Status PushPackage(Store& store, const ModelPackage& package, std::string_view tag,
                   const ProgressFn& progress) {
  RETURN_IF_ERROR(store.PushBlob(package.config, BlobSource::Bytes(package.card), nullptr));
  for (const PackagedFile& file : package.files) {
    RETURN_IF_ERROR(store.PushBlob(file.descriptor, BlobSource::File(file.source), progress)
                        .WithContext("pushing " + file.source.string()));
  }
  return store.PushManifest(tag.empty() ? std::string_view(package.manifest.digest.str()) : tag,
                            package.manifest_bytes, media_type::kImageManifest);
}

StatusOr<Descriptor> CopyArtifact(Store& from, std::string_view from_ref, Store& to,
                                  std::string_view to_tag, bool with_referrers,
                                  const ProgressFn& progress) {
  ASSIGN_OR_RETURN(FetchedManifest fetched, from.FetchManifest(from_ref));
  std::vector<Descriptor> blobs;
  if (fetched.media_type == media_type::kImageIndex) {
    // A referrers index or similar: copy the manifests it lists first.
    ASSIGN_OR_RETURN(Index index, ParseIndex(fetched.bytes));
    for (const Descriptor& child : index.manifests) {
      RETURN_IF_ERROR(CopyArtifact(from, child.digest.str(), to, "", false, progress).status());
    }
  } else {
    ASSIGN_OR_RETURN(Manifest manifest, ParseManifest(fetched.bytes));
    blobs = manifest.layers;
    blobs.push_back(manifest.config);
  }
  const fs::path scratch = fs::temp_directory_path() / ("edgeloop-copy-" + TempSuffix());
  std::error_code ec;
  fs::create_directories(scratch, ec);
  Status status;
  for (const Descriptor& blob : blobs) {
    auto has = to.HasBlob(blob.digest);
    if (!has.ok()) {
      status = has.status();
      break;
    }
    if (*has) continue;
    // Read a local blob in place; otherwise go through a scratch file.
    if (auto local = from.LocalBlobPath(blob.digest)) {
      status = to.PushBlob(blob, BlobSource::File(*local), progress);
      if (!status.ok()) break;
      continue;
    }
    const fs::path file = scratch / std::string(blob.digest.hex());
    status = from.FetchBlob(blob, file, progress);
    if (status.ok()) status = to.PushBlob(blob, BlobSource::File(file), progress);
    fs::remove(file, ec);
    if (!status.ok()) break;
  }
  fs::remove_all(scratch, ec);
  RETURN_IF_ERROR(status);
  const std::string digest = fetched.digest.str();
  RETURN_IF_ERROR(to.PushManifest(digest, fetched.bytes, fetched.media_type));
  Descriptor descriptor = DescribeBytes(fetched.media_type, fetched.bytes);
  // Signatures and records go before the tag moves, so that whoever follows the tag never sees
  // the model without them.
  if (with_referrers) {
    ASSIGN_OR_RETURN(std::vector<Descriptor> referrers, ListReferrers(from, fetched.digest, ""));
    for (const Descriptor& referrer : referrers) {
      RETURN_IF_ERROR(CopyArtifact(from, referrer.digest.str(), to, "", false, progress).status());
      RETURN_IF_ERROR(AddReferrer(to, fetched.digest, referrer));
    }
  }
  if (!to_tag.empty()) RETURN_IF_ERROR(to.PushManifest(to_tag, fetched.bytes, fetched.media_type));
  return descriptor;
}

StatusOr<PulledModel> PullPackage(Store& store, std::string_view tag_or_digest,
                                  const fs::path& dest_dir, const fs::path& blob_cache,
                                  const ProgressFn& progress) {
  std::error_code ec;
  if (fs::exists(dest_dir, ec)) {
    return AlreadyExistsError(dest_dir.string() + " already exists; pull into a new folder");
  }
  ASSIGN_OR_RETURN(FetchedManifest fetched, store.FetchManifest(tag_or_digest));
  ASSIGN_OR_RETURN(Manifest manifest, ParseManifest(fetched.bytes));
  if (manifest.artifact_type != media_type::kModelArtifact ||
      manifest.config.media_type != media_type::kModelCard) {
    return InvalidArgumentError(std::string(tag_or_digest) + " in " + store.Describe() +
                                " is not an edgeloop model (artifactType '" +
                                manifest.artifact_type + "')");
  }
  PulledModel pulled;
  pulled.manifest = DescribeBytes(fetched.media_type, fetched.bytes);
  pulled.manifest.artifact_type = manifest.artifact_type;
  ASSIGN_OR_RETURN(pulled.card, store.ReadBlob(manifest.config));
  Json card = Json::parse(pulled.card, nullptr, false);
  if (card.is_discarded() || !card.is_object()) {
    return InvalidArgumentError("the model card of " + std::string(tag_or_digest) +
                                " is not a JSON object");
  }
  pulled.name = StringField(card, "name");
  pulled.version = StringField(card, "version");

  std::set<std::string> titles;
  for (const Descriptor& layer : manifest.layers) {
    auto title = layer.annotations.find(annotation::kTitle);
    if (title == layer.annotations.end()) {
      return InvalidArgumentError("layer " + layer.digest.str() + " has no " + annotation::kTitle +
                                  " annotation");
    }
    RETURN_IF_ERROR(CheckSafeRelativePath(title->second));
    if (title->second == kCardFile || !titles.insert(title->second).second) {
      return InvalidArgumentError("file '" + title->second + "' appears twice in the artifact");
    }
  }

  const fs::path staging =
      dest_dir.parent_path() / (".staging-" + dest_dir.filename().string() + "-" + TempSuffix());
  fs::create_directories(staging, ec);
  if (ec) return UnavailableError("cannot create " + staging.string() + ": " + ec.message());
  Status status;
  for (const Descriptor& layer : manifest.layers) {
    const fs::path target = staging / layer.annotations.at(annotation::kTitle);
    fs::create_directories(target.parent_path(), ec);
    status = FetchInto(store, layer, target, blob_cache, progress);
    if (!status.ok()) break;
  }
  if (status.ok()) status = WriteFileAtomic(staging / kCardFile, pulled.card);
  if (status.ok() && ::rename(staging.c_str(), dest_dir.c_str()) != 0) {
    status = UnavailableError("cannot move the pulled model into " + dest_dir.string());
  }
  if (!status.ok()) {
    fs::remove_all(staging, ec);
    return status;
  }
  RETURN_IF_ERROR(SyncDirectory(dest_dir.parent_path()));
  return pulled;
}

}  // namespace edgeloop::registry
