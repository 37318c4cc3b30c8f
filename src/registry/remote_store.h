// RemoteStore: a repository in a registry, over the OCI Distribution API with libcurl.
#ifndef EDGELOOP_REGISTRY_REMOTE_STORE_H_
#define EDGELOOP_REGISTRY_REMOTE_STORE_H_

#include <memory>

#include "registry/store.h"

namespace edgeloop::registry {

// `reference.kind` must be kRegistry. Fails with kInvalidArgument when plain HTTP would be needed
// but is not allowed (see reference.h). Does not contact the registry.
StatusOr<std::unique_ptr<Store>> OpenRemoteStore(const Reference& reference,
                                                 const StoreOptions& options);

}  // namespace edgeloop::registry

#endif  // EDGELOOP_REGISTRY_REMOTE_STORE_H_
