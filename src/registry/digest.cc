#include "registry/digest.h"

#include <openssl/evp.h>

#include <fstream>
#include <vector>

namespace edgeloop::registry {
namespace {

constexpr std::string_view kPrefix = "sha256:";

bool IsLowerHex(std::string_view text) {
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

struct Sha256::State {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : state_(std::make_unique<State>()) {
  state_->ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr);
}

Sha256::~Sha256() { EVP_MD_CTX_free(state_->ctx); }

void Sha256::Update(const void* data, size_t size) { EVP_DigestUpdate(state_->ctx, data, size); }

Digest Sha256::Finish() {
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(state_->ctx, hash, &length);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text(kPrefix);
  for (unsigned int i = 0; i < length; ++i) {
    text.push_back(kHex[hash[i] >> 4]);
    text.push_back(kHex[hash[i] & 0xf]);
  }
  return *Digest::Parse(text);
}

StatusOr<Digest> Digest::Parse(std::string_view text) {
  if (text.substr(0, kPrefix.size()) != kPrefix) {
    return InvalidArgumentError("digest '" + std::string(text) +
                                "' is not sha256:<hex> (other algorithms are not accepted)");
  }
  const std::string_view hex = text.substr(kPrefix.size());
  if (hex.size() != 64 || !IsLowerHex(hex)) {
    return InvalidArgumentError("digest '" + std::string(text) +
                                "' must have 64 lowercase hex digits");
  }
  return Digest(std::string(text));
}

Digest Digest::Of(std::string_view bytes) {
  Sha256 hasher;
  hasher.Update(bytes);
  return hasher.Finish();
}

StatusOr<Digest> Digest::OfFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot read " + path.string());
  Sha256 hasher;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    hasher.Update(buffer.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) return InternalError("error reading " + path.string());
  return hasher.Finish();
}

std::string_view Digest::hex() const {
  return std::string_view(text_).substr(std::min(text_.size(), kPrefix.size()));
}

}  // namespace edgeloop::registry
