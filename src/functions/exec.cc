#include "functions/exec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "common/logging.h"

namespace edgeloop::functions {
namespace {

// write() to the child's stdin without SIGPIPE, whatever the process's disposition (the worker
// ignores it; a test binary or an embedding program may not): SIGPIPE is blocked on this thread
// for the call, and one that the call raised is consumed before the mask is restored. A closed
// pipe then shows as EPIPE, which the caller handles.
ssize_t WriteWithoutSigpipe(int fd, const char* data, size_t size) {
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  const ssize_t n = ::write(fd, data, size);
  const int saved = errno;
  if (n < 0 && saved == EPIPE) {
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE)) {
      const timespec now{0, 0};
      ::sigtimedwait(&pipe_only, nullptr, &now);
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = saved;
  return n;
}

using Json = nlohmann::json;

struct Pipes {
  int in[2] = {-1, -1};
  int out[2] = {-1, -1};
  ~Pipes() {
    for (int fd : {in[0], in[1], out[0], out[1]}) {
      if (fd >= 0) ::close(fd);
    }
  }
};

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

ExecFunction::ExecFunction(ExecOptions options)
    : options_(std::move(options)), name_("exec:" + options_.name) {
  if (options_.metrics != nullptr) {
    auto* runs = options_.metrics->AddCounter("edgeloop_exec_runs_total",
                                              "Subprocess runs of exec functions by result",
                                              {"function", "result"});
    runs_ok_ = runs->With({options_.name, "ok"});
    runs_failed_ = runs->With({options_.name, "failed"});
    runs_timeout_ = runs->With({options_.name, "timeout"});
  }
}

StatusOr<std::unique_ptr<ExecFunction>> ExecFunction::Create(ExecOptions options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return InvalidArgumentError("exec: a command is required");
  }
  if (options.timeout.count() <= 0)
    return InvalidArgumentError("exec: the timeout must be positive");
  if (options.name.empty()) options.name = options.argv[0].substr(options.argv[0].rfind('/') + 1);
  return std::unique_ptr<ExecFunction>(new ExecFunction(std::move(options)));
}

Status ExecFunction::Run(std::vector<Record>& records, std::vector<Result>& results,
                         Context& context) {
  std::string input;
  std::map<std::string, size_t> pending;  // id → index, still unanswered
  for (size_t i = 0; i < records.size(); ++i) {
    if (results[i].disposition != Disposition::kContinue || records[i].absorbed_into >= 0) {
      continue;
    }
    Json line = {{"id", records[i].id},
                 {"type", records[i].type},
                 {"priority", records[i].priority},
                 {"attempt", records[i].attempt},
                 {"event", records[i].body}};
    input += line.dump(-1, ' ', false, Json::error_handler_t::replace);
    input.push_back('\n');
    pending[records[i].id] = i;
  }
  if (pending.empty()) return Status::Ok();

  Pipes pipes;
  if (::pipe2(pipes.in, O_CLOEXEC) != 0 || ::pipe2(pipes.out, O_CLOEXEC) != 0) {
    return UnavailableError(std::string("exec: pipe: ") + std::strerror(errno));
  }
  std::vector<char*> argv;
  for (const std::string& arg : options_.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return UnavailableError(std::string("exec: fork: ") + std::strerror(errno));
  if (pid == 0) {
    // The child: its own process group (so a timeout kills its children too), default signal
    // dispositions and mask, the pipes on stdin/stdout. Only async-signal-safe calls here.
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(pipes.in[0], STDIN_FILENO);
    ::dup2(pipes.out[1], STDOUT_FILENO);
    ::execvp(argv[0], argv.data());
    static const char kMessage[] = "edgeloop worker: exec failed\n";
    (void)!::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also from the parent, so the group exists before any kill
  CloseFd(pipes.in[0]);
  CloseFd(pipes.out[1]);
  ::fcntl(pipes.in[1], F_SETFL, O_NONBLOCK);
  ::fcntl(pipes.out[0], F_SETFL, O_NONBLOCK);

  const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  std::string output;
  size_t written = 0;
  bool timed_out = false;
  bool cancelled = false;
  bool too_much = false;
  while (pipes.out[0] >= 0) {
    if (written == input.size()) CloseFd(pipes.in[1]);
    pollfd fds[2];
    int count = 0;
    fds[count++] = {pipes.out[0], POLLIN, 0};
    if (pipes.in[1] >= 0) fds[count++] = {pipes.in[1], POLLOUT, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    if (context.IsCancelled()) {
      cancelled = true;
      break;
    }
    const int ready = ::poll(fds, static_cast<nfds_t>(count),
                             static_cast<int>(std::min<int64_t>(left.count(), 100)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    if (count == 2 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t n =
          WriteWithoutSigpipe(pipes.in[1], input.data() + written, input.size() - written);
      if (n > 0) {
        written += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        // The child closed its stdin (EPIPE): it will answer what it read, or not.
        written = input.size();
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buffer[64 << 10];
      const ssize_t n = ::read(pipes.out[0], buffer, sizeof(buffer));
      if (n > 0) {
        output.append(buffer, static_cast<size_t>(n));
        if (output.size() > options_.max_output_bytes) {
          too_much = true;
          break;
        }
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        CloseFd(pipes.out[0]);
      }
    }
  }
  if (timed_out || cancelled || too_much) ::kill(-pid, SIGKILL);
  CloseFd(pipes.in[1]);
  CloseFd(pipes.out[0]);
  int wait_status = 0;
  // After EOF on stdout the child is exiting; a child that closed stdout early and lingers is
  // bounded by the deadline too.
  for (;;) {
    const pid_t done = ::waitpid(pid, &wait_status, WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      timed_out = true;
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &wait_status, 0);
      break;
    }
    ::usleep(2000);
  }

  if (timed_out || cancelled) {
    if (runs_timeout_) runs_timeout_->Increment();
    const std::string reason = timed_out ? "exec " + options_.name + ": timed out after " +
                                               std::to_string(options_.timeout.count()) + " ms"
                                         : "exec " + options_.name + ": cancelled (worker drain)";
    for (const auto& [id, index] : pending) {
      results[index] = {Disposition::kRetry, reason, std::nullopt};
    }
    return cancelled ? CancelledError(reason) : Status::Ok();
  }

  // Answers, line by line.
  std::string protocol_error;
  size_t start = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    if (end == std::string::npos) end = output.size();
    const std::string_view line(output.data() + start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    Json answer = Json::parse(line, nullptr, false);
    if (!answer.is_object() || !answer.contains("id") || !answer["id"].is_string()) {
      protocol_error = "exec " + options_.name +
                       ": an output line is not {\"id\": ...}: " + std::string(line.substr(0, 120));
      continue;
    }
    auto it = pending.find(answer["id"].get<std::string>());
    if (it == pending.end()) continue;  // an unknown or repeated id: ignored
    const size_t index = it->second;
    if (answer.contains("error")) {
      results[index] = {Disposition::kFail,
                        "exec " + options_.name + ": " +
                            (answer["error"].is_string() ? answer["error"].get<std::string>()
                                                         : answer["error"].dump()),
                        std::nullopt};
    } else if (answer.value("drop", false)) {
      results[index] = {Disposition::kDone, "dropped by exec " + options_.name, std::nullopt};
    } else if (answer.contains("event")) {
      records[index].body = std::move(answer["event"]);
    } else {
      results[index] = {Disposition::kFail,
                        "exec " + options_.name + ": an answer needs event, drop or error",
                        std::nullopt};
    }
    pending.erase(it);
  }
  const bool exited_ok = WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
  std::string reason;
  if (too_much) {
    reason = "exec " + options_.name + ": more output than " +
             std::to_string(options_.max_output_bytes) + " bytes";
  } else if (!exited_ok) {
    reason =
        "exec " + options_.name + ": " +
        (WIFEXITED(wait_status) ? "exited with status " + std::to_string(WEXITSTATUS(wait_status))
                                : "killed by signal " + std::to_string(WTERMSIG(wait_status)));
  } else if (!protocol_error.empty()) {
    reason = protocol_error;
  } else {
    reason = "exec " + options_.name + ": no answer for this event";
  }
  for (const auto& [id, index] : pending) {
    results[index] = {Disposition::kFail, reason, std::nullopt};
  }
  const bool ok = exited_ok && pending.empty() && !too_much;
  if (ok && runs_ok_) runs_ok_->Increment();
  if (!ok) {
    if (runs_failed_) runs_failed_->Increment();
    log::Warn("exec function failed", {{"function", options_.name},
                                       {"reason", reason},
                                       {"unanswered", static_cast<int64_t>(pending.size())}});
  }
  return Status::Ok();
}

}  // namespace edgeloop::functions
