#include "registry/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <vector>

namespace edgeloop::registry {
namespace {

namespace fs = std::filesystem;

std::string ErrnoText() { return std::strerror(errno); }

// A unique temporary name in the same directory as `path` (so a rename is atomic).
fs::path TempBeside(const fs::path& path) {
  thread_local std::mt19937_64 random(std::random_device{}());
  char suffix[24];
  std::snprintf(suffix, sizeof(suffix), "%016llx", static_cast<unsigned long long>(random()));
  return path.parent_path() / (".tmp-" + path.filename().string() + "-" + suffix);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

Status WriteAll(int fd, const char* data, size_t size, const fs::path& path) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return UnavailableError("cannot write " + path.string() + ": " + ErrnoText());
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::string> ReadSmallFile(const fs::path& path, int64_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return NotFoundError(path.string() + " does not exist");
    return UnavailableError("cannot open " + path.string() + ": " + ErrnoText());
  }
  std::string bytes;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return UnavailableError("cannot read " + path.string() + ": " + ErrnoText());
    }
    if (n == 0) break;
    bytes.append(buffer, static_cast<size_t>(n));
    if (static_cast<int64_t>(bytes.size()) > max_bytes) {
      return FailedPreconditionError(path.string() + " is larger than " +
                                     std::to_string(max_bytes) + " bytes");
    }
  }
  return bytes;
}

Status SyncDirectory(const fs::path& dir) {
  Fd fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return UnavailableError("cannot open " + dir.string() + ": " + ErrnoText());
  if (::fsync(fd.get()) != 0) {
    return UnavailableError("cannot sync " + dir.string() + ": " + ErrnoText());
  }
  return Status::Ok();
}

Status WriteFileAtomic(const fs::path& path, std::string_view bytes) {
  const fs::path temp = TempBeside(path);
  {
    Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd.get() < 0) {
      return UnavailableError("cannot create " + temp.string() + ": " + ErrnoText());
    }
    Status status = WriteAll(fd.get(), bytes.data(), bytes.size(), temp);
    if (status.ok() && ::fsync(fd.get()) != 0) {
      status = UnavailableError("cannot sync " + temp.string() + ": " + ErrnoText());
    }
    if (!status.ok()) {
      ::unlink(temp.c_str());
      return status;
    }
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string error = ErrnoText();
    ::unlink(temp.c_str());
    return UnavailableError("cannot rename onto " + path.string() + ": " + error);
  }
  return SyncDirectory(path.parent_path());
}

Status CheckBytes(std::string_view bytes, const Descriptor& expected) {
  if (static_cast<int64_t>(bytes.size()) != expected.size) {
    return DataLossError("content of " + expected.digest.str() + " has " +
                         std::to_string(bytes.size()) + " bytes, expected " +
                         std::to_string(expected.size));
  }
  const Digest actual = Digest::Of(bytes);
  if (!(actual == expected.digest)) {
    return DataLossError("content digest is " + actual.str() + ", expected " +
                         expected.digest.str());
  }
  return Status::Ok();
}

Status CopyVerified(const fs::path& source, const fs::path& dest, const Descriptor& expected,
                    const ProgressFn& progress) {
  Fd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) return NotFoundError("cannot open " + source.string() + ": " + ErrnoText());
  Fd out(::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (out.get() < 0) {
    return UnavailableError("cannot create " + dest.string() + ": " + ErrnoText());
  }
  Sha256 hasher;
  std::vector<char> buffer(1 << 20);
  int64_t copied = 0;
  for (;;) {
    const ssize_t n = ::read(in.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return UnavailableError("cannot read " + source.string() + ": " + ErrnoText());
    }
    if (n == 0) break;
    copied += n;
    if (copied > expected.size) {
      return DataLossError(source.string() + " is larger than the expected " +
                           std::to_string(expected.size) + " bytes");
    }
    hasher.Update(buffer.data(), static_cast<size_t>(n));
    RETURN_IF_ERROR(WriteAll(out.get(), buffer.data(), static_cast<size_t>(n), dest));
    if (progress) progress(copied, expected.size);
  }
  if (copied != expected.size) {
    return DataLossError(source.string() + " has " + std::to_string(copied) + " bytes, expected " +
                         std::to_string(expected.size));
  }
  const Digest actual = hasher.Finish();
  if (!(actual == expected.digest)) {
    return DataLossError(source.string() + " has digest " + actual.str() + ", expected " +
                         expected.digest.str());
  }
  if (::fsync(out.get()) != 0) {
    return UnavailableError("cannot sync " + dest.string() + ": " + ErrnoText());
  }
  return Status::Ok();
}

Status AtomicCopyVerified(const fs::path& source, const fs::path& dest, const Descriptor& expected,
                          const ProgressFn& progress) {
  const fs::path temp = TempBeside(dest);
  Status status = CopyVerified(source, temp, expected, progress);
  if (status.ok() && ::rename(temp.c_str(), dest.c_str()) != 0) {
    status = UnavailableError("cannot rename onto " + dest.string() + ": " + ErrnoText());
  }
  if (!status.ok()) {
    ::unlink(temp.c_str());
    return status;
  }
  return SyncDirectory(dest.parent_path());
}

}  // namespace edgeloop::registry
