// Test-only: a throw-away CA and certificates it signs, made with the OpenSSL API at test time
// (no key is ever committed). EC P-256 keys, valid from an hour ago for a day.
#ifndef EDGELOOP_HTTP_TEST_CERTS_H_
#define EDGELOOP_HTTP_TEST_CERTS_H_

#include <filesystem>
#include <string>

namespace edgeloop::http::testing {

struct CertFiles {
  std::filesystem::path cert;  // PEM certificate
  std::filesystem::path key;   // PEM private key (unencrypted)
};

// Writes `dir`/<name>.crt and <name>.key: a self-signed CA certificate.
CertFiles MakeCa(const std::filesystem::path& dir, const std::string& name);
// Writes `dir`/<name>.crt and <name>.key: a certificate for CN=`common_name` with the subject
// alternative names IP:127.0.0.1 and DNS:localhost, signed by `ca`.
CertFiles MakeLeaf(const std::filesystem::path& dir, const std::string& name, const CertFiles& ca,
                   const std::string& common_name);

}  // namespace edgeloop::http::testing

#endif  // EDGELOOP_HTTP_TEST_CERTS_H_
