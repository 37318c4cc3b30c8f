#include "http/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

namespace edgeloop::http {
namespace {

// A blocking loopback client on plain sockets, so the test does not share code with the server.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~Client() { ::close(fd_); }

  bool connected() const { return connected_; }
  void Send(const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }
  // Reads one response (headers and a Content-Length body); "" when the connection closed first
  // or nothing came within `timeout_ms`.
  std::string ReadResponse(int timeout_ms = 5000) {
    for (;;) {
      const size_t header_end = buffer_.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        size_t length = 0;
        const size_t at = buffer_.find("Content-Length: ");
        if (at != std::string::npos && at < header_end)
          length = std::stoul(buffer_.substr(at + 16));
        if (buffer_.size() >= header_end + 4 + length) {
          std::string response = buffer_.substr(0, header_end + 4 + length);
          buffer_.erase(0, header_end + 4 + length);
          return response;
        }
      }
      if (!Fill(timeout_ms)) return "";
    }
  }
  // True when the server closed the connection (EOF) within `timeout_ms`.
  bool ClosedByPeer(int timeout_ms = 5000) {
    while (Fill(timeout_ms)) {
    }
    return eof_;
  }

 private:
  bool Fill(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char chunk[4096];
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buffer_;
};

int StatusOf(const std::string& response) {
  if (response.size() < 12) return 0;
  return std::stoi(response.substr(9, 3));
}

std::string BodyOf(const std::string& response) {
  return response.substr(response.find("\r\n\r\n") + 4);
}

// Echoes the method, path and body; "/slow" answers only when the test releases it.
class TestHandler : public Handler {
 public:
  void Handle(Request request, Responder respond) override {
    if (request.path() == "/slow") {
      std::lock_guard<std::mutex> lock(mu_);
      slow_.push_back(std::move(respond));
      return;
    }
    if (request.path() == "/drop") return;  // the Responder answers 500 on its own
    respond(Response::Json(200, std::string(MethodName(request.method)) + " " +
                                    std::string(request.path()) + " " + request.body));
  }
  size_t slow_waiting() {
    std::lock_guard<std::mutex> lock(mu_);
    return slow_.size();
  }
  void ReleaseSlow() {
    std::vector<Responder> slow;
    {
      std::lock_guard<std::mutex> lock(mu_);
      slow.swap(slow_);
    }
    // Answer from another thread, as a batcher would.
    std::thread([slow = std::move(slow)]() mutable {
      for (Responder& respond : slow) respond(Response::Json(200, "slow done"));
    }).join();
  }

 private:
  std::mutex mu_;
  std::vector<Responder> slow_;
};

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options = {}) {
    options.address = "127.0.0.1";
    options.port = 0;
    options.threads = 2;
    options.sweep_interval = std::chrono::milliseconds(10);
    auto server = Server::Create(options, &registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    server_->Start(&handler_);
  }
  template <typename Predicate>
  void WaitFor(Predicate done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    ASSERT_TRUE(done());
  }

  metrics::Registry registry_;
  TestHandler handler_;
  std::unique_ptr<Server> server_;
};

TEST_F(ServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  StartServer();
  Client client(server_->port());
  ASSERT_TRUE(client.connected());
  for (int i = 0; i < 3; ++i) {
    client.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    const std::string response = client.ReadResponse();
    EXPECT_EQ(StatusOf(response), 200) << response;
    EXPECT_EQ(BodyOf(response), "POST /echo hello");
  }
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  StartServer();
  Client client(server_->port());
  client.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(BodyOf(client.ReadResponse()), "GET /a ");
  EXPECT_EQ(BodyOf(client.ReadResponse()), "GET /b ");
}

TEST_F(ServerTest, BodyOverTheLimitGets413AndClose) {
  ServerOptions options;
  options.max_body_bytes = 16;
  StartServer(options);
  Client client(server_->port());
  client.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" +
              std::string(100, 'x'));
  const std::string response = client.ReadResponse();
  EXPECT_EQ(StatusOf(response), 413) << response;
  EXPECT_NE(BodyOf(response).find("\"error\""), std::string::npos);
  EXPECT_TRUE(client.ClosedByPeer());
}

TEST_F(ServerTest, HeadersOverTheLimitGet431) {
  ServerOptions options;
  options.max_header_bytes = 512;
  StartServer(options);
  Client client(server_->port());
  client.Send("GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2000, 'y') + "\r\n\r\n");
  EXPECT_EQ(StatusOf(client.ReadResponse()), 431);
}

TEST_F(ServerTest, GarbageGets400) {
  StartServer();
  Client client(server_->port());
  client.Send("\x16\x03\x01 this is not http\r\n\r\n");
  EXPECT_EQ(StatusOf(client.ReadResponse()), 400);
  Client next(server_->port());
  next.Send("GET /still-up HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(StatusOf(next.ReadResponse()), 200);
}

TEST_F(ServerTest, SlowHeadersGet408) {
  ServerOptions options;
  options.header_timeout = std::chrono::milliseconds(50);
  StartServer(options);
  Client client(server_->port());
  client.Send("GET /echo HTTP/1.1\r\n");  // and never the rest
  EXPECT_EQ(StatusOf(client.ReadResponse()), 408);
  EXPECT_TRUE(client.ClosedByPeer());
}

TEST_F(ServerTest, IdleConnectionsCloseWithoutAResponse) {
  ServerOptions options;
  options.idle_timeout = std::chrono::milliseconds(50);
  StartServer(options);
  Client client(server_->port());
  EXPECT_TRUE(client.ClosedByPeer());
  EXPECT_EQ(client.ReadResponse(100), "");
}

TEST_F(ServerTest, ExpectContinueIsHonoured) {
  StartServer();
  Client client(server_->port());
  client.Send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
  const std::string interim = client.ReadResponse();
  EXPECT_EQ(StatusOf(interim), 100) << interim;
  client.Send("abc");
  EXPECT_EQ(BodyOf(client.ReadResponse()), "POST /echo abc");
}

TEST_F(ServerTest, ConnectionsBeyondTheCapGet503) {
  ServerOptions options;
  options.max_connections = 2;
  StartServer(options);
  Client a(server_->port());
  Client b(server_->port());
  a.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  b.Send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(StatusOf(a.ReadResponse()), 200);
  ASSERT_EQ(StatusOf(b.ReadResponse()), 200);
  Client c(server_->port());
  c.Send("GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string response = c.ReadResponse();
  EXPECT_EQ(StatusOf(response), 503) << response;
  EXPECT_NE(response.find("Retry-After: 1"), std::string::npos);
}

TEST_F(ServerTest, DroppedRequestsAreAnswered500) {
  StartServer();
  Client client(server_->port());
  client.Send("GET /drop HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(StatusOf(client.ReadResponse()), 500);
}

TEST_F(ServerTest, ShutdownDrainsRequestsInFlight) {
  StartServer();
  Client busy(server_->port());
  Client idle(server_->port());
  idle.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(StatusOf(idle.ReadResponse()), 200);
  busy.Send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
  WaitFor([&] { return handler_.slow_waiting() == 1; });

  auto drained =
      std::async(std::launch::async, [&] { return server_->Shutdown(std::chrono::seconds(10)); });
  EXPECT_TRUE(idle.ClosedByPeer());  // idle keep-alive connections close at once
  handler_.ReleaseSlow();
  const std::string response = busy.ReadResponse();
  EXPECT_EQ(StatusOf(response), 200);
  EXPECT_EQ(BodyOf(response), "slow done");
  EXPECT_NE(response.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(drained.get());
}

TEST_F(ServerTest, PostAtRunsTasksOnTheIoThreads) {
  StartServer();
  std::promise<void> ran;
  server_->PostAt(std::chrono::steady_clock::now() + std::chrono::milliseconds(1),
                  [&] { ran.set_value(); });
  EXPECT_EQ(ran.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
}

TEST_F(ServerTest, PortInUseIsReported) {
  StartServer();
  ServerOptions options;
  options.address = "127.0.0.1";
  options.port = server_->port();
  auto second = Server::Create(options, nullptr);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
}

TEST_F(ServerTest, CountsResponsesByCode) {
  StartServer();
  Client client(server_->port());
  client.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(StatusOf(client.ReadResponse()), 200);
  EXPECT_NE(registry_.Render().find("edgeloop_http_requests_total{code=\"200\"} 1"),
            std::string::npos);
}

}  // namespace
}  // namespace edgeloop::http
