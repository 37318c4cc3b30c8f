#include "http/test_certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <memory>
#include <stdexcept>

namespace edgeloop::http::testing {
namespace {

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;

void Check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test certificate: ") + what);
}

void AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  Check(ext != nullptr, "extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

void WriteFiles(const CertFiles& files, X509* cert, EVP_PKEY* key) {
  FILE* out = std::fopen(files.cert.c_str(), "w");
  Check(out != nullptr && PEM_write_X509(out, cert) == 1, "write certificate");
  std::fclose(out);
  out = std::fopen(files.key.c_str(), "w");
  Check(
      out != nullptr && PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr) == 1,
      "write key");
  std::fclose(out);
}

Cert NewCert(EVP_PKEY* key, const std::string& common_name) {
  static long serial = 1;
  Cert cert(X509_new(), X509_free);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86'400);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  return cert;
}

}  // namespace

CertFiles MakeCa(const std::filesystem::path& dir, const std::string& name) {
  Key key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  Check(key != nullptr, "key");
  Cert cert = NewCert(key.get(), name);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  AddExtension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  AddExtension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  AddExtension(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  Check(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0, "sign");
  CertFiles files{dir / (name + ".crt"), dir / (name + ".key")};
  WriteFiles(files, cert.get(), key.get());
  return files;
}

CertFiles MakeLeaf(const std::filesystem::path& dir, const std::string& name, const CertFiles& ca,
                   const std::string& common_name) {
  FILE* in = std::fopen(ca.cert.c_str(), "r");
  Check(in != nullptr, "read CA certificate");
  Cert ca_cert(PEM_read_X509(in, nullptr, nullptr, nullptr), X509_free);
  std::fclose(in);
  in = std::fopen(ca.key.c_str(), "r");
  Check(in != nullptr, "read CA key");
  Key ca_key(PEM_read_PrivateKey(in, nullptr, nullptr, nullptr), EVP_PKEY_free);
  std::fclose(in);
  Check(ca_cert != nullptr && ca_key != nullptr, "parse CA");

  Key key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  Check(key != nullptr, "key");
  Cert cert = NewCert(key.get(), common_name);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  AddExtension(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  AddExtension(cert.get(), ca_cert.get(), NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  AddExtension(cert.get(), ca_cert.get(), NID_ext_key_usage, "serverAuth,clientAuth");
  Check(X509_sign(cert.get(), ca_key.get(), EVP_sha256()) > 0, "sign");
  CertFiles files{dir / (name + ".crt"), dir / (name + ".key")};
  WriteFiles(files, cert.get(), key.get());
  return files;
}

}  // namespace edgeloop::http::testing
