// Referrers: artifacts (signatures, promotion records) that point at a manifest through their
// `subject`. Registries with the referrers API list them; for the others (registry:2 and OCI
// layouts) the client keeps an image index under the fallback tag "sha256-<hex>" of the
// subject, as the distribution spec prescribes.
#ifndef EDGELOOP_REGISTRY_REFERRERS_H_
#define EDGELOOP_REGISTRY_REFERRERS_H_

#include <string_view>
#include <vector>

#include "common/status.h"
#include "registry/oci.h"
#include "registry/store.h"

namespace edgeloop::registry {

// The referrers of `subject` whose artifactType is `artifact_type` (all when empty), from the
// referrers API when the store has one, otherwise from the fallback tag. An absent fallback tag
// means no referrers (an empty list).
StatusOr<std::vector<Descriptor>> ListReferrers(Store& store, const Digest& subject,
                                                std::string_view artifact_type);

// Makes `referrer` (a manifest already pushed by digest, whose subject is `subject`) findable:
// adds it to the fallback tag's index unless it is there already or the store has the referrers
// API. The read-modify-write of the fallback index is racy between concurrent writers on a
// registry (the spec's known weakness); a lost entry is found again by re-running the command.
Status AddReferrer(Store& store, const Digest& subject, const Descriptor& referrer);

}  // namespace edgeloop::registry

#endif  // EDGELOOP_REGISTRY_REFERRERS_H_
