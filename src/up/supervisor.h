// Supervisor: starts the roles of `edgeloop up` as child processes (the same binary, so each
// role is the real one), captures their output in log files, waits for them to listen, and
// stops them: SIGTERM, then SIGKILL after a grace period. Children die with the supervisor's
// thread that started them (PR_SET_PDEATHSIG = SIGTERM), so a killed `edgeloop up` leaves no
// orphans, and run in their own process group, so a terminal's Ctrl-C reaches only the
// supervisor, which stops them in order.
//
// Not thread-safe: one thread (the one that calls Start) owns a Supervisor. PR_SET_PDEATHSIG
// fires when the starting *thread* exits, so start children from a thread that lives as long as
// they should.
#ifndef EDGELOOP_UP_SUPERVISOR_H_
#define EDGELOOP_UP_SUPERVISOR_H_

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace edgeloop::up {

struct ChildSpec {
  std::string name;  // for messages and the log file
  // argv[0] is the program; "/proc/self/exe" runs this very binary (the inode this process runs,
  // even when the file was replaced since).
  std::vector<std::string> argv;
  std::filesystem::path log;  // stdout and stderr are appended here
  // When set, stdout goes here instead (truncated), e.g. to read a printed token.
  std::filesystem::path stdout_file;
  std::vector<std::string> env;  // extra NAME=VALUE entries
};

// Returns true when the caller should give up waiting (e.g. a stop signal arrived). Called
// about every 50 ms while waiting.
using ShouldStop = std::function<bool()>;

class Supervisor {
 public:
  Supervisor() = default;
  ~Supervisor();  // StopAll with the default grace
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts a long-running child; returns its index. kInternal when fork/exec fails (an exec
  // failure is reported by the child's exit code 127 and a line in its log).
  StatusOr<size_t> Start(const ChildSpec& spec);

  // Runs a child to completion and returns its exit code (128 + N when killed by signal N).
  // kDeadlineExceeded after `timeout` (the child is killed), kCancelled when `stop` says so.
  StatusOr<int> Run(const ChildSpec& spec, std::chrono::milliseconds timeout,
                    const ShouldStop& stop);

  // Waits until the child's log has a line with "listening" and "port=N" written after it
  // started, and returns N. kUnavailable (with the log's tail) when the child exits first;
  // kDeadlineExceeded after `timeout`; kCancelled when `stop` says so.
  StatusOr<int> WaitListening(size_t index, std::chrono::milliseconds timeout,
                              const ShouldStop& stop);

  // The first child that has exited since it started (reaped here), with a description
  // ("serve exited with code 1"), or nothing while all run.
  std::optional<std::string> Exited();

  // Stops every running child, the last started first: SIGTERM, then SIGKILL for a child still
  // running after `grace`. Returns once all are reaped.
  void StopAll(std::chrono::milliseconds grace = std::chrono::milliseconds(10'000));

  pid_t pid(size_t index) const { return children_[index].pid; }
  const std::string& name(size_t index) const { return children_[index].spec.name; }
  size_t size() const { return children_.size(); }

  // The last `bytes` of a log file (for error messages).
  static std::string Tail(const std::filesystem::path& log, size_t bytes = 2000);

 private:
  struct Child {
    ChildSpec spec;
    pid_t pid = -1;
    bool running = false;
    int exit_code = 0;
    std::uintmax_t log_offset = 0;  // the log's size when the child started
  };
  StatusOr<pid_t> Spawn(const ChildSpec& spec);
  static int ExitCode(int wait_status);

  std::vector<Child> children_;
};

}  // namespace edgeloop::up

#endif  // EDGELOOP_UP_SUPERVISOR_H_
