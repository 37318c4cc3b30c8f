#include "registry/layout_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <set>
#include <vector>

#include "registry/file_util.h"

namespace edgeloop::registry {
namespace {

namespace fs = std::filesystem;

constexpr char kLayoutFile[] = "oci-layout";
constexpr char kLayoutBody[] = "{\"imageLayoutVersion\":\"1.0.0\"}";

// An exclusive lock on the layout for read-modify-write of index.json, across processes.
class LayoutLock {
 public:
  explicit LayoutLock(const fs::path& dir) {
    fd_ = ::open((dir / ".edgeloop.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ >= 0) ::flock(fd_, LOCK_EX);
  }
  ~LayoutLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }
  LayoutLock(const LayoutLock&) = delete;
  LayoutLock& operator=(const LayoutLock&) = delete;

 private:
  int fd_ = -1;
};

class LayoutStore final : public Store {
 public:
  LayoutStore(fs::path dir, StoreOptions options) : dir_(std::move(dir)), options_(options) {}

  std::string Describe() const override { return "layout://" + dir_.string(); }

  StatusOr<bool> HasBlob(const Digest& digest) override {
    std::error_code ec;
    return fs::is_regular_file(BlobPath(digest), ec);
  }

  Status FetchBlob(const Descriptor& blob, const fs::path& dest,
                   const ProgressFn& progress) override {
    const fs::path source = BlobPath(blob.digest);
    std::error_code ec;
    if (!fs::is_regular_file(source, ec)) return BlobUnknown(blob.digest);
    // A local copy is cheap: always start over rather than trust a partial file.
    Status status = CopyVerified(source, dest, blob, progress);
    if (!status.ok()) fs::remove(dest, ec);
    return status;
  }

  StatusOr<std::string> ReadBlob(const Descriptor& blob) override {
    if (blob.size > options_.max_manifest_bytes) {
      return FailedPreconditionError("blob " + blob.digest.str() + " is " +
                                     std::to_string(blob.size) + " bytes, over the limit of " +
                                     std::to_string(options_.max_manifest_bytes));
    }
    ASSIGN_OR_RETURN(std::string bytes,
                     ReadSmallFile(BlobPath(blob.digest), options_.max_manifest_bytes));
    RETURN_IF_ERROR(CheckBytes(bytes, blob));
    return bytes;
  }

  Status PushBlob(const Descriptor& blob, const BlobSource& source,
                  const ProgressFn& progress) override {
    const fs::path path = BlobPath(blob.digest);
    std::error_code ec;
    if (fs::is_regular_file(path, ec) &&
        static_cast<int64_t>(fs::file_size(path, ec)) == blob.size) {
      if (progress) progress(blob.size, blob.size);
      return Status::Ok();
    }
    fs::create_directories(path.parent_path(), ec);
    if (!source.file.empty()) {
      return AtomicCopyVerified(source.file, path, blob, progress)
          .WithContext("storing blob " + blob.digest.str());
    }
    RETURN_IF_ERROR(CheckBytes(source.bytes, blob));
    RETURN_IF_ERROR(WriteFileAtomic(path, source.bytes));
    if (progress) progress(blob.size, blob.size);
    return Status::Ok();
  }

  StatusOr<Descriptor> Resolve(std::string_view tag_or_digest) override {
    if (tag_or_digest.substr(0, 7) == "sha256:") {
      ASSIGN_OR_RETURN(Digest digest, Digest::Parse(tag_or_digest));
      ASSIGN_OR_RETURN(FetchedManifest manifest, FetchByDigest(digest));
      Descriptor d = DescribeBytes(manifest.media_type, manifest.bytes);
      return d;
    }
    ASSIGN_OR_RETURN(Index index, ReadIndex());
    for (const Descriptor& d : index.manifests) {
      auto name = d.annotations.find(annotation::kRefName);
      if (name != d.annotations.end() && name->second == tag_or_digest) {
        Descriptor resolved = d;
        resolved.annotations.erase(annotation::kRefName);
        return resolved;
      }
    }
    return NotFoundError("tag '" + std::string(tag_or_digest) + "' not found in " + Describe());
  }

  StatusOr<FetchedManifest> FetchManifest(std::string_view tag_or_digest) override {
    if (tag_or_digest.substr(0, 7) == "sha256:") {
      ASSIGN_OR_RETURN(Digest digest, Digest::Parse(tag_or_digest));
      return FetchByDigest(digest);
    }
    ASSIGN_OR_RETURN(Descriptor d, Resolve(tag_or_digest));
    ASSIGN_OR_RETURN(FetchedManifest manifest, FetchByDigest(d.digest));
    manifest.media_type = d.media_type;
    return manifest;
  }

  Status PushManifest(std::string_view tag_or_digest, std::string_view bytes,
                      std::string_view media_type) override {
    if (static_cast<int64_t>(bytes.size()) > options_.max_manifest_bytes) {
      return InvalidArgumentError("manifest is larger than " +
                                  std::to_string(options_.max_manifest_bytes) + " bytes");
    }
    RETURN_IF_ERROR(CheckReferencedBlobs(bytes, media_type));
    const Descriptor d = DescribeBytes(media_type, bytes);
    const bool by_digest = tag_or_digest.substr(0, 7) == "sha256:";
    if (by_digest && tag_or_digest != d.digest.str()) {
      return InvalidArgumentError("manifest digest is " + d.digest.str() + ", not " +
                                  std::string(tag_or_digest));
    }
    if (!by_digest && !IsValidTag(tag_or_digest)) {
      return InvalidArgumentError("invalid tag '" + std::string(tag_or_digest) + "'");
    }
    RETURN_IF_ERROR(PushBlob(d, BlobSource::Bytes(bytes), nullptr));

    LayoutLock lock(dir_);
    ASSIGN_OR_RETURN(Index index, ReadIndex());
    auto& entries = index.manifests;
    if (by_digest) {
      const bool present = std::any_of(entries.begin(), entries.end(), [&](const Descriptor& e) {
        return e.digest == d.digest && !e.annotations.count(annotation::kRefName);
      });
      if (present) return Status::Ok();
      entries.push_back(d);
    } else {
      entries.erase(std::remove_if(entries.begin(), entries.end(),
                                   [&](const Descriptor& e) {
                                     auto name = e.annotations.find(annotation::kRefName);
                                     return name != e.annotations.end() &&
                                            name->second == tag_or_digest;
                                   }),
                    entries.end());
      Descriptor tagged = d;
      tagged.annotations[annotation::kRefName] = std::string(tag_or_digest);
      entries.push_back(std::move(tagged));
    }
    return WriteFileAtomic(dir_ / "index.json", SerializeIndex(index));
  }

  StatusOr<std::vector<std::string>> ListTags() override {
    ASSIGN_OR_RETURN(Index index, ReadIndex());
    std::set<std::string> tags;
    for (const Descriptor& d : index.manifests) {
      auto name = d.annotations.find(annotation::kRefName);
      if (name != d.annotations.end()) tags.insert(name->second);
    }
    return std::vector<std::string>(tags.begin(), tags.end());
  }

  std::optional<fs::path> LocalBlobPath(const Digest& digest) override {
    std::error_code ec;
    const fs::path path = BlobPath(digest);
    if (fs::is_regular_file(path, ec)) return path;
    return std::nullopt;
  }

  StatusOr<Index> ReferrersApi(const Digest&) override {
    return UnimplementedError("an OCI layout has no referrers API");
  }

  Status Init(bool create) {
    std::error_code ec;
    const fs::path layout = dir_ / kLayoutFile;
    if (fs::exists(layout, ec)) {
      ASSIGN_OR_RETURN(std::string text, ReadSmallFile(layout, 4096));
      if (text.find("\"imageLayoutVersion\"") == std::string::npos) {
        return InvalidArgumentError(layout.string() + " is not an OCI layout marker");
      }
      return Status::Ok();
    }
    if (!create) {
      return NotFoundError(dir_.string() + " is not an OCI image layout (no oci-layout file)");
    }
    fs::create_directories(dir_ / "blobs" / "sha256", ec);
    if (ec) return UnavailableError("cannot create " + dir_.string() + ": " + ec.message());
    RETURN_IF_ERROR(WriteFileAtomic(dir_ / "index.json", SerializeIndex(Index{})));
    return WriteFileAtomic(layout, kLayoutBody);
  }

 private:
  fs::path BlobPath(const Digest& digest) const {
    return dir_ / "blobs" / "sha256" / std::string(digest.hex());
  }

  Status BlobUnknown(const Digest& digest) const {
    return NotFoundError("blob " + digest.str() + " not found in " + Describe());
  }

  StatusOr<FetchedManifest> FetchByDigest(const Digest& digest) {
    std::error_code ec;
    if (!fs::is_regular_file(BlobPath(digest), ec)) {
      return NotFoundError("manifest " + digest.str() + " not found in " + Describe());
    }
    FetchedManifest manifest;
    ASSIGN_OR_RETURN(manifest.bytes, ReadSmallFile(BlobPath(digest), options_.max_manifest_bytes));
    manifest.digest = Digest::Of(manifest.bytes);
    if (!(manifest.digest == digest)) {
      return DataLossError("manifest " + digest.str() + " in " + Describe() +
                           " does not match its digest (the layout is corrupt)");
    }
    manifest.media_type = ManifestMediaType(manifest.bytes);
    return manifest;
  }

  Status CheckReferencedBlobs(std::string_view bytes, std::string_view media_type) {
    std::vector<Descriptor> referenced;
    if (media_type == media_type::kImageIndex) {
      ASSIGN_OR_RETURN(Index index, ParseIndex(bytes));
      referenced = index.manifests;
    } else if (media_type == media_type::kImageManifest) {
      ASSIGN_OR_RETURN(Manifest manifest, ParseManifest(bytes));
      referenced = manifest.layers;
      referenced.push_back(manifest.config);
    } else {
      return InvalidArgumentError("unsupported manifest media type '" + std::string(media_type) +
                                  "'");
    }
    for (const Descriptor& d : referenced) {
      ASSIGN_OR_RETURN(bool has, HasBlob(d.digest));
      if (!has) {
        return FailedPreconditionError("manifest references " + d.digest.str() +
                                       ", which is not in " + Describe());
      }
    }
    return Status::Ok();
  }

  StatusOr<Index> ReadIndex() {
    ASSIGN_OR_RETURN(std::string text,
                     ReadSmallFile(dir_ / "index.json", options_.max_manifest_bytes));
    auto index = ParseIndex(text);
    if (!index.ok()) return index.status().WithContext(dir_.string() + "/index.json");
    return index;
  }

  fs::path dir_;
  StoreOptions options_;
};

}  // namespace

StatusOr<std::unique_ptr<Store>> OpenLayoutStore(const fs::path& dir, const StoreOptions& options,
                                                 bool create) {
  auto store = std::make_unique<LayoutStore>(dir, options);
  RETURN_IF_ERROR(store->Init(create));
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace edgeloop::registry
