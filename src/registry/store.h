// Store: one repository of OCI content (blobs, manifests, tags), either in a registry (the OCI
// Distribution API over HTTP(S)) or in a local OCI image-layout directory.
//
// Every operation verifies what it reads: manifests against the digest asked for (or returned by
// the registry), blobs against their descriptor's size and digest while streaming. Not
// thread-safe: use one Store per thread.
#ifndef EDGELOOP_REGISTRY_STORE_H_
#define EDGELOOP_REGISTRY_STORE_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "registry/digest.h"
#include "registry/oci.h"
#include "registry/reference.h"

namespace edgeloop::registry {

// Called as bytes move: (bytes done, bytes total). May be empty.
using ProgressFn = std::function<void(int64_t, int64_t)>;

// What to upload: a file on disk or bytes in memory.
struct BlobSource {
  std::filesystem::path file;  // used when non-empty
  std::string_view bytes;

  static BlobSource File(std::filesystem::path path) { return {std::move(path), {}}; }
  static BlobSource Bytes(std::string_view data) { return {{}, data}; }
};

struct FetchedManifest {
  std::string bytes;       // exactly as stored
  std::string media_type;  // the manifest's media type
  Digest digest;           // sha256 of `bytes`, verified
};

struct Credentials {
  std::string username;
  std::string password;  // or an identity token; never logged
};

struct StoreOptions {
  // Allow plain HTTP to a registry that is not on loopback.
  bool allow_http = false;
  // Skip TLS certificate verification (tests, self-signed site registries).
  bool insecure_tls = false;
  std::string ca_file;      // extra CA bundle for the registry's certificate
  Credentials credentials;  // empty: anonymous
  // Upload blobs in chunks of this many bytes (PATCH); 0: one PUT per blob.
  int64_t chunk_size = 0;
  // Give up a request that makes no progress for this long.
  int64_t timeout_ms = 60'000;
  // Largest manifest or small blob read into memory.
  int64_t max_manifest_bytes = 4 << 20;
};

class Store {
 public:
  virtual ~Store() = default;

  // "oci://host/repo" or "layout://dir", for messages.
  virtual std::string Describe() const = 0;

  // Blobs.
  virtual StatusOr<bool> HasBlob(const Digest& digest) = 0;
  // Downloads `blob` to `dest`. If `dest` already holds a prefix of the blob (an interrupted
  // download), continues after it. Checks size and digest; on a mismatch deletes `dest` and
  // returns kDataLoss. kNotFound when the store lacks the blob.
  virtual Status FetchBlob(const Descriptor& blob, const std::filesystem::path& dest,
                           const ProgressFn& progress) = 0;
  // A small blob (config, signature payload) in memory, verified; refuses blobs larger than
  // StoreOptions::max_manifest_bytes.
  virtual StatusOr<std::string> ReadBlob(const Descriptor& blob) = 0;
  // Uploads the blob unless the store has it already (then the source is not read). A source
  // that does not match the descriptor (size, digest) is refused: kInvalidArgument or kDataLoss.
  virtual Status PushBlob(const Descriptor& blob, const BlobSource& source,
                          const ProgressFn& progress) = 0;

  // Manifests. `tag_or_digest` is a tag or "sha256:...".
  // The descriptor a tag or digest points at, with one request for a registry (HEAD).
  // kNotFound when absent.
  virtual StatusOr<Descriptor> Resolve(std::string_view tag_or_digest) = 0;
  virtual StatusOr<FetchedManifest> FetchManifest(std::string_view tag_or_digest) = 0;
  // Stores `bytes` exactly, under a tag or under its own digest. The blobs it references must
  // be in the store.
  virtual Status PushManifest(std::string_view tag_or_digest, std::string_view bytes,
                              std::string_view media_type) = 0;
  // Every tag, sorted (follows pagination).
  virtual StatusOr<std::vector<std::string>> ListTags() = 0;

  // Where a blob already lies on this machine (a layout's blob file), so that copies can read
  // it in place; nullopt for remote stores.
  virtual std::optional<std::filesystem::path> LocalBlobPath(const Digest& digest) {
    (void)digest;
    return std::nullopt;
  }

  // The referrers API: kUnimplemented when the store has none (then callers use the
  // "sha256-<hex>" fallback tag; see referrers.h).
  virtual StatusOr<Index> ReferrersApi(const Digest& subject) = 0;
};

// Opens the store a reference points at (its repository; the tag/digest is not used).
// A layout store creates the layout directory when `create` is true.
StatusOr<std::unique_ptr<Store>> OpenStore(const Reference& reference, const StoreOptions& options,
                                           bool create = false);

}  // namespace edgeloop::registry

#endif  // EDGELOOP_REGISTRY_STORE_H_
