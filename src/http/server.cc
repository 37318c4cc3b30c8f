#include "http/server.h"

#include <sched.h>

#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/logging.h"
#include "http/tls.h"

namespace edgeloop::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using SteadyTime = std::chrono::steady_clock::time_point;
// Sockets bound to the concrete io_context executor rather than the type-erased
// any_io_executor: every async operation dispatches through the executor, and the erased one
// costs measurably per request.
using Socket = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;

int AvailableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) return count;
  }
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware > 0 ? static_cast<int>(hardware) : 1;
}

namespace {

Method ToMethod(bhttp::verb verb) {
  switch (verb) {
    case bhttp::verb::get:
      return Method::kGet;
    case bhttp::verb::head:
      return Method::kHead;
    case bhttp::verb::post:
      return Method::kPost;
    case bhttp::verb::put:
      return Method::kPut;
    case bhttp::verb::delete_:
      return Method::kDelete;
    case bhttp::verb::patch:
      return Method::kPatch;
    case bhttp::verb::options:
      return Method::kOptions;
    default:
      return Method::kOther;
  }
}

// Counters for the status codes the server answers most, so that counting a response takes no
// lock; others go through the family.
class ServerMetrics {
 public:
  explicit ServerMetrics(metrics::Registry* registry) {
    if (registry == nullptr) return;
    requests_ = registry->AddCounter("edgeloop_http_requests_total",
                                     "HTTP responses sent, by status code.", {"code"});
    connections_ =
        registry->AddGauge("edgeloop_http_connections", "Open HTTP connections.")->With({});
    rejected_ = registry
                    ->AddCounter("edgeloop_http_connections_rejected_total",
                                 "Connections refused with 503 because of the connection cap.")
                    ->With({});
    tls_failures_ = registry
                        ->AddCounter("edgeloop_http_tls_handshake_failures_total",
                                     "TLS handshakes that failed or timed out (including plain "
                                     "HTTP sent to a TLS port).")
                        ->With({});
    for (int code : {200, 400, 404, 405, 408, 413, 431, 500, 501, 503}) {
      common_[static_cast<size_t>(code)] = requests_->With({std::to_string(code)});
    }
  }

  void CountResponse(int code) {
    if (requests_ == nullptr) return;
    if (code >= 0 && code < static_cast<int>(common_.size()) && common_[code]) {
      common_[code]->Increment();
    } else {
      requests_->With({std::to_string(code)})->Increment();
    }
  }
  void ConnectionOpened() {
    if (connections_) connections_->Add(1);
  }
  void ConnectionClosed() {
    if (connections_) connections_->Add(-1);
  }
  void ConnectionRejected() {
    if (rejected_) rejected_->Increment();
  }
  void TlsHandshakeFailed() {
    if (tls_failures_) tls_failures_->Increment();
  }

 private:
  metrics::Family<metrics::Counter>* requests_ = nullptr;
  std::array<std::shared_ptr<metrics::Counter>, 600> common_;
  std::shared_ptr<metrics::Gauge> connections_;
  std::shared_ptr<metrics::Counter> rejected_;
  std::shared_ptr<metrics::Counter> tls_failures_;
};

// What the sweep and the drain need from a connection of either kind (plain or TLS).
class ConnectionBase {
 public:
  virtual ~ConnectionBase() = default;
  virtual void CheckDeadline(SteadyTime now) = 0;
  virtual void BeginDrain() = 0;
};

// One I/O thread: its io_context, the connections that live on it, and the timeout sweep.
// Member order matters: the io_context is destroyed before the connection set, because
// destroying it destroys pending handlers and with them the connections they hold.
struct Worker {
  std::unordered_set<ConnectionBase*> connections;  // touched only on this worker's thread
  asio::io_context io{1};
  std::optional<asio::steady_timer> sweep_timer;
  std::thread thread;
};

}  // namespace

class Server::Impl {
 public:
  Impl(const ServerOptions& options, metrics::Registry* registry)
      : options_(options), metrics_(registry) {}
  // Connections still held by pending handlers die with their io_context and call back into
  // this object, so the workers go first, while every other member is alive.
  ~Impl() {
    acceptor_.reset();
    tls_timer_.reset();
    for (auto& worker : workers_) worker->sweep_timer.reset();
    workers_.clear();
  }

  Status Listen();
  void Start(Handler* handler);
  bool Shutdown(std::chrono::milliseconds timeout);
  void Post(Task task);
  void PostAt(Clock::SteadyTime when, Task task);

  const ServerOptions& options() const { return options_; }
  Handler* handler() const { return handler_; }
  ServerMetrics& metrics() { return metrics_; }
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  uint16_t port() const { return port_; }
  int threads() const { return static_cast<int>(workers_.size()); }

  void ConnectionClosed(bool counted);

  bool tls() const { return options_.tls.enabled(); }
  Status LoadTls();
  Status ReloadTls();

 private:
  void Accept();
  void OnAccept(const boost::system::error_code& ec, Socket socket, Worker* worker);
  void ScheduleSweep(Worker* worker);
  void ScheduleTlsCheck();
  Worker* CurrentWorker();
  std::shared_ptr<asio::ssl::context> TlsContext();
  // The modification times of the TLS files, to notice a renewed certificate.
  std::vector<std::filesystem::file_time_type> TlsFileTimes() const;

  ServerOptions options_;
  Handler* handler_ = nullptr;
  ServerMetrics metrics_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::optional<tcp::acceptor> acceptor_;  // lives on workers_[0]
  size_t next_worker_ = 0;                 // accept handler only
  uint16_t port_ = 0;
  std::atomic<bool> started_{false};
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<int> active_connections_{0};
  std::atomic<int> rejecting_connections_{0};
  std::mutex drain_mu_;
  std::condition_variable drained_cv_;
  std::mutex tls_mu_;
  std::shared_ptr<asio::ssl::context> tls_context_;              // GUARDED_BY(tls_mu_)
  std::vector<std::filesystem::file_time_type> tls_file_times_;  // GUARDED_BY(tls_mu_)
  std::optional<asio::steady_timer> tls_timer_;                  // on workers_[0]
};

namespace {

// One TCP connection, plain (Stream = Socket) or TLS (Stream = beast::ssl_stream<Socket>).
// Lives on one worker; every member is touched only on that worker's thread except through
// Send(), which posts there.
template <class Stream>
class Connection final : public ConnectionBase,
                         public ResponseSink,
                         public std::enable_shared_from_this<Connection<Stream>> {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, Socket>;

  // `counted`: the connection counts against max_connections. An uncounted one (over the cap)
  // reads one request and answers 503.
  Connection(Server::Impl* server, Worker* worker, Socket socket, bool counted) requires(!kTls)
      : server_(server), worker_(worker), stream_(std::move(socket)), counted_(counted) {}
  Connection(Server::Impl* server, Worker* worker, Socket socket, bool counted,
             std::shared_ptr<asio::ssl::context> context) requires(kTls)
      : server_(server),
        worker_(worker),
        context_(std::move(context)),
        stream_(std::move(socket), *context_),
        counted_(counted) {}

  ~Connection() override {
    worker_->connections.erase(this);
    server_->ConnectionClosed(counted_);
  }

  void Start() {
    worker_->connections.insert(this);
    boost::system::error_code ignored;
    Lowest().set_option(tcp::no_delay(true), ignored);
    if constexpr (kTls) {
      ReadClientHello();
    } else {
      WaitForRequest();
    }
  }

  void Send(Response response) override {
    // Inline when already on this connection's thread (the usual, synchronous case).
    asio::dispatch(Lowest().get_executor(),
                   [self = this->shared_from_this(), response = std::move(response)]() mutable {
                     self->Write(std::move(response));
                   });
  }

  // Called by the worker's sweep.
  void CheckDeadline(SteadyTime now) override {
    if (phase_ == Phase::kHandling || phase_ == Phase::kClosed || now < deadline_) return;
    timed_out_ = true;
    boost::system::error_code ignored;
    if (phase_ == Phase::kWriting || phase_ == Phase::kLingering) {
      Lowest().close(ignored);
    } else {
      Lowest().cancel(ignored);  // the pending operation completes with operation_aborted
    }
  }

  // Called on the worker when the server starts draining.
  void BeginDrain() override {
    if (phase_ == Phase::kIdle) {
      boost::system::error_code ignored;
      Lowest().cancel(ignored);
    }
  }

 private:
  enum class Phase { kHandshake, kIdle, kHeader, kBody, kHandling, kWriting, kLingering, kClosed };
  static constexpr size_t kReadChunk = 8192;

  const ServerOptions& options() const { return server_->options(); }
  Socket& Lowest() {
    if constexpr (kTls) {
      return stream_.next_layer();
    } else {
      return stream_;
    }
  }

  void SetDeadline(std::chrono::milliseconds timeout) {
    deadline_ = std::chrono::steady_clock::now() + timeout;
  }

  // TLS: the first bytes decide. A TLS record starts with 0x16 (handshake); anything else is
  // most likely plain HTTP sent to the TLS port, which gets a readable answer instead of a
  // handshake alert that the client would print as gibberish.
  void ReadClientHello() {
    phase_ = Phase::kHandshake;
    SetDeadline(options().tls.handshake_timeout);
    Lowest().async_read_some(
        buffer_.prepare(kReadChunk),
        [self = this->shared_from_this()](const boost::system::error_code& ec, size_t bytes) {
          self->buffer_.commit(bytes);
          if (ec || self->timed_out_) return self->HandshakeFailed();
          const auto* first = static_cast<const unsigned char*>(self->buffer_.data().data());
          if (*first != 0x16) return self->RejectPlaintext();
          self->Handshake();
        });
  }

  void Handshake() {
    if constexpr (kTls) {
      stream_.async_handshake(
          asio::ssl::stream_base::server, buffer_.data(),
          [self = this->shared_from_this()](const boost::system::error_code& ec, size_t used) {
            if (ec || self->timed_out_) return self->HandshakeFailed();
            self->buffer_.consume(used);
            self->WaitForRequest();
          });
    }
  }

  void HandshakeFailed() {
    server_->metrics().TlsHandshakeFailed();
    Close();
  }

  void RejectPlaintext() {
    server_->metrics().TlsHandshakeFailed();
    plaintext_reply_ = true;
    buffer_.consume(buffer_.size());
    WriteEarlyError(400, "this port speaks HTTPS (TLS); use https://", true);
  }

  void WaitForRequest() {
    if (server_->draining()) return Close();
    if (buffer_.size() > 0) return ReadHeader();  // a pipelined request is already here
    phase_ = Phase::kIdle;
    SetDeadline(options().idle_timeout);
    // A plain read rather than async_wait: Asio tries a read at once (usually answered EAGAIN)
    // and then waits on the already registered descriptor, whereas async_wait re-arms the
    // descriptor with an epoll_ctl syscall on every request.
    stream_.async_read_some(
        buffer_.prepare(kReadChunk),
        [self = this->shared_from_this()](const boost::system::error_code& ec, size_t bytes) {
          self->buffer_.commit(bytes);
          if (ec || self->timed_out_) return self->Close();
          self->ReadHeader();
        });
  }

  void ReadHeader() {
    phase_ = Phase::kHeader;
    SetDeadline(options().header_timeout);
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(options().max_header_bytes));
    parser_->body_limit(options().max_body_bytes);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = this->shared_from_this()](const boost::system::error_code& ec,
                                                               size_t) { self->OnHeader(ec); });
  }

  void OnHeader(const boost::system::error_code& ec) {
    if (ec) return OnReadError(ec);
    if (!counted_) {
      return WriteEarlyError(503, "server is at its connection limit; retry later", true);
    }
    if (parser_->is_done()) return Dispatch();
    const auto& header = parser_->get();
    auto expect = header.find(bhttp::field::expect);
    if (expect != header.end() && beast::iequals(expect->value(), "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      phase_ = Phase::kWriting;
      SetDeadline(options().body_timeout);
      asio::async_write(
          stream_, asio::buffer(kContinue.data(), kContinue.size()),
          [self = this->shared_from_this()](const boost::system::error_code& wec, size_t) {
            if (wec) return self->Close();
            self->ReadBody();
          });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    phase_ = Phase::kBody;
    SetDeadline(options().body_timeout);
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](const boost::system::error_code& ec, size_t) {
          if (ec) return self->OnReadError(ec);
          self->Dispatch();
        });
  }

  void OnReadError(const boost::system::error_code& ec) {
    if (timed_out_) {
      if (phase_ == Phase::kHeader && (buffer_.size() > 0 || parser_->got_some())) {
        return WriteEarlyError(408, "request headers not received within the header timeout",
                               false);
      }
      if (phase_ == Phase::kBody) {
        return WriteEarlyError(408, "request body not received within the body timeout", false);
      }
      return Close();
    }
    if (ec == bhttp::error::body_limit) {
      return WriteEarlyError(413,
                             "request body exceeds the limit of " +
                                 std::to_string(options().max_body_bytes) + " bytes",
                             true);
    }
    if (ec == bhttp::error::header_limit) {
      return WriteEarlyError(431,
                             "request headers exceed the limit of " +
                                 std::to_string(options().max_header_bytes) + " bytes",
                             true);
    }
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() &&
        ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
      return WriteEarlyError(400, std::string("malformed HTTP request: ") + ec.message(), true);
    }
    Close();  // end of stream, reset, aborted by drain
  }

  void Dispatch() {
    phase_ = Phase::kHandling;
    bhttp::request<bhttp::string_body> message = parser_->release();
    parser_.reset();
    keep_alive_ = message.keep_alive();
    version_ = message.version();
    head_request_ = message.method() == bhttp::verb::head;

    Request request;
    request.method = ToMethod(message.method());
    request.target = std::string(message.target());
    request.headers.reserve(8);
    for (const auto& field : message) {
      request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    request.body = std::move(message.body());
    server_->handler()->Handle(
        std::move(request),
        Responder(std::static_pointer_cast<ResponseSink>(this->shared_from_this())));
  }

  // Answers a request that was not read completely (or not valid) and closes.
  void WriteEarlyError(int status, std::string message, bool linger) {
    Response response = Response::Error(status, message);
    response.close = true;
    if (status == 503) response.headers.emplace_back("Retry-After", "1");
    if (!version_) version_ = 11;
    linger_after_write_ = linger;
    keep_alive_ = false;
    Write(std::move(response));
  }

  void Write(Response response) {
    if (phase_ == Phase::kClosed) return;
    const bool keep_alive = keep_alive_ && !response.close && !server_->draining();
    SerializeHeader(response, keep_alive, &header_);
    body_ = std::move(response.body);
    if (head_request_) body_.clear();  // Content-Length stays that of the GET
    server_->metrics().CountResponse(response.status);
    phase_ = Phase::kWriting;
    SetDeadline(options().body_timeout);
    // Header and body go out in one sendmsg (two iovecs), without copying the body.
    const std::array<asio::const_buffer, 2> buffers = {asio::buffer(header_), asio::buffer(body_)};
    auto on_write = [self = this->shared_from_this(), keep_alive](
                        const boost::system::error_code& ec, size_t) {
      self->OnWrite(ec, keep_alive);
    };
    if (kTls && plaintext_reply_) {
      asio::async_write(Lowest(), buffers, std::move(on_write));
    } else {
      asio::async_write(stream_, buffers, std::move(on_write));
    }
  }

  // The status line and headers, written by hand: Beast's serializer costs more per response
  // than the rest of a small request's user-space work.
  void SerializeHeader(const Response& response, bool keep_alive, std::string* out) const {
    out->clear();
    out->append(version_ == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    out->append(std::to_string(response.status));
    out->push_back(' ');
    out->append(
        bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(response.status))));
    out->append("\r\nContent-Type: ");
    AppendHeaderValue(out, response.content_type);
    out->append("\r\nContent-Length: ");
    out->append(std::to_string(response.body.size()));
    for (const auto& [name, value] : response.headers) {
      out->append("\r\n");
      AppendHeaderValue(out, name);
      out->append(": ");
      AppendHeaderValue(out, value);
    }
    if (version_ == 10 && keep_alive) {
      out->append("\r\nConnection: keep-alive");
    } else if (version_ != 10 && !keep_alive) {
      out->append("\r\nConnection: close");
    }
    out->append("\r\n\r\n");
  }

  // Header names and values come from the application; CR and LF are dropped so that nothing
  // can split the response.
  static void AppendHeaderValue(std::string* out, std::string_view value) {
    for (char c : value) {
      if (c != '\r' && c != '\n') out->push_back(c);
    }
  }

  void OnWrite(const boost::system::error_code& ec, bool keep_alive) {
    if (ec) return Close();
    if (keep_alive) {
      version_ = 0;
      return WaitForRequest();
    }
    if constexpr (kTls) {
      if (!plaintext_reply_) return CloseNotify();
    }
    boost::system::error_code ignored;
    Lowest().shutdown(Socket::shutdown_send, ignored);
    if (linger_after_write_) return Linger();
    Close();
  }

  // TLS: sends close_notify and waits (as long as a linger) for the client's, or its close.
  void CloseNotify() {
    if constexpr (kTls) {
      phase_ = Phase::kLingering;
      SetDeadline(std::chrono::milliseconds(2000));
      stream_.async_shutdown(
          [self = this->shared_from_this()](const boost::system::error_code&) { self->Close(); });
    }
  }

  // After answering a request we did not read to its end, read and discard what the client
  // still sends (for up to 2 s), so that closing does not reset the connection before the
  // client has read our answer.
  void Linger() {
    phase_ = Phase::kLingering;
    SetDeadline(std::chrono::milliseconds(2000));
    if (!discard_) discard_ = std::make_unique<std::array<char, 4096>>();
    Lowest().async_read_some(
        asio::buffer(*discard_),
        [self = this->shared_from_this()](const boost::system::error_code& ec, size_t) {
          if (ec) return self->Close();
          self->Linger();
        });
  }

  void Close() {
    if (phase_ == Phase::kClosed) return;
    phase_ = Phase::kClosed;
    boost::system::error_code ignored;
    Lowest().close(ignored);
  }

  Server::Impl* server_;
  Worker* worker_;
  std::shared_ptr<asio::ssl::context> context_;  // TLS: outlives stream_
  Stream stream_;
  const bool counted_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string header_;  // of the response being written
  std::string body_;
  std::unique_ptr<std::array<char, 4096>> discard_;
  Phase phase_ = Phase::kIdle;
  SteadyTime deadline_;
  bool timed_out_ = false;
  bool keep_alive_ = false;
  bool head_request_ = false;
  bool linger_after_write_ = false;
  bool plaintext_reply_ = false;  // TLS: answering plain HTTP in plain text
  unsigned version_ = 0;
};

using PlainConnection = Connection<Socket>;
using TlsConnection = Connection<beast::ssl_stream<Socket>>;

}  // namespace

Status Server::Impl::LoadTls() {
  if (!tls()) return Status::Ok();
  std::vector<std::filesystem::file_time_type> times = TlsFileTimes();
  ASSIGN_OR_RETURN(std::shared_ptr<asio::ssl::context> context, MakeServerTlsContext(options_.tls));
  std::lock_guard<std::mutex> lock(tls_mu_);
  tls_context_ = std::move(context);
  tls_file_times_ = std::move(times);
  return Status::Ok();
}

Status Server::Impl::ReloadTls() {
  if (!tls()) return FailedPreconditionError("the server does not speak TLS");
  const Status status = LoadTls();
  if (status.ok()) {
    log::Info("TLS certificate loaded", {{"cert_file", options_.tls.cert_file}});
  } else {
    log::Warn("TLS certificate not reloaded; the previous one stays in use", {{"error", status}});
  }
  return status;
}

std::shared_ptr<asio::ssl::context> Server::Impl::TlsContext() {
  std::lock_guard<std::mutex> lock(tls_mu_);
  return tls_context_;
}

std::vector<std::filesystem::file_time_type> Server::Impl::TlsFileTimes() const {
  std::vector<std::filesystem::file_time_type> times;
  for (const std::string* path :
       {&options_.tls.cert_file, &options_.tls.key_file, &options_.tls.client_ca_file}) {
    std::error_code ec;
    times.push_back(path->empty() ? std::filesystem::file_time_type{}
                                  : std::filesystem::last_write_time(*path, ec));
  }
  return times;
}

// Polls the files' modification times: cheap (three stat calls), and unlike inotify it also
// notices a certificate renewed by replacing a symlinked directory (Kubernetes secrets).
void Server::Impl::ScheduleTlsCheck() {
  if (!tls() || options_.tls.reload_check_interval.count() <= 0) return;
  if (!tls_timer_) tls_timer_.emplace(workers_[0]->io);
  tls_timer_->expires_after(options_.tls.reload_check_interval);
  tls_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_.load()) return;
    std::vector<std::filesystem::file_time_type> times = TlsFileTimes();
    bool changed;
    {
      std::lock_guard<std::mutex> lock(tls_mu_);
      changed = times != tls_file_times_;
      // A failed reload is not retried until the files change again.
      if (changed) tls_file_times_ = times;
    }
    if (changed) (void)ReloadTls();
    ScheduleTlsCheck();
  });
}

Status Server::Impl::Listen() {
  RETURN_IF_ERROR(LoadTls());
  const int threads = options_.threads > 0 ? options_.threads : AvailableCpus();
  for (int i = 0; i < threads; ++i) workers_.push_back(std::make_unique<Worker>());

  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(options_.address, ec);
  if (ec) return InvalidArgumentError("invalid listen address '" + options_.address + "'");
  const tcp::endpoint endpoint(address, options_.port);
  acceptor_.emplace(workers_[0]->io);
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return UnavailableError("cannot listen on " + options_.address + ":" +
                            std::to_string(options_.port) + ": " + ec.message());
  }
  port_ = acceptor_->local_endpoint().port();
  return Status::Ok();
}

void Server::Impl::Start(Handler* handler) {
  if (started_.exchange(true)) return;
  handler_ = handler;
  Accept();
  ScheduleTlsCheck();
  for (auto& worker : workers_) {
    ScheduleSweep(worker.get());
    worker->thread = std::thread([w = worker.get()] {
      auto guard = asio::make_work_guard(w->io);
      w->io.run();
    });
  }
}

void Server::Impl::Accept() {
  Worker* target = workers_[next_worker_].get();
  next_worker_ = (next_worker_ + 1) % workers_.size();
  acceptor_->async_accept(target->io.get_executor(),
                          [this, target](const boost::system::error_code& ec, Socket socket) {
                            OnAccept(ec, std::move(socket), target);
                          });
}

void Server::Impl::OnAccept(const boost::system::error_code& ec, Socket socket, Worker* worker) {
  if (ec == asio::error::operation_aborted || !acceptor_->is_open()) return;
  if (ec) {
    // Out of file descriptors and the like: back off briefly instead of spinning.
    log::Warn("accept failed", {{"error", ec.message()}});
    auto timer =
        std::make_shared<asio::steady_timer>(workers_[0]->io, std::chrono::milliseconds(50));
    timer->async_wait([this, timer](const boost::system::error_code& wait_ec) {
      if (!wait_ec && !draining()) Accept();
    });
    return;
  }
  bool counted = true;
  if (active_connections_.fetch_add(1) >= options_.max_connections) {
    active_connections_.fetch_sub(1);
    counted = false;
    metrics_.ConnectionRejected();
    // Answering costs a little; beyond a bound, just close.
    if (rejecting_connections_.fetch_add(1) >= 64) {
      rejecting_connections_.fetch_sub(1);
      boost::system::error_code ignored;
      socket.close(ignored);
      Accept();
      return;
    }
  } else {
    metrics_.ConnectionOpened();
  }
  if (tls()) {
    asio::post(worker->io, [this, worker, counted, context = TlsContext(),
                            socket = std::move(socket)]() mutable {
      std::make_shared<TlsConnection>(this, worker, std::move(socket), counted, std::move(context))
          ->Start();
    });
  } else {
    asio::post(worker->io, [this, worker, counted, socket = std::move(socket)]() mutable {
      std::make_shared<PlainConnection>(this, worker, std::move(socket), counted)->Start();
    });
  }
  Accept();
}

void Server::Impl::ConnectionClosed(bool counted) {
  if (!counted) {
    rejecting_connections_.fetch_sub(1);
    return;
  }
  metrics_.ConnectionClosed();
  if (active_connections_.fetch_sub(1) == 1 && draining()) {
    std::lock_guard<std::mutex> lock(drain_mu_);
    drained_cv_.notify_all();
  }
}

void Server::Impl::ScheduleSweep(Worker* worker) {
  if (!worker->sweep_timer) worker->sweep_timer.emplace(worker->io);
  worker->sweep_timer->expires_after(options_.sweep_interval);
  worker->sweep_timer->async_wait([this, worker](const boost::system::error_code& ec) {
    if (ec) return;
    const SteadyTime now = std::chrono::steady_clock::now();
    // CheckDeadline may close a connection, but the connection object outlives this loop:
    // its destructor runs only after its pending handler completes, later on this thread.
    for (ConnectionBase* connection : worker->connections) connection->CheckDeadline(now);
    if (!stopped_.load()) ScheduleSweep(worker);
  });
}

bool Server::Impl::Shutdown(std::chrono::milliseconds timeout) {
  if (stopped_.load()) return true;
  if (!started_.load()) {
    stopped_.store(true);
    return true;
  }
  draining_.store(true, std::memory_order_release);
  asio::post(workers_[0]->io, [this] {
    boost::system::error_code ignored;
    acceptor_->close(ignored);
  });
  for (auto& worker : workers_) {
    asio::post(worker->io, [w = worker.get()] {
      for (ConnectionBase* connection : w->connections) connection->BeginDrain();
    });
  }
  bool drained;
  {
    std::unique_lock<std::mutex> lock(drain_mu_);
    drained = drained_cv_.wait_for(lock, timeout, [this] { return active_connections_ == 0; });
  }
  stopped_.store(true);
  for (auto& worker : workers_) worker->io.stop();
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) worker->thread.join();
  }
  return drained;
}

Worker* Server::Impl::CurrentWorker() {
  for (auto& worker : workers_) {
    if (worker->io.get_executor().running_in_this_thread()) return worker.get();
  }
  return nullptr;
}

void Server::Impl::Post(Task task) {
  Worker* worker = CurrentWorker();
  if (worker == nullptr) worker = workers_[0].get();
  asio::post(worker->io, std::move(task));
}

void Server::Impl::PostAt(Clock::SteadyTime when, Task task) {
  Worker* worker = CurrentWorker();
  if (worker == nullptr) worker = workers_[0].get();
  auto timer = std::make_shared<asio::steady_timer>(worker->io, when);
  timer->async_wait([timer, task = std::move(task)](const boost::system::error_code& ec) {
    if (!ec) task();
  });
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { impl_->Shutdown(std::chrono::milliseconds(0)); }

StatusOr<std::unique_ptr<Server>> Server::Create(const ServerOptions& options,
                                                 metrics::Registry* registry) {
  auto impl = std::make_unique<Impl>(options, registry);
  RETURN_IF_ERROR(impl->Listen());
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

uint16_t Server::port() const { return impl_->port(); }
const std::string& Server::address() const { return impl_->options().address; }
bool Server::listens_on_loopback_only() const {
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(impl_->options().address, ec);
  return !ec && address.is_loopback();
}
int Server::threads() const { return impl_->threads(); }
bool Server::tls() const { return impl_->tls(); }
Status Server::ReloadTls() { return impl_->ReloadTls(); }
void Server::Start(Handler* handler) { impl_->Start(handler); }
bool Server::Shutdown(std::chrono::milliseconds timeout) { return impl_->Shutdown(timeout); }
void Server::Post(Task task) { impl_->Post(std::move(task)); }
void Server::PostAt(Clock::SteadyTime when, Task task) { impl_->PostAt(when, std::move(task)); }

}  // namespace edgeloop::http
