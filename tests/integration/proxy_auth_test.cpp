// Logging in through the proxy: PostgreSQL's messages for wrong passwords and unknown users, roles
// created on the primary, md5 roles, password changes within the auth cache's age, and the admin
// console for admins only.
#include <libpq-fe.h>
#include <sys/stat.h>

#include <chrono>
#include <string>
#include <thread>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

// libpq's last message without the 'connection to server at "…", port N failed: ' prefix, which names
// the port and so differs between the proxy and the server.
std::string server_message(const std::string& libpq_error) {
  auto at = libpq_error.rfind("failed: ");
  std::string m = at == std::string::npos ? libpq_error : libpq_error.substr(at + 8);
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

class ProxyAuthTest : public ClusterSuite<ProxyAuthTest> {
 public:
  static std::string cluster_config() { return ""; }

 protected:
  std::string direct(const std::string& user, const std::string& password, const std::string& db = "postgres") {
    return "postgresql://" + user + ":" + password + "@127.0.0.1:" + std::to_string(cluster().node_port(1)) + "/" + db;
  }
  std::string proxied(const std::string& user, const std::string& password, const std::string& db = "postgres") {
    return cluster().proxy_uri(user, password, db);
  }
};

TEST_F(ProxyAuthTest, WrongPasswordGetsPostgresqlsMessage) {
  std::string through_proxy = connect_error(proxied("postgres", "wrong-password"));
  std::string from_server = connect_error(direct("postgres", "wrong-password"));
  ASSERT_FALSE(through_proxy.empty()) << "the proxy accepted a wrong password";
  EXPECT_EQ(server_message(through_proxy), "FATAL:  password authentication failed for user \"postgres\"")
      << through_proxy;
  EXPECT_EQ(server_message(through_proxy), server_message(from_server));
  // psql prints the same.
  auto p = psql(proxied("postgres", "wrong-password"), {"-c", "SELECT 1"});
  EXPECT_NE(p.exit_code, 0);
  EXPECT_NE(p.output.find("password authentication failed for user \"postgres\""), std::string::npos) << p.output;
  // The right password still works afterwards.
  EXPECT_EQ(sql_value(cluster().proxy_uri(), "SELECT current_user"), "postgres");
}

TEST_F(ProxyAuthTest, UnknownUserGetsTheSameMessageAsAWrongPassword) {
  std::string through_proxy = connect_error(proxied("nosuchuser", "whatever"));
  std::string from_server = connect_error(direct("nosuchuser", "whatever"));
  ASSERT_FALSE(through_proxy.empty()) << "the proxy let an unknown user in";
  EXPECT_EQ(server_message(through_proxy), "FATAL:  password authentication failed for user \"nosuchuser\"")
      << through_proxy;
  EXPECT_EQ(server_message(through_proxy), server_message(from_server));
}

TEST_F(ProxyAuthTest, RoleCreatedOnThePrimaryLogsInAndRunsAsItself) {
  sql(cluster().primary_uri(),
      "CREATE ROLE app LOGIN PASSWORD 'app-pw'; CREATE TABLE secret_stuff (v int); "
      "CREATE TABLE app_stuff (v int); GRANT SELECT, INSERT ON app_stuff TO app");
  std::string uri = proxied("app", "app-pw");
  std::string last;
  ASSERT_TRUE(eventually(
      [&] {
        last = connect_error(uri);
        return last.empty();
      },
      12s, 200ms))
      << "a new role cannot log in through the proxy within the auth cache's 10 s: " << last;
  auto rows = sql(uri, "SELECT current_user, session_user, "
                       "(SELECT usename FROM pg_stat_activity WHERE pid = pg_backend_pid())");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], std::optional<std::string>("app"));
  EXPECT_EQ(rows[0][1], std::optional<std::string>("app"));
  EXPECT_EQ(rows[0][2], std::optional<std::string>("app")) << "the server connection must log in as app";
  // Its privileges are its own.
  sql(uri, "INSERT INTO app_stuff VALUES (1)");
  auto denied = try_sql(uri, "SELECT * FROM secret_stuff");
  ASSERT_FALSE(denied.ok()) << "app read a table it has no privilege on";
  EXPECT_NE(denied.error().find("permission denied"), std::string::npos) << denied.error();
  auto p = psql(uri, {"-At", "-c", "SELECT current_user || ' via psql'"});
  EXPECT_EQ(p.exit_code, 0) << p.output;
  EXPECT_EQ(p.output, "app via psql\n");
  // The superuser's pool is not the app's.
  EXPECT_EQ(sql_value(cluster().proxy_uri(), "SELECT current_user"), "postgres");
}

TEST_F(ProxyAuthTest, NewRolesAndPasswordChangesApplyWithinTheAuthCacheAge) {
  sql(cluster().primary_uri(), "CREATE ROLE changer LOGIN PASSWORD 'old-pw'");
  // Both users are now in the proxy's cache: `late` as unknown, `changer` with its old verifier.
  ASSERT_FALSE(connect_error(proxied("late", "late-pw")).empty());
  ASSERT_EQ(connect_error(proxied("changer", "old-pw")), "");
  EXPECT_EQ(sql_value(proxied("changer", "old-pw"), "SELECT current_user"), "changer");

  sql(cluster().primary_uri(), "CREATE ROLE late LOGIN PASSWORD 'late-pw'; ALTER ROLE changer PASSWORD 'new-pw'");
  auto changed_at = std::chrono::steady_clock::now();
  std::string late_error, new_error, old_error = "(not tried)";
  bool applied = eventually(
      [&] {
        late_error = connect_error(proxied("late", "late-pw"));
        new_error = connect_error(proxied("changer", "new-pw"));
        old_error = connect_error(proxied("changer", "old-pw"));
        return late_error.empty() && new_error.empty() && !old_error.empty();
      },
      13s, 250ms);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - changed_at).count();
  EXPECT_TRUE(applied) << "after 13 s: new role: '" << late_error << "', new password: '" << new_error
                       << "', old password: '" << (old_error.empty() ? "accepted" : old_error) << "'";
  EXPECT_LT(took, 12.0);
  if (!old_error.empty()) {
    EXPECT_NE(old_error.find("password authentication failed for user \"changer\""), std::string::npos) << old_error;
  }
  EXPECT_EQ(sql_value(proxied("late", "late-pw"), "SELECT current_user"), "late");
  EXPECT_EQ(sql_value(proxied("changer", "new-pw"), "SELECT current_user"), "changer");
}

// pg_hba.conf lets `user` log in with md5 over TCP, before pgfleet's scram-sha-256 lines. The agent
// rewrites the file every second but only reloads the server when its own settings change, so the
// rule stays in force until the next reload. True once a direct md5 login works.
bool allow_md5_for(const SharedCluster& c, const std::string& user, const std::string& direct_uri) {
  std::string hba_path = c.dir() + "/nodes/node1/data/pg_hba.conf";
  return eventually(
      [&] {
        std::string hba = read_text(hba_path);
        std::string line = "host    all          " + user + "          127.0.0.1/32       md5\n";
        if (hba.find(line) == std::string::npos) {
          auto at = hba.find("\nhost ");
          if (at == std::string::npos) return false;
          hba.insert(at + 1, line);
          write_text(hba_path, hba);
        }
        sql(c.primary_uri(), "SELECT pg_reload_conf()");
        return eventually([&] { return connect_error(direct_uri).empty(); }, 500ms, 50ms);
      },
      15s, 100ms);
}

TEST_F(ProxyAuthTest, Md5PasswordRole) {
  sql(cluster().primary_uri(), "SET password_encryption = 'md5'; CREATE ROLE m5 LOGIN PASSWORD 'md5-pw'");
  ASSERT_EQ(sql_value(cluster().primary_uri(), "SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = 'm5'"),
            "md5");
  // pgfleet's pg_hba.conf asks for scram-sha-256, which an md5-stored password cannot pass: the
  // proxy must refuse the role just like the server does.
  std::string from_server = connect_error(direct("m5", "md5-pw"));
  ASSERT_FALSE(from_server.empty()) << "the server let an md5 role in through a scram-sha-256 rule";
  std::string through_proxy = connect_error(proxied("m5", "md5-pw"));
  EXPECT_FALSE(through_proxy.empty()) << "the proxy let in a role the server refuses";
  EXPECT_EQ(server_message(through_proxy), server_message(from_server));

  // With an md5 rule for the role, the server accepts it, and so must the proxy.
  ASSERT_TRUE(allow_md5_for(cluster(), "m5", direct("m5", "md5-pw")))
      << "could not enable md5 for m5 in pg_hba.conf: " << connect_error(direct("m5", "md5-pw"));
  std::string last;
  EXPECT_TRUE(eventually(
      [&] {
        last = connect_error(proxied("m5", "md5-pw"));
        return last.empty();
      },
      12s, 200ms))
      << "an md5 role the server accepts cannot log in through the proxy: " << last;
  if (last.empty()) {
    auto rows = sql(proxied("m5", "md5-pw"), "SELECT current_user, "
                                             "(SELECT usename FROM pg_stat_activity WHERE pid = pg_backend_pid())");
    EXPECT_EQ(rows[0][0], std::optional<std::string>("m5"));
    EXPECT_EQ(rows[0][1], std::optional<std::string>("m5"));
  }
  std::string wrong = connect_error(proxied("m5", "not-the-password"));
  EXPECT_EQ(server_message(wrong), "FATAL:  password authentication failed for user \"m5\"") << wrong;
  // Back to pgfleet's own rules (the agent has rewritten the file by now or will).
  sql(cluster().primary_uri(), "SELECT pg_reload_conf()");
}

TEST_F(ProxyAuthTest, AdminConsoleIsForAdminsOnly) {
  sql(cluster().primary_uri(), "CREATE ROLE plain LOGIN PASSWORD 'plain-pw'");
  std::string uri = proxied("plain", "plain-pw", "pgfleet");
  std::string error;
  ASSERT_TRUE(eventually(
      [&] {
        error = connect_error(uri);
        return error.find("password authentication failed") == std::string::npos;
      },
      12s, 200ms));
  EXPECT_FALSE(error.empty()) << "a non-admin user opened the admin console";
  EXPECT_NE(error.find("admin console"), std::string::npos) << error;
  auto p = psql(uri, {"-c", "SHOW POOLS"});
  EXPECT_NE(p.exit_code, 0) << p.output;
  // The same user works on a real database, and the superuser gets the console.
  EXPECT_EQ(sql_value(proxied("plain", "plain-pw"), "SELECT current_user"), "plain");
  auto help = query_table(cluster().admin_uri(), "SHOW HELP");
  EXPECT_FALSE(help.rows.empty());
}

TEST_F(ProxyAuthTest, UnknownDatabaseGetsPostgresqlsMessage) {
  std::string error = connect_error(cluster().proxy_uri("", "", "nosuchdb"));
  EXPECT_NE(error.find("database \"nosuchdb\" does not exist"), std::string::npos) << error;
  // Twice: the failed pool must not wedge.
  error = connect_error(cluster().proxy_uri("", "", "nosuchdb"));
  EXPECT_NE(error.find("database \"nosuchdb\" does not exist"), std::string::npos) << error;
  EXPECT_EQ(sql_value(cluster().proxy_uri(), "SELECT 'fine'"), "fine");
  // Created later, it works.
  sql(cluster().primary_uri(), "CREATE DATABASE laterdb");
  EXPECT_EQ(sql_value(cluster().proxy_uri("", "", "laterdb"), "SELECT current_database()"), "laterdb");
}

}  // namespace
}  // namespace pgfleet::itest

namespace pgfleet::itest {
namespace {

// proxy.auth_file: PgBouncer's userlist.txt. Its verifiers come before the auth query's, and the
// file is read again when it changes.
class ProxyAuthFileTest : public PgfleetTest {};

TEST_F(ProxyAuthFileTest, TheFilesVerifierComesFirstAndAChangedFileIsReadAgain) {
  const std::string users = tmp_ + "/users.txt";
  write_text(tmp_ + "/config.yaml", "proxy:\n  auth_file: " + users + "\n");
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--config", tmp_ + "/config.yaml", "--replicas", "0"}));
  const std::string primary = url({"--primary"});
  // Two verifiers of one role, for two passwords; the database keeps the second.
  sql(primary, "CREATE ROLE file_user LOGIN PASSWORD 'in-the-file-only'");
  const std::string old_verifier = sql_value(primary, "SELECT rolpassword FROM pg_authid WHERE rolname = 'file_user'");
  sql(primary, "ALTER ROLE file_user PASSWORD 'in-the-database'");
  const std::string verifier = sql_value(primary, "SELECT rolpassword FROM pg_authid WHERE rolname = 'file_user'");
  ASSERT_EQ(old_verifier.rfind("SCRAM-SHA-256$", 0), 0u) << old_verifier;
  auto write_users = [&](const std::string& secret) {
    write_text(users, "; PgBouncer-style comment\nthis line is not a user entry\n\"file_user\" \"" + secret + "\"\n");
    ::chmod(users.c_str(), 0644);  // the proxy runs as the cluster's OS user
  };
  write_users(old_verifier);
  const std::string as_user =
      "postgresql://file_user:in-the-database@127.0.0.1:" + std::to_string(base_port_) + "/postgres?sslmode=disable";

  // The file's (old) verifier wins over the database's: the database's password is refused.
  auto refused = try_sql(as_user, "SELECT 1");
  ASSERT_FALSE(refused.ok()) << "the auth query was used although auth_file has the user";
  EXPECT_NE(refused.error().find("password authentication failed for user \"file_user\""), std::string::npos)
      << refused.error();
  EXPECT_NE(read_text(dir_ + "/proxy.log").find("expected \"user\" \"secret\"; line ignored"), std::string::npos)
      << "a malformed line of the file was not reported";

  // The file gets the current verifier (a later modification time): read again, the login works
  // (within the 10 s the proxy caches a user's verifier).
  std::this_thread::sleep_for(1100ms);
  write_users(verifier);
  EXPECT_TRUE(eventually([&] { return try_sql(as_user, "SELECT current_user").ok(); }, 20s, 500ms))
      << "the changed auth_file was not read again";
  EXPECT_EQ(sql_value(as_user, "SELECT current_user"), "file_user");
}

// proxy.auth_query replaces the built-in pg_authid lookup (PgBouncer's auth_query: usename, passwd).
// This one hides roles named blocked_*: they cannot log in through the proxy, though they can
// directly, and the others log in as before.
class ProxyAuthQueryTest : public ClusterSuite<ProxyAuthQueryTest> {
 public:
  static std::string cluster_config() {
    return "proxy:\n  auth_query: \"SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1 AND "
           "usename NOT LIKE 'blocked%'\"\n";
  }
};

TEST_F(ProxyAuthQueryTest, TheConfiguredQueryDecidesWhoIsKnown) {
  sql(cluster().primary_uri(), "CREATE ROLE query_user LOGIN PASSWORD 'secret-one'");
  sql(cluster().primary_uri(), "CREATE ROLE blocked_user LOGIN PASSWORD 'secret-two'");
  EXPECT_EQ(sql_value(cluster().proxy_uri("query_user", "secret-one"), "SELECT current_user"), "query_user");
  const std::string refused = connect_error(cluster().proxy_uri("blocked_user", "secret-two"));
  EXPECT_NE(refused.find("password authentication failed for user \"blocked_user\""), std::string::npos) << refused;
  const std::string direct = "postgresql://blocked_user:secret-two@127.0.0.1:" + std::to_string(cluster().node_port(1)) + "/postgres";
  EXPECT_EQ(sql_value(direct, "SELECT current_user"), "blocked_user");
  const Table config = query_table(cluster().admin_uri(), "SHOW CONFIG");
  bool shown = false;
  for (size_t i = 0; i < config.rows.size(); ++i)
    shown = shown || (config.at(i, "key") == "auth_query" && config.at(i, "value").find("NOT LIKE 'blocked%'") != std::string::npos);
  EXPECT_TRUE(shown) << config.dump();
}

}  // namespace
}  // namespace pgfleet::itest
