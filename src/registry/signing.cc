#include "registry/signing.h"

#include <sodium.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>

#include "registry/file_util.h"
#include "registry/referrers.h"

namespace edgeloop::registry {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr int64_t kMaxKeyFileBytes = 4096;

Status EnsureSodium() {
  static const int result = sodium_init();
  if (result < 0) return InternalError("libsodium failed to initialise");
  return Status::Ok();
}

std::string Base64(const unsigned char* data, size_t size) {
  std::string out(sodium_base64_ENCODED_LEN(size, sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), data, size, sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

template <size_t N>
bool FromBase64(std::string_view text, std::array<unsigned char, N>* out) {
  size_t length = 0;
  return sodium_base642bin(out->data(), out->size(), text.data(), text.size(), nullptr, &length,
                           nullptr, sodium_base64_VARIANT_ORIGINAL) == 0 &&
         length == N;
}

std::string KeyId(const std::array<unsigned char, 32>& public_key) {
  const Digest digest =
      Digest::Of(std::string_view(reinterpret_cast<const char*>(public_key.data()), 32));
  return std::string(digest.hex().substr(0, 16));
}

std::string Canonical(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::strict);
}

std::string Sign(std::string_view message, const SigningKey& key) {
  std::array<unsigned char, crypto_sign_BYTES> signature{};
  crypto_sign_detached(signature.data(), nullptr,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       key.secret.data());
  return Base64(signature.data(), signature.size());
}

bool CheckSignature(std::string_view message, std::string_view signature_b64,
                    const PublicKey& key) {
  std::array<unsigned char, crypto_sign_BYTES> signature{};
  if (!FromBase64(signature_b64, &signature)) return false;
  return crypto_sign_verify_detached(signature.data(),
                                     reinterpret_cast<const unsigned char*>(message.data()),
                                     message.size(), key.bytes.data()) == 0;
}

StatusOr<Json> ReadKeyJson(const fs::path& path) {
  ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kMaxKeyFileBytes));
  Json json = Json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object() || !json.contains("algorithm") ||
      json["algorithm"] != "ed25519") {
    return InvalidArgumentError(path.string() + " is not an edgeloop ed25519 key file");
  }
  return json;
}

StatusOr<std::string> JsonString(const Json& json, const char* key, const char* what) {
  if (!json.contains(key) || !json[key].is_string()) {
    return InvalidArgumentError(std::string(what) + " lacks the string '" + key + "'");
  }
  return json[key].get<std::string>();
}

// Pushes `payload` as the single layer of an artifact of `artifact_type` whose subject is
// `subject`, signed with `key`; registers it as a referrer. Returns its descriptor.
StatusOr<Descriptor> PushSignedArtifact(Store& store, const Descriptor& subject,
                                        const char* artifact_type, const char* payload_type,
                                        const std::string& payload, const SigningKey& key) {
  const Descriptor config = DescribeBytes(media_type::kEmpty, kEmptyJson);
  const Descriptor layer = DescribeBytes(payload_type, payload);
  RETURN_IF_ERROR(store.PushBlob(config, BlobSource::Bytes(kEmptyJson), nullptr));
  RETURN_IF_ERROR(store.PushBlob(layer, BlobSource::Bytes(payload), nullptr));
  Manifest manifest;
  manifest.artifact_type = artifact_type;
  manifest.config = config;
  manifest.layers = {layer};
  Descriptor subject_descriptor = subject;
  subject_descriptor.annotations.clear();
  subject_descriptor.artifact_type.clear();
  manifest.subject = subject_descriptor;
  manifest.annotations[kSignatureAnnotation] = Sign(payload, key);
  manifest.annotations[kKeyIdAnnotation] = key.public_key.key_id;
  const std::string bytes = SerializeManifest(manifest);
  Descriptor descriptor = DescribeBytes(media_type::kImageManifest, bytes);
  RETURN_IF_ERROR(store.PushManifest(descriptor.digest.str(), bytes, media_type::kImageManifest));
  descriptor.artifact_type = artifact_type;
  descriptor.annotations[kKeyIdAnnotation] = key.public_key.key_id;
  RETURN_IF_ERROR(AddReferrer(store, subject.digest, descriptor));
  return descriptor;
}

// The payload of a signed artifact whose signature verifies with one of `trusted` (any key when
// `trusted` is empty and `require_trust` is false).
struct SignedPayload {
  std::string payload;
  std::string key_id;
  bool trusted_key = false;
  bool signature_ok = false;
};

StatusOr<SignedPayload> ReadSignedArtifact(Store& store, const Descriptor& artifact,
                                           const std::vector<PublicKey>& trusted) {
  ASSIGN_OR_RETURN(FetchedManifest fetched, store.FetchManifest(artifact.digest.str()));
  ASSIGN_OR_RETURN(Manifest manifest, ParseManifest(fetched.bytes));
  if (manifest.layers.size() != 1) {
    return InvalidArgumentError("signed artifact " + artifact.digest.str() +
                                " must have one layer");
  }
  SignedPayload result;
  ASSIGN_OR_RETURN(result.payload, store.ReadBlob(manifest.layers.front()));
  auto signature = manifest.annotations.find(kSignatureAnnotation);
  auto key_id = manifest.annotations.find(kKeyIdAnnotation);
  if (signature == manifest.annotations.end() || key_id == manifest.annotations.end()) {
    return result;
  }
  result.key_id = key_id->second;
  for (const PublicKey& key : trusted) {
    if (key.key_id != key_id->second) continue;
    result.trusted_key = true;
    result.signature_ok = CheckSignature(result.payload, signature->second, key);
  }
  return result;
}

std::string FormatTime(Clock::WallTime time) {
  const auto seconds = std::chrono::floor<std::chrono::seconds>(time.time_since_epoch());
  const std::time_t t = static_cast<std::time_t>(seconds.count());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// RFC 3339 UTC ("2027-01-02T03:04:05Z") to a time point; nullopt if malformed.
std::optional<Clock::WallTime> ParseTime(const std::string& text) {
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  return Clock::WallTime(std::chrono::seconds(timegm(&tm)));
}

int Rank(TrustFailure failure) {
  // Later in this list = more specific, reported in preference.
  switch (failure) {
    case TrustFailure::kNone:
      return 0;
    case TrustFailure::kUnsigned:
      return 1;
    case TrustFailure::kUnreadable:
      return 2;
    case TrustFailure::kUntrustedKey:
      return 3;
    case TrustFailure::kBadSignature:
      return 4;
    case TrustFailure::kWrongSubject:
      return 5;
    case TrustFailure::kExpired:
      return 6;
    case TrustFailure::kRollback:
      return 7;
  }
  return 0;
}

}  // namespace

StatusOr<SigningKey> GenerateSigningKey() {
  RETURN_IF_ERROR(EnsureSodium());
  SigningKey key;
  crypto_sign_keypair(key.public_key.bytes.data(), key.secret.data());
  key.public_key.key_id = KeyId(key.public_key.bytes);
  return key;
}

Status WriteKeyFiles(const SigningKey& key, const fs::path& prefix) {
  const fs::path secret_path = prefix.string() + ".key";
  const fs::path public_path = prefix.string() + ".pub";
  std::error_code ec;
  if (fs::exists(secret_path, ec) || fs::exists(public_path, ec)) {
    return AlreadyExistsError(secret_path.string() + " or " + public_path.string() +
                              " exists; refusing to overwrite a key");
  }
  const Json public_json = {{"algorithm", "ed25519"},
                            {"key_id", key.public_key.key_id},
                            {"public_key", Base64(key.public_key.bytes.data(), 32)}};
  Json secret_json = public_json;
  secret_json["secret_key"] = Base64(key.secret.data(), key.secret.size());
  // Create the secret file with 0600 before writing anything into it.
  const mode_t old_mask = ::umask(0077);
  Status status = WriteFileAtomic(secret_path, secret_json.dump(2) + "\n");
  ::umask(old_mask);
  RETURN_IF_ERROR(status);
  ::chmod(secret_path.c_str(), 0600);
  return WriteFileAtomic(public_path, public_json.dump(2) + "\n");
}

StatusOr<SigningKey> ReadSigningKey(const fs::path& path) {
  RETURN_IF_ERROR(EnsureSodium());
  ASSIGN_OR_RETURN(Json json, ReadKeyJson(path));
  SigningKey key;
  ASSIGN_OR_RETURN(std::string secret, JsonString(json, "secret_key", "a secret key file"));
  if (!FromBase64(secret, &key.secret)) {
    return InvalidArgumentError(path.string() + " holds no valid ed25519 secret key");
  }
  crypto_sign_ed25519_sk_to_pk(key.public_key.bytes.data(), key.secret.data());
  key.public_key.key_id = KeyId(key.public_key.bytes);
  return key;
}

StatusOr<PublicKey> ReadPublicKey(const fs::path& path) {
  RETURN_IF_ERROR(EnsureSodium());
  ASSIGN_OR_RETURN(Json json, ReadKeyJson(path));
  PublicKey key;
  ASSIGN_OR_RETURN(std::string text, JsonString(json, "public_key", "a public key file"));
  if (!FromBase64(text, &key.bytes)) {
    return InvalidArgumentError(path.string() + " holds no valid ed25519 public key");
  }
  key.key_id = KeyId(key.bytes);
  return key;
}

std::string SerializeClaims(const SignatureClaims& claims) {
  return Canonical({{"type", claims.type},
                    {"repository", claims.repository},
                    {"manifest_digest", claims.manifest.str()},
                    {"counter", claims.counter},
                    {"expires", claims.expires},
                    {"key_id", claims.key_id},
                    {"signed_at", claims.signed_at}});
}

StatusOr<SignatureClaims> ParseClaims(std::string_view bytes) {
  Json json = Json::parse(bytes, nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    return InvalidArgumentError("signature claims are not a JSON object");
  }
  SignatureClaims claims;
  ASSIGN_OR_RETURN(claims.type, JsonString(json, "type", "signature claims"));
  if (claims.type != "edgeloop.signature.v1") {
    return InvalidArgumentError("unknown signature type '" + claims.type + "'");
  }
  ASSIGN_OR_RETURN(claims.repository, JsonString(json, "repository", "signature claims"));
  ASSIGN_OR_RETURN(std::string digest, JsonString(json, "manifest_digest", "signature claims"));
  ASSIGN_OR_RETURN(claims.manifest, Digest::Parse(digest));
  if (!json.contains("counter") || !json["counter"].is_number_integer()) {
    return InvalidArgumentError("signature claims lack an integer counter");
  }
  claims.counter = json["counter"].get<int64_t>();
  ASSIGN_OR_RETURN(claims.expires, JsonString(json, "expires", "signature claims"));
  ASSIGN_OR_RETURN(claims.key_id, JsonString(json, "key_id", "signature claims"));
  ASSIGN_OR_RETURN(claims.signed_at, JsonString(json, "signed_at", "signature claims"));
  return claims;
}

StatusOr<Descriptor> SignArtifact(Store& store, const Descriptor& subject, const SigningKey& key,
                                  const SignOptions& options) {
  RETURN_IF_ERROR(EnsureSodium());
  const Clock::WallTime now = options.clock->WallNow();
  SignatureClaims claims;
  claims.repository = options.repository;
  claims.manifest = subject.digest;
  claims.counter =
      options.counter > 0
          ? options.counter
          : std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  claims.expires = FormatTime(now + options.validity);
  claims.key_id = key.public_key.key_id;
  claims.signed_at = FormatTime(now);
  return PushSignedArtifact(store, subject, media_type::kSignatureArtifact,
                            media_type::kSignaturePayload, SerializeClaims(claims), key);
}

std::string_view TrustFailureName(TrustFailure failure) {
  switch (failure) {
    case TrustFailure::kNone:
      return "none";
    case TrustFailure::kUnsigned:
      return "unsigned";
    case TrustFailure::kUntrustedKey:
      return "untrusted_key";
    case TrustFailure::kBadSignature:
      return "bad_signature";
    case TrustFailure::kWrongSubject:
      return "wrong_subject";
    case TrustFailure::kExpired:
      return "expired";
    case TrustFailure::kRollback:
      return "rollback";
    case TrustFailure::kUnreadable:
      return "unreadable";
  }
  return "unknown";
}

StatusOr<VerifiedSignature> VerifyArtifact(Store& store, const Descriptor& subject,
                                           const VerifyOptions& options, TrustFailure* failure) {
  RETURN_IF_ERROR(EnsureSodium());
  TrustFailure worst = TrustFailure::kUnsigned;
  std::string detail = "no signature found";
  const auto note = [&](TrustFailure reason, std::string why) {
    if (Rank(reason) >= Rank(worst)) {
      worst = reason;
      detail = std::move(why);
    }
  };
  auto signatures = ListReferrers(store, subject.digest, media_type::kSignatureArtifact);
  if (!signatures.ok()) {
    *failure = TrustFailure::kUnreadable;
    return UnavailableError("cannot list the signatures of " + subject.digest.str() + ": " +
                            signatures.status().message());
  }
  std::optional<VerifiedSignature> best;
  for (const Descriptor& signature : *signatures) {
    auto read = ReadSignedArtifact(store, signature, options.trusted);
    if (!read.ok()) {
      note(TrustFailure::kUnreadable,
           "signature " + signature.digest.str() + " cannot be read: " + read.status().message());
      continue;
    }
    if (!read->trusted_key) {
      note(TrustFailure::kUntrustedKey, "signed only by keys that are not trusted (key " +
                                            (read->key_id.empty() ? "?" : read->key_id) + ")");
      continue;
    }
    if (!read->signature_ok) {
      note(TrustFailure::kBadSignature, "the signature by key " + read->key_id +
                                            " does not verify: tampered claims or signature");
      continue;
    }
    auto claims = ParseClaims(read->payload);
    if (!claims.ok() || claims->key_id != read->key_id) {
      note(TrustFailure::kBadSignature, "signed claims are malformed");
      continue;
    }
    if (!(claims->manifest == subject.digest)) {
      note(TrustFailure::kWrongSubject,
           "the signature is for " + claims->manifest.str() + ", not " + subject.digest.str());
      continue;
    }
    if (claims->repository != options.repository) {
      note(TrustFailure::kWrongSubject, "the signature is for repository '" + claims->repository +
                                            "', not '" + options.repository + "'");
      continue;
    }
    const auto expires = ParseTime(claims->expires);
    if (!expires || *expires <= options.now) {
      note(TrustFailure::kExpired, "the signature expired at " + claims->expires);
      continue;
    }
    if (claims->counter < options.min_counter) {
      note(TrustFailure::kRollback, "the signature's counter " + std::to_string(claims->counter) +
                                        " is below " + std::to_string(options.min_counter) +
                                        ", already accepted: a rollback");
      continue;
    }
    if (!best || claims->counter > best->claims.counter) {
      best = VerifiedSignature{std::move(*claims), signature};
    }
  }
  if (best) {
    *failure = TrustFailure::kNone;
    return *std::move(best);
  }
  *failure = worst;
  return PermissionDeniedError(subject.digest.str() + " is not trusted (" +
                               std::string(TrustFailureName(worst)) + "): " + detail);
}

std::string HistoryTag(std::string_view alias) { return "edgeloop-history-" + std::string(alias); }

StatusOr<PromotionRecord> Promote(Store& store, std::string_view target, std::string_view alias,
                                  std::string_view by, std::string_view reason,
                                  const SigningKey& key, const SignOptions& options) {
  if (!IsValidTag(alias) || alias.substr(0, 7) == "sha256-" ||
      alias.substr(0, 17) == "edgeloop-history-") {
    return InvalidArgumentError("'" + std::string(alias) + "' cannot be an alias tag");
  }
  ASSIGN_OR_RETURN(FetchedManifest fetched, store.FetchManifest(target));
  Descriptor subject = DescribeBytes(fetched.media_type, fetched.bytes);
  PromotionRecord record;
  record.repository = options.repository;
  record.alias = std::string(alias);
  record.to = fetched.digest;
  auto previous = store.Resolve(alias);
  if (previous.ok()) {
    record.from = previous->digest.str();
  } else if (previous.status().code() != StatusCode::kNotFound) {
    return previous.status();
  }
  record.by = std::string(by);
  record.at = FormatTime(options.clock->WallNow());
  record.reason = std::string(reason);
  record.key_id = key.public_key.key_id;

  // A fresh signature, so that edges accept the move even back to an older model.
  ASSIGN_OR_RETURN(Descriptor signature, SignArtifact(store, subject, key, options));
  ASSIGN_OR_RETURN(FetchedManifest signature_manifest, store.FetchManifest(signature.digest.str()));
  ASSIGN_OR_RETURN(Manifest parsed_signature, ParseManifest(signature_manifest.bytes));
  ASSIGN_OR_RETURN(std::string claims_bytes, store.ReadBlob(parsed_signature.layers.front()));
  ASSIGN_OR_RETURN(SignatureClaims claims, ParseClaims(claims_bytes));
  record.counter = claims.counter;

  const std::string payload = Canonical({{"type", record.type},
                                         {"repository", record.repository},
                                         {"alias", record.alias},
                                         {"to", record.to.str()},
                                         {"from", record.from},
                                         {"by", record.by},
                                         {"at", record.at},
                                         {"reason", record.reason},
                                         {"key_id", record.key_id},
                                         {"counter", record.counter}});
  ASSIGN_OR_RETURN(Descriptor record_descriptor,
                   PushSignedArtifact(store, subject, media_type::kPromotionArtifact,
                                      media_type::kPromotionRecord, payload, key));
  // Append to the alias's history (read-modify-write of an index, like the referrers fallback).
  Index history;
  auto existing = store.FetchManifest(HistoryTag(alias));
  if (existing.ok()) {
    ASSIGN_OR_RETURN(history, ParseIndex(existing->bytes));
  } else if (existing.status().code() != StatusCode::kNotFound) {
    return existing.status();
  }
  history.manifests.push_back(record_descriptor);
  RETURN_IF_ERROR(
      store.PushManifest(HistoryTag(alias), SerializeIndex(history), media_type::kImageIndex));
  // Last: the alias moves only when its signature and record exist.
  RETURN_IF_ERROR(store.PushManifest(alias, fetched.bytes, fetched.media_type));
  return record;
}

StatusOr<std::vector<PromotionRecord>> ReadHistory(Store& store, std::string_view alias,
                                                   const std::vector<PublicKey>& trusted) {
  RETURN_IF_ERROR(EnsureSodium());
  auto existing = store.FetchManifest(HistoryTag(alias));
  if (!existing.ok()) {
    if (existing.status().code() == StatusCode::kNotFound) {
      return std::vector<PromotionRecord>{};
    }
    return existing.status();
  }
  ASSIGN_OR_RETURN(Index history, ParseIndex(existing->bytes));
  std::vector<PromotionRecord> records;
  for (const Descriptor& entry : history.manifests) {
    ASSIGN_OR_RETURN(SignedPayload read, ReadSignedArtifact(store, entry, trusted));
    if (!trusted.empty() && !read.signature_ok) continue;
    Json json = Json::parse(read.payload, nullptr, false);
    if (json.is_discarded() || !json.is_object() ||
        json.value("type", "") != "edgeloop.promotion.v1") {
      continue;
    }
    PromotionRecord record;
    record.repository = json.value("repository", "");
    record.alias = json.value("alias", "");
    auto to = Digest::Parse(json.value("to", ""));
    if (!to.ok()) continue;
    record.to = *to;
    record.from = json.value("from", "");
    record.by = json.value("by", "");
    record.at = json.value("at", "");
    record.reason = json.value("reason", "");
    record.key_id = json.value("key_id", "");
    record.counter = json.value("counter", int64_t{0});
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace edgeloop::registry
