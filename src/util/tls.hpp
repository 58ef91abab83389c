// TLS material: a self-signed certificate for a one-host cluster, a CA and the certificates it
// issues for a cluster of several hosts, and server-side TLS contexts.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

namespace pgfleet::tls {

// Writes a self-signed certificate (EC P-256, SHA-256, 10 years) naming `hosts` (DNS names or IP
// addresses) to cert_path and its key to key_path (0600). Throws std::runtime_error.
void generate_self_signed(const std::string& cert_path, const std::string& key_path,
                          const std::vector<std::string>& hosts);

// A certificate authority (EC P-256, 10 years) for a cluster of several hosts: each host's server
// certificate is issued by it, and every host trusts it. Key 0600.
void generate_ca(const std::string& cert_path, const std::string& key_path, const std::string& name);

// A server (and client) certificate naming `hosts`, signed by the CA in ca_cert_path/ca_key_path.
void issue_certificate(const std::string& ca_cert_path, const std::string& ca_key_path, const std::string& cert_path,
                       const std::string& key_path, const std::vector<std::string>& hosts);

struct ServerContext {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{nullptr, &SSL_CTX_free};
  // RFC 5929 tls-server-end-point: the certificate's hash, for SCRAM channel binding.
  std::vector<uint8_t> end_point_hash;
};

// TLS 1.2+ server context from PEM files. Throws std::runtime_error naming the file.
ServerContext load_server_context(const std::string& cert_path, const std::string& key_path);

// The last OpenSSL error as text ("" when none).
std::string last_error();

}  // namespace pgfleet::tls
