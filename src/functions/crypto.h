// SHA-256 and HMAC-SHA256 through OpenSSL 3 (EVP_Digest, EVP_MAC). Thread-safe.
#ifndef EDGELOOP_FUNCTIONS_CRYPTO_H_
#define EDGELOOP_FUNCTIONS_CRYPTO_H_

#include <string>
#include <string_view>

namespace edgeloop::functions {

// Lower-case hex of the SHA-256 of `data` (64 characters).
std::string Sha256Hex(std::string_view data);

// The 32 raw bytes of HMAC-SHA256(key, data).
std::string HmacSha256(std::string_view key, std::string_view data);

// Lower-case hex of `bytes`.
std::string HexEncode(std::string_view bytes);

}  // namespace edgeloop::functions

#endif  // EDGELOOP_FUNCTIONS_CRYPTO_H_
