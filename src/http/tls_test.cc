#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <fstream>
#include <optional>
#include <thread>

#include "common/test_util.h"
#include "http/server.h"
#include "http/test_certs.h"

namespace edgeloop::http {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using testing::CertFiles;

class EchoHandler : public Handler {
 public:
  void Handle(Request request, Responder respond) override {
    respond(Response::Json(200, "{\"path\":\"" + std::string(request.path()) + "\"}"));
  }
};

struct ClientOptions {
  std::string ca_file;  // empty: do not verify the server
  std::optional<CertFiles> identity;
  int max_version = 0;  // e.g. TLS1_1_VERSION to offer nothing newer
};

// A blocking TLS client (Asio's, independent of the server's code path). Every call fails
// rather than hangs: reads time out after 5 s.
class TlsClient {
 public:
  TlsClient(uint16_t port, const ClientOptions& options) : context_(ssl::context::tls_client) {
    if (!options.ca_file.empty()) {
      context_.load_verify_file(options.ca_file);
      context_.set_verify_mode(ssl::verify_peer);
    }
    if (options.identity) {
      context_.use_certificate_chain_file(options.identity->cert);
      context_.use_private_key_file(options.identity->key, ssl::context::pem);
    }
    if (options.max_version != 0) {
      SSL_CTX_set_security_level(context_.native_handle(), 0);
      SSL_CTX_set_min_proto_version(context_.native_handle(), TLS1_VERSION);
      SSL_CTX_set_max_proto_version(context_.native_handle(), options.max_version);
      SSL_CTX_set_cipher_list(context_.native_handle(), "ALL:@SECLEVEL=0");
    }
    // The SSL object copies the context's settings when it is made, so after them.
    stream_.emplace(io_, context_);
    // Subject alternative name IP:127.0.0.1.
    SSL_set1_host(stream_->native_handle(), "127.0.0.1");
    boost::system::error_code ec;
    stream_->next_layer().connect({asio::ip::make_address("127.0.0.1"), port}, ec);
    timeval timeout{5, 0};
    ::setsockopt(stream_->next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout,
                 sizeof(timeout));
    connected_ = !ec;
  }

  // The handshake's error, or "" when it succeeded.
  std::string Handshake() {
    boost::system::error_code ec;
    stream_->handshake(ssl::stream_base::client, ec);
    return ec ? ec.message() + " " : "";
  }

  // Sends GET `path` and reads one response; "" on any error.
  std::string Get(const std::string& path) {
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
    boost::system::error_code ec;
    asio::write(*stream_, asio::buffer(request), ec);
    if (ec) return "";
    std::string response;
    char chunk[4096];
    for (;;) {
      const size_t header_end = response.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        const size_t at = response.find("Content-Length: ");
        const size_t length = at == std::string::npos ? 0 : std::stoul(response.substr(at + 16));
        if (response.size() >= header_end + 4 + length) return response;
      }
      const size_t n = stream_->read_some(asio::buffer(chunk), ec);
      if (ec) return "";
      response.append(chunk, n);
    }
  }

  bool connected() const { return connected_; }
  ssl::stream<tcp::socket>& stream() { return *stream_; }

 private:
  asio::io_context io_;
  ssl::context context_;
  std::optional<ssl::stream<tcp::socket>> stream_;
  bool connected_ = false;
};

// Plain TCP: sends `data`, returns everything read until the server closes.
std::string PlainExchange(uint16_t port, const std::string& data) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    if (!data.empty()) ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    char chunk[4096];
    ssize_t n;
    while ((n = ::recv(fd, chunk, sizeof(chunk), 0)) > 0) out.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

ClientOptions Trusting(const std::filesystem::path& ca_file,
                       std::optional<CertFiles> identity = std::nullopt, int max_version = 0) {
  ClientOptions options;
  options.ca_file = ca_file.string();
  options.identity = std::move(identity);
  options.max_version = max_version;
  return options;
}

int StatusOf(const std::string& response) {
  return response.size() < 12 ? 0 : std::stoi(response.substr(9, 3));
}

class TlsTest : public ::testing::Test {
 protected:
  TlsTest()
      : ca_(testing::MakeCa(dir_.path(), "ca")),
        server_cert_(testing::MakeLeaf(dir_.path(), "server", ca_, "127.0.0.1")) {}

  ServerOptions Options() {
    ServerOptions options;
    options.address = "127.0.0.1";
    options.port = 0;
    options.threads = 2;
    options.sweep_interval = std::chrono::milliseconds(10);
    options.tls.cert_file = server_cert_.cert;
    options.tls.key_file = server_cert_.key;
    options.tls.reload_check_interval = std::chrono::milliseconds(0);
    return options;
  }
  void Start(const ServerOptions& options) {
    auto server = Server::Create(options, &registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    server_->Start(&handler_);
  }
  ClientOptions Verified() { return Trusting(ca_.cert); }

  edgeloop::testing::TempDir dir_{"tls_test"};
  CertFiles ca_;
  CertFiles server_cert_;
  metrics::Registry registry_;
  EchoHandler handler_;
  std::unique_ptr<Server> server_;
};

TEST_F(TlsTest, ServesHttpsVerifiedAgainstTheCaWithKeepAlive) {
  Start(Options());
  EXPECT_TRUE(server_->tls());
  TlsClient client(server_->port(), Verified());
  ASSERT_TRUE(client.connected());
  ASSERT_EQ(client.Handshake(), "");
  const std::string version = SSL_get_version(client.stream().native_handle());
  EXPECT_TRUE(version == "TLSv1.3" || version == "TLSv1.2") << version;
  for (const char* path : {"/a", "/b"}) {
    const std::string response = client.Get(path);
    EXPECT_EQ(StatusOf(response), 200) << response;
    EXPECT_NE(response.find(std::string("\"path\":\"") + path), std::string::npos);
  }
}

TEST_F(TlsTest, AClientTrustingAnotherCaRefusesTheServer) {
  Start(Options());
  const CertFiles other = testing::MakeCa(dir_.path(), "other-ca");
  TlsClient client(server_->port(), Trusting(other.cert));
  EXPECT_NE(client.Handshake(), "");
}

TEST_F(TlsTest, PlainHttpToTheTlsPortGetsAPlainTextAnswer) {
  Start(Options());
  const std::string response = PlainExchange(server_->port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(StatusOf(response), 400) << response;
  EXPECT_NE(response.find("use https://"), std::string::npos) << response;
  EXPECT_NE(response.find("Connection: close"), std::string::npos);
  // The server is still serving TLS.
  TlsClient client(server_->port(), Verified());
  ASSERT_EQ(client.Handshake(), "");
  EXPECT_EQ(StatusOf(client.Get("/x")), 200);
  EXPECT_NE(registry_.Render().find("edgeloop_http_tls_handshake_failures_total 1"),
            std::string::npos);
}

TEST_F(TlsTest, OldProtocolVersionsAreRefused) {
  Start(Options());
  TlsClient client(server_->port(), Trusting("", std::nullopt, TLS1_1_VERSION));
  EXPECT_NE(client.Handshake(), "");
  TlsClient modern(server_->port(), Trusting("", std::nullopt, TLS1_2_VERSION));
  EXPECT_EQ(modern.Handshake(), "");
  EXPECT_EQ(StatusOf(modern.Get("/tls12")), 200);
}

TEST_F(TlsTest, AStalledHandshakeIsClosedAfterTheHandshakeTimeout) {
  ServerOptions options = Options();
  options.tls.handshake_timeout = std::chrono::milliseconds(50);
  Start(options);
  // Nothing at all, then the first bytes of a TLS record and no more: both are closed.
  EXPECT_EQ(PlainExchange(server_->port(), ""), "");
  EXPECT_EQ(PlainExchange(server_->port(), std::string("\x16\x03\x01\x02\x00", 5)).size() < 64,
            true);
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateFromTheClientCa) {
  const CertFiles client_ca = testing::MakeCa(dir_.path(), "client-ca");
  const CertFiles good = testing::MakeLeaf(dir_.path(), "site-a", client_ca, "site-a");
  const CertFiles stranger = testing::MakeLeaf(dir_.path(), "stranger", ca_, "stranger");
  ServerOptions options = Options();
  options.tls.client_ca_file = client_ca.cert;
  Start(options);

  TlsClient with_cert(server_->port(), Trusting(ca_.cert, good));
  ASSERT_EQ(with_cert.Handshake(), "");
  EXPECT_EQ(StatusOf(with_cert.Get("/m")), 200);

  // TLS 1.3 reports the server's refusal on the client's first read, 1.2 in the handshake.
  TlsClient without_cert(server_->port(), Verified());
  EXPECT_TRUE(without_cert.Handshake() != "" || without_cert.Get("/m").empty());
  TlsClient wrong_ca(server_->port(), Trusting(ca_.cert, stranger));
  EXPECT_TRUE(wrong_ca.Handshake() != "" || wrong_ca.Get("/m").empty());
}

TEST_F(TlsTest, ReloadServesTheNewCertificateAndKeepsTheOldOneOnError) {
  Start(Options());
  const CertFiles new_ca = testing::MakeCa(dir_.path(), "new-ca");
  // Renew in place, as certbot or a Kubernetes secret would.
  const CertFiles renewed = testing::MakeLeaf(dir_.path(), "renewed", new_ca, "127.0.0.1");
  std::filesystem::copy_file(renewed.cert, server_cert_.cert,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(renewed.key, server_cert_.key,
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_TRUE(server_->ReloadTls().ok());
  TlsClient renewed_client(server_->port(), Trusting(new_ca.cert));
  ASSERT_EQ(renewed_client.Handshake(), "");
  EXPECT_EQ(StatusOf(renewed_client.Get("/r")), 200);

  std::ofstream(server_cert_.key) << "not a key\n";
  const Status status = server_->ReloadTls();
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find(server_cert_.key.string()), std::string::npos);
  EXPECT_EQ(status.message().find("not a key"), std::string::npos);  // never the file content
  TlsClient still(server_->port(), Trusting(new_ca.cert));
  EXPECT_EQ(still.Handshake(), "");
}

TEST_F(TlsTest, AChangedCertificateFileIsPickedUpWithoutAReloadCall) {
  ServerOptions options = Options();
  options.tls.reload_check_interval = std::chrono::milliseconds(5);
  Start(options);
  const CertFiles new_ca = testing::MakeCa(dir_.path(), "new-ca");
  const CertFiles renewed = testing::MakeLeaf(dir_.path(), "renewed", new_ca, "127.0.0.1");
  std::filesystem::copy_file(renewed.key, server_cert_.key,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(renewed.cert, server_cert_.cert,
                             std::filesystem::copy_options::overwrite_existing);
  // Make sure the modification time differs even on a coarse clock.
  std::filesystem::last_write_time(
      server_cert_.cert, std::filesystem::file_time_type::clock::now() + std::chrono::hours(1));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool served = false;
  while (!served && std::chrono::steady_clock::now() < deadline) {
    TlsClient client(server_->port(), Trusting(new_ca.cert));
    served = client.Handshake().empty();
    if (!served) std::this_thread::yield();
  }
  EXPECT_TRUE(served);
}

TEST(TlsOptionsTest, BadFilesAreRefusedAtCreateNamingTheFile) {
  edgeloop::testing::TempDir dir("tls_options");
  const CertFiles ca = testing::MakeCa(dir.path(), "ca");
  const CertFiles a = testing::MakeLeaf(dir.path(), "a", ca, "a");
  const CertFiles b = testing::MakeLeaf(dir.path(), "b", ca, "b");
  auto create = [](const std::string& cert, const std::string& key, const std::string& client_ca) {
    ServerOptions options;
    options.address = "127.0.0.1";
    options.port = 0;
    options.threads = 1;
    options.tls.cert_file = cert;
    options.tls.key_file = key;
    options.tls.client_ca_file = client_ca;
    return Server::Create(options, nullptr).status();
  };
  Status missing = create((dir.path() / "nope.crt").string(), a.key, "");
  EXPECT_EQ(missing.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.message().find("nope.crt"), std::string::npos);

  Status mismatch = create(a.cert, b.key, "");
  EXPECT_EQ(mismatch.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(mismatch.message().find("does not match"), std::string::npos) << mismatch;

  Status swapped = create(a.key, a.cert, "");
  EXPECT_EQ(swapped.code(), StatusCode::kInvalidArgument) << swapped;

  Status no_key = create(a.cert, "", "");
  EXPECT_EQ(no_key.code(), StatusCode::kInvalidArgument);

  Status bad_ca = create(a.cert, a.key, a.key);
  EXPECT_EQ(bad_ca.code(), StatusCode::kInvalidArgument) << bad_ca;

  EXPECT_TRUE(create(a.cert, a.key, ca.cert).ok());
}

}  // namespace
}  // namespace edgeloop::http
