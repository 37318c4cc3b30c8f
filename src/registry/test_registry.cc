#include "registry/test_registry.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "common/test_util.h"

extern char** environ;

namespace edgeloop::registry::testing {
namespace {

using std::chrono::steady_clock;

constexpr auto kStartTimeout = std::chrono::seconds(15);
constexpr auto kPollInterval = std::chrono::milliseconds(10);
constexpr char kTokenService[] = "edgeloop-test-registry";
constexpr char kTokenIssuer[] = "edgeloop-test-token-issuer";

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

Status WriteFile(const std::filesystem::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return InternalError("cannot write " + path.string());
  return Status::Ok();
}

int CountLines(const std::filesystem::path& path, std::string_view prefix) {
  std::ifstream in(path);
  int count = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) ++count;
  }
  return count;
}

// Polls `ready` until it returns true, `failed` returns true, or the start timeout passes.
template <typename Ready, typename Failed>
bool WaitFor(Ready ready, Failed failed) {
  const auto deadline = steady_clock::now() + kStartTimeout;
  while (steady_clock::now() < deadline) {
    if (ready()) return true;
    if (failed()) return false;
    std::this_thread::sleep_for(kPollInterval);
  }
  return ready();
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(const std::vector<std::string>& argv,
                                                            const std::vector<std::string>& env,
                                                            const std::filesystem::path& log) {
  if (argv.empty()) return InvalidArgumentError("empty command");
  if (::access(argv[0].c_str(), X_OK) != 0) {
    return FailedPreconditionError(argv[0] + " is not installed (see scripts/bootstrap)");
  }
  // Everything the child needs is prepared before fork(): after it, only async-signal-safe calls.
  std::vector<std::string> args = argv;
  std::vector<std::string> environment;
  for (char** e = environ; *e != nullptr; ++e) environment.emplace_back(*e);
  for (const std::string& e : env) environment.push_back(e);
  std::vector<char*> c_args = CStrings(args);
  std::vector<char*> c_env = CStrings(environment);
  const std::string log_path = log.string();
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return InternalError(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    // Dies with the test binary even when it crashes before its destructors run. (The signal
    // follows the forking *thread*; fixtures are created on the test's main thread.)
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    const int in = ::open("/dev/null", O_RDONLY);
    const int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0) ::_exit(127);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::execve(c_args[0], c_args.data(), c_env.data());
    ::_exit(127);
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid));
}

bool ChildProcess::Exited() {
  if (reaped_) return true;
  const pid_t r = ::waitpid(pid_, &wait_status_, WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) reaped_ = true;
  return reaped_;
}

int ChildProcess::Wait() {
  while (!reaped_) {
    const pid_t r = ::waitpid(pid_, &wait_status_, 0);
    if (r == pid_ || (r < 0 && errno != EINTR)) reaped_ = true;
  }
  return wait_status_;
}

ChildProcess::~ChildProcess() {
  if (Exited()) return;
  // By PID only: the fixture never signals processes it did not start.
  ::kill(pid_, SIGTERM);
  const auto deadline = steady_clock::now() + std::chrono::seconds(5);
  while (steady_clock::now() < deadline) {
    if (Exited()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid_, SIGKILL);
  Wait();
}

Status RunCommand(const std::vector<std::string>& argv, const std::filesystem::path& log,
                  std::string* output) {
  std::error_code ec;
  std::filesystem::remove(log, ec);
  ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> child, ChildProcess::Start(argv, {}, log));
  const int status = child->Wait();
  const std::string text = ReadFile(log);
  if (output != nullptr) *output = text;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return InternalError(argv[0] + " failed: " + text);
  }
  return Status::Ok();
}

int UnusedLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

// ---------------------------------------------------------------------------------------------

StatusOr<std::unique_ptr<TestRegistry>> TestRegistry::Start(TestRegistryOptions options) {
  std::unique_ptr<TestRegistry> registry(new TestRegistry());
  Status status = registry->Launch(options);
  if (!status.ok()) return status.WithContext("starting the test registry");
  return registry;
}

Status TestRegistry::Launch(const TestRegistryOptions& options) {
  static std::atomic<int> counter{0};
  dir_ = std::filesystem::temp_directory_path() /
         ("edgeloop_registry_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  std::filesystem::create_directories(dir_ / "storage", ec);
  if (ec) return InternalError("cannot create " + dir_.string() + ": " + ec.message());
  storage_ = dir_ / "storage";

  std::string auth_yaml;
  if (options.auth == TestRegistryOptions::Auth::kBasic) {
    std::string htpasswd;
    RETURN_IF_ERROR(RunCommand({"/usr/bin/htpasswd", "-Bbn", options.username, options.password},
                               dir_ / "htpasswd.log", &htpasswd));
    // htpasswd prints "user:hash" and a blank line.
    RETURN_IF_ERROR(WriteFile(dir_ / "htpasswd", htpasswd));
    auth_yaml =
        "auth:\n  htpasswd:\n    realm: edgeloop-test\n    path: " + (dir_ / "htpasswd").string() +
        "\n";
  } else if (options.auth == TestRegistryOptions::Auth::kToken) {
    const std::filesystem::path key = dir_ / "token.key";
    const std::filesystem::path cert = dir_ / "token.crt";
    RETURN_IF_ERROR(
        RunCommand({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key.string(), "-out",
                    cert.string(), "-subj", "/CN=edgeloop-test-token", "-days", "2"},
                   dir_ / "openssl-token.log"));
    const std::filesystem::path port_file = dir_ / "token.port";
    token_log_ = dir_ / "token.requests";
    const std::filesystem::path script =
        edgeloop::testing::SourceDir() / "src/registry/testdata/token_server.py";
    if (!std::filesystem::exists(script)) {
      return FailedPreconditionError("cannot find " + script.string() +
                                     " (set EDGELOOP_SOURCE_DIR)");
    }
    ASSIGN_OR_RETURN(
        token_server_,
        ChildProcess::Start({"/usr/bin/python3", script.string(), "--key", key.string(), "--cert",
                             cert.string(), "--issuer", kTokenIssuer, "--service", kTokenService,
                             "--port-file", port_file.string(), "--log-file", token_log_.string(),
                             "--token-field", options.token_field},
                            {"EDGELOOP_TOKEN_USER=" + options.username,
                             "EDGELOOP_TOKEN_PASSWORD=" + options.password},
                            dir_ / "token.log"));
    if (!WaitFor([&] { return std::filesystem::exists(port_file); },
                 [&] { return token_server_->Exited(); })) {
      return UnavailableError("token server did not start: " + ReadFile(dir_ / "token.log"));
    }
    const std::string token_port = ReadFile(port_file);
    auth_yaml = "auth:\n  token:\n    realm: http://127.0.0.1:" + token_port +
                "/token\n    service: " + kTokenService + "\n    issuer: " + kTokenIssuer +
                "\n    rootcertbundle: " + cert.string() + "\n";
  }

  std::string tls_yaml;
  if (options.tls) {
    const std::filesystem::path key = dir_ / "tls.key";
    ca_file_ = dir_ / "tls.crt";
    RETURN_IF_ERROR(RunCommand(
        {"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key.string(), "-out",
         ca_file_.string(), "-subj", std::string("/CN=") + kTlsHostName, "-addext",
         std::string("subjectAltName=DNS:") + kTlsHostName + ",IP:127.0.0.1", "-days", "2"},
        dir_ / "openssl-tls.log"));
    tls_yaml =
        "  tls:\n    certificate: " + ca_file_.string() + "\n    key: " + key.string() + "\n";
  }

  const std::string config =
      "version: 0.1\n"
      "log:\n  level: info\n  formatter: text\n"
      "storage:\n  filesystem:\n    rootdirectory: " +
      storage_.string() +
      "\n  delete:\n    enabled: true\n"
      "http:\n  addr: 127.0.0.1:0\n  secret: edgeloop-test-secret\n" +
      tls_yaml + auth_yaml;
  RETURN_IF_ERROR(WriteFile(dir_ / "config.yml", config));

  const std::filesystem::path log = dir_ / "registry.log";
  ASSIGN_OR_RETURN(registry_, ChildProcess::Start({"/usr/bin/docker-registry", "serve",
                                                   (dir_ / "config.yml").string()},
                                                  {}, log));
  // Port 0 in the config: the registry logs the port it got, so there is no race for it.
  constexpr std::string_view kListening = "listening on 127.0.0.1:";
  const auto find_port = [&] {
    const std::string text = ReadFile(log);
    const size_t at = text.find(kListening);
    if (at == std::string::npos) return false;
    int port = 0;
    for (size_t i = at + kListening.size(); i < text.size() && std::isdigit(text[i]); ++i) {
      port = port * 10 + (text[i] - '0');
    }
    port_ = port;
    return port_ > 0;
  };
  if (!WaitFor(find_port, [&] { return registry_->Exited(); })) {
    return UnavailableError("docker-registry did not start: " + ReadFile(log));
  }
  return Status::Ok();
}

TestRegistry::~TestRegistry() {
  registry_.reset();
  token_server_.reset();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string TestRegistry::host() const { return "127.0.0.1:" + std::to_string(port_); }

Reference TestRegistry::Ref(std::string_view repository) const {
  return *ParseReference("oci://" + host() + "/" + std::string(repository));
}

Reference TestRegistry::NamedRef(std::string_view repository) const {
  return *ParseReference(std::string("oci://") + kTlsHostName + ":" + std::to_string(port_) + "/" +
                         std::string(repository));
}

std::filesystem::path TestRegistry::BlobDataPath(const Digest& digest) const {
  const std::string hex(digest.hex());
  return storage_ / "docker/registry/v2/blobs/sha256" / hex.substr(0, 2) / hex / "data";
}

int TestRegistry::TokensIssued() const { return CountLines(token_log_, "issued"); }
int TestRegistry::TokensDenied() const { return CountLines(token_log_, "denied"); }
std::string TestRegistry::Log() const { return ReadFile(dir_ / "registry.log"); }

// ---------------------------------------------------------------------------------------------

StatusOr<std::unique_ptr<ScriptedHttpServer>> ScriptedHttpServer::Start(Handler handler) {
  std::unique_ptr<ScriptedHttpServer> server(new ScriptedHttpServer());
  server->handler_ = std::move(handler);
  if (::pipe2(server->stop_pipe_, O_CLOEXEC) != 0) return InternalError("pipe2 failed");
  server->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (server->listen_fd_ < 0 ||
      ::bind(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(server->listen_fd_, 16) != 0 ||
      ::getsockname(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return InternalError(std::string("cannot listen on 127.0.0.1: ") + std::strerror(errno));
  }
  server->port_ = ntohs(addr.sin_port);
  server->thread_ = std::thread([s = server.get()] { s->Serve(); });
  return server;
}

ScriptedHttpServer::~ScriptedHttpServer() {
  if (stop_pipe_[1] >= 0) {
    const char byte = 'x';
    [[maybe_unused]] const ssize_t n = ::write(stop_pipe_[1], &byte, 1);
  }
  if (thread_.joinable()) thread_.join();
  for (int fd : {listen_fd_, stop_pipe_[0], stop_pipe_[1]}) {
    if (fd >= 0) ::close(fd);
  }
}

std::vector<ScriptedRequest> ScriptedHttpServer::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

bool ScriptedHttpServer::WaitReadable(int fd) {
  pollfd fds[2] = {{fd, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
  for (;;) {
    const int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || (fds[1].revents & POLLIN) != 0) return false;
    if (fds[0].revents != 0) return true;
  }
}

void ScriptedHttpServer::Serve() {
  while (WaitReadable(listen_fd_)) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ServeConnection(fd);
    ::close(fd);
  }
}

void ScriptedHttpServer::ServeConnection(int fd) {
  const auto send_all = [fd](std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  };
  std::string buffer;
  char chunk[64 << 10];
  const auto read_more = [&] {
    if (!WaitReadable(fd)) return false;
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
    return true;
  };
  size_t end = std::string::npos;
  while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
    if (!read_more()) return;
  }
  ScriptedRequest request;
  std::istringstream head(buffer.substr(0, end));
  std::string line;
  std::getline(head, line);
  std::istringstream request_line(line);
  request_line >> request.method >> request.target;
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t value = colon + 1;
    while (value < line.size() && line[value] == ' ') ++value;
    request.headers[name] = line.substr(value);
  }
  buffer.erase(0, end + 4);
  size_t length = 0;
  for (char c : request.Header("content-length")) {
    if (c < '0' || c > '9') return;
    length = length * 10 + static_cast<size_t>(c - '0');
  }
  if (length > 0 && request.Header("expect") == "100-continue" && buffer.empty()) {
    if (!send_all("HTTP/1.1 100 Continue\r\n\r\n")) return;
  }
  while (buffer.size() < length) {
    if (!read_more()) return;
  }
  request.body = buffer.substr(0, length);

  ScriptedResponse response = handler_(request);
  {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(request);
  }
  if (response.stall) {
    // Hold the connection open, silent, until the server stops.
    pollfd stop = {stop_pipe_[0], POLLIN, 0};
    while (::poll(&stop, 1, -1) < 0 && errno == EINTR) {
    }
    return;
  }
  std::string out = "HTTP/1.1 " + std::to_string(response.status) + " Scripted\r\n";
  for (const auto& [name, value] : response.headers) out += name + ": " + value + "\r\n";
  out += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
  out += "Connection: close\r\n\r\n";
  if (request.method != "HEAD") out += response.body;
  send_all(out);
}

}  // namespace edgeloop::registry::testing
