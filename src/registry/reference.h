// References to models in a store:
//
//   oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]   a registry speaking the OCI Distribution API
//   layout://PATH[:TAG][@sha256:HEX]                  a local OCI image-layout directory
//
// PATH may be relative (`layout://models/fraud:v3`) or absolute (`layout:///mnt/usb/fraud:v3`).
// A reference without tag or digest means the tag `latest`. With both, the digest wins and the
// tag is kept for display. HTTPS is used for registries unless the host is a loopback address
// (localhost, 127.x, ::1) or plain HTTP is allowed explicitly (StoreOptions::allow_http).
#ifndef EDGELOOP_REGISTRY_REFERENCE_H_
#define EDGELOOP_REGISTRY_REFERENCE_H_

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "registry/digest.h"

namespace edgeloop::registry {

struct Reference {
  enum class Kind { kRegistry, kLayout };
  Kind kind = Kind::kRegistry;
  std::string host;                  // kRegistry: "registry.example.com:5000"
  std::string repository;            // kRegistry: "models/fraud"; kLayout: the folder's name
  std::filesystem::path layout_dir;  // kLayout
  std::string tag;                   // empty when only a digest is given
  std::optional<Digest> digest;

  // "sha256:..." when a digest is given, else the tag ("latest" by default).
  std::string TagOrDigest() const;
  // The same reference pointing at another tag or digest.
  Reference WithTag(std::string tag) const;
  Reference WithDigest(Digest digest) const;
  // Round-trips through ParseReference.
  std::string ToString() const;
  // True for localhost, 127.0.0.0/8 and [::1] hosts.
  bool IsLoopback() const;
};

// kInvalidArgument naming the problem: unknown scheme, empty or invalid repository name, invalid
// tag, malformed digest, missing host.
StatusOr<Reference> ParseReference(std::string_view text);

}  // namespace edgeloop::registry

#endif  // EDGELOOP_REGISTRY_REFERENCE_H_
