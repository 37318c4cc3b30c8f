#include "queue/test_redis.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

namespace edgeloop::queue::testing {
namespace {

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

bool Accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

std::string FindRedisServer() {
  for (const char* path : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return "";
}

StatusOr<std::unique_ptr<TestRedis>> TestRedis::Start() {
  const std::string binary = FindRedisServer();
  if (binary.empty()) return NotFoundError("redis-server is not installed");
  std::unique_ptr<TestRedis> redis(new TestRedis());
  for (int tries = 0; tries < 5; ++tries) {
    redis->port_ = FreePort();
    const std::string port = std::to_string(redis->port_);
    const std::string dir = redis->dir_.path().string();
    const std::string log = (redis->dir_.path() / "redis.log").string();
    std::vector<std::string> args = {
        binary, "--port",       port,  "--bind",        "127.0.0.1", "--dir",
        dir,    "--appendonly", "yes", "--appendfsync", "always",    "--save",
        "",     "--logfile",    log,   "--daemonize",   "no"};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return InternalError("fork failed");
    if (pid == 0) {
      const int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    redis->pid_ = pid;
    // Wait (polling, with a deadline) until it accepts connections or exits.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        redis->pid_ = -1;
        break;  // exited: the port was probably taken; try another
      }
      if (Accepts(redis->port_)) return redis;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (redis->pid_ > 0) {
      ::kill(redis->pid_, SIGKILL);
      ::waitpid(redis->pid_, nullptr, 0);
      redis->pid_ = -1;
    }
  }
  return UnavailableError("redis-server did not start");
}

TestRedis::~TestRedis() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

std::string TestRedis::Url(const std::string& stream) const {
  return "redis://127.0.0.1:" + std::to_string(port_) + "/" + stream;
}

}  // namespace edgeloop::queue::testing
