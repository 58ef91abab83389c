// The admin console (SHOW, PAUSE/RESUME, RELOAD, KILL, SHUTDOWN), cancel requests, a server that
// dies mid-query, and stopping the proxy, as an operator sees them.
#include <libpq-fe.h>
#include <sys/stat.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

using Clock = std::chrono::steady_clock;

// Waits up to `timeout` for the results of a query sent with PQsendQuery: "" when it succeeded,
// "(busy)" when it is still running, else "SQLSTATE: message".
std::string finish_query(PGconn* c, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (PQisBusy(c) != 0) {
    if (Clock::now() >= deadline) return "(busy)";
    pollfd pfd{PQsocket(c), POLLIN, 0};
    ::poll(&pfd, 1, 20);
    if (PQconsumeInput(c) == 0) return std::string("(connection) ") + PQerrorMessage(c);
  }
  std::string error;
  while (PGresult* r = PQgetResult(c)) {
    auto status = PQresultStatus(r);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK && error.empty()) {
      const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      error = std::string(state ? state : "?????") + ": " + PQresultErrorMessage(r);
    }
    PQclear(r);
  }
  return error;
}

// True when the other end closes the (idle) connection within `timeout`.
bool closed_by_peer(PGconn* c, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (PQstatus(c) == CONNECTION_BAD) return true;
    pollfd pfd{PQsocket(c), POLLIN, 0};
    if (pfd.fd < 0) return true;
    if (::poll(&pfd, 1, 50) > 0 && PQconsumeInput(c) == 0) return true;
  }
  return false;
}

std::string run(postgres::PgConn& conn, const std::string& query) {
  if (PQsendQuery(conn.raw(), query.c_str()) == 0) return std::string("(send) ") + PQerrorMessage(conn.raw());
  return finish_query(conn.raw(), 15s);
}

std::string value(postgres::PgConn& conn, const std::string& query) {
  auto rows = query_with_deadline(conn, query);
  if (!rows) throw std::runtime_error(query + ": " + rows.error());
  if (rows->empty() || rows->front().empty()) throw std::runtime_error("no row from " + query);
  return rows->front().front().value_or("");
}

// The admin command's CommandComplete tag, or its error.
std::string admin(const SharedCluster& c, const std::string& command) {
  auto conn = connect_or_throw(c.admin_uri());
  PGresult* r = PQexec(conn.raw(), command.c_str());
  std::string out = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK
                        ? std::string(PQcmdStatus(r))
                        : std::string("ERROR: ") + PQresultErrorMessage(r);
  PQclear(r);
  return out;
}

std::string config_value(const SharedCluster& c, const std::string& key) {
  auto t = query_table(c.admin_uri(), "SHOW CONFIG");
  for (size_t i = 0; i < t.rows.size(); ++i) {
    if (t.at(i, "key") == key) return t.at(i, "value");
  }
  throw std::runtime_error("SHOW CONFIG has no " + key + ":\n" + t.dump());
}

class ProxyAdminTest : public ClusterSuite<ProxyAdminTest> {
 public:
  // Two worker threads whatever the default: a cancel request or KILL may land on another worker.
  static std::string cluster_config() { return "proxy:\n  threads: 2\n"; }
  static int cluster_replicas() { return 1; }

 protected:
  std::string proxy() { return cluster().proxy_uri(); }
};

TEST_F(ProxyAdminTest, ShowCommandsListTheirColumnsAndCurrentFigures) {
  // A client in a transaction, named so that we can find it.
  auto probe = connect_or_throw(with_param(proxy(), "application_name=admin_probe"));
  for (int i = 0; i < 5; ++i) ASSERT_EQ(run(probe, "SELECT " + std::to_string(i)), "");
  ASSERT_EQ(run(probe, "BEGIN"), "");
  std::string backend_pid = value(probe, "SELECT pg_backend_pid()::text");
  // Three clients idle between transactions: no server connection, but counted in cl_active.
  std::vector<postgres::PgConn> idle;
  for (int i = 0; i < 3; ++i) {
    idle.push_back(connect_or_throw(proxy()));
    ASSERT_EQ(run(idle.back(), "SELECT 1"), "");
  }

  // psql -c prints each command's header line.
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"POOLS",
       "database|user|cl_active|cl_waiting|cl_active_cancel_req|cl_waiting_cancel_req|sv_active|sv_active_cancel|"
       "sv_being_canceled|sv_idle|sv_used|sv_tested|sv_login|maxwait|maxwait_us|pool_mode"},
      {"STATS",
       "database|user|total_xact_count|total_query_count|total_received|total_sent|avg_wait_us|p99_wait_us|"
       "avg_xact_us|p99_xact_us|total_errors|total_query_time|total_wait_time"},
      {"TOTALS", "name|value"},
      // PgBouncer 1.18's, which its exporters (pgbouncer_exporter, Datadog's) read.
      {"DATABASES",
       "name|host|port|database|force_user|pool_size|min_pool_size|reserve_pool|pool_mode|max_connections|"
       "current_connections|paused|disabled"},
      {"USERS", "name|pool_mode"},
      {"LISTS", "list|items"},
      {"CLIENTS", "pid|user|database|state|addr|application_name|server|connect_seconds|worker"},
      {"SERVERS", "id|user|database|state|backend|backend_pid|connect_seconds|prepared_statements|worker"},
      {"NODES", "name|host|port|role|healthy|lsn|lag_bytes|lag_ms|read_weight|statements|polls"},
      {"ROUTING", "reason|target|statements"},
      {"CONFIG", "key|value"},
      {"HELP", "command"},
      {"VERSION", "version"},
  };
  for (const auto& [what, header] : headers) {
    auto p = psql(cluster().admin_uri(), {"-A", "-c", "SHOW " + what});
    EXPECT_EQ(p.exit_code, 0) << "SHOW " << what << ":\n" << p.output;
    EXPECT_EQ(p.output.substr(0, p.output.find('\n')), header) << "SHOW " << what << ":\n" << p.output;
  }

  Table t;
  EXPECT_TRUE(eventually(
      [&] {
        t = query_table(cluster().admin_uri(), "SHOW CLIENTS");
        for (size_t i = 0; i < t.rows.size(); ++i) {
          if (t.at(i, "application_name") == "admin_probe") {
            return t.at(i, "user") == "postgres" && t.at(i, "database") == "postgres" && t.at(i, "state") == "active" &&
                   !t.at(i, "server").empty() && t.at(i, "addr").rfind("127.0.0.1:", 0) == 0;
          }
        }
        return false;
      },
      3s))
      << "SHOW CLIENTS does not show the probe as an active client:\n" << t.dump();

  EXPECT_TRUE(eventually(
      [&] {
        t = query_table(cluster().admin_uri(), "SHOW SERVERS");
        for (size_t i = 0; i < t.rows.size(); ++i) {
          if (t.at(i, "backend_pid") == backend_pid) {
            return t.at(i, "user") == "postgres" && t.at(i, "database") == "postgres" && t.at(i, "state") == "active" &&
                   t.at(i, "backend").find("127.0.0.1:" + std::to_string(cluster().node_port(1))) != std::string::npos;
          }
        }
        return false;
      },
      3s))
      << "SHOW SERVERS does not show backend " << backend_pid << " as active on node1:\n" << t.dump();

  EXPECT_TRUE(eventually(
      [&] {
        t = query_table(cluster().admin_uri(), "SHOW POOLS");
        for (size_t i = 0; i < t.rows.size(); ++i) {
          if (t.at(i, "database") == "postgres" && t.at(i, "user") == "postgres") {
            return std::stoi(t.at(i, "cl_active")) >= 4 && std::stoi(t.at(i, "sv_active")) >= 1 &&
                   t.at(i, "maxwait") == "0" && t.at(i, "pool_mode") == "transaction";
          }
        }
        return false;
      },
      3s))
      << t.dump();

  EXPECT_TRUE(eventually(
      [&] {
        t = query_table(cluster().admin_uri(), "SHOW STATS");
        for (size_t i = 0; i < t.rows.size(); ++i) {
          if (t.at(i, "database") == "postgres" && t.at(i, "user") == "postgres") {
            return std::stoll(t.at(i, "total_xact_count")) >= 5 && std::stoll(t.at(i, "total_query_count")) >= 6 &&
                   std::stoll(t.at(i, "total_received")) > 0 && std::stoll(t.at(i, "total_sent")) > 0;
          }
        }
        return false;
      },
      3s))
      << t.dump();

  // PgBouncer's SHOW DATABASES, USERS, LISTS and TOTALS, read by name/value as exporters do.
  auto row_of = [](const Table& table, const std::string& column, const std::string& value) -> int {
    for (size_t i = 0; i < table.rows.size(); ++i)
      if (table.at(i, column) == value) return static_cast<int>(i);
    return -1;
  };
  auto item = [&](const std::string& command, const std::string& name) -> int64_t {
    Table items = query_table(cluster().admin_uri(), command);
    int i = row_of(items, items.columns.front(), name);
    return i < 0 ? -1 : std::stoll(items.at(static_cast<size_t>(i), items.columns.back()));
  };
  EXPECT_TRUE(eventually(
      [&] {
        t = query_table(cluster().admin_uri(), "SHOW DATABASES");
        int i = row_of(t, "name", "postgres");
        if (i < 0) return false;
        auto r = static_cast<size_t>(i);
        return t.at(r, "host") == "127.0.0.1" && t.at(r, "port") == std::to_string(cluster().node_port(1)) &&
               t.at(r, "database") == "postgres" && t.at(r, "pool_size") == "20" && t.at(r, "reserve_pool") == "5" &&
               std::stoi(t.at(r, "current_connections")) >= 1 && t.at(r, "paused") == "0" && t.at(r, "disabled") == "0";
      },
      3s))
      << t.dump();
  ASSERT_EQ(admin(cluster(), "PAUSE postgres"), "PAUSE");
  t = query_table(cluster().admin_uri(), "SHOW DATABASES");
  EXPECT_EQ(t.at(static_cast<size_t>(std::max(0, row_of(t, "name", "postgres"))), "paused"), "1") << t.dump();
  ASSERT_EQ(admin(cluster(), "RESUME postgres"), "RESUME");
  t = query_table(cluster().admin_uri(), "SHOW DATABASES");
  EXPECT_EQ(t.at(static_cast<size_t>(std::max(0, row_of(t, "name", "postgres"))), "paused"), "0") << t.dump();
  EXPECT_GE(row_of(query_table(cluster().admin_uri(), "SHOW USERS"), "name", "postgres"), 0);
  EXPECT_TRUE(eventually(
      [&] {
        return item("SHOW LISTS", "used_clients") >= 4 && item("SHOW LISTS", "databases") >= 1 &&
               item("SHOW LISTS", "pools") >= 1 && item("SHOW LISTS", "used_servers") >= 1 &&
               item("SHOW TOTALS", "total_xact_count") >= 5 && item("SHOW TOTALS", "total_query_time") > 0;
      },
      3s))
      << query_table(cluster().admin_uri(), "SHOW LISTS").dump() << query_table(cluster().admin_uri(), "SHOW TOTALS").dump();

  t = query_table(cluster().admin_uri(), "SHOW NODES");
  ASSERT_EQ(t.rows.size(), 2u) << t.dump();
  EXPECT_EQ(t.at(0, "name"), "node1");
  EXPECT_EQ(t.at(0, "role"), "primary");
  EXPECT_EQ(t.at(0, "host"), "127.0.0.1");
  EXPECT_EQ(t.at(0, "port"), std::to_string(cluster().node_port(1)));
  EXPECT_EQ(t.at(1, "name"), "node2");
  EXPECT_EQ(t.at(1, "role"), "replica");
  EXPECT_EQ(t.at(1, "port"), std::to_string(cluster().node_port(2)));

  EXPECT_EQ(config_value(cluster(), "default_pool_size"), "20");
  EXPECT_EQ(config_value(cluster(), "pool_mode"), "transaction");
  EXPECT_EQ(config_value(cluster(), "port"), std::to_string(cluster().proxy_port()));
  EXPECT_EQ(config_value(cluster(), "max_client_conn"), "10000");

  EXPECT_EQ(query_table(cluster().admin_uri(), "SHOW VERSION").at(0, "version"), std::string("pgfleet ") + PGFLEET_VERSION);
  auto help = query_table(cluster().admin_uri(), "SHOW HELP");
  std::string commands;
  for (const auto& r : help.rows) commands += r[0].value_or("") + "\n";
  for (const std::string word : {"SHOW", "PAUSE", "RESUME", "RELOAD", "KILL", "SHUTDOWN"}) {
    EXPECT_NE(commands.find(word), std::string::npos) << commands;
  }
  // Mistakes get an error, and the console stays usable.
  EXPECT_EQ(admin(cluster(), "SHOW NONSENSE").rfind("ERROR: ", 0), 0u);
  EXPECT_EQ(admin(cluster(), "DROP TABLE pgbench_accounts").rfind("ERROR: ", 0), 0u);
  EXPECT_EQ(run(probe, "COMMIT"), "");
}

TEST_F(ProxyAdminTest, PauseHoldsNewQueriesUntilResume) {
  auto client = connect_or_throw(proxy());
  ASSERT_EQ(run(client, "SELECT 1"), "");
  auto in_tx = connect_or_throw(proxy());
  ASSERT_EQ(run(in_tx, "BEGIN"), "");
  ASSERT_EQ(run(in_tx, "SELECT 1"), "");

  // As in PgBouncer, PAUSE returns once the running transaction has finished, which it may.
  auto console = connect_or_throw(cluster().admin_uri());
  ASSERT_EQ(PQsendQuery(console.raw(), "PAUSE"), 1);
  EXPECT_EQ(finish_query(console.raw(), 500ms), "(busy)") << "PAUSE returned while a transaction was running";
  EXPECT_EQ(run(in_tx, "SELECT 2"), "");
  EXPECT_EQ(run(in_tx, "COMMIT"), "");
  EXPECT_EQ(finish_query(console.raw(), 5s), "") << "PAUSE did not return once the transaction had ended";
  // A new transaction waits, from a connected client and from a new one.
  ASSERT_EQ(PQsendQuery(client.raw(), "SELECT 'resumed'"), 1);
  auto late = connect_or_throw(proxy());
  ASSERT_EQ(PQsendQuery(late.raw(), "SELECT 'late resumed'"), 1);
  EXPECT_EQ(finish_query(client.raw(), 1s), "(busy)") << "a query ran while the proxy was paused";
  EXPECT_EQ(finish_query(late.raw(), 100ms), "(busy)") << "a query ran while the proxy was paused";

  auto resumed_at = Clock::now();
  ASSERT_EQ(admin(cluster(), "RESUME"), "RESUME");
  EXPECT_EQ(finish_query(client.raw(), 5s), "");
  EXPECT_EQ(finish_query(late.raw(), 5s), "");
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - resumed_at).count(), 2.0);

  // PAUSE db holds that database only.
  sql(cluster().primary_uri(), "CREATE DATABASE otherdb");
  ASSERT_EQ(admin(cluster(), "PAUSE postgres"), "PAUSE");
  EXPECT_EQ(sql_value(cluster().proxy_uri("", "", "otherdb"), "SELECT 'other runs'"), "other runs");
  ASSERT_EQ(PQsendQuery(client.raw(), "SELECT 'resumed again'"), 1);
  EXPECT_EQ(finish_query(client.raw(), 1s), "(busy)") << "PAUSE postgres did not hold a query on postgres";
  ASSERT_EQ(admin(cluster(), "RESUME postgres"), "RESUME");
  EXPECT_EQ(finish_query(client.raw(), 5s), "");
}

TEST_F(ProxyAdminTest, ReloadAndSighupApplyAChangedConfiguration) {
  const std::string path = cluster().config_path();
  const std::string original = read_text(path);
  ASSERT_NE(original.find("  default_pool_size: 20\n"), std::string::npos) << original;
  auto with_pool_size = [&](const std::string& v) {
    std::string text = original;
    text.replace(text.find("  default_pool_size: 20\n"), std::string("  default_pool_size: 20\n").size(),
                 "  default_pool_size: " + v + "\n");
    return text;
  };
  auto client = connect_or_throw(proxy());
  ASSERT_EQ(run(client, "SELECT 1"), "");

  write_text(path, with_pool_size("7"));
  EXPECT_EQ(admin(cluster(), "RELOAD"), "RELOAD");
  EXPECT_EQ(config_value(cluster(), "default_pool_size"), "7");

  write_text(path, with_pool_size("9"));
  int64_t pid = cluster().proxy_pid();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(static_cast<pid_t>(pid), SIGHUP), 0);
  EXPECT_TRUE(eventually([&] { return config_value(cluster(), "default_pool_size") == "9"; }, 5s))
      << "SIGHUP did not apply default_pool_size 9: " << config_value(cluster(), "default_pool_size");

  // Settings only a restart applies (threads, ...): the rest is applied, they keep their
  // values in force (SHOW CONFIG says so), and the reply and the log name them.
  {
    std::string text = with_pool_size("11");
    ASSERT_NE(text.find("  threads: 2\n"), std::string::npos) << text;
    text.replace(text.find("  threads: 2\n"), std::string("  threads: 2\n").size(), "  threads: 3\n");
    write_text(path, text);
    auto conn = connect_or_throw(cluster().admin_uri());
    std::string notices;
    PQsetNoticeProcessor(
        conn.raw(), [](void* out, const char* message) { *static_cast<std::string*>(out) += message; }, &notices);
    PGresult* r = PQexec(conn.raw(), "RELOAD");
    EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
    PQclear(r);
    EXPECT_NE(notices.find("applied only by a restart"), std::string::npos) << notices;
    EXPECT_NE(notices.find("proxy.threads"), std::string::npos) << notices;
    EXPECT_EQ(config_value(cluster(), "default_pool_size"), "11");
    EXPECT_EQ(config_value(cluster(), "threads"), "2") << "SHOW CONFIG must show the value in force";
    EXPECT_NE(read_text(cluster().proxy_log()).find("RELOAD: changed, but applied only by a restart"), std::string::npos);
  }

  // An invalid file is refused with the reason, and the settings in force stay.
  write_text(path, with_pool_size("0"));
  std::string refused = admin(cluster(), "RELOAD");
  EXPECT_EQ(refused.rfind("ERROR: ", 0), 0u) << refused;
  EXPECT_NE(refused.find("default_pool_size"), std::string::npos) << refused;
  EXPECT_EQ(config_value(cluster(), "default_pool_size"), "11");

  // Clients were not dropped.
  EXPECT_EQ(run(client, "SELECT 2"), "");
  write_text(path, original);
  EXPECT_EQ(admin(cluster(), "RELOAD"), "RELOAD");
  EXPECT_EQ(config_value(cluster(), "default_pool_size"), "20");
  EXPECT_EQ(cluster().proxy_pid(), pid) << "the proxy restarted";
}

// PgBouncer's DISABLE/ENABLE (no new clients for a database, the connected ones stay) and
// RECONNECT (new server connections, e.g. after changing something the servers read only at
// connection time), which its users script maintenance with.
TEST_F(ProxyAdminTest, DisableRefusesNewClientsOfADatabaseAndReconnectReplacesItsServers) {
  sql(cluster().primary_uri(), "CREATE DATABASE maintdb");
  const std::string maint = cluster().proxy_uri("", "", "maintdb");
  auto connected = connect_or_throw(maint);
  ASSERT_EQ(run(connected, "SELECT 1"), "");

  ASSERT_EQ(admin(cluster(), "DISABLE maintdb"), "DISABLE");
  std::string refused = connect_error(maint);
  EXPECT_NE(refused.find("database \"maintdb\" is disabled"), std::string::npos) << refused;
  EXPECT_NE(refused.find("ENABLE maintdb"), std::string::npos) << refused;
  EXPECT_EQ(run(connected, "SELECT 'still here'"), "");       // the connected client stays
  EXPECT_EQ(sql_value(proxy(), "SELECT 'other'"), "other");  // other databases are untouched
  Table t = query_table(cluster().admin_uri(), "SHOW DATABASES");
  bool shown = false;
  for (size_t i = 0; i < t.rows.size(); ++i)
    if (t.at(i, "name") == "maintdb") shown = t.at(i, "disabled") == "1" && t.at(i, "paused") == "0";
  EXPECT_TRUE(shown) << t.dump();
  ASSERT_EQ(admin(cluster(), "ENABLE maintdb"), "ENABLE");
  EXPECT_EQ(connect_error(maint), "");

  // RECONNECT: none of the server connections it had serves again; the clients do not notice.
  auto backends = [&] {
    std::set<std::string> pids;
    Table servers = query_table(cluster().admin_uri(), "SHOW SERVERS");
    for (size_t i = 0; i < servers.rows.size(); ++i)
      if (servers.at(i, "database") == "maintdb") pids.insert(servers.at(i, "backend_pid"));
    return pids;
  };
  std::set<std::string> before;
  ASSERT_TRUE(eventually([&] { return !(before = backends()).empty(); }, 3s));
  ASSERT_EQ(admin(cluster(), "RECONNECT maintdb"), "RECONNECT");
  std::string after_pid;
  EXPECT_TRUE(eventually(
      [&] {
        after_pid = value(connected, "SELECT pg_backend_pid()::text");
        return !after_pid.empty() && !before.count(after_pid);
      },
      5s))
      << "still served by backend " << after_pid;
  std::string list;
  for (const auto& pid : before) list += (list.empty() ? "" : ",") + pid;
  EXPECT_TRUE(eventually(
      [&] {
        return sql_value(cluster().primary_uri(),
                         "SELECT count(*) FROM pg_stat_activity WHERE pid IN (" + list + ")") == "0";
      },
      5s))
      << "the old server connections " << list << " are still open";
  EXPECT_EQ(run(connected, "SELECT 'after reconnect'"), "");
}

TEST_F(ProxyAdminTest, KillDisconnectsTheClientsOfADatabase) {
  sql(cluster().primary_uri(), "CREATE DATABASE keepdb");
  auto idle = connect_or_throw(proxy());
  ASSERT_EQ(run(idle, "SELECT 1"), "");
  auto in_tx = connect_or_throw(proxy());
  ASSERT_EQ(run(in_tx, "BEGIN"), "");
  auto other_db = connect_or_throw(cluster().proxy_uri("", "", "keepdb"));
  ASSERT_EQ(run(other_db, "SELECT 1"), "");

  ASSERT_EQ(admin(cluster(), "KILL postgres"), "KILL");
  EXPECT_TRUE(eventually(
      [&] {
        return sql_value(cluster().primary_uri(),
                         "SELECT count(*) FROM pg_stat_activity WHERE datname = 'postgres' AND state = 'idle in "
                         "transaction'") == "0";
      },
      3s))
      << "the server connection in a transaction was not closed";
  std::string tx_error = run(in_tx, "SELECT 'after kill'");
  EXPECT_NE(tx_error, "") << "the client in a transaction survived KILL postgres";
  std::string idle_error = run(idle, "SELECT 'after kill'");
  EXPECT_NE(idle_error, "") << "an idle client of the killed database survived KILL postgres";
  // Another database's client is untouched, and new clients connect again.
  EXPECT_EQ(run(other_db, "SELECT 'other db'"), "");
  EXPECT_EQ(sql_value(proxy(), "SELECT 'new client'"), "new client");
}

TEST_F(ProxyAdminTest, CancelRequestStopsARunningQuery) {
  auto client = connect_or_throw(proxy());
  ASSERT_EQ(run(client, "SELECT 1"), "");
  ASSERT_EQ(PQsendQuery(client.raw(), "SELECT pg_sleep(30) /* to cancel */"), 1);
  // A read: the rw-split port may have sent it to the primary or to the replica.
  auto running_anywhere = [&] {
    int running = 0;
    for (int k = 1; k <= 2; ++k) {
      running += std::stoi(sql_value(cluster().node_uri(k),
                                     "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                                     "'SELECT pg_sleep(30) /* to cancel%' AND state = 'active'"));
    }
    return running;
  };
  ASSERT_TRUE(eventually([&] { return running_anywhere() == 1; }, 5s));
  auto started = Clock::now();
  PGcancel* cancel = PQgetCancel(client.raw());
  ASSERT_NE(cancel, nullptr);
  char err[256] = "";
  EXPECT_EQ(PQcancel(cancel, err, sizeof err), 1) << err;
  PQfreeCancel(cancel);
  std::string result = finish_query(client.raw(), 5s);
  double took = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_EQ(result.substr(0, 6), "57014:") << result;
  EXPECT_NE(result.find("canceling statement due to user request"), std::string::npos) << result;
  EXPECT_LT(took, 3.0);
  // The connection goes on.
  EXPECT_EQ(value(client, "SELECT 'after cancel'"), "after cancel");

  // statement_timeout set by the client cancels the same way.
  ASSERT_EQ(run(client, "SET statement_timeout = '300ms'"), "");
  started = Clock::now();
  std::string timed_out = run(client, "SELECT pg_sleep(10)");
  EXPECT_EQ(timed_out.substr(0, 6), "57014:") << timed_out;
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - started).count(), 3.0);
  EXPECT_EQ(value(client, "SELECT 'after timeout'"), "after timeout");

  // A cancel request with a wrong key does nothing.
  ASSERT_EQ(run(client, "RESET statement_timeout"), "");
  ASSERT_EQ(PQsendQuery(client.raw(), "SELECT pg_sleep(1.2), 'not cancelled'"), 1);
  auto other = connect_or_throw(proxy());
  PGcancel* wrong = PQgetCancel(other.raw());
  EXPECT_EQ(PQcancel(wrong, err, sizeof err), 1) << err;
  PQfreeCancel(wrong);
  EXPECT_EQ(finish_query(client.raw(), 5s), "") << "another client's cancel key cancelled this query";
}

TEST_F(ProxyAdminTest, ServerKilledMidQueryFailsThatClientOnly) {
  // Through the primary-only port: on the rw-split port this read would run on the replica (and
  // be retried elsewhere when its replica connection dies before answering).
  std::string primary_port = proxy();
  std::string rw_port = ":" + std::to_string(cluster().proxy_port()) + "/";
  primary_port.replace(primary_port.find(rw_port), rw_port.size(), ":" + std::to_string(cluster().proxy_port() + 1) + "/");
  auto victim = connect_or_throw(with_param(primary_port, "application_name=victim"));
  ASSERT_EQ(run(victim, "SELECT 1"), "");
  ASSERT_EQ(PQsendQuery(victim.raw(), "SELECT pg_sleep(30)"), 1);
  std::string pid;
  ASSERT_TRUE(eventually(
      [&] {
        pid = sql_value(cluster().primary_uri(),
                        "SELECT coalesce(max(pid)::text, '') FROM pg_stat_activity WHERE application_name = 'victim' "
                        "AND state = 'active' AND query = 'SELECT pg_sleep(30)'");
        return !pid.empty();
      },
      5s))
      << "the victim's query is not running on the primary";
  auto bystander = connect_or_throw(proxy());
  ASSERT_EQ(run(bystander, "SELECT 1"), "");
  auto started = Clock::now();
  EXPECT_EQ(sql_value(cluster().primary_uri(), "SELECT pg_terminate_backend(" + pid + ")"), "t");
  std::string result = finish_query(victim.raw(), 5s);
  EXPECT_NE(result, "(busy)") << "the client did not learn that its server connection died";
  EXPECT_NE(result, "") << "the killed query succeeded?";
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - started).count(), 3.0);
  // The pool recovers: the bystander and new clients go on.
  EXPECT_EQ(run(bystander, "SELECT 'bystander'"), "");
  EXPECT_EQ(sql_value(proxy(), "SELECT 'recovered'"), "recovered");
  EXPECT_TRUE(eventually(
      [&] {
        auto t = query_table(cluster().admin_uri(), "SHOW SERVERS");
        for (size_t i = 0; i < t.rows.size(); ++i) {
          if (t.at(i, "backend_pid") == pid) return false;
        }
        return true;
      },
      3s))
      << "SHOW SERVERS still lists the terminated backend";
}

// ---- stopping and replacing the proxy ---------------------------------------------------------------------

class ProxyShutdownTest : public ClusterSuite<ProxyShutdownTest> {
 public:
  static std::string cluster_config() { return "proxy:\n  shutdown_timeout: 3\n"; }

 protected:
  // The proxy runs (`pgfleet up` restarts it after an earlier test stopped it); its pid.
  int64_t running_proxy() {
    int64_t pid = cluster().proxy_pid();
    if (pid != 0 && process_alive(pid)) return pid;
    auto r = cluster().pgfleet({"up"}, 120s);
    if (!r.ok()) throw std::runtime_error("pgfleet up (to restart the proxy) failed:\n" + r.output);
    if (!eventually([&] { return try_sql(cluster().proxy_uri(), "SELECT 1").ok(); }, 10s)) {
      throw std::runtime_error("the restarted proxy does not answer");
    }
    return cluster().proxy_pid();
  }
  // How many times a proxy process logged its clean end (a crash logs nothing).
  int clean_stops() {
    std::string log = read_text(cluster().proxy_log());
    int n = 0;
    for (size_t at = log.find("proxy stopped"); at != std::string::npos; at = log.find("proxy stopped", at + 1)) ++n;
    return n;
  }
  // The rw-split port through the proxy's Unix socket, from `pgfleet url --proxy-socket`.
  std::string socket_uri() {
    auto r = cluster().pgfleet({"url", "--proxy-socket"}, 30s);
    if (!r.ok()) throw std::runtime_error("pgfleet url --proxy-socket failed:\n" + r.output);
    std::string uri = r.output.substr(0, r.output.find('\n'));
    return uri;
  }
};

TEST_F(ProxyShutdownTest, AdminShutdownLetsTransactionsFinishAndRefusesNewClients) {
  int64_t pid = running_proxy();
  ASSERT_GT(pid, 0);
  sql(cluster().proxy_uri(), "CREATE TABLE IF NOT EXISTS finished (v text)");
  auto idle = connect_or_throw(cluster().proxy_uri());
  ASSERT_EQ(run(idle, "SELECT 1"), "");
  auto in_tx = connect_or_throw(cluster().proxy_uri());
  ASSERT_EQ(run(in_tx, "BEGIN"), "");
  ASSERT_EQ(run(in_tx, "INSERT INTO finished VALUES ('committed during shutdown')"), "");

  auto started = Clock::now();
  EXPECT_EQ(admin(cluster(), "SHUTDOWN"), "SHUTDOWN");
  EXPECT_TRUE(eventually([&] { return !connect_error(cluster().proxy_uri()).empty(); }, 2s))
      << "new clients are still accepted after SHUTDOWN";
  // The transaction in progress may finish.
  EXPECT_EQ(run(in_tx, "INSERT INTO finished VALUES ('second row')"), "");
  EXPECT_EQ(run(in_tx, "COMMIT"), "");
  EXPECT_TRUE(closed_by_peer(idle.raw(), 2s)) << "a client between transactions was not disconnected";
  EXPECT_TRUE(eventually([&] { return !process_alive(pid); }, 6s)) << "the proxy did not exit";
  double took = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_LT(took, 3.0 + 2.0) << "shutdown_timeout is 3 s";
  EXPECT_EQ(sql_value(cluster().primary_uri(), "SELECT count(*) FROM finished"), "2");
  std::string refused = connect_error(cluster().proxy_uri());
  EXPECT_NE(refused.find("refused"), std::string::npos) << refused;
}

TEST_F(ProxyShutdownTest, SigtermWaitsAtMostShutdownTimeoutForOpenTransactions) {
  int64_t pid = running_proxy();
  ASSERT_GT(pid, 0);
  int stops = clean_stops();
  auto stuck = connect_or_throw(cluster().proxy_uri());
  ASSERT_EQ(run(stuck, "BEGIN"), "");
  ASSERT_EQ(run(stuck, "SELECT 1"), "");

  auto started = Clock::now();
  ASSERT_EQ(::kill(static_cast<pid_t>(pid), SIGTERM), 0);
  EXPECT_TRUE(eventually([&] { return !connect_error(cluster().proxy_uri()).empty(); }, 2s))
      << "new clients are still accepted after SIGTERM";
  EXPECT_TRUE(eventually([&] { return !process_alive(pid); }, 8s)) << "the proxy did not exit";
  double took = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_GE(took, 2.5) << "the proxy did not wait for the open transaction";
  EXPECT_LT(took, 3.0 + 2.0) << "shutdown_timeout is 3 s";
  std::string error = run(stuck, "SELECT 'too late'");
  EXPECT_NE(error, "");
  EXPECT_TRUE(error.find("shutting down") != std::string::npos || error.find("closed") != std::string::npos) << error;
  EXPECT_TRUE(eventually(
      [&] {
        return sql_value(cluster().primary_uri(),
                         "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'") == "0";
      },
      3s))
      << "the server side of the stuck transaction is still open";
  EXPECT_EQ(clean_stops(), stops + 1) << "the proxy did not end cleanly (crashed?):\n"
                                      << tail_lines(read_text(cluster().proxy_log()), 20);
}

TEST_F(ProxyShutdownTest, SigtermWithManyIdleServerConnectionsEndsCleanly) {
  int64_t pid = running_proxy();
  ASSERT_GT(pid, 0);
  int stops = clean_stops();
  {
    // Twelve transactions at once leave twelve idle server connections in the pool.
    std::vector<postgres::PgConn> at_once;
    for (int i = 0; i < 12; ++i) {
      at_once.push_back(connect_or_throw(cluster().proxy_uri()));
      ASSERT_EQ(run(at_once.back(), "BEGIN"), "");
      ASSERT_EQ(run(at_once.back(), "SELECT 1"), "");
    }
    for (auto& c : at_once) ASSERT_EQ(run(c, "COMMIT"), "");
  }
  ASSERT_EQ(::kill(static_cast<pid_t>(pid), SIGTERM), 0);
  EXPECT_TRUE(eventually([&] { return !process_alive(pid); }, 8s)) << "the proxy did not exit";
  // It closed every server connection on its way out and said so: a crash logs nothing.
  EXPECT_EQ(clean_stops(), stops + 1) << "the proxy did not end cleanly (crashed?):\n"
                                      << tail_lines(read_text(cluster().proxy_log()), 20);
  EXPECT_TRUE(eventually(
      [&] {
        return sql_value(cluster().primary_uri(),
                         "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                         "AND pid <> pg_backend_pid() AND application_name = ''") == "0";
      },
      3s))
      << "server connections of the stopped proxy are still open";
}

TEST_F(ProxyShutdownTest, RestartHandsTheListenersToANewProcessWithoutRefusingAConnection) {
  int64_t old_pid = running_proxy();
  ASSERT_GT(old_pid, 0);
  int stops = clean_stops();
  const std::string local = socket_uri();
  sql(cluster().proxy_uri(), "CREATE TABLE IF NOT EXISTS handed_over (v text)");
  auto idle = connect_or_throw(cluster().proxy_uri());
  ASSERT_EQ(run(idle, "SELECT 1"), "");
  auto in_tx = connect_or_throw(cluster().proxy_uri());
  ASSERT_EQ(run(in_tx, "BEGIN"), "");
  ASSERT_EQ(run(in_tx, "INSERT INTO handed_over VALUES ('begun before the restart')"), "");

  // New clients keep connecting, one after the other, through the whole restart: over TCP and
  // through the Unix socket in turn.
  std::atomic<bool> stop{false};
  std::atomic<int> connected{0};
  std::vector<std::string> failures;
  std::thread connector([&] {
    for (int i = 0; !stop; ++i) {
      auto r = try_sql(i % 2 == 0 ? cluster().proxy_uri() : local, "SELECT 1");
      if (r.ok()) {
        ++connected;
      } else {
        failures.push_back(r.error());
      }
      std::this_thread::sleep_for(10ms);
    }
  });
  ASSERT_TRUE(eventually([&] { return connected >= 5; }, 10s));
  auto restart = std::async(std::launch::async, [&] { return cluster().pgfleet({"restart", "proxy"}, 60s); });

  // The old process drains: the open transaction may finish (shutdown_timeout is 3 s) ...
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(run(in_tx, "INSERT INTO handed_over VALUES ('committed while the old proxy drained')"), "");
  EXPECT_EQ(run(in_tx, "COMMIT"), "");
  // ... and its clients are let go between transactions, to reconnect to the new one.
  EXPECT_TRUE(closed_by_peer(idle.raw(), 5s)) << "a client of the old proxy was not let go";
  auto r = restart.get();
  int during = connected;
  std::this_thread::sleep_for(300ms);
  stop = true;
  connector.join();
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_TRUE(failures.empty()) << failures.size() << " connection(s) failed during the restart, the first: "
                                << failures.front();
  EXPECT_GT(connected.load(), during) << "no client connected after the restart";
  int64_t new_pid = cluster().proxy_pid();
  EXPECT_NE(new_pid, old_pid);
  EXPECT_TRUE(process_alive(new_pid));
  EXPECT_FALSE(process_alive(old_pid)) << "the old proxy still runs";
  EXPECT_EQ(sql_value(cluster().primary_uri(), "SELECT count(*) FROM handed_over"), "2");
  EXPECT_EQ(clean_stops(), stops + 1) << "the old proxy did not end cleanly";
  // The old process left the socket files to the new one.
  auto after = try_sql(local, "SELECT 'through the socket'");
  EXPECT_TRUE(after.ok()) << after.error();
  // The new process ends cleanly too (it once crashed closing its server connections).
  ASSERT_EQ(::kill(static_cast<pid_t>(new_pid), SIGTERM), 0);
  EXPECT_TRUE(eventually([&] { return !process_alive(new_pid); }, 8s)) << "the new proxy did not exit";
  EXPECT_EQ(clean_stops(), stops + 2) << "the new proxy did not end cleanly (crashed?):\n"
                                      << tail_lines(read_text(cluster().proxy_log()), 20);
}

TEST_F(ProxyShutdownTest, ClientsOnTheHostConnectThroughTheUnixSocket) {
  int64_t pid = running_proxy();
  ASSERT_GT(pid, 0);
  const std::string local = socket_uri();
  const std::string dir = cluster().dir() + "/run";
  EXPECT_NE(local.find("host=" + dir), std::string::npos) << local;
  EXPECT_EQ(str(cluster().status_json()["proxy"], "socket_dir"), dir);

  // SCRAM as over TCP; a wrong password fails the same way.
  auto conn = connect_or_throw(local);
  EXPECT_EQ(sql_value(local, "SELECT current_user"), "postgres");
  std::string wrong = local;
  wrong.replace(wrong.find(cluster().superuser_password()), cluster().superuser_password().size(), "not-the-password");
  EXPECT_NE(connect_error(wrong).find("password authentication failed"), std::string::npos) << connect_error(wrong);
  // The primary-only port has its own socket, named as PostgreSQL names them.
  int primary_port = static_cast<int>(num(cluster().status_json()["proxy"], "port")) + 1;
  std::string primary = local.substr(0, local.find("port=")) + "port=" + std::to_string(primary_port);
  EXPECT_EQ(sql_value(primary, "SELECT pg_is_in_recovery()"), "f");
  EXPECT_TRUE(std::filesystem::exists(dir + "/.s.PGSQL." + std::to_string(primary_port)));
  // The admin console lists the client as PostgreSQL would: [local] (its lists are refreshed
  // every second).
  EXPECT_TRUE(eventually(
      [&] {
        for (const auto& row : sql(cluster().admin_uri(), "SHOW CLIENTS")) {
          for (const auto& cell : row) {
            if (cell == std::optional<std::string>("[local]")) return true;
          }
        }
        return false;
      },
      3s))
      << "no client with address [local] in SHOW CLIENTS";

  // A stopped proxy removes its socket files; a file left by a crash does not stop the next one.
  std::string rw_socket = dir + "/.s.PGSQL." + std::to_string(num(cluster().status_json()["proxy"], "port"));
  ASSERT_EQ(::kill(static_cast<pid_t>(pid), SIGTERM), 0);
  ASSERT_TRUE(eventually([&] { return !process_alive(pid); }, 8s));
  EXPECT_FALSE(std::filesystem::exists(rw_socket)) << "the stopped proxy left " << rw_socket;
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", rw_socket.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);  // bound, never listened on: what a killed process leaves behind
  }
  running_proxy();
  auto back = try_sql(local, "SELECT 'again'");
  EXPECT_TRUE(back.ok()) << back.error();
}

// RELOAD reads the client-side TLS files again (a renewed certificate at the same or a new path)
// and applies tls_mode; a pair that does not load is refused and the one in force stays.
class ProxyTlsReloadTest : public ClusterSuite<ProxyTlsReloadTest> {
 public:
  static std::string cluster_config() { return ""; }
  static int cluster_replicas() { return 0; }
};

TEST_F(ProxyTlsReloadTest, ARenewedCertificateAndTlsModeApplyOnReload) {
  const std::string dir = cluster().dir();
  // The subject of the certificate the proxy presents to a new connection.
  auto presented = [&] {
    auto r = run_program({"sh", "-c", "openssl s_client -starttls postgres -connect 127.0.0.1:" +
                                          std::to_string(cluster().proxy_port()) + " </dev/null 2>&1"},
                         30s);
    auto at = r.output.find("subject=");
    return at == std::string::npos ? r.output : r.output.substr(at, r.output.find('\n', at) - at);
  };
  const std::string before = presented();
  ASSERT_EQ(before.rfind("subject=", 0), 0u) << before;
  auto made = run_program({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                           "-keyout", dir + "/renewed.key", "-out", dir + "/renewed.crt", "-days", "1", "-subj",
                           "/CN=renewed", "-addext", "subjectAltName=IP:127.0.0.1"},
                          30s);
  ASSERT_EQ(made.exit_code, 0) << made.output;
  for (const char* f : {"/renewed.key", "/renewed.crt"}) ::chmod((dir + f).c_str(), 0644);  // the proxy's OS user
  const std::string original = read_text(cluster().config_path());
  // pgfleet.yaml with proxy settings changed (each is already there, with its default).
  auto with_proxy = [&](const std::vector<std::pair<std::string, std::string>>& settings) {
    std::string text = original;
    const size_t section = text.find("\nproxy:\n");
    EXPECT_NE(section, std::string::npos) << text;
    for (const auto& [key, value] : settings) {
      const size_t at = text.find("\n  " + key + ":", section);
      EXPECT_NE(at, std::string::npos) << key << " in\n" << text;
      if (at == std::string::npos) continue;
      text.replace(at + 1, text.find('\n', at + 1) - at - 1, "  " + key + ": " + value);
    }
    return text;
  };
  write_text(cluster().config_path(), with_proxy({{"tls_cert", dir + "/renewed.crt"}, {"tls_key", dir + "/renewed.key"}}));
  EXPECT_EQ(admin(cluster(), "RELOAD"), "RELOAD");
  EXPECT_EQ(presented(), "subject=CN = renewed");

  // tls_mode: require refuses a client without TLS from now on.
  write_text(cluster().config_path(), with_proxy({{"tls_cert", dir + "/renewed.crt"},
                                                  {"tls_key", dir + "/renewed.key"},
                                                  {"tls_mode", "require"}}));
  EXPECT_EQ(admin(cluster(), "RELOAD"), "RELOAD");
  EXPECT_FALSE(try_sql(with_param(cluster().proxy_uri(), "sslmode=disable"), "SELECT 1").ok());
  EXPECT_TRUE(try_sql(with_param(cluster().proxy_uri(), "sslmode=require"), "SELECT 1").ok());

  // A key that does not load: refused, and the renewed pair stays in force.
  write_text(dir + "/broken.key", "not a key\n");
  ::chmod((dir + "/broken.key").c_str(), 0644);
  write_text(cluster().config_path(), with_proxy({{"tls_cert", dir + "/renewed.crt"}, {"tls_key", dir + "/broken.key"}}));
  const std::string refused = admin(cluster(), "RELOAD");
  EXPECT_EQ(refused.rfind("ERROR: ", 0), 0u) << refused;
  EXPECT_EQ(presented(), "subject=CN = renewed");
  write_text(cluster().config_path(), original);
  EXPECT_EQ(admin(cluster(), "RELOAD"), "RELOAD");
  EXPECT_EQ(presented(), before);
}

}  // namespace
}  // namespace pgfleet::itest
