// OpenSSL 3 calls for certificates and contexts; errors become exceptions with OpenSSL's text.
#include "util/tls.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/bn.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <stdexcept>

namespace pgfleet::tls {

std::string last_error() {
  unsigned long code = ERR_get_error();
  if (code == 0) return "";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

namespace {
[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what + ": " + last_error()); }

bool is_ip(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}
}  // namespace

namespace {
using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;

Key new_key() {
  Key key(EVP_EC_gen("P-256"), &EVP_PKEY_free);
  if (!key) fail("cannot generate a key");
  return key;
}

// A certificate for `key` named O=pgfleet, CN=cn, valid from an hour ago for 10 years, with a
// random serial (a CA issues several in the same second).
Cert new_cert(EVP_PKEY* key, const std::string& cn) {
  Cert cert(X509_new(), &X509_free);
  X509_set_version(cert.get(), 2);
  unsigned char serial[8];
  if (RAND_bytes(serial, sizeof serial) != 1) fail("cannot draw a serial number");
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("pgfleet"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return cert;
}

void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
  if (ext == nullptr) fail("cannot build the certificate extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

void add_hosts(X509* cert, X509* issuer, const std::vector<std::string>& hosts) {
  std::string san;
  for (const auto& h : hosts) san += (san.empty() ? "" : ",") + std::string(is_ip(h) ? "IP:" : "DNS:") + h;
  if (!san.empty()) add_extension(cert, issuer, NID_subject_alt_name, san);
}

void write_pair(EVP_PKEY* key, X509* cert, const std::string& cert_path, const std::string& key_path) {
  mode_t old = umask(077);  // the key must never exist with wider permissions
  FILE* kf = std::fopen(key_path.c_str(), "w");
  bool key_ok = kf && PEM_write_PrivateKey(kf, key, nullptr, nullptr, 0, nullptr, nullptr);
  if (kf) std::fclose(kf);
  FILE* cf = std::fopen(cert_path.c_str(), "w");
  bool cert_ok = cf && PEM_write_X509(cf, cert);
  if (cf) std::fclose(cf);
  umask(old);
  if (!key_ok) fail("cannot write " + key_path);
  if (!cert_ok) fail("cannot write " + cert_path);
  chmod(key_path.c_str(), 0600);
  chmod(cert_path.c_str(), 0644);
}

Cert read_cert(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) throw std::runtime_error("cannot read " + path);
  Cert cert(PEM_read_X509(f, nullptr, nullptr, nullptr), &X509_free);
  std::fclose(f);
  if (!cert) fail("cannot load the certificate " + path);
  return cert;
}

Key read_key(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) throw std::runtime_error("cannot read " + path);
  Key key(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr), &EVP_PKEY_free);
  std::fclose(f);
  if (!key) fail("cannot load the key " + path);
  return key;
}
}  // namespace

void generate_self_signed(const std::string& cert_path, const std::string& key_path,
                          const std::vector<std::string>& hosts) {
  Key key = new_key();
  Cert cert = new_cert(key.get(), hosts.empty() ? "localhost" : hosts.front());
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  add_hosts(cert.get(), cert.get(), hosts);
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) fail("cannot sign the certificate");
  write_pair(key.get(), cert.get(), cert_path, key_path);
}

void generate_ca(const std::string& cert_path, const std::string& key_path, const std::string& name) {
  Key key = new_key();
  Cert cert = new_cert(key.get(), name);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  add_extension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_extension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) fail("cannot sign the CA certificate");
  write_pair(key.get(), cert.get(), cert_path, key_path);
}

void issue_certificate(const std::string& ca_cert_path, const std::string& ca_key_path, const std::string& cert_path,
                       const std::string& key_path, const std::vector<std::string>& hosts) {
  Cert ca = read_cert(ca_cert_path);
  Key ca_key = read_key(ca_key_path);
  Key key = new_key();
  Cert cert = new_cert(key.get(), hosts.empty() ? "localhost" : hosts.front());
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca.get()));
  add_extension(cert.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert.get(), ca.get(), NID_ext_key_usage, "serverAuth,clientAuth");
  add_hosts(cert.get(), ca.get(), hosts);
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0) fail("cannot sign the certificate with " + ca_key_path);
  write_pair(key.get(), cert.get(), cert_path, key_path);
}

ServerContext load_server_context(const std::string& cert_path, const std::string& key_path) {
  ServerContext out;
  out.ctx.reset(SSL_CTX_new(TLS_server_method()));
  if (!out.ctx) fail("cannot create a TLS context");
  SSL_CTX_set_min_proto_version(out.ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_mode(out.ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(out.ctx.get(), cert_path.c_str()) != 1) fail("cannot load " + cert_path);
  if (SSL_CTX_use_PrivateKey_file(out.ctx.get(), key_path.c_str(), SSL_FILETYPE_PEM) != 1) {
    fail("cannot load " + key_path);
  }
  if (SSL_CTX_check_private_key(out.ctx.get()) != 1) fail(key_path + " does not match " + cert_path);
  // tls-server-end-point hashes the certificate with its signature's hash (SHA-256 for MD5/SHA-1).
  X509* cert = SSL_CTX_get0_certificate(out.ctx.get());
  int md_nid = NID_sha256;
  int pkey_nid = 0;
  if (X509_get_signature_info(cert, &md_nid, &pkey_nid, nullptr, nullptr) != 1 || md_nid == NID_md5 ||
      md_nid == NID_sha1) {
    md_nid = NID_sha256;
  }
  const EVP_MD* md = EVP_get_digestbynid(md_nid);
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (md == nullptr || X509_digest(cert, md, hash, &len) != 1) fail("cannot hash " + cert_path);
  out.end_point_hash.assign(hash, hash + len);
  return out;
}

}  // namespace pgfleet::tls
