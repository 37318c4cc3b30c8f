// File helpers for stores and caches: bounded reads, crash-safe writes, verified copies.
// Private to the registry component.
#ifndef EDGELOOP_REGISTRY_FILE_UTIL_H_
#define EDGELOOP_REGISTRY_FILE_UTIL_H_

#include <filesystem>
#include <string>
#include <string_view>

#include "common/status.h"
#include "registry/oci.h"
#include "registry/store.h"

namespace edgeloop::registry {

// The whole file, refusing files larger than `max_bytes`. kNotFound when absent.
StatusOr<std::string> ReadSmallFile(const std::filesystem::path& path, int64_t max_bytes);

// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs
// the directory: after a crash `path` holds the old or the new content, never a mix.
Status WriteFileAtomic(const std::filesystem::path& path, std::string_view bytes);

// fsync of a directory, so that a rename in it survives a crash.
Status SyncDirectory(const std::filesystem::path& dir);

// kDataLoss unless `bytes` has the descriptor's size and digest.
Status CheckBytes(std::string_view bytes, const Descriptor& expected);

// Copies `source` to `dest` (truncating), hashing on the way; kDataLoss when the size or digest
// differ from `expected`. `dest` is left as written; callers remove it on error.
Status CopyVerified(const std::filesystem::path& source, const std::filesystem::path& dest,
                    const Descriptor& expected, const ProgressFn& progress);

// CopyVerified into a temporary file beside `dest`, fsync, rename: `dest` appears complete or
// not at all.
Status AtomicCopyVerified(const std::filesystem::path& source, const std::filesystem::path& dest,
                          const Descriptor& expected, const ProgressFn& progress);

}  // namespace edgeloop::registry

#endif  // EDGELOOP_REGISTRY_FILE_UTIL_H_
