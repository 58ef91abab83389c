// The cluster CA and the certificates it issues (several hosts): a certificate verifies against
// the CA for the names it was issued for, not for others, nor against another cluster's CA.
#include "util/tls.hpp"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

namespace pgfleet::tls {
namespace {

using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;

CertPtr load(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  EXPECT_NE(f, nullptr) << path;
  CertPtr c(f ? PEM_read_X509(f, nullptr, nullptr, nullptr) : nullptr, &X509_free);
  if (f) std::fclose(f);
  return c;
}

// Chain check as a client with sslmode=verify-ca does it, plus a name check like verify-full's.
bool verifies(const std::string& ca_path, const std::string& cert_path, const std::string& host) {
  auto ca = load(ca_path);
  auto cert = load(cert_path);
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), &X509_STORE_free);
  X509_STORE_add_cert(store.get(), ca.get());
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(), &X509_STORE_CTX_free);
  X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr);
  if (X509_verify_cert(ctx.get()) != 1) return false;
  bool ip = host.find_first_not_of("0123456789.") == std::string::npos;
  return ip ? X509_check_ip_asc(cert.get(), host.c_str(), 0) == 1
            : X509_check_host(cert.get(), host.c_str(), host.size(), 0, nullptr) == 1;
}

class ClusterCa : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("pgfleet-tls-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

TEST_F(ClusterCa, IssuedCertificatesVerifyForTheirNamesOnly) {
  generate_ca(path("ca.crt"), path("ca.key"), "pgfleet cluster test");
  issue_certificate(path("ca.crt"), path("ca.key"), path("n1.crt"), path("n1.key"), {"10.0.0.11", "db1", "localhost"});
  issue_certificate(path("ca.crt"), path("ca.key"), path("n2.crt"), path("n2.key"), {"10.0.0.12"});
  EXPECT_TRUE(verifies(path("ca.crt"), path("n1.crt"), "10.0.0.11"));
  EXPECT_TRUE(verifies(path("ca.crt"), path("n1.crt"), "db1"));
  EXPECT_TRUE(verifies(path("ca.crt"), path("n2.crt"), "10.0.0.12"));
  EXPECT_FALSE(verifies(path("ca.crt"), path("n1.crt"), "10.0.0.12"));  // another host's address
  EXPECT_FALSE(verifies(path("ca.crt"), path("n2.crt"), "db1"));

  // Another cluster's CA does not vouch for these.
  generate_ca(path("other.crt"), path("other.key"), "pgfleet cluster other");
  EXPECT_FALSE(verifies(path("other.crt"), path("n1.crt"), "10.0.0.11"));

  // Keys are private; two certificates never share a serial number.
  struct stat st{};
  ASSERT_EQ(::stat(path("ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(path("n1.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto a = load(path("n1.crt")), b = load(path("n2.crt"));
  EXPECT_NE(ASN1_INTEGER_cmp(X509_get_serialNumber(a.get()), X509_get_serialNumber(b.get())), 0);
  // The server certificate loads as a TLS server context (what PostgreSQL and the API do).
  EXPECT_NO_THROW(load_server_context(path("n1.crt"), path("n1.key")));
}

TEST_F(ClusterCa, AMissingCaIsAClearError) {
  try {
    issue_certificate(path("nope.crt"), path("nope.key"), path("n1.crt"), path("n1.key"), {"10.0.0.11"});
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.crt"), std::string::npos) << e.what();
  }
}

TEST_F(ClusterCa, ASelfSignedCertificateStillVerifiesAsItsOwnAuthority) {
  // One host: server.crt is self-signed and is what clients trust (Layout::tls_trust()).
  generate_self_signed(path("server.crt"), path("server.key"), {"127.0.0.1", "localhost"});
  EXPECT_TRUE(verifies(path("server.crt"), path("server.crt"), "127.0.0.1"));
}

}  // namespace
}  // namespace pgfleet::tls
