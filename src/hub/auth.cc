#include "hub/auth.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

namespace edgeloop::hub {

StatusOr<std::string> NewToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return InternalError("RAND_bytes failed");
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string token = "elh_";
  // base64url without padding: 32 bytes are 43 characters.
  uint32_t bits = 0;
  int count = 0;
  for (unsigned char byte : bytes) {
    bits = (bits << 8) | byte;
    count += 8;
    while (count >= 6) {
      count -= 6;
      token.push_back(kAlphabet[(bits >> count) & 63]);
    }
  }
  if (count > 0) token.push_back(kAlphabet[(bits << (6 - count)) & 63]);
  return token;
}

std::string HashToken(std::string_view token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * sizeof(digest));
  for (unsigned char byte : digest) {
    hex.push_back(kHex[byte >> 4]);
    hex.push_back(kHex[byte & 15]);
  }
  return hex;
}

StatusOr<Principal> Authenticator::Authenticate(std::string_view header) {
  constexpr std::string_view kBearer = "Bearer ";
  if (header.empty())
    return UnauthenticatedError("an 'Authorization: Bearer <token>' header is required");
  if (header.size() <= kBearer.size() || header.substr(0, kBearer.size()) != kBearer) {
    return UnauthenticatedError("the Authorization header must be 'Bearer <token>'");
  }
  const std::string_view token = header.substr(kBearer.size());
  if (token.size() > 256) return UnauthenticatedError("invalid token");
  const std::string hash = HashToken(token);
  const Clock::SteadyTime now = clock_->Now();
  std::optional<TokenRecord> record;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(hash);
    if (it != cache_.end() && now - it->second.fetched < ttl_) record = it->second.record;
  }
  if (!record) {
    ASSIGN_OR_RETURN(std::optional<TokenRecord> found, store_->FindToken(hash));
    if (!found) return UnauthenticatedError("invalid token");
    record = std::move(found);
    std::lock_guard<std::mutex> lock(mu_);
    if (cache_.size() > 100'000) cache_.clear();
    cache_[hash] = Entry{*record, now};
  }
  if (record->revoked_at) return UnauthenticatedError("the token has been revoked");
  const int64_t wall_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_->WallNow().time_since_epoch())
          .count();
  if (record->expires_at && wall_ms >= *record->expires_at) {
    return UnauthenticatedError("the token has expired");
  }
  return Principal{record->name, record->role, record->site};
}

}  // namespace edgeloop::hub
