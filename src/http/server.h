// An HTTP/1.1 server on Boost.Beast/Asio with keep-alive, request limits, timeouts, a
// connection cap and graceful draining.
//
// Threads: one io_context per I/O thread; each connection lives on one thread for its whole
// life, so requests are parsed, handled and answered there without thread hand-offs. The server
// is also a TaskRunner over those threads.
//
// Limits and what the client gets: a body over `max_body_bytes` 413, headers over
// `max_header_bytes` 431, headers not complete `header_timeout` after the first byte 408, a
// body not complete within `body_timeout` 408, a request that is not HTTP 400; each of these
// closes the connection. A keep-alive connection idle for `idle_timeout` is closed. Beyond
// `max_connections`, new connections get 503 and are closed. Timeouts are checked by a sweep
// every `sweep_interval`, so they fire up to that much late.
//
// TLS: with `tls.cert_file` and `tls.key_file` set, every connection speaks TLS 1.2 or 1.3 only
// (ECDHE with AES-GCM or ChaCha20-Poly1305), with a handshake bounded by `tls.handshake_timeout`
// under the same sweep. A client that sends plain HTTP to a TLS port gets a plain-text 400 that
// says to use https://, and the connection is closed. With `tls.client_ca_file` set, clients must
// present a certificate that chains to one of those CAs (mutual TLS); others fail the handshake.
// The certificate, key and CA files are read again when their modification times change (checked
// every `tls.reload_check_interval`) or on ReloadTls(); a reload that fails keeps the previous
// certificate. Key material is never logged.
#ifndef EDGELOOP_HTTP_SERVER_H_
#define EDGELOOP_HTTP_SERVER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/metrics.h"
#include "common/status.h"
#include "common/task_runner.h"
#include "http/http.h"

namespace edgeloop::http {

struct TlsOptions {
  std::string cert_file;       // PEM: the server certificate, then its chain; empty: plain HTTP
  std::string key_file;        // PEM: the private key (unencrypted)
  std::string client_ca_file;  // PEM CAs; non-empty: require client certificates (mutual TLS)
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds reload_check_interval{5'000};  // 0: reload only on ReloadTls()
  bool enabled() const { return !cert_file.empty(); }
};

struct ServerOptions {
  std::string address = "0.0.0.0";
  uint16_t port = 8000;  // 0 picks a free port; see Server::port()
  int threads = 0;       // 0: as many as CPUs this process may run on
  size_t max_body_bytes = 16 << 20;
  size_t max_header_bytes = 16 << 10;
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{30'000};
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds sweep_interval{100};
  int max_connections = 1024;
  TlsOptions tls;
};

// The number of CPUs in this process's affinity mask (at least 1).
int AvailableCpus();

class Server : public TaskRunner {
 public:
  // Binds and listens (so that "port in use" is reported here) but serves nothing until
  // Start(). `registry` must outlive the server; it may be null. With TLS options, the files are
  // loaded here: an unreadable file, a file that is not PEM, an encrypted key or a key that does
  // not match the certificate is kInvalidArgument naming the file.
  static StatusOr<std::unique_ptr<Server>> Create(const ServerOptions& options,
                                                  metrics::Registry* registry);
  ~Server() override;  // Shuts down (without waiting for in-flight requests) if still running.

  // The bound port (useful with port 0).
  uint16_t port() const;
  const std::string& address() const;
  // True when the listening address is a loopback address (127.0.0.0/8, ::1).
  bool listens_on_loopback_only() const;
  int threads() const;
  bool tls() const;

  // Reads the TLS certificate, key and client CA files again; connections accepted afterwards
  // use them, connections already open keep theirs. On error the previous files stay in use.
  // kFailedPrecondition when the server does not speak TLS. Thread-safe.
  Status ReloadTls();

  // Starts the I/O threads and accepting requests for `handler`, which must outlive the server.
  // Call once.
  void Start(Handler* handler);

  // Stops accepting, closes idle connections, lets requests in flight finish (their responses
  // carry `Connection: close`), then stops the I/O threads. Returns true if every connection
  // closed before `timeout`, false if some were cut off. Idempotent.
  bool Shutdown(std::chrono::milliseconds timeout);

  // TaskRunner: tasks run on an I/O thread (the calling one when it is an I/O thread).
  void Post(Task task) override;
  void PostAt(Clock::SteadyTime when, Task task) override;

  class Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgeloop::http

#endif  // EDGELOOP_HTTP_SERVER_H_
