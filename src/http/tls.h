// The OpenSSL server context behind http::Server's TLS (private to src/http).
#ifndef EDGELOOP_HTTP_TLS_H_
#define EDGELOOP_HTTP_TLS_H_

#include <boost/asio/ssl/context.hpp>
#include <memory>

#include "common/status.h"
#include "http/server.h"

namespace edgeloop::http {

// A server context for `options`: TLS 1.2 minimum, forward-secret AEAD ciphers only, no
// compression or renegotiation, the certificate chain and key loaded and checked against each
// other, and, with a client CA file, client certificates required and verified. Errors are
// kInvalidArgument and name the file and what is wrong with it (never its content).
StatusOr<std::shared_ptr<boost::asio::ssl::context>> MakeServerTlsContext(
    const TlsOptions& options);

}  // namespace edgeloop::http

#endif  // EDGELOOP_HTTP_TLS_H_
