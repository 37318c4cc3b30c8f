#include "functions/crypto.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <cstdlib>

namespace edgeloop::functions {

std::string HexEncode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    out.push_back(kDigits[byte >> 4]);
    out.push_back(kDigits[byte & 0xf]);
  }
  return out;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  // EVP_Digest fails only on allocation failure; an empty hash would then be caught by callers
  // comparing digests, but abort instead: there is no sensible way on.
  if (EVP_Digest(data.data(), data.size(), hash, &length, EVP_sha256(), nullptr) != 1) {
    std::abort();
  }
  return HexEncode(std::string_view(reinterpret_cast<const char*>(hash), length));
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* ctx = mac != nullptr ? EVP_MAC_CTX_new(mac) : nullptr;
  char digest_name[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
                         OSSL_PARAM_construct_end()};
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t length = 0;
  const bool ok =
      ctx != nullptr &&
      EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size(), params) ==
          1 &&
      EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1 &&
      EVP_MAC_final(ctx, out, &length, sizeof(out)) == 1;
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  // Only allocation failure or a broken OpenSSL install get here; a pseudonym must never fall
  // back to the clear value, so stop.
  if (!ok) std::abort();
  return std::string(reinterpret_cast<const char*>(out), length);
}

}  // namespace edgeloop::functions
