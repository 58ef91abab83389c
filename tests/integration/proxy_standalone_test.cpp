// `pgfleet proxy --config FILE` on its own, outside any cluster directory and without a DCS, as a
// user who already runs PostgreSQL servers would start it: it finds the primary by asking the
// listed servers, pools, and follows a switchover.
#include <libpq-fe.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

class ProxyStandaloneTest : public PgfleetTest {
 protected:
  // Starts `pgfleet proxy --config dir/<name>.yaml` (log: dir/<name>.log; the superuser's
  // password from dir/passfile; killed at cleanup): listening on `port` and the three after it,
  // with `proxy` (indented YAML lines) and `nodes` (list items) as its settings.
  int64_t start_standalone_proxy(const std::string& dir, const std::string& name, int port, const std::string& proxy,
                                 const std::string& nodes) {
    write_text(dir + "/" + name + ".yaml", "cluster: " + name + "\n"
                                           "ports:\n"
                                           "  proxy: " + std::to_string(port) + "\n"
                                           "  proxy_primary: " + std::to_string(port + 1) + "\n"
                                           "  proxy_replicas: " + std::to_string(port + 2) + "\n"
                                           "  http: " + std::to_string(port + 3) + "\n"
                                           "proxy:\n" + proxy + "nodes:\n" + nodes);
    int64_t pid = spawn_pgfleet({"proxy", "--config", dir + "/" + name + ".yaml"}, dir + "/" + name + ".log",
                                {{"PGPASSFILE", dir + "/passfile"}});
    add_cleanup([pid] {
      if (process_alive(pid)) ::kill(static_cast<pid_t>(pid), SIGKILL);
      ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
    });
    return pid;
  }

  // For the TLS tests: a stand-alone proxy in front of node1 reached as `host`, verifying it with
  // `mode` against `ca`.
  int64_t start_verifying_proxy(const std::string& dir, const std::string& name, int port, const std::string& mode,
                                const std::string& ca, const std::string& host = "localhost") {
    return start_standalone_proxy(dir, name, port,
                                  "  unix_socket_dir: \"off\"\n  server_sslmode: " + mode + "\n  server_tls_ca: " + ca +
                                      "\n  query_wait_timeout_ms: 2000\n",
                                  "  - name: a\n    host: " + host + "\n    port: " + std::to_string(node_port(1)) + "\n");
  }

  // The superuser's password (from the URI `pgfleet url` prints), written to dir/passfile for the
  // proxies.
  std::string write_passfile(const std::string& dir) {
    std::string primary_url = url({"--primary"});
    auto colon = primary_url.find(':', std::string("postgresql://").size());
    std::string password = primary_url.substr(colon + 1, primary_url.find('@') - colon - 1);
    std::filesystem::create_directories(dir);
    write_text(dir + "/passfile", "*:*:*:postgres:" + password + "\n");
    std::filesystem::permissions(dir + "/passfile", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    return password;
  }

  // A cluster whose proxy verifies its servers (verify-full against `ca`) and logs clients in from
  // `users`, an auth_file left empty until refused_login() fills it: with the user there, no
  // auth query runs first, so the proxy's own server logins are what the verification stops.
  void start_cluster_verifying(const std::string& ca, const std::string& users) {
    ::chmod(ca.c_str(), 0644);  // the proxy runs as the cluster's OS user
    write_text(users, "");
    ::chmod(users.c_str(), 0644);
    write_text(tmp_ + "/config.yaml", "proxy:\n  server_sslmode: verify-full\n  server_tls_ca: " + ca +
                                          "\n  query_wait_timeout_ms: 3000\n  auth_file: " + users + "\n");
    ASSERT_NO_FATAL_FAILURE(start_cluster({"--config", tmp_ + "/config.yaml", "--replicas", "0"}));
  }

  // Puts the superuser in `users` and runs a query through the cluster's proxy, which must fail;
  // returns the proxy's log.
  std::string refused_login(const std::string& users) {
    const std::string verifier =
        sql_value(url({"--primary"}), "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'");
    std::this_thread::sleep_for(1100ms);  // a later modification time: the proxy reads the file again
    write_text(users, "\"postgres\" \"" + verifier + "\"\n");
    ::chmod(users.c_str(), 0644);
    auto r = try_sql(with_param(url({"--proxy-primary"}), "connect_timeout=10"), "SELECT 1");
    EXPECT_FALSE(r.ok()) << "a server was used although its certificate did not verify";
    return read_text(dir_ + "/proxy.log");
  }

  // A throwaway self-signed certificate and its key (a CA for the tests), valid one day.
  void make_self_signed(const std::string& key, const std::string& cert, const std::string& subject) {
    auto made = run_program({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                             "-keyout", key, "-out", cert, "-days", "1", "-subj", subject},
                            30s);
    ASSERT_EQ(made.exit_code, 0) << made.output;
  }
};

TEST_F(ProxyStandaloneTest, FindsThePrimaryAmongTheListedServersAndFollowsASwitchover) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--replicas", "1"}));
  std::string dir = tmp_ + "/standalone";
  const std::string password = write_passfile(dir);
  ASSERT_FALSE(password.empty());

  const int port = base_port_ + 60;  // the cluster uses base .. base+59
  int64_t pid = start_standalone_proxy(
      dir, "standalone", port, "  unix_socket_dir: " + dir + "\n",
      "  - name: a\n    host: 127.0.0.1\n    port: " + std::to_string(node_port(1)) + "\n"
      // A host name: server connections and cancel requests resolve it.
      "  - name: b\n    host: localhost\n    port: " + std::to_string(node_port(2)) + "\n");
  auto through = [&](int p) {
    return "postgresql://postgres:" + password + "@127.0.0.1:" + std::to_string(p) + "/postgres";
  };
  auto served_by = [&](int p, const std::string& query) { return sql_value(through(p), query); };
  ASSERT_TRUE(eventually([&] { return try_sql(through(port + 1), "SELECT 1").ok(); }, 20s))
      << "the stand-alone proxy does not answer:\n" << read_text(dir + "/standalone.log");

  // Writes reach the primary (node1), reads on the replicas port the replica (node2).
  sql(through(port), "CREATE TABLE standalone (id int)");
  EXPECT_EQ(served_by(port + 1, "INSERT INTO standalone VALUES (1) RETURNING inet_server_port()::text"),
            std::to_string(node_port(1)));
  EXPECT_TRUE(eventually(
      [&] { return served_by(port + 2, "SELECT inet_server_port()::text") == std::to_string(node_port(2)); }, 10s));

  // A switchover elsewhere: the proxy finds the new primary by itself.
  auto r = pgfleet({"switchover", "--to", "node2"});
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_TRUE(eventually(
      [&] {
        return served_by(port + 1, "INSERT INTO standalone VALUES (2) RETURNING inet_server_port()::text") ==
               std::to_string(node_port(2));
      },
      15s, 250ms))
      << read_text(dir + "/standalone.log");
  EXPECT_EQ(sql_value(url({"--primary"}), "SELECT count(*) FROM standalone"), "2");

  // A cancel reaches the query on b (named `localhost` in the proxy's configuration).
  {
    PGconn* c = PQconnectdb(through(port + 1).c_str());
    ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
    ASSERT_EQ(PQsendQuery(c, "SELECT pg_sleep(30) /* standalone cancel */"), 1);
    EXPECT_TRUE(eventually(
        [&] {
          return sql_value(url({"--primary"}), "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
                                                "query LIKE 'SELECT pg_sleep(30) /* standalone cancel%'") == "1";
        },
        5s));
    auto asked = std::chrono::steady_clock::now();
    PGcancel* cancel = PQgetCancel(c);
    char err[256] = "";
    EXPECT_EQ(PQcancel(cancel, err, sizeof err), 1) << err;
    PQfreeCancel(cancel);
    PGresult* res = PQgetResult(c);  // blocks until the statement ends: at once, or after 30 s
    const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    EXPECT_STREQ(state ? state : "(none)", "57014") << PQresultErrorMessage(res);
    EXPECT_LT(std::chrono::steady_clock::now() - asked, 10s) << "the cancel did not reach the server";
    PQclear(res);
    while ((res = PQgetResult(c)) != nullptr) PQclear(res);
    PQfinish(c);
  }

  // proxy.unix_socket_dir: clients on this host can use its Unix socket.
  EXPECT_EQ(sql_value("postgresql://postgres:" + password + "@/postgres?host=" + dir + "&port=" + std::to_string(port + 1),
                      "SELECT inet_server_port()::text"),
            std::to_string(node_port(2)));

  // SIGTERM stops it, and its socket files go with it.
  ASSERT_EQ(::kill(static_cast<pid_t>(pid), SIGTERM), 0);
  EXPECT_TRUE(eventually([&] { return !process_alive(pid); }, 10s)) << "the stand-alone proxy did not stop";
  EXPECT_FALSE(std::filesystem::exists(dir + "/.s.PGSQL." + std::to_string(port)));
}

// server_sslmode verify-full: the proxy checks each server's certificate against server_tls_ca
// and the name it was told to reach (here `localhost`, in the cluster's certificate); with a CA
// that did not issue it, a stand-alone proxy finds no server (its probes verify too).
TEST_F(ProxyStandaloneTest, VerifyFullChecksTheServersCertificateAgainstTheGivenCa) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--replicas", "0"}));
  const std::string dir = tmp_ + "/verify";
  const std::string password = write_passfile(dir);
  std::filesystem::copy_file(dir_ + "/tls/server.crt", dir + "/cluster-ca.crt");
  ASSERT_NO_FATAL_FAILURE(make_self_signed(dir + "/other.key", dir + "/other-ca.crt", "/CN=other"));

  const int good = base_port_ + 60, bad = base_port_ + 70;
  const int64_t good_pid = start_verifying_proxy(dir, "good", good, "verify-full", dir + "/cluster-ca.crt");
  const int64_t bad_pid = start_verifying_proxy(dir, "bad", bad, "verify-full", dir + "/other-ca.crt");
  auto through = [&](int p) {
    return "postgresql://postgres:" + password + "@127.0.0.1:" + std::to_string(p + 1) + "/postgres?connect_timeout=5";
  };
  ASSERT_TRUE(eventually([&] { return try_sql(through(good), "SELECT 1").ok(); }, 20s))
      << read_text(dir + "/good.log");
  // The server connection behind the query is TLS.
  EXPECT_EQ(sql_value(through(good), "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), "true");

  EXPECT_TRUE(eventually([&] { return read_text(dir + "/bad.log").find("certificate verify failed") != std::string::npos; },
                         20s))
      << read_text(dir + "/bad.log");
  EXPECT_FALSE(try_sql(through(bad), "SELECT 1").ok()) << "a server was used although its certificate did not verify";
  for (int64_t pid : {good_pid, bad_pid}) {  // before the cluster's teardown, which counts leftovers
    ::kill(static_cast<pid_t>(pid), SIGTERM);
    ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
  }
}

// verify-full also checks the name: the node gets a certificate from a CA the proxies trust, made
// out to another host only. The cluster's proxy (verify-full; clients in auth_file, so its own
// server logins are what is checked) refuses it and logs why; a stand-alone proxy with verify-ca,
// which checks the issuer only, takes it.
TEST_F(ProxyStandaloneTest, VerifyFullRefusesACertificateMadeOutToAnotherHost) {
  const std::string dir = tmp_ + "/verify";
  std::filesystem::create_directories(dir);
  ASSERT_NO_FATAL_FAILURE(make_self_signed(dir + "/ca.key", dir + "/ca.crt", "/CN=pgfleet test CA"));
  write_text(dir + "/san.cnf", "subjectAltName = DNS:elsewhere.invalid\n");
  auto csr = run_program({"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                          dir + "/server.key", "-out", dir + "/server.csr", "-subj", "/CN=elsewhere.invalid"},
                         30s);
  ASSERT_EQ(csr.exit_code, 0) << csr.output;
  auto signed_cert = run_program({"openssl", "x509", "-req", "-in", dir + "/server.csr", "-CA", dir + "/ca.crt", "-CAkey",
                                  dir + "/ca.key", "-CAcreateserial", "-out", dir + "/server.crt", "-days", "1",
                                  "-extfile", dir + "/san.cnf"},
                                 30s);
  ASSERT_EQ(signed_cert.exit_code, 0) << signed_cert.output;
  const std::string users = dir + "/users.txt";
  ASSERT_NO_FATAL_FAILURE(start_cluster_verifying(dir + "/ca.crt", users));
  const std::string password = write_passfile(dir);

  // The node takes the certificate (read as the OS user owning its data directory, key private).
  const std::string primary = url({"--primary"});
  struct stat data{};
  ASSERT_EQ(::stat(sql_value(primary, "SHOW data_directory").c_str(), &data), 0);
  for (const char* f : {"/server.key", "/server.crt"}) {
    ASSERT_EQ(::chown((dir + f).c_str(), data.st_uid, data.st_gid), 0) << f;
    ::chmod((dir + f).c_str(), 0600);
  }
  sql(primary, "ALTER SYSTEM SET ssl_cert_file = '" + dir + "/server.crt'");
  sql(primary, "ALTER SYSTEM SET ssl_key_file = '" + dir + "/server.key'");
  sql(primary, "SELECT pg_reload_conf()");
  ASSERT_TRUE(eventually([&] { return sql_value(primary, "SHOW ssl_cert_file") == dir + "/server.crt"; }, 10s));

  const std::string log = refused_login(users);
  EXPECT_NE(log.find("server login failed: TLS to the server at 127.0.0.1"), std::string::npos) << log;
  EXPECT_NE(log.find("(IP address mismatch)"), std::string::npos) << log;

  const int ca_only = base_port_ + 60;
  const int64_t ca_pid = start_verifying_proxy(dir, "ca-only", ca_only, "verify-ca", dir + "/ca.crt");
  const std::string through = "postgresql://postgres:" + password + "@127.0.0.1:" + std::to_string(ca_only + 1) +
                              "/postgres?connect_timeout=5";
  EXPECT_TRUE(eventually([&] { return try_sql(through, "SELECT 1").ok(); }, 20s)) << read_text(dir + "/ca-only.log");
  ::kill(static_cast<pid_t>(ca_pid), SIGTERM);  // before the cluster's teardown, which counts leftovers
  ::waitpid(static_cast<pid_t>(ca_pid), nullptr, 0);
}

// In a cluster the proxy learns the primary from the DCS, and with the user in auth_file it logs
// clients in without a query: its own server connections are then what a foreign CA stops.
// Clients get an error, and the log names the failed verification.
TEST_F(ProxyStandaloneTest, VerifyFullRefusesServersTheGivenCaDidNotIssue) {
  ASSERT_NO_FATAL_FAILURE(make_self_signed(tmp_ + "/other.key", tmp_ + "/other-ca.crt", "/CN=other"));
  ASSERT_NO_FATAL_FAILURE(start_cluster_verifying(tmp_ + "/other-ca.crt", tmp_ + "/users.txt"));
  const std::string log = refused_login(tmp_ + "/users.txt");
  // The proxy's own server connection, not only its libpq probes, refused the certificate.
  EXPECT_NE(log.find("server login failed: TLS to the server at 127.0.0.1"), std::string::npos) << log;
  EXPECT_NE(log.find("certificate verify failed (self-signed certificate)"), std::string::npos) << log;
}

}  // namespace
}  // namespace pgfleet::itest
