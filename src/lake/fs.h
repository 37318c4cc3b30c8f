// Small POSIX file helpers private to the lake component.
#ifndef EDGELOOP_LAKE_FS_H_
#define EDGELOOP_LAKE_FS_H_

#include <filesystem>
#include <string>
#include <string_view>

#include "common/status.h"

namespace edgeloop::lake {

// fsyncs the directory so that entries created or renamed in it survive a crash.
Status SyncDirectory(const std::filesystem::path& dir);
// Writes all of `data` to `fd`, retrying on EINTR and short writes.
Status WriteAll(int fd, std::string_view data, const std::filesystem::path& path);
// "<errno text>" for messages.
std::string ErrnoText(int err);
// 32 random hex characters (128 bits from /dev/urandom, or a time-seeded fallback).
std::string RandomId();

}  // namespace edgeloop::lake

#endif  // EDGELOOP_LAKE_FS_H_
