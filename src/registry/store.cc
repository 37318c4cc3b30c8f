#include "registry/store.h"

#include "registry/layout_store.h"
#include "registry/remote_store.h"

namespace edgeloop::registry {

StatusOr<std::unique_ptr<Store>> OpenStore(const Reference& reference, const StoreOptions& options,
                                           bool create) {
  if (reference.kind == Reference::Kind::kLayout) {
    return OpenLayoutStore(reference.layout_dir, options, create);
  }
  return OpenRemoteStore(reference, options);
}

}  // namespace edgeloop::registry
