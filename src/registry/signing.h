// Ed25519 signatures for model artifacts, and signed alias promotions.
//
// A signature is an artifact whose subject is the model's manifest: an empty config, one layer
// holding the signed claims (canonical JSON: repository, manifest digest, counter, expiry, key
// id, time of signing) and the Ed25519 signature of those exact bytes in the manifest annotation
// "dev.edgeloop.signature". It is stored by digest and listed as a referrer (the registry's
// referrers API, or the "sha256-<hex>" fallback tag).
//
// Verification needs no network beyond the store itself and no clock beyond the caller's: the
// trusted public keys are pinned by the edge, the counter gives rollback protection (an edge
// refuses claims with a counter below the highest it has accepted for the repository), and the
// expiry bounds how long a stolen old signature stays useful.
#ifndef EDGELOOP_REGISTRY_SIGNING_H_
#define EDGELOOP_REGISTRY_SIGNING_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "registry/oci.h"
#include "registry/store.h"

namespace edgeloop::registry {

inline constexpr char kSignatureAnnotation[] = "dev.edgeloop.signature";
inline constexpr char kKeyIdAnnotation[] = "dev.edgeloop.key-id";

struct PublicKey {
  std::string key_id;  // first 16 hex digits of sha256 of the key bytes
  std::array<unsigned char, 32> bytes{};
};

struct SigningKey {
  PublicKey public_key;
  std::array<unsigned char, 64> secret{};  // libsodium's Ed25519 secret key (seed + public)
};

StatusOr<SigningKey> GenerateSigningKey();
// Writes PREFIX.key (mode 0600, never overwritten) and PREFIX.pub, as small JSON documents.
Status WriteKeyFiles(const SigningKey& key, const std::filesystem::path& prefix);
StatusOr<SigningKey> ReadSigningKey(const std::filesystem::path& path);
StatusOr<PublicKey> ReadPublicKey(const std::filesystem::path& path);

struct SignatureClaims {
  std::string type = "edgeloop.signature.v1";
  std::string repository;
  Digest manifest;
  int64_t counter = 0;
  std::string expires;  // RFC 3339 UTC
  std::string key_id;
  std::string signed_at;  // RFC 3339 UTC
};

// Canonical bytes of the claims (sorted keys, no whitespace) and back.
std::string SerializeClaims(const SignatureClaims& claims);
StatusOr<SignatureClaims> ParseClaims(std::string_view bytes);

struct SignOptions {
  std::string repository;  // the repository the signature is valid for
  int64_t counter = 0;     // 0: seconds since the epoch at signing, which only grows
  std::chrono::seconds validity{std::chrono::hours(24 * 365)};
  Clock* clock = Clock::Real();
};

// Signs `subject` (a manifest in `store`) and stores the signature as a referrer. Returns the
// signature manifest's descriptor.
StatusOr<Descriptor> SignArtifact(Store& store, const Descriptor& subject, const SigningKey& key,
                                  const SignOptions& options);

// Why verification failed, for reports and metrics.
enum class TrustFailure {
  kNone,
  kUnsigned,      // no signature at all
  kUntrustedKey,  // signed, but by no trusted key
  kBadSignature,  // a trusted key id, but the signature or claims do not check out
  kWrongSubject,  // claims for another digest or repository
  kExpired,
  kRollback,    // counter below the minimum
  kUnreadable,  // the store failed while reading signatures
};
std::string_view TrustFailureName(TrustFailure failure);  // "unsigned", "expired", ...

struct VerifyOptions {
  std::string repository;
  std::vector<PublicKey> trusted;
  Clock::WallTime now;
  int64_t min_counter = 0;  // refuse claims below this (rollback protection)
};

struct VerifiedSignature {
  SignatureClaims claims;
  Descriptor signature;
};

// Finds the valid signature of `subject` by a trusted key with the highest counter. On failure
// returns kPermissionDenied (kUnavailable when the store failed) and sets `*failure` to the most
// specific reason seen.
StatusOr<VerifiedSignature> VerifyArtifact(Store& store, const Descriptor& subject,
                                           const VerifyOptions& options, TrustFailure* failure);

// A record of an alias move ("champion" now points at `to`), kept as a signed artifact whose
// subject is the promoted manifest, and in the alias's history index.
struct PromotionRecord {
  std::string type = "edgeloop.promotion.v1";
  std::string repository;
  std::string alias;
  Digest to;
  std::string from;  // the digest the alias pointed at before, or ""
  std::string by;
  std::string at;  // RFC 3339 UTC
  std::string reason;
  std::string key_id;
  int64_t counter = 0;
};

// The tag holding an alias's promotion history (an index of record artifacts, oldest first).
std::string HistoryTag(std::string_view alias);

// Moves `alias` to the manifest `target` (tag or digest) in `store`: signs the target afresh
// (with a new, higher counter, so edges accept even a move back to an older model), stores the
// signed promotion record and appends it to the history, and only then moves the tag.
StatusOr<PromotionRecord> Promote(Store& store, std::string_view target, std::string_view alias,
                                  std::string_view by, std::string_view reason,
                                  const SigningKey& key, const SignOptions& options);

// The alias's promotion records, oldest first. Records whose signature does not verify with
// one of `trusted` are skipped (none skipped when `trusted` is empty).
StatusOr<std::vector<PromotionRecord>> ReadHistory(Store& store, std::string_view alias,
                                                   const std::vector<PublicKey>& trusted);

}  // namespace edgeloop::registry

#endif  // EDGELOOP_REGISTRY_SIGNING_H_
