// OCI image-spec 1.1 and distribution-spec types: descriptors, image manifests and indexes, and
// the media types edgeloop uses.
//
// Manifests are identified by the digest of their exact bytes, so they are serialized once
// (SerializeManifest / SerializeIndex give canonical bytes: sorted keys, no whitespace) and
// those bytes are what gets stored, pushed and signed; parsing never re-serializes.
#ifndef EDGELOOP_REGISTRY_OCI_H_
#define EDGELOOP_REGISTRY_OCI_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "registry/digest.h"

namespace edgeloop::registry {

namespace media_type {
inline constexpr char kImageManifest[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kImageIndex[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kEmpty[] = "application/vnd.oci.empty.v1+json";
inline constexpr char kLayoutHeader[] = "application/vnd.oci.layout.header.v1+json";
// edgeloop's own artifact types.
inline constexpr char kModelArtifact[] = "application/vnd.edgeloop.model.v1";
inline constexpr char kModelCard[] = "application/vnd.edgeloop.model.card.v1+json";
inline constexpr char kModelFile[] = "application/vnd.edgeloop.model.file.v1";
inline constexpr char kSignatureArtifact[] = "application/vnd.edgeloop.signature.v1";
inline constexpr char kSignaturePayload[] = "application/vnd.edgeloop.signature.payload.v1+json";
inline constexpr char kPromotionArtifact[] = "application/vnd.edgeloop.promotion.v1";
inline constexpr char kPromotionRecord[] = "application/vnd.edgeloop.promotion.record.v1+json";
}  // namespace media_type

namespace annotation {
inline constexpr char kTitle[] = "org.opencontainers.image.title";
inline constexpr char kCreated[] = "org.opencontainers.image.created";
inline constexpr char kVersion[] = "org.opencontainers.image.version";
inline constexpr char kRefName[] = "org.opencontainers.image.ref.name";
}  // namespace annotation

// The 2-byte `{}` blob that OCI uses as an empty config.
inline constexpr char kEmptyJson[] = "{}";

struct Descriptor {
  std::string media_type;
  Digest digest;
  int64_t size = 0;
  std::string artifact_type;                       // optional
  std::map<std::string, std::string> annotations;  // optional

  friend bool operator==(const Descriptor& a, const Descriptor& b) = default;
};

// The descriptor of `bytes` with the given media type.
Descriptor DescribeBytes(std::string_view media_type, std::string_view bytes);

struct Manifest {
  std::string artifact_type;
  Descriptor config;
  std::vector<Descriptor> layers;
  std::optional<Descriptor> subject;
  std::map<std::string, std::string> annotations;
};

struct Index {
  std::vector<Descriptor> manifests;
  std::map<std::string, std::string> annotations;
};

// Canonical bytes (schemaVersion 2, mediaType set, keys sorted, no whitespace).
std::string SerializeManifest(const Manifest& manifest);
std::string SerializeIndex(const Index& index);

// Parse and validate (schemaVersion 2, digests well formed, sizes non-negative, mediaType if
// present must match). kInvalidArgument names the problem.
StatusOr<Manifest> ParseManifest(std::string_view bytes);
StatusOr<Index> ParseIndex(std::string_view bytes);

// The `mediaType` field of manifest or index bytes; the image manifest type when absent or
// unreadable.
std::string ManifestMediaType(std::string_view bytes);

// Repository names (distribution-spec): lowercase path components of [a-z0-9] separated by
// '.', '_', '__' or '-'s, joined by '/'. Tags: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
bool IsValidRepositoryName(std::string_view name);
bool IsValidTag(std::string_view tag);

// The tag under which the referrers of `subject` are listed by registries without the
// referrers API: "sha256-<hex>".
std::string ReferrersFallbackTag(const Digest& subject);

}  // namespace edgeloop::registry

#endif  // EDGELOOP_REGISTRY_OCI_H_
