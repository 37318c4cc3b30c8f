#include "registry/referrers.h"

#include <algorithm>

namespace edgeloop::registry {
namespace {

std::vector<Descriptor> Filter(std::vector<Descriptor> all, std::string_view artifact_type) {
  if (artifact_type.empty()) return all;
  all.erase(std::remove_if(all.begin(), all.end(),
                           [&](const Descriptor& d) { return d.artifact_type != artifact_type; }),
            all.end());
  return all;
}

StatusOr<Index> FallbackIndex(Store& store, const Digest& subject) {
  auto manifest = store.FetchManifest(ReferrersFallbackTag(subject));
  if (!manifest.ok()) {
    if (manifest.status().code() == StatusCode::kNotFound) return Index{};
    return manifest.status();
  }
  return ParseIndex(manifest->bytes);
}

}  // namespace

StatusOr<std::vector<Descriptor>> ListReferrers(Store& store, const Digest& subject,
                                                std::string_view artifact_type) {
  auto api = store.ReferrersApi(subject);
  if (api.ok()) return Filter(std::move(api->manifests), artifact_type);
  if (api.status().code() != StatusCode::kUnimplemented) return api.status();
  ASSIGN_OR_RETURN(Index index, FallbackIndex(store, subject));
  return Filter(std::move(index.manifests), artifact_type);
}

Status AddReferrer(Store& store, const Digest& subject, const Descriptor& referrer) {
  auto api = store.ReferrersApi(subject);
  if (api.ok()) return Status::Ok();  // the registry indexes subjects itself
  if (api.status().code() != StatusCode::kUnimplemented) return api.status();
  ASSIGN_OR_RETURN(Index index, FallbackIndex(store, subject));
  const bool present =
      std::any_of(index.manifests.begin(), index.manifests.end(),
                  [&](const Descriptor& d) { return d.digest == referrer.digest; });
  if (present) return Status::Ok();
  index.manifests.push_back(referrer);
  return store.PushManifest(ReferrersFallbackTag(subject), SerializeIndex(index),
                            media_type::kImageIndex);
}

}  // namespace edgeloop::registry
