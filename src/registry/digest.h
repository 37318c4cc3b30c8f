// Content digests ("sha256:<64 lowercase hex>"), the identity of every blob and manifest.
#ifndef EDGELOOP_REGISTRY_DIGEST_H_
#define EDGELOOP_REGISTRY_DIGEST_H_

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace edgeloop::registry {

// A sha256 digest. Value type.
class Digest {
 public:
  Digest() = default;
  // "sha256:" followed by exactly 64 lowercase hex digits; anything else is kInvalidArgument
  // (other algorithms are refused rather than trusted).
  static StatusOr<Digest> Parse(std::string_view text);
  static Digest Of(std::string_view bytes);
  // Streams the file; kNotFound/kInternal when it cannot be read.
  static StatusOr<Digest> OfFile(const std::filesystem::path& path);

  const std::string& str() const { return text_; }  // "sha256:ab12..."
  std::string_view hex() const;                     // "ab12..."
  bool empty() const { return text_.empty(); }

  friend bool operator==(const Digest& a, const Digest& b) { return a.text_ == b.text_; }
  friend bool operator<(const Digest& a, const Digest& b) { return a.text_ < b.text_; }

 private:
  explicit Digest(std::string text) : text_(std::move(text)) {}
  std::string text_;
};

// Incremental sha256. Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t size);
  void Update(std::string_view data) { Update(data.data(), data.size()); }
  // The digest of everything updated so far; the hasher must not be used afterwards.
  Digest Finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace edgeloop::registry

#endif  // EDGELOOP_REGISTRY_DIGEST_H_
