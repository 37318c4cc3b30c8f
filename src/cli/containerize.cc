#include "cli/containerize.h"

#include <stdlib.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <system_error>
#include <vector>

#include "registry/digest.h"
#include "registry/package.h"
#include "registry/reference.h"
#include "serving/repository.h"

namespace edgeloop::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using registry::Descriptor;

constexpr char kImageConfig[] = "application/vnd.oci.image.config.v1+json";
constexpr char kDockerImageConfig[] = "application/vnd.docker.container.image.v1+json";
constexpr char kUncompressedLayer[] = "application/vnd.oci.image.layer.v1.tar";
constexpr char kModelsDir[] = "models";

// A temporary folder removed with everything in it when this goes out of scope.
class TempDir {
 public:
  static StatusOr<TempDir> Create() {
    std::error_code ec;
    fs::path base = fs::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string pattern = (base / "edgeloop-containerize-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      return InternalError("cannot create a temporary folder in " + base.string() + ": " +
                           std::strerror(errno));
    }
    return TempDir(pattern);
  }
  TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  explicit TempDir(fs::path path) : path_(std::move(path)) {}
  fs::path path_;
};

// Writes a POSIX ustar archive and hashes it on the way. Entries are added in the caller's order;
// every header has mtime 0, uid/gid 0 and empty user/group names, so equal inputs give equal
// bytes. Not thread-safe.
class TarWriter {
 public:
  explicit TarWriter(const fs::path& path) : out_(path, std::ios::binary | std::ios::trunc) {}

  bool is_open() const { return out_.is_open(); }

  Status AddDirectory(const std::string& path) {
    RETURN_IF_ERROR(WriteHeader(path + "/", '5', 0755, 0));
    return Check();
  }

  Status AddFile(const std::string& path, const fs::path& source) {
    std::error_code ec;
    const uintmax_t size = fs::file_size(source, ec);
    if (ec) return InternalError("cannot read " + source.string() + ": " + ec.message());
    RETURN_IF_ERROR(WriteHeader(path, '0', 0644, size));
    std::ifstream in(source, std::ios::binary);
    if (!in) return InternalError("cannot open " + source.string());
    std::vector<char> buffer(1 << 20);
    uintmax_t copied = 0;
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      const std::streamsize n = in.gcount();
      if (n <= 0) break;
      Write(buffer.data(), static_cast<size_t>(n));
      copied += static_cast<uintmax_t>(n);
    }
    if (copied != size) return InternalError(source.string() + " changed while it was read");
    Pad(size);
    return Check();
  }

  // The two zero blocks that end an archive; returns the digest and size of the whole file.
  StatusOr<Descriptor> Finish() {
    static const std::array<char, 1024> kZeros{};
    Write(kZeros.data(), kZeros.size());
    out_.flush();
    RETURN_IF_ERROR(Check());
    out_.close();
    Descriptor d;
    d.media_type = kUncompressedLayer;
    d.digest = hash_.Finish();
    d.size = size_;
    return d;
  }

 private:
  static void Octal(char* field, size_t width, uintmax_t value) {
    std::snprintf(field, width, "%0*jo", static_cast<int>(width - 1), value);
  }

  Status WriteHeader(const std::string& path, char type, unsigned mode, uintmax_t size) {
    std::array<char, 512> h{};
    // ustar keeps up to 100 bytes in `name` and 155 more in `prefix`, split at a '/'.
    std::string name = path;
    std::string prefix;
    if (name.size() > 100) {
      size_t cut = std::string::npos;
      for (size_t i = 1; i < name.size() && i <= 155; ++i) {
        const size_t rest = name.size() - i - 1;
        if (name[i] == '/' && rest > 0 && rest <= 100) {
          cut = i;
          break;
        }
      }
      if (cut == std::string::npos) {
        return InvalidArgumentError("path too long for the image layer: " + path);
      }
      prefix = name.substr(0, cut);
      name = name.substr(cut + 1);
    }
    std::memcpy(h.data(), name.data(), name.size());
    Octal(h.data() + 100, 8, mode);
    Octal(h.data() + 108, 8, 0);
    Octal(h.data() + 116, 8, 0);
    Octal(h.data() + 124, 12, size);
    Octal(h.data() + 136, 12, 0);
    std::memset(h.data() + 148, ' ', 8);
    h[156] = type;
    std::memcpy(h.data() + 257, "ustar", 6);
    std::memcpy(h.data() + 263, "00", 2);
    std::memcpy(h.data() + 345, prefix.data(), prefix.size());
    unsigned sum = 0;
    for (char c : h) sum += static_cast<unsigned char>(c);
    std::snprintf(h.data() + 148, 8, "%06o", sum);
    h[155] = ' ';
    Write(h.data(), h.size());
    return Status::Ok();
  }

  void Pad(uintmax_t size) {
    static const std::array<char, 512> kZeros{};
    const size_t rest = static_cast<size_t>(size % 512);
    if (rest != 0) Write(kZeros.data(), 512 - rest);
  }

  void Write(const char* data, size_t n) {
    out_.write(data, static_cast<std::streamsize>(n));
    hash_.Update(data, n);
    size_ += static_cast<int64_t>(n);
  }

  Status Check() {
    if (!out_) return InternalError("cannot write the image layer");
    return Status::Ok();
  }

  std::ofstream out_;
  registry::Sha256 hash_;
  int64_t size_ = 0;
};

bool IsVersionNumber(const std::string& v) {
  return !v.empty() && v.size() <= 18 && v[0] != '0' &&
         std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
}

struct OpenedStore {
  registry::Reference ref;
  std::unique_ptr<registry::Store> store;
};

StatusOr<OpenedStore> OpenRef(const std::string& text, const registry::StoreOptions& options,
                              bool create) {
  ASSIGN_OR_RETURN(registry::Reference ref, registry::ParseReference(text));
  ASSIGN_OR_RETURN(std::unique_ptr<registry::Store> store,
                   registry::OpenStore(ref, options, create));
  return OpenedStore{std::move(ref), std::move(store)};
}

// Makes `blob` present in `to`, reading it in place when `from` has it on this machine.
Status CopyBlob(registry::Store& from, registry::Store& to, const Descriptor& blob,
                const fs::path& scratch) {
  ASSIGN_OR_RETURN(bool present, to.HasBlob(blob.digest));
  if (present) return Status::Ok();
  if (std::optional<fs::path> local = from.LocalBlobPath(blob.digest)) {
    return to.PushBlob(blob, registry::BlobSource::File(*local), nullptr);
  }
  const fs::path file = scratch / std::string(blob.digest.hex());
  RETURN_IF_ERROR(from.FetchBlob(blob, file, nullptr));
  Status pushed = to.PushBlob(blob, registry::BlobSource::File(file), nullptr);
  std::error_code ec;
  fs::remove(file, ec);
  return pushed;
}

}  // namespace

StatusOr<ContainerizeResult> Containerize(const ContainerizeOptions& options) {
  ASSIGN_OR_RETURN(OpenedStore model, OpenRef(options.model_ref, options.store, false));
  ASSIGN_OR_RETURN(OpenedStore base, OpenRef(options.base_ref, options.store, false));
  ASSIGN_OR_RETURN(OpenedStore target, OpenRef(options.image_ref, options.store, true));
  if (target.ref.digest) {
    return InvalidArgumentError("the image reference needs a tag, not a digest: " +
                                options.image_ref);
  }
  const std::string tag = target.ref.tag.empty() ? "latest" : target.ref.tag;

  // The base image: an OCI image manifest whose config is an image config.
  ASSIGN_OR_RETURN(registry::FetchedManifest base_fetched,
                   base.store->FetchManifest(base.ref.TagOrDigest()));
  if (base_fetched.media_type != registry::media_type::kImageManifest) {
    return InvalidArgumentError(options.base_ref + " is a " + base_fetched.media_type +
                                ", not an OCI image manifest (build the base with "
                                "scripts/build-image)");
  }
  ASSIGN_OR_RETURN(registry::Manifest manifest, registry::ParseManifest(base_fetched.bytes));
  if (manifest.config.media_type != kImageConfig &&
      manifest.config.media_type != kDockerImageConfig) {
    return InvalidArgumentError(options.base_ref + " is not a container image (its config is " +
                                manifest.config.media_type + ")");
  }
  ASSIGN_OR_RETURN(std::string config_bytes, base.store->ReadBlob(manifest.config));
  Json config = Json::parse(config_bytes, nullptr, false);
  if (!config.is_object() || !config.contains("rootfs") || !config["rootfs"].contains("diff_ids") ||
      !config["rootfs"]["diff_ids"].is_array()) {
    return InvalidArgumentError(options.base_ref + ": the image config has no rootfs.diff_ids");
  }

  // The model, pulled (and verified against its digests) into a scratch folder.
  ASSIGN_OR_RETURN(TempDir scratch, TempDir::Create());
  ASSIGN_OR_RETURN(Descriptor model_manifest, model.store->Resolve(model.ref.TagOrDigest()));
  const fs::path pulled_dir = scratch.path() / "model";
  ASSIGN_OR_RETURN(
      registry::PulledModel pulled,
      registry::PullPackage(*model.store, model_manifest.digest.str(), pulled_dir, "", nullptr));
  ContainerizeResult result;
  result.model_name = options.model_name.empty() ? pulled.name : options.model_name;
  result.model_version = options.model_version.empty() ? pulled.version : options.model_version;
  result.model_digest = pulled.manifest.digest.str();
  if (!serving::IsValidModelName(result.model_name)) {
    return InvalidArgumentError("'" + result.model_name +
                                "' is not a valid model name for the server; pass --model-name");
  }
  if (!IsVersionNumber(result.model_version)) {
    return InvalidArgumentError("the model version '" + result.model_version +
                                "' is not a positive integer, which the server's model "
                                "repository needs; pass --model-version N");
  }

  // The layer: models/<name>/<version>/<files>, sorted.
  std::vector<std::pair<std::string, bool>> entries;  // (relative path, is directory)
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(pulled_dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::file_status status = it->symlink_status();
    const std::string rel = fs::relative(it->path(), pulled_dir).generic_string();
    if (fs::is_directory(status)) {
      entries.emplace_back(rel, true);
    } else if (fs::is_regular_file(status)) {
      entries.emplace_back(rel, false);
    } else {
      return InvalidArgumentError("the model holds something that is not a file: " + rel);
    }
  }
  if (ec) return InternalError("cannot list the pulled model: " + ec.message());
  std::sort(entries.begin(), entries.end());
  const std::string root =
      std::string(kModelsDir) + "/" + result.model_name + "/" + result.model_version;
  const fs::path layer_path = scratch.path() / "layer.tar";
  TarWriter tar(layer_path);
  if (!tar.is_open()) return InternalError("cannot create " + layer_path.string());
  RETURN_IF_ERROR(tar.AddDirectory(std::string(kModelsDir) + "/" + result.model_name));
  RETURN_IF_ERROR(tar.AddDirectory(root));
  for (const auto& [rel, is_dir] : entries) {
    if (is_dir) {
      RETURN_IF_ERROR(tar.AddDirectory(root + "/" + rel));
    } else {
      RETURN_IF_ERROR(tar.AddFile(root + "/" + rel, pulled_dir / rel));
    }
  }
  ASSIGN_OR_RETURN(Descriptor layer, tar.Finish());

  // The config: one more diff_id (an uncompressed layer's digest is its diff_id), history, the
  // command that serves the baked-in repository, and labels naming the model.
  config["rootfs"]["diff_ids"].push_back(layer.digest.str());
  const std::string created = config.contains("created") && config["created"].is_string()
                                  ? config["created"].get<std::string>()
                                  : std::string("1970-01-01T00:00:00Z");
  if (!config.contains("history") || !config["history"].is_array())
    config["history"] = Json::array();
  config["history"].push_back({{"created", created},
                               {"created_by", "edgeloop model containerize " + result.model_name +
                                                  "@" + result.model_digest}});
  Json& image_config = config["config"];
  if (!image_config.is_object()) image_config = Json::object();
  image_config["Cmd"] = Json::array({"serve", "--model-repository", "/models"});
  Json& labels = image_config["Labels"];
  if (!labels.is_object()) labels = Json::object();
  labels["org.edgeloop.model.name"] = result.model_name;
  labels["org.edgeloop.model.version"] = result.model_version;
  labels["org.edgeloop.model.digest"] = result.model_digest;
  const std::string new_config = config.dump();
  const Descriptor config_descriptor =
      registry::DescribeBytes(manifest.config.media_type, new_config);

  // Blobs first (the base's, the layer, the config), then the manifest under the tag.
  for (const Descriptor& base_layer : manifest.layers) {
    RETURN_IF_ERROR(CopyBlob(*base.store, *target.store, base_layer, scratch.path()));
  }
  RETURN_IF_ERROR(target.store->PushBlob(layer, registry::BlobSource::File(layer_path), nullptr));
  RETURN_IF_ERROR(
      target.store->PushBlob(config_descriptor, registry::BlobSource::Bytes(new_config), nullptr));
  manifest.config = config_descriptor;
  manifest.layers.push_back(layer);
  manifest.annotations["org.edgeloop.model.name"] = result.model_name;
  manifest.annotations["org.edgeloop.model.version"] = result.model_version;
  manifest.annotations["org.edgeloop.model.digest"] = result.model_digest;
  const std::string manifest_bytes = registry::SerializeManifest(manifest);
  RETURN_IF_ERROR(
      target.store->PushManifest(tag, manifest_bytes, registry::media_type::kImageManifest));
  result.manifest = registry::DescribeBytes(registry::media_type::kImageManifest, manifest_bytes);
  result.image = target.ref.WithTag(tag).ToString();
  return result;
}

}  // namespace edgeloop::cli
