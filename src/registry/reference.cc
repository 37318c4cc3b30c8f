#include "registry/reference.h"

#include "registry/oci.h"

namespace edgeloop::registry {
namespace {

constexpr std::string_view kRegistryScheme = "oci://";
constexpr std::string_view kLayoutScheme = "layout://";

// Splits "name[:tag][@digest]" where `name` may contain '/' (and, for layouts, ':' before the
// last '/').
Status SplitTagAndDigest(std::string_view text, std::string_view* name, Reference* ref) {
  const size_t at = text.find('@');
  if (at != std::string_view::npos) {
    ASSIGN_OR_RETURN(Digest digest, Digest::Parse(text.substr(at + 1)));
    ref->digest = std::move(digest);
    text = text.substr(0, at);
  }
  const size_t slash = text.rfind('/');
  const size_t colon = text.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    ref->tag = std::string(text.substr(colon + 1));
    if (!IsValidTag(ref->tag)) {
      return InvalidArgumentError("invalid tag '" + ref->tag +
                                  "' (letters, digits, '.', '_', '-'; at most 128)");
    }
    text = text.substr(0, colon);
  }
  *name = text;
  return Status::Ok();
}

}  // namespace

std::string Reference::TagOrDigest() const {
  if (digest) return digest->str();
  return tag.empty() ? "latest" : tag;
}

Reference Reference::WithTag(std::string new_tag) const {
  Reference copy = *this;
  copy.tag = std::move(new_tag);
  copy.digest.reset();
  return copy;
}

Reference Reference::WithDigest(Digest new_digest) const {
  Reference copy = *this;
  copy.digest = std::move(new_digest);
  return copy;
}

std::string Reference::ToString() const {
  std::string out;
  if (kind == Kind::kRegistry) {
    out = std::string(kRegistryScheme) + host + "/" + repository;
  } else {
    out = std::string(kLayoutScheme) + layout_dir.string();
  }
  if (!tag.empty()) out += ":" + tag;
  if (digest) out += "@" + digest->str();
  return out;
}

bool Reference::IsLoopback() const {
  if (kind != Kind::kRegistry) return false;
  std::string name = host;
  if (!name.empty() && name.front() == '[') {
    const size_t close = name.find(']');
    return close != std::string::npos && name.substr(1, close - 1) == "::1";
  }
  const size_t colon = name.find(':');
  if (colon != std::string::npos) name = name.substr(0, colon);
  return name == "localhost" || name.rfind("127.", 0) == 0;
}

StatusOr<Reference> ParseReference(std::string_view text) {
  Reference ref;
  std::string_view rest;
  if (text.substr(0, kRegistryScheme.size()) == kRegistryScheme) {
    ref.kind = Reference::Kind::kRegistry;
    rest = text.substr(kRegistryScheme.size());
    const size_t slash = rest.find('/');
    if (slash == 0 || slash == std::string_view::npos) {
      return InvalidArgumentError("reference '" + std::string(text) +
                                  "' needs a host and a repository: oci://HOST[:PORT]/REPO[:TAG]");
    }
    ref.host = std::string(rest.substr(0, slash));
    for (char c : ref.host) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
      if (!ok) return InvalidArgumentError("invalid registry host '" + ref.host + "'");
    }
    std::string_view name;
    RETURN_IF_ERROR(SplitTagAndDigest(rest.substr(slash + 1), &name, &ref)
                        .WithContext("reference '" + std::string(text) + "'"));
    ref.repository = std::string(name);
    if (!IsValidRepositoryName(ref.repository)) {
      return InvalidArgumentError("invalid repository name '" + ref.repository +
                                  "' (lowercase letters, digits, separators '.', '_', '-', '/')");
    }
    return ref;
  }
  if (text.substr(0, kLayoutScheme.size()) == kLayoutScheme) {
    ref.kind = Reference::Kind::kLayout;
    std::string_view name;
    RETURN_IF_ERROR(SplitTagAndDigest(text.substr(kLayoutScheme.size()), &name, &ref)
                        .WithContext("reference '" + std::string(text) + "'"));
    if (name.empty()) {
      return InvalidArgumentError("reference '" + std::string(text) +
                                  "' needs a directory: layout://PATH[:TAG]");
    }
    ref.layout_dir = std::filesystem::path(name).lexically_normal();
    std::string base = ref.layout_dir.filename().string();
    if (base.empty()) base = ref.layout_dir.parent_path().filename().string();
    ref.repository = base;
    return ref;
  }
  return InvalidArgumentError("reference '" + std::string(text) +
                              "' must start with oci:// (a registry) or layout:// (a directory)");
}

}  // namespace edgeloop::registry
