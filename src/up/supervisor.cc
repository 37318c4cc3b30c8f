#include "up/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "common/logging.h"

extern char** environ;

namespace edgeloop::up {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(50);

std::uintmax_t FileSize(const std::filesystem::path& path) {
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

}  // namespace

Supervisor::~Supervisor() { StopAll(); }

int Supervisor::ExitCode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 1;
}

StatusOr<pid_t> Supervisor::Spawn(const ChildSpec& spec) {
  if (spec.argv.empty()) return InvalidArgumentError("no program for " + spec.name);
  std::error_code ec;
  std::filesystem::create_directories(spec.log.parent_path(), ec);
  // Everything the child needs is prepared before fork: between fork and exec only
  // async-signal-safe calls are allowed (this process has threads).
  const int log_fd = ::open(spec.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return InternalError("cannot open " + spec.log.string() + ": " + strerror(errno));
  int out_fd = -1;
  if (!spec.stdout_file.empty()) {
    out_fd = ::open(spec.stdout_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out_fd < 0) {
      ::close(log_fd);
      return InternalError("cannot open " + spec.stdout_file.string() + ": " + strerror(errno));
    }
  }
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  for (const std::string& extra : spec.env) env_strings.push_back(extra);
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = spec.argv;
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string program = spec.argv[0] == "/proc/self/exe" || spec.argv[0] == "edgeloop"
                                  ? std::string("/proc/self/exe")
                                  : spec.argv[0];
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    if (out_fd >= 0) ::close(out_fd);
    return InternalError(std::string("fork failed: ") + strerror(errno));
  }
  if (pid == 0) {
    // The child: die with the parent, own process group, default signal mask and handlers.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);  // the parent died before prctl
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(out_fd >= 0 ? out_fd : log_fd, 1);
    ::dup2(log_fd, 2);
    ::execve(program.c_str(), argv.data(), envp.data());
    const char message[] = "edgeloop up: exec failed\n";
    [[maybe_unused]] ssize_t n = ::write(2, message, sizeof(message) - 1);
    ::_exit(127);
  }
  ::close(log_fd);
  if (out_fd >= 0) ::close(out_fd);
  return pid;
}

StatusOr<size_t> Supervisor::Start(const ChildSpec& spec) {
  Child child;
  child.spec = spec;
  child.log_offset = FileSize(spec.log);
  ASSIGN_OR_RETURN(child.pid, Spawn(spec));
  child.running = true;
  log::Debug("started", {{"role", spec.name}, {"pid", static_cast<int64_t>(child.pid)}});
  children_.push_back(std::move(child));
  return children_.size() - 1;
}

StatusOr<int> Supervisor::Run(const ChildSpec& spec, std::chrono::milliseconds timeout,
                              const ShouldStop& stop) {
  ASSIGN_OR_RETURN(const pid_t pid, Spawn(spec));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return ExitCode(status);
    const bool cancelled = stop && stop();
    if (cancelled || std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGTERM);
      for (int i = 0; i < 100 && ::waitpid(pid, &status, WNOHANG) == 0; ++i) {
        std::this_thread::sleep_for(kPollInterval);
      }
      if (::waitpid(pid, &status, WNOHANG) == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
      }
      if (cancelled) return CancelledError(spec.name + " was stopped");
      return DeadlineExceededError(spec.name + " did not finish in " +
                                   std::to_string(timeout.count() / 1000) + " s; see " +
                                   spec.log.string());
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

StatusOr<int> Supervisor::WaitListening(size_t index, std::chrono::milliseconds timeout,
                                        const ShouldStop& stop) {
  Child& child = children_.at(index);
  static const std::regex kListening(R"(listening.*port[=":]+\s*([0-9]+))");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    {
      std::ifstream in(child.spec.log);
      in.seekg(static_cast<std::streamoff>(child.log_offset));
      std::string line;
      while (std::getline(in, line)) {
        std::smatch match;
        if (std::regex_search(line, match, kListening)) return std::stoi(match[1].str());
      }
    }
    if (auto exited = Exited()) {
      return UnavailableError(*exited + "; its log (" + child.spec.log.string() + ") ends:\n" +
                              Tail(child.spec.log));
    }
    if (stop && stop()) return CancelledError("stopped while waiting for " + child.spec.name);
    if (std::chrono::steady_clock::now() >= deadline) {
      return DeadlineExceededError(child.spec.name + " did not start listening in " +
                                   std::to_string(timeout.count() / 1000) + " s; see " +
                                   child.spec.log.string());
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

std::optional<std::string> Supervisor::Exited() {
  for (Child& child : children_) {
    if (!child.running) continue;
    int status = 0;
    if (::waitpid(child.pid, &status, WNOHANG) == child.pid) {
      child.running = false;
      child.exit_code = ExitCode(status);
      return child.spec.name + " exited with code " + std::to_string(child.exit_code);
    }
  }
  return std::nullopt;
}

void Supervisor::StopAll(std::chrono::milliseconds grace) {
  // Last started first: the edge server stops taking requests before the worker drains the
  // queue, and the hub goes last.
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
    Child& child = *it;
    if (!child.running) continue;
    ::kill(child.pid, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    int status = 0;
    pid_t r = 0;
    while ((r = ::waitpid(child.pid, &status, WNOHANG)) == 0 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (r == 0) {
      log::Warn("did not stop in time; killing it", {{"role", child.spec.name}});
      ::kill(child.pid, SIGKILL);
      ::waitpid(child.pid, &status, 0);
    }
    child.running = false;
    child.exit_code = ExitCode(status);
    log::Info("stopped", {{"role", child.spec.name}, {"exit_code", child.exit_code}});
  }
}

std::string Supervisor::Tail(const std::filesystem::path& log, size_t bytes) {
  std::ifstream in(log, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff start =
      size > static_cast<std::streamoff>(bytes) ? size - static_cast<std::streamoff>(bytes) : 0;
  in.seekg(start);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace edgeloop::up
