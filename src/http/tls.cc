#include "http/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <fstream>
#include <string>

namespace edgeloop::http {
namespace {

namespace ssl = boost::asio::ssl;

// Mozilla's "intermediate" TLS 1.2 list; TLS 1.3 keeps OpenSSL's default suites (all AEAD).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// The reason of the most recent OpenSSL error (the queue is cleared), or `fallback`.
std::string OpenSslReason(const std::string& fallback) {
  unsigned long code = 0;
  unsigned long last = 0;
  while ((code = ERR_get_error()) != 0) last = code;
  if (last == 0) return fallback;
  const char* reason = ERR_reason_error_string(last);
  return reason != nullptr ? std::string(reason) : fallback;
}

Status CheckReadable(const std::string& what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgumentError("cannot read the " + what + " file '" + path + "'");
  return Status::Ok();
}

}  // namespace

StatusOr<std::shared_ptr<ssl::context>> MakeServerTlsContext(const TlsOptions& options) {
  if (options.cert_file.empty() || options.key_file.empty()) {
    return InvalidArgumentError("TLS needs both a certificate file and a key file");
  }
  RETURN_IF_ERROR(CheckReadable("TLS certificate", options.cert_file));
  RETURN_IF_ERROR(CheckReadable("TLS key", options.key_file));
  if (!options.client_ca_file.empty()) {
    RETURN_IF_ERROR(CheckReadable("TLS client CA", options.client_ca_file));
  }
  ERR_clear_error();
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = context->native_handle();
  boost::system::error_code ec;
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                           ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                           ssl::context::no_tlsv1_1 | ssl::context::no_compression |
                           ssl::context::single_dh_use,
                       ec);
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION);
  if (ec || SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
    return InternalError("cannot configure the TLS context: " + OpenSslReason(ec.message()));
  }
  // An encrypted key would make OpenSSL prompt on the terminal; refuse it instead.
  context->set_password_callback(
      [](std::size_t, ssl::context::password_purpose) { return std::string(); }, ec);

  context->use_certificate_chain_file(options.cert_file, ec);
  if (ec) {
    return InvalidArgumentError("the TLS certificate file '" + options.cert_file +
                                "' is not a PEM certificate chain (" + OpenSslReason(ec.message()) +
                                ")");
  }
  context->use_private_key_file(options.key_file, ssl::context::pem, ec);
  const std::string key_error = ec ? OpenSslReason(ec.message()) : "";
  if (key_error == "key values mismatch") {
    return InvalidArgumentError("the TLS key in '" + options.key_file +
                                "' does not match the certificate in '" + options.cert_file + "'");
  }
  if (ec) {
    return InvalidArgumentError("the TLS key file '" + options.key_file +
                                "' is not an unencrypted PEM private key (" + key_error + ")");
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    return InvalidArgumentError("the TLS key in '" + options.key_file +
                                "' does not match the certificate in '" + options.cert_file + "'");
  }

  if (!options.client_ca_file.empty()) {
    context->load_verify_file(options.client_ca_file, ec);
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.client_ca_file.c_str());
    if (ec || names == nullptr) {
      return InvalidArgumentError("the TLS client CA file '" + options.client_ca_file +
                                  "' holds no PEM certificates (" + OpenSslReason(ec.message()) +
                                  ")");
    }
    SSL_CTX_set_client_CA_list(native, names);  // takes ownership
    context->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    // Session resumption with client certificates needs a session id context.
    static constexpr unsigned char kSessionContext[] = "edgeloop";
    SSL_CTX_set_session_id_context(native, kSessionContext, sizeof(kSessionContext) - 1);
  } else {
    context->set_verify_mode(ssl::verify_none);
  }
  ERR_clear_error();
  return context;
}

}  // namespace edgeloop::http
