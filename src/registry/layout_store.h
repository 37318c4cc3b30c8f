// LayoutStore: an OCI image-layout directory (oci-layout, index.json, blobs/sha256/...), the
// embedded default store. Works offline and can be carried on a USB stick; skopeo reads and
// writes it as `oci:DIR:TAG`. Writes are crash-safe: blobs and index.json are written to a
// temporary file, fsynced and renamed.
#ifndef EDGELOOP_REGISTRY_LAYOUT_STORE_H_
#define EDGELOOP_REGISTRY_LAYOUT_STORE_H_

#include <filesystem>
#include <memory>

#include "registry/store.h"

namespace edgeloop::registry {

// kNotFound when `dir` is not an OCI layout and `create` is false.
StatusOr<std::unique_ptr<Store>> OpenLayoutStore(const std::filesystem::path& dir,
                                                 const StoreOptions& options, bool create);

}  // namespace edgeloop::registry

#endif  // EDGELOOP_REGISTRY_LAYOUT_STORE_H_
