// Test fixtures for the registry client (tests only, never linked into a binary):
//
//   TestRegistry        the real Debian `docker-registry` (Distribution 2.8.2) on a free
//                       127.0.0.1 port, in a temporary directory, optionally with htpasswd
//                       (Basic) auth, Docker token (Bearer) auth served by
//                       testdata/token_server.py, or TLS with a fresh self-signed certificate.
//   ScriptedHttpServer  a tiny HTTP/1.1 server on 127.0.0.1 whose answers a test scripts, for
//                       behaviour a real registry does not show on demand (ignored Range
//                       headers, 429, redirects, stalls).
//
// Every process is started with a parent-death signal and stopped by PID (SIGTERM, then SIGKILL)
// when its fixture goes away. Nothing listens beyond 127.0.0.1.
#ifndef EDGELOOP_REGISTRY_TEST_REGISTRY_H_
#define EDGELOOP_REGISTRY_TEST_REGISTRY_H_

#include <sys/types.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"
#include "registry/digest.h"
#include "registry/reference.h"

namespace edgeloop::registry::testing {

// A process started by a fixture. Not thread-safe.
class ChildProcess {
 public:
  // Starts `argv[0]` (an absolute path) with `argv`, extra environment variables `env`, stdin
  // from /dev/null and stdout+stderr appended to `log`.
  static StatusOr<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv,
                                                       const std::vector<std::string>& env,
                                                       const std::filesystem::path& log);
  // Stops the process: SIGTERM, SIGKILL after 5 s, and reaps it.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // True once the process has exited (reaps it).
  bool Exited();
  // Waits for the process to exit; its wait status.
  int Wait();

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  bool reaped_ = false;
  int wait_status_ = 0;
};

// Runs a command to completion; kInternal with its output when it fails.
Status RunCommand(const std::vector<std::string>& argv, const std::filesystem::path& log,
                  std::string* output = nullptr);

// A loopback port with nothing listening on it (bound, then released).
int UnusedLoopbackPort();

struct TestRegistryOptions {
  enum class Auth { kNone, kBasic, kToken };
  Auth auth = Auth::kNone;
  std::string username = "edgeloop";
  std::string password = "correct horse";
  // kToken: which field the token service answers with ("token" or "access_token").
  std::string token_field = "token";
  // Serve HTTPS with a self-signed certificate for kTlsHostName and 127.0.0.1.
  bool tls = false;
};

// A running registry. Not thread-safe; tests share one instance sequentially.
class TestRegistry {
 public:
  // A host name that libcurl resolves to 127.0.0.1 (RFC 6761 ".localhost") but that is not a
  // loopback host for Reference::IsLoopback, so clients use HTTPS for it.
  static constexpr char kTlsHostName[] = "registry.localhost";

  // Starts the registry (and the token service for kToken) and waits until it listens.
  // Fails when a tool is missing or a process does not come up within 15 s.
  static StatusOr<std::unique_ptr<TestRegistry>> Start(TestRegistryOptions options = {});
  ~TestRegistry();
  TestRegistry(const TestRegistry&) = delete;
  TestRegistry& operator=(const TestRegistry&) = delete;

  int port() const { return port_; }
  // "127.0.0.1:PORT".
  std::string host() const;
  // oci://<host>/<repository>, parsed.
  Reference Ref(std::string_view repository) const;
  // Same registry under kTlsHostName:PORT.
  Reference NamedRef(std::string_view repository) const;
  // The PEM certificate of a TLS registry (its own CA).
  const std::filesystem::path& ca_file() const { return ca_file_; }
  // Where the registry keeps the bytes of a blob or manifest (for tampering).
  std::filesystem::path BlobDataPath(const Digest& digest) const;
  // kToken: tokens issued and credential refusals so far.
  int TokensIssued() const;
  int TokensDenied() const;
  // The registry's log so far (for failure messages).
  std::string Log() const;

 private:
  TestRegistry() = default;
  Status Launch(const TestRegistryOptions& options);

  std::filesystem::path dir_;
  std::filesystem::path storage_;
  std::filesystem::path ca_file_;
  std::filesystem::path token_log_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> token_server_;
  std::unique_ptr<ChildProcess> registry_;
};

struct ScriptedRequest {
  std::string method;
  std::string target;                          // path and query
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;

  std::string Header(const std::string& lowercase_name) const {
    const auto it = headers.find(lowercase_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct ScriptedResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // Content-Length is set from it (not sent for HEAD)
  // Accept the request but never answer (until the server stops).
  bool stall = false;
};

// Answers each request with `handler` (called on the server's thread, one request at a time).
// Every response closes its connection. Thread-safe.
class ScriptedHttpServer {
 public:
  using Handler = std::function<ScriptedResponse(const ScriptedRequest&)>;
  static StatusOr<std::unique_ptr<ScriptedHttpServer>> Start(Handler handler);
  ~ScriptedHttpServer();
  ScriptedHttpServer(const ScriptedHttpServer&) = delete;
  ScriptedHttpServer& operator=(const ScriptedHttpServer&) = delete;

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  // Every request answered (or stalled) so far.
  std::vector<ScriptedRequest> requests() const;

 private:
  ScriptedHttpServer() = default;
  void Serve();
  void ServeConnection(int fd);
  // Waits until `fd` is readable; false when the server is stopping.
  bool WaitReadable(int fd);

  Handler handler_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<ScriptedRequest> requests_;  // GUARDED_BY(mu_)
};

}  // namespace edgeloop::registry::testing

#endif  // EDGELOOP_REGISTRY_TEST_REGISTRY_H_
