// TLS through the proxy, as a client sees it: `tls_mode: require` refuses plain connections with
// a clear message, TLS clients log in with SCRAM channel binding, and with
// `server_sslmode: require` the proxy's own connections to PostgreSQL are encrypted too.
#include <libpq-fe.h>

#include <string>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

class ProxyTlsTest : public ClusterSuite<ProxyTlsTest> {
 public:
  static std::string cluster_config() { return "proxy:\n  tls_mode: require\n  server_sslmode: require\n"; }
};

TEST_F(ProxyTlsTest, PlainConnectionsAreRefusedWithAClearMessage) {
  std::string error = connect_error(with_param(cluster().proxy_uri(), "sslmode=disable"));
  EXPECT_NE(error.find("requires TLS"), std::string::npos) << error;
  EXPECT_NE(error.find("sslmode=require"), std::string::npos) << "the message should say what to do: " << error;
}

TEST_F(ProxyTlsTest, TlsClientsLogInWithChannelBinding) {
  // channel_binding=require makes libpq insist on SCRAM-SHA-256-PLUS bound to this TLS session.
  auto conn = connect_or_throw(with_param(cluster().proxy_uri(), "sslmode=require&channel_binding=require"));
  EXPECT_EQ(PQsslInUse(conn.raw()), 1);
  auto v = conn.scalar("SELECT 'over tls'");
  ASSERT_TRUE(v) << v.error();
  EXPECT_EQ(v.value().value_or(""), "over tls");

  // A wrong password fails the same way as without TLS.
  std::string wrong = connect_error(with_param(cluster().proxy_uri("postgres", "not-the-password"),
                                               "sslmode=require&channel_binding=require"));
  EXPECT_NE(wrong.find("password authentication failed for user \"postgres\""), std::string::npos) << wrong;
}

TEST_F(ProxyTlsTest, ServerConnectionsAreEncrypted) {
  auto client = connect_or_throw(with_param(cluster().proxy_uri(), "sslmode=require&application_name=tls_probe"));
  auto v = client.scalar("SELECT pg_backend_pid()::text");
  ASSERT_TRUE(v) << v.error();
  std::string backend = v.value().value_or("");
  ASSERT_FALSE(backend.empty());
  // The server connection that ran the query, seen from PostgreSQL.
  EXPECT_EQ(sql_value(cluster().primary_uri(), "SELECT ssl::text FROM pg_stat_ssl WHERE pid = " + backend), "true");
  // And so are the proxy's own health polls (libpq connections of their own).
  EXPECT_EQ(sql_value(cluster().primary_uri(),
                      "SELECT string_agg(DISTINCT s.ssl::text, ',') FROM pg_stat_ssl s JOIN pg_stat_activity a "
                      "USING (pid) WHERE a.application_name = 'pgfleet-proxy-health'"),
            "true");
}

}  // namespace
}  // namespace pgfleet::itest
