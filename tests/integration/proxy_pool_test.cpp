// Pooling as a user sees it: pgbench in every pool mode, many clients on a small pool, session
// state and prepared statements that follow their client across shared server connections,
// query_wait_timeout and max_client_conn.
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

using Clock = std::chrono::steady_clock;

struct PgbenchRun {
  CmdResult result;
  double tps = 0;
  int64_t processed = -1;
  int64_t failed = -1;
  int clients = -1;
};

PgbenchRun pgbench(const std::string& uri, const std::vector<std::string>& args, std::chrono::seconds timeout = 90s) {
  std::vector<std::string> argv{pg_tool("pgbench")};
  argv.insert(argv.end(), args.begin(), args.end());
  // No VACUUM before the run: the roles other than postgres do not own the tables.
  if (std::find(args.begin(), args.end(), "-i") == args.end()) argv.push_back("-n");
  argv.push_back(uri);
  PgbenchRun run;
  run.result = run_program(argv, timeout, {{"PGCONNECT_TIMEOUT", "10"}});
  std::smatch m;
  const std::string& out = run.result.output;
  if (std::regex_search(out, m, std::regex(R"(tps = ([0-9.]+) \(without initial connection time\))"))) {
    run.tps = std::stod(m[1]);
  }
  if (std::regex_search(out, m, std::regex(R"(number of transactions actually processed: (\d+))"))) {
    run.processed = std::stoll(m[1]);
  }
  if (std::regex_search(out, m, std::regex(R"(number of failed transactions: (\d+))"))) run.failed = std::stoll(m[1]);
  if (std::regex_search(out, m, std::regex(R"(number of clients: (\d+))"))) run.clients = std::stoi(m[1]);
  return run;
}

#define EXPECT_PGBENCH_OK(run, expected_clients)                                                  \
  do {                                                                                            \
    EXPECT_EQ((run).result.exit_code, 0) << (run).result.output;                                  \
    EXPECT_EQ((run).failed, 0) << (run).result.output;                                            \
    EXPECT_EQ((run).clients, (expected_clients)) << (run).result.output;                          \
    EXPECT_GT((run).processed, 0) << (run).result.output;                                         \
    EXPECT_GT((run).tps, 0.0) << (run).result.output;                                             \
    EXPECT_EQ((run).result.output.find("aborted"), std::string::npos) << (run).result.output;     \
  } while (0)

// Sends `query` and waits up to `timeout` for its results; "" when it succeeded, else the error.
// "(busy)" when nothing came back in time (the query is still running).
std::string finish_query(PGconn* c, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (PQisBusy(c) != 0) {
    if (Clock::now() >= deadline) return "(busy)";
    pollfd pfd{PQsocket(c), POLLIN, 0};
    ::poll(&pfd, 1, 20);
    if (PQconsumeInput(c) == 0) return PQerrorMessage(c);
  }
  std::string error;
  while (PGresult* r = PQgetResult(c)) {
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK && error.empty()) {
      error = PQresultErrorMessage(r);
      if (error.empty()) error = PQresStatus(PQresultStatus(r));
    }
    PQclear(r);
  }
  return error;
}

std::string value(postgres::PgConn& conn, const std::string& query) {
  auto rows = query_with_deadline(conn, query);
  if (!rows) throw std::runtime_error(query + ": " + rows.error());
  if (rows->empty() || rows->front().empty()) throw std::runtime_error("no row from " + query);
  return rows->front().front().value_or("");
}

// ---- a two-thread proxy with the default pool of 10 and per-user modes ----------------------

class ProxyPoolTest : public ClusterSuite<ProxyPoolTest> {
 public:
  static std::string cluster_config() {
    // Also the Unix-socket path to the servers (server_unix_socket), under every pool mode, and two
    // worker threads whatever the default (cross-thread pools, cancel and pause need them).
    return "proxy:\n"
           "  threads: 2\n"
           "  default_pool_size: 10\n"
           "  reserve_pool_size: 5\n"
           "  server_unix_socket: true\n"
           "  pools:\n"
           "    - user: sess\n"
           "      pool_mode: session\n"
           "      pool_size: 30\n"
           "    - user: stmt\n"
           "      pool_mode: statement\n"
           "    - user: one\n"
           "      pool_size: 1\n";
  }

 protected:
  // pgbench tables (scale 1) and the roles of the per-user pools, once per suite.
  void prepare() {
    static bool prepared = false;
    if (prepared) return;
    auto init = pgbench(cluster().proxy_uri(), {"-i", "-s", "1", "-q"}, 120s);
    ASSERT_EQ(init.result.exit_code, 0) << "pgbench -i through the proxy failed:\n" << init.result.output;
    ASSERT_NE(init.result.output.find("done in"), std::string::npos) << init.result.output;
    EXPECT_EQ(sql_value(cluster().proxy_uri(), "SELECT count(*) FROM pgbench_accounts"), "100000");
    for (const std::string role : {"sess", "stmt", "many", "one"}) {
      sql(cluster().primary_uri(), "CREATE ROLE " + role + " LOGIN PASSWORD 'pw'");
      sql(cluster().primary_uri(), "GRANT ALL ON ALL TABLES IN SCHEMA public TO " + role);
    }
    prepared = true;
  }
  std::string as(const std::string& user) { return cluster().proxy_uri(user, "pw"); }
};

TEST_F(ProxyPoolTest, PgbenchInTransactionMode) {
  ASSERT_NO_FATAL_FAILURE(prepare());
  for (const std::string mode : {"simple", "extended", "prepared"}) {
    SCOPED_TRACE("pgbench -S -M " + mode);
    auto run = pgbench(cluster().proxy_uri(), {"-S", "-M", mode, "-c", "20", "-j", "2", "-T", "2"});
    EXPECT_PGBENCH_OK(run, 20);
  }
  // The default script (tpcb-like) and query mode (simple). Not -M prepared: pgbench prepares each
  // statement with a blocking PQprepare when a client first runs it, stalling its whole thread,
  // so with fewer server connections than clients it deadlocks through any transaction pooler.
  SCOPED_TRACE("pgbench tpcb-like");
  auto run = pgbench(cluster().proxy_uri(), {"-c", "20", "-j", "2", "-T", "3"});
  EXPECT_PGBENCH_OK(run, 20);
  // Every transaction reached the primary.
  EXPECT_EQ(sql_value(cluster().primary_uri(), "SELECT count(*) FROM pgbench_history"), std::to_string(run.processed));
  auto stats = query_table(cluster().admin_uri(), "SHOW POOLS");
  bool found = false;
  for (size_t i = 0; i < stats.rows.size(); ++i) {
    if (stats.at(i, "user") == "postgres" && stats.at(i, "database") == "postgres") {
      found = true;
      EXPECT_EQ(stats.at(i, "pool_mode"), "transaction");
    }
  }
  EXPECT_TRUE(found) << stats.dump();
}

TEST_F(ProxyPoolTest, PgbenchInSessionMode) {
  ASSERT_NO_FATAL_FAILURE(prepare());
  for (const std::string mode : {"simple", "prepared"}) {
    SCOPED_TRACE("pgbench -S -M " + mode);
    auto run = pgbench(as("sess"), {"-S", "-M", mode, "-c", "20", "-j", "2", "-T", "2"});
    EXPECT_PGBENCH_OK(run, 20);
  }
  SCOPED_TRACE("pgbench tpcb-like");
  auto run = pgbench(as("sess"), {"-c", "20", "-j", "2", "-T", "3"});
  EXPECT_PGBENCH_OK(run, 20);
  // In session mode a temporary table and a session variable last for the whole session.
  auto p = psql(as("sess"), {"-At", "-c", "CREATE TEMP TABLE mine (v int)", "-c", "INSERT INTO mine VALUES (7)", "-c",
                             "SELECT set_config('my.var', 'kept', false)", "-c",
                             "SELECT v || current_setting('my.var') FROM mine"});
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_NE(p.output.find("7kept"), std::string::npos) << p.output;
}

TEST_F(ProxyPoolTest, SessionModeResetsTheServerBetweenClients) {
  ASSERT_NO_FATAL_FAILURE(prepare());
  std::string pid;
  {
    auto a = connect_or_throw(as("sess"));
    ASSERT_TRUE(query_with_deadline(a, "SET search_path = pg_catalog").ok());
    ASSERT_TRUE(query_with_deadline(a, "CREATE TEMP TABLE left_behind (v int)").ok());
    ASSERT_TRUE(query_with_deadline(a, "PREPARE left_stmt AS SELECT 1").ok());
    pid = value(a, "SELECT pg_backend_pid()::text");
  }
  // The next client on that server connection (the most recently used one of its thread) must
  // find a clean session.
  bool same_server = false;
  for (int attempt = 0; attempt < 30 && !same_server; ++attempt) {
    auto b = connect_or_throw(as("sess"));
    if (value(b, "SELECT pg_backend_pid()::text") != pid) continue;
    same_server = true;
    EXPECT_EQ(value(b, "SHOW search_path"), "\"$user\", public");
    EXPECT_EQ(value(b, "SELECT count(*) FROM pg_class WHERE relname = 'left_behind' AND relpersistence = 't'"), "0");
    EXPECT_EQ(value(b, "SELECT count(*) FROM pg_prepared_statements"), "0");
  }
  if (!same_server) GTEST_SKIP() << "no later client got server connection " << pid;
}

TEST_F(ProxyPoolTest, PgbenchInStatementModeAndTransactionBlocksAreRefused) {
  ASSERT_NO_FATAL_FAILURE(prepare());
  for (const std::string mode : {"simple", "extended", "prepared"}) {
    SCOPED_TRACE("pgbench -S -M " + mode);
    auto run = pgbench(as("stmt"), {"-S", "-M", mode, "-c", "20", "-j", "2", "-T", "2"});
    EXPECT_PGBENCH_OK(run, 20);
  }
  auto p = psql(as("stmt"), {"-c", "BEGIN", "-c", "SELECT 1", "-c", "COMMIT"});
  EXPECT_NE(p.exit_code, 0) << p.output;
  EXPECT_NE(p.output.find("transaction blocks are not allowed in statement pooling mode"), std::string::npos)
      << p.output;
  // The pool goes on serving single statements.
  EXPECT_EQ(sql_value(as("stmt"), "SELECT count(*) FROM pgbench_branches"), "1");
  auto rows = query_table(cluster().admin_uri(), "SHOW POOLS");
  bool found = false;
  for (size_t i = 0; i < rows.rows.size(); ++i) {
    if (rows.at(i, "user") == "stmt") {
      found = true;
      EXPECT_EQ(rows.at(i, "pool_mode"), "statement");
    }
  }
  EXPECT_TRUE(found) << rows.dump();
}

TEST_F(ProxyPoolTest, ServersAreReachedThroughTheirUnixSocketWhenConfigured) {
  auto conn = connect_or_throw(cluster().proxy_uri());
  auto rows = conn.query("SELECT inet_server_port() IS NULL, current_setting('port')");
  ASSERT_TRUE(rows) << rows.error();
  EXPECT_EQ((*rows)[0][0], std::optional<std::string>("t")) << "the server connection is not a Unix socket";
  auto primary = connect_or_throw(cluster().primary_uri());
  auto port = primary.query("SELECT current_setting('port')");
  ASSERT_TRUE(port) << port.error();
  EXPECT_EQ((*rows)[0][1], (*port)[0][0]) << "the proxy did not reach the primary";
}

TEST_F(ProxyPoolTest, FiveHundredClientsShareTenServerConnections) {
  ASSERT_NO_FATAL_FAILURE(prepare());
  // Count the proxy's server connections for user `many` while pgbench runs. pgbench's -T
  // includes the time 500 SCRAM logins take (several seconds on two cores).
  std::atomic<bool> running{true};
  std::atomic<int> max_backends{0}, max_listed{0};
  std::string monitor_error;
  std::thread monitor([&] {
    try {
      auto direct = connect_or_throw(cluster().primary_uri());
      auto admin = connect_or_throw(cluster().admin_uri());
      while (running.load()) {
        int backends = std::stoi(value(direct, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'many'"));
        max_backends = std::max(max_backends.load(), backends);
        auto listed = query_with_deadline(admin, "SHOW SERVERS");
        if (listed) {
          int n = static_cast<int>(std::count_if(listed->begin(), listed->end(), [](const postgres::Row& r) {
            return r.size() > 1 && r[1] == std::optional<std::string>("many") && r[3] != std::optional<std::string>("closed");
          }));
          max_listed = std::max(max_listed.load(), n);
        }
        std::this_thread::sleep_for(50ms);
      }
    } catch (const std::exception& e) {
      monitor_error = e.what();
    }
  });
  auto run = pgbench(as("many"), {"-S", "-M", "extended", "-c", "500", "-j", "8", "-T", "7"}, 120s);
  running = false;
  monitor.join();
  EXPECT_TRUE(monitor_error.empty()) << monitor_error;
  EXPECT_PGBENCH_OK(run, 500);
  RecordProperty("max_server_backends", max_backends.load());
  RecordProperty("max_show_servers", max_listed.load());
  EXPECT_GE(max_backends.load(), 5) << "the pool never grew: did pgbench run at all?";
  EXPECT_GE(max_listed.load(), 5) << "SHOW SERVERS never showed the pool's connections";
  // default_pool_size 10, and the reserve (5) for clients that waited more than a second.
  EXPECT_LE(max_backends.load(), 15) << "server connections of the pool seen in pg_stat_activity";
  EXPECT_LE(max_listed.load(), 15) << "server connections of the pool in SHOW SERVERS";
}

TEST_F(ProxyPoolTest, PoolSizeOneMeansOneServerConnectionAcrossWorkers) {
  ASSERT_NO_FATAL_FAILURE(prepare());
  // Clients land on either worker thread; find two on different workers (SHOW CLIENTS says which).
  std::vector<postgres::PgConn> conns;
  std::vector<std::string> names;
  for (int i = 0; i < 12; ++i) {
    names.push_back("probe" + std::to_string(i));
    conns.push_back(connect_or_throw(with_param(as("one"), "application_name=" + names.back())));
  }
  std::map<std::string, std::string> worker_of;
  ASSERT_TRUE(eventually(
      [&] {
        auto t = query_table(cluster().admin_uri(), "SHOW CLIENTS");
        for (size_t i = 0; i < t.rows.size(); ++i) worker_of[t.at(i, "application_name")] = t.at(i, "worker");
        return std::all_of(names.begin(), names.end(), [&](const std::string& n) { return worker_of.count(n) > 0; });
      },
      5s))
      << "SHOW CLIENTS does not list the probes";
  int a = -1, b = -1;
  for (int i = 1; i < static_cast<int>(names.size()) && b < 0; ++i) {
    if (worker_of[names[static_cast<size_t>(i)]] != worker_of[names[0]]) a = 0, b = i;
  }
  if (b < 0) GTEST_SKIP() << "all 12 clients landed on one worker";
  PGconn* ca = conns[static_cast<size_t>(a)].raw();
  PGconn* cb = conns[static_cast<size_t>(b)].raw();
  ASSERT_EQ(query_with_deadline(conns[static_cast<size_t>(a)], "BEGIN").ok(), true);
  ASSERT_EQ(query_with_deadline(conns[static_cast<size_t>(a)], "SELECT 1").ok(), true);
  ASSERT_EQ(PQsendQuery(cb, "SELECT 'b ran'"), 1);
  // Less than reserve_pool_timeout_ms (1000): no reserve connection yet.
  std::string early = finish_query(cb, 600ms);
  EXPECT_EQ(early, "(busy)") << "pool_size 1: a second client got a server connection while the first holds the "
                                "only one (clients on workers "
                             << worker_of[names[static_cast<size_t>(a)]] << " and "
                             << worker_of[names[static_cast<size_t>(b)]] << ")";
  EXPECT_EQ(sql_value(cluster().primary_uri(), "SELECT count(*) FROM pg_stat_activity WHERE usename = 'one'"), "1");
  ASSERT_EQ(query_with_deadline(conns[static_cast<size_t>(a)], "COMMIT").ok(), true);
  if (early == "(busy)") {
    EXPECT_EQ(finish_query(cb, 5s), "") << "the waiting client must run after the COMMIT";
  }
  (void)ca;
}

// ---- one worker thread, a pool of one connection ---------------------------------------------

class ProxyPoolOfOneTest : public ClusterSuite<ProxyPoolOfOneTest> {
 public:
  static std::string cluster_config() {
    return "proxy:\n"
           "  threads: 1\n"
           "  default_pool_size: 1\n"
           "  reserve_pool_size: 0\n"
           "  query_wait_timeout_ms: 1500\n"
           "  max_client_conn: 6\n";
  }

 protected:
  std::string proxy() { return cluster().proxy_uri(); }
};

TEST_F(ProxyPoolOfOneTest, SessionStateFollowsEachClientInTransactionMode) {
  sql(cluster().primary_uri(),
      "CREATE SCHEMA a_schema; CREATE TABLE a_schema.a_table (v text); INSERT INTO a_schema.a_table VALUES ('from a')");
  auto a = connect_or_throw(proxy());
  auto b = connect_or_throw(proxy());
  const std::string default_path = value(b, "SHOW search_path");
  const std::string default_zone = value(b, "SHOW TimeZone");
  EXPECT_EQ(value(b, "SHOW statement_timeout"), "0");

  ASSERT_TRUE(query_with_deadline(a, "SET search_path = a_schema").ok());
  ASSERT_TRUE(query_with_deadline(a, "SET statement_timeout = '1234ms'").ok());
  ASSERT_TRUE(query_with_deadline(a, "SET TIME ZONE 'America/New_York'").ok());
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    EXPECT_EQ(value(a, "SELECT pg_backend_pid()"), value(b, "SELECT pg_backend_pid()"))
        << "pool size 1: both clients must share one server connection";
    EXPECT_EQ(value(b, "SHOW search_path"), default_path);
    EXPECT_EQ(value(b, "SHOW statement_timeout"), "0");
    EXPECT_EQ(value(b, "SHOW TimeZone"), default_zone);
    auto b_table = query_with_deadline(b, "SELECT v FROM a_table");
    EXPECT_FALSE(b_table.ok()) << "B must not see A's search_path";
    EXPECT_EQ(value(a, "SHOW search_path"), "a_schema");
    EXPECT_EQ(value(a, "SHOW statement_timeout"), "1234ms");
    EXPECT_EQ(value(a, "SHOW TimeZone"), "America/New_York");
    EXPECT_EQ(value(a, "SELECT v FROM a_table"), "from a");
  }
  // B sets its own value of the same parameter; A's stays.
  ASSERT_TRUE(query_with_deadline(b, "SET statement_timeout TO 5000").ok());
  EXPECT_EQ(value(a, "SHOW statement_timeout"), "1234ms");
  EXPECT_EQ(value(b, "SHOW statement_timeout"), "5s");
  // RESET returns to the default for A only.
  ASSERT_TRUE(query_with_deadline(a, "RESET statement_timeout").ok());
  EXPECT_EQ(value(a, "SHOW statement_timeout"), "0");
  EXPECT_EQ(value(b, "SHOW statement_timeout"), "5s");
  EXPECT_EQ(value(a, "SHOW search_path"), "a_schema");
  // A's statement_timeout really applies to A's queries.
  ASSERT_TRUE(query_with_deadline(a, "SET statement_timeout = '200ms'").ok());
  auto slow = query_with_deadline(a, "SELECT pg_sleep(3)", 10s);
  EXPECT_FALSE(slow.ok());
  if (!slow.ok()) {
    EXPECT_NE(slow.error().find("statement timeout"), std::string::npos) << slow.error();
  }
  EXPECT_TRUE(query_with_deadline(b, "SELECT pg_sleep(0.5)").ok()) << "B must not inherit A's statement_timeout";
}

TEST_F(ProxyPoolOfOneTest, SetSentWithTheExtendedProtocolStaysWithItsClient) {
  // Drivers such as JDBC send SET through Parse/Bind/Execute.
  auto a = connect_or_throw(proxy());
  auto b = connect_or_throw(proxy());
  const std::string default_path = value(b, "SHOW search_path");
  PGresult* r = PQexecParams(a.raw(), "SET search_path = pg_catalog, extended_a", 0, nullptr, nullptr, nullptr,
                             nullptr, 0);
  ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
  PQclear(r);
  EXPECT_EQ(value(b, "SHOW search_path"), default_path) << "A's SET (extended protocol) leaked to B";
  EXPECT_EQ(value(a, "SHOW search_path"), "pg_catalog, extended_a") << "A lost its SET (extended protocol)";
}

// Only SETs that took effect follow a client: PostgreSQL undoes a SET that failed, or that ran in
// a transaction that failed or rolled back, and so does the proxy's copy of the session.
TEST_F(ProxyPoolOfOneTest, FailedAndRolledBackSetsDoNotFollowTheClient) {
  auto a = connect_or_throw(proxy());
  auto b = connect_or_throw(proxy());
  const std::string default_path = value(b, "SHOW search_path");
  ASSERT_TRUE(query_with_deadline(a, "SET search_path = pg_catalog, kept_a").ok());
  EXPECT_FALSE(query_with_deadline(a, "SET work_mem = 'bogus'").ok());
  EXPECT_FALSE(query_with_deadline(a, "SET lock_timeout = '1s'; SELECT 1/0").ok()) << "an implicit transaction";
  ASSERT_TRUE(query_with_deadline(a, "BEGIN; SET statement_timeout = '7s'; ROLLBACK").ok());
  ASSERT_TRUE(query_with_deadline(a, "BEGIN").ok());
  ASSERT_TRUE(query_with_deadline(a, "SET idle_in_transaction_session_timeout = '8s'").ok());
  EXPECT_FALSE(query_with_deadline(a, "SELECT no_such_column FROM pg_class").ok());
  ASSERT_TRUE(query_with_deadline(a, "COMMIT").ok());  // of a failed transaction: a rollback
  ASSERT_TRUE(query_with_deadline(a, "BEGIN; SET maintenance_work_mem = '77MB'; COMMIT").ok());
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // B's turn on the one server connection, with settings of its own, then A's again.
    ASSERT_TRUE(query_with_deadline(b, "SET statement_timeout = '9s'").ok());
    ASSERT_TRUE(query_with_deadline(b, "SET work_mem = '5MB'").ok());
    EXPECT_EQ(value(b, "SHOW search_path"), default_path);
    EXPECT_EQ(value(a, "SHOW search_path"), "pg_catalog, kept_a") << "a good SET was lost with a bad one";
    EXPECT_EQ(value(a, "SHOW work_mem"), "4MB");
    EXPECT_EQ(value(a, "SHOW lock_timeout"), "0");
    EXPECT_EQ(value(a, "SHOW statement_timeout"), "0") << "a rolled-back SET followed the client";
    EXPECT_EQ(value(a, "SHOW idle_in_transaction_session_timeout"), "0") << "a SET of a failed transaction followed";
    EXPECT_EQ(value(a, "SHOW maintenance_work_mem"), "77MB") << "a committed SET was lost";
    EXPECT_EQ(value(b, "SHOW statement_timeout"), "9s");
    EXPECT_EQ(value(b, "SHOW maintenance_work_mem"), "64MB");
  }
}

// SET ROLE is session state like any SET: it stays with the client that ran it and never reaches
// the next client of the server connection.
// LISTEN inside a transaction or a multi-statement query runs on the pooled server connection:
// once committed, the client still gets its notifications whichever connection it uses next; a
// rolled-back LISTEN and a committed UNLISTEN stop them, as on PostgreSQL; and the server
// connection does not go on listening for the next client.
TEST_F(ProxyPoolOfOneTest, ListenInsideATransactionIsKeptAfterCommitAndUndoneByRollback) {
  auto a = connect_or_throw(proxy());
  auto b = connect_or_throw(proxy());
  for (const char* q : {"BEGIN", "LISTEN tx_events", "COMMIT", "BEGIN", "LISTEN rolled_events", "ROLLBACK",
                        "LISTEN multi_a; LISTEN multi_b"}) {
    auto r = query_with_deadline(a, q);
    ASSERT_TRUE(r.ok()) << q << ": " << r.error();
  }
  // The one server connection, now serving B, listens to nothing.
  EXPECT_EQ(value(b, "SELECT count(*) FROM pg_listening_channels()"), "0");
  auto received = [&](const std::vector<std::string>& notifies) {
    for (const auto& n : notifies) EXPECT_TRUE(query_with_deadline(b, n).ok()) << n;
    return receive_notifications(a, SIZE_MAX, 1500ms);  // the whole time: none may come that should not
  };
  EXPECT_EQ(received({"NOTIFY tx_events, 'one'", "NOTIFY rolled_events, 'none'", "NOTIFY multi_b, 'two'"}),
            (std::vector<std::string>{"tx_events:one", "multi_b:two"}));
  for (const char* q : {"BEGIN", "UNLISTEN tx_events", "ROLLBACK"}) ASSERT_TRUE(query_with_deadline(a, q).ok()) << q;
  EXPECT_EQ(received({"NOTIFY tx_events, 'still'"}), std::vector<std::string>{"tx_events:still"})
      << "a rolled-back UNLISTEN stopped the notifications";
  for (const char* q : {"BEGIN", "UNLISTEN tx_events", "COMMIT"}) ASSERT_TRUE(query_with_deadline(a, q).ok()) << q;
  EXPECT_EQ(received({"NOTIFY tx_events, 'gone'", "NOTIFY multi_a, 'three'"}), std::vector<std::string>{"multi_a:three"});
  EXPECT_EQ(value(b, "SELECT count(*) FROM pg_listening_channels()"), "0");
}

// `UNLISTEN "*"` names a channel called *, while `UNLISTEN *` ends every subscription; before,
// the proxy read both as the latter (it used * itself to mean "every channel").
TEST_F(ProxyPoolOfOneTest, UnlistenOfAChannelNamedStarEndsOnlyThatOne) {
  auto a = connect_or_throw(proxy());
  auto b = connect_or_throw(proxy());
  for (const char* q : {"LISTEN \"*\"", "LISTEN star_jobs", "UNLISTEN \"*\""}) {
    auto r = query_with_deadline(a, q);
    ASSERT_TRUE(r.ok()) << q << ": " << r.error();
  }
  auto received = [&](const std::vector<std::string>& notifies) {
    for (const auto& n : notifies) EXPECT_TRUE(query_with_deadline(b, n).ok()) << n;
    return receive_notifications(a, SIZE_MAX, 1500ms);
  };
  EXPECT_EQ(received({"NOTIFY \"*\", 'gone'", "NOTIFY star_jobs, 'kept'"}), std::vector<std::string>{"star_jobs:kept"});
  ASSERT_TRUE(query_with_deadline(a, "UNLISTEN *").ok());
  EXPECT_TRUE(received({"NOTIFY star_jobs, 'none'"}).empty());
}

// Statements as ORMs and people write them — comments around them, quoted and over-long channel
// names, SET SCHEMA, LISTEN as an unnamed extended-protocol statement in a transaction — are
// tracked as PostgreSQL reads them. Before, a trailing comment became part of the channel name, a
// leading one hid a SET (so B saw A's search_path), and the extended LISTEN reached no one.
TEST_F(ProxyPoolOfOneTest, CommentedAndQuotedSessionStatementsAreTrackedAsPostgresqlReadsThem) {
  auto a = connect_or_throw(proxy());
  auto b = connect_or_throw(proxy());
  const std::string long_channel(70, 'c');  // PostgreSQL truncates names to 63 bytes
  for (const std::string& q : {std::string("LISTEN commented_events -- wake the workers"),
                               std::string("LISTEN \"Mixed_Case\" /* quoted */"), "LISTEN " + long_channel,
                               std::string("BEGIN; /* orm */ LISTEN tx_commented; COMMIT"),
                               std::string("/* app=web */ SET search_path = 'commented_schema'")}) {
    auto r = query_with_deadline(a, q);
    ASSERT_TRUE(r.ok()) << q << ": " << r.error();
  }
  // psycopg 3 outside autocommit: BEGIN, then LISTEN as an unnamed extended-protocol statement.
  ASSERT_TRUE(query_with_deadline(a, "BEGIN").ok());
  PGresult* extended = PQexecParams(a.raw(), "LISTEN extended_in_tx", 0, nullptr, nullptr, nullptr, nullptr, 0);
  EXPECT_EQ(PQresultStatus(extended), PGRES_COMMAND_OK) << PQresultErrorMessage(extended);
  PQclear(extended);
  ASSERT_TRUE(query_with_deadline(a, "COMMIT").ok());
  EXPECT_EQ(value(b, "SHOW search_path"), "\"$user\", public") << "B got the search_path A set";
  EXPECT_EQ(value(a, "SHOW search_path"), "commented_schema");
  ASSERT_TRUE(query_with_deadline(a, "SET SCHEMA 'schema_by_set_schema'").ok());
  EXPECT_EQ(value(b, "SHOW search_path"), "\"$user\", public");
  EXPECT_EQ(value(a, "SHOW search_path"), "schema_by_set_schema");

  for (const std::string& n : {std::string("NOTIFY commented_events, 'one'"), std::string("NOTIFY \"Mixed_Case\", 'two'"),
                               "NOTIFY " + long_channel + ", 'three'", std::string("NOTIFY tx_commented, 'four'"),
                               std::string("NOTIFY extended_in_tx, 'five'")}) {
    EXPECT_TRUE(query_with_deadline(b, n).ok()) << n;
  }
  EXPECT_EQ(receive_notifications(a, 5, 5s), (std::vector<std::string>{"commented_events:one", "Mixed_Case:two",
                                           std::string(63, 'c') + ":three", "tx_commented:four",
                                           "extended_in_tx:five"}));
}

// A cancel request the server has not taken yet keeps its server connection from the next client
// (PgBouncer's sv_being_canceled): delivered late, it would stop that client's query instead. The
// postmaster is stopped so the request waits; meanwhile the canceled query ends by itself.
TEST_F(ProxyPoolOfOneTest, ALateCancelDoesNotHitTheNextClientsQuery) {
  auto a = connect_or_throw(proxy());
  auto b = connect_or_throw(proxy());
  const auto postmaster = static_cast<pid_t>(num(node_of(cluster().status_json(), "node1"), "pid"));
  ASSERT_GT(postmaster, 0);
  ASSERT_EQ(PQsendQuery(a.raw(), "SELECT pg_sleep(0.5)"), 1);
  std::this_thread::sleep_for(100ms);
  ASSERT_EQ(::kill(postmaster, SIGSTOP), 0);
  struct Resume {
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{postmaster};
  PGcancel* cancel = PQgetCancel(a.raw());
  char why[256] = "";
  ASSERT_EQ(PQcancel(cancel, why, sizeof why), 1) << why;  // the proxy takes it; the server cannot yet
  PQfreeCancel(cancel);
  EXPECT_EQ(finish_query(a.raw(), 5s), "") << "A's query was canceled although the server never got the request";
  // The admin console shows why the connection serves no one.
  bool canceling = eventually([&] {
    auto t = query_table(cluster().admin_uri(), "SHOW SERVERS");
    for (size_t i = 0; i < t.rows.size(); ++i) {
      if (t.at(i, "state") == "canceling") return true;
    }
    return false;
  }, 3s, 100ms);
  EXPECT_TRUE(canceling) << query_table(cluster().admin_uri(), "SHOW SERVERS").dump();
  // ...and SHOW POOLS counts it as PgBouncer does.
  auto pools = query_table(cluster().admin_uri(), "SHOW POOLS");
  bool counted = false;
  for (size_t i = 0; i < pools.rows.size(); ++i)
    counted = counted || (pools.at(i, "cl_active_cancel_req") == "1" && pools.at(i, "sv_being_canceled") == "1" &&
                          pools.at(i, "sv_idle") == "0");
  EXPECT_TRUE(counted) << pools.dump();
  // B asks for the one server connection while the cancel for A's backend is still on its way.
  ASSERT_EQ(PQsendQuery(b.raw(), "SELECT pg_sleep(1)"), 1);
  std::this_thread::sleep_for(300ms);
  ::kill(postmaster, SIGCONT);  // the postmaster takes the request: A's backend is idle by now
  EXPECT_EQ(finish_query(b.raw(), 10s), "") << "the late cancel for A stopped B's query";
  EXPECT_EQ(value(a, "SELECT 'a again'"), "a again");
}

TEST_F(ProxyPoolOfOneTest, SetRoleStaysWithItsClient) {
  sql(cluster().primary_uri(), "DROP ROLE IF EXISTS pool_role_a; CREATE ROLE pool_role_a; "
                               "DROP ROLE IF EXISTS pool_role_gone; CREATE ROLE pool_role_gone");
  auto a = connect_or_throw(proxy());
  auto b = connect_or_throw(proxy());
  const std::string login = value(b, "SELECT current_user");
  ASSERT_TRUE(query_with_deadline(a, "SET ROLE pool_role_a").ok());
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    EXPECT_EQ(value(b, "SELECT current_user"), login) << "A's role leaked to B";
    EXPECT_EQ(value(a, "SELECT current_user"), "pool_role_a");
  }
  ASSERT_TRUE(query_with_deadline(a, "RESET ROLE").ok());
  EXPECT_EQ(value(b, "SELECT current_user"), login);
  EXPECT_EQ(value(a, "SELECT current_user"), login);

  // A setting that cannot be applied again (its role was dropped meanwhile): the client is warned.
  ASSERT_TRUE(query_with_deadline(a, "SET ROLE pool_role_gone").ok());
  EXPECT_EQ(value(b, "SELECT current_user"), login);
  sql(cluster().primary_uri(), "DROP ROLE pool_role_gone");
  std::string notices;
  PQsetNoticeProcessor(
      a.raw(), [](void* out, const char* message) { *static_cast<std::string*>(out) += message; }, &notices);
  EXPECT_EQ(value(a, "SELECT current_user"), login);
  EXPECT_NE(notices.find("could not apply this session's role"), std::string::npos) << notices;
  PQsetNoticeProcessor(a.raw(), nullptr, nullptr);
}

// DISCARD ALL (Npgsql sends it when it returns a connection to its own pool) drops every prepared
// statement of the server connection: other clients' statements are prepared there again.
TEST_F(ProxyPoolOfOneTest, DiscardAllOfOneClientLeavesOthersPreparedStatementsWorking) {
  auto a = connect_or_throw(proxy());
  auto b = connect_or_throw(proxy());
  PGresult* r = PQprepare(a.raw(), "a_stmt", "SELECT $1::int + 1", 1, nullptr);
  ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
  PQclear(r);
  r = PQprepare(b.raw(), "b_stmt", "SELECT $1::int * 2", 1, nullptr);
  ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
  PQclear(r);
  ASSERT_TRUE(query_with_deadline(b, "DISCARD ALL").ok());
  const char* one[] = {"41"};
  r = PQexecPrepared(a.raw(), "a_stmt", 1, one, nullptr, nullptr, 0);
  EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << "A's statement after B's DISCARD ALL: " << PQresultErrorMessage(r);
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    EXPECT_STREQ(PQgetvalue(r, 0, 0), "42");
  }
  PQclear(r);
  // B's own statements are gone for B, as PostgreSQL would have it.
  r = PQexecPrepared(b.raw(), "b_stmt", 1, one, nullptr, nullptr, 0);
  EXPECT_EQ(PQresultStatus(r), PGRES_FATAL_ERROR);
  EXPECT_NE(std::string(PQresultErrorMessage(r)).find("does not exist"), std::string::npos) << PQresultErrorMessage(r);
  PQclear(r);
  r = PQprepare(b.raw(), "b_stmt", "SELECT $1::int * 3", 1, nullptr);
  EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << "B cannot prepare its name again: " << PQresultErrorMessage(r);
  PQclear(r);
  ASSERT_TRUE(query_with_deadline(a, "DEALLOCATE ALL").ok());
  r = PQexecPrepared(b.raw(), "b_stmt", 1, one, nullptr, nullptr, 0);
  EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << "B's statement after A's DEALLOCATE ALL: " << PQresultErrorMessage(r);
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    EXPECT_STREQ(PQgetvalue(r, 0, 0), "123");
  }
  PQclear(r);
}

// Each server connection keeps at most 256 of the proxy's statements, however they were prepared;
// a statement forgotten there is prepared again when its client uses it.
TEST_F(ProxyPoolOfOneTest, PreparedStatementsPerServerConnectionAreBounded) {
  auto a = connect_or_throw(proxy());
  for (int i = 0; i < 300; ++i) {
    std::string name = "bounded_" + std::to_string(i);
    std::string text = "SELECT " + std::to_string(i) + " + $1::int";
    PGresult* r = PQprepare(a.raw(), name.c_str(), text.c_str(), 1, nullptr);
    ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << name << ": " << PQresultErrorMessage(r);
    PQclear(r);
  }
  int on_server = std::stoi(value(a, "SELECT count(*) FROM pg_prepared_statements"));
  EXPECT_LE(on_server, 256);
  EXPECT_GE(on_server, 200);
  const char* one[] = {"1"};
  for (int i : {0, 299}) {
    std::string name = "bounded_" + std::to_string(i);
    PGresult* r = PQexecPrepared(a.raw(), name.c_str(), 1, one, nullptr, nullptr, 0);
    EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << name << ": " << PQresultErrorMessage(r);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      EXPECT_EQ(std::string(PQgetvalue(r, 0, 0)), std::to_string(i + 1));
    }
    PQclear(r);
  }
}

// A LISTEN run inside a transaction stays on the pooled server connection: its notifications
// must not reach whichever client uses that connection next.
TEST_F(ProxyPoolOfOneTest, NotificationsOfAPooledServerReachNoOtherClient) {
  auto a = connect_or_throw(proxy());
  auto b = connect_or_throw(proxy());
  ASSERT_TRUE(query_with_deadline(a, "BEGIN; LISTEN pooled_leak; COMMIT").ok());
  // B holds the one server connection while a notification arrives on it.
  ASSERT_EQ(PQsendQuery(b.raw(), "SELECT pg_sleep(0.5)"), 1);
  std::this_thread::sleep_for(150ms);
  sql(cluster().primary_uri(), "NOTIFY pooled_leak, 'not for b'");
  ASSERT_EQ(finish_query(b.raw(), 5s), "");
  ASSERT_TRUE(query_with_deadline(b, "SELECT 1").ok());
  PQconsumeInput(b.raw());
  PGnotify* n = PQnotifies(b.raw());
  EXPECT_EQ(n, nullptr) << "B received " << (n ? n->relname : "");
  if (n) PQfreemem(n);
}

TEST_F(ProxyPoolOfOneTest, ClientEncodingFollowsEachClient) {
  auto latin1 = connect_or_throw(with_param(proxy(), "client_encoding=LATIN1"));
  auto utf8 = connect_or_throw(with_param(proxy(), "client_encoding=UTF8"));
  EXPECT_EQ(std::string(pg_encoding_to_char(PQclientEncoding(latin1.raw()))), "LATIN1");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(value(latin1, "SELECT chr(233)"), "\xe9") << "é in LATIN1";
    EXPECT_EQ(value(utf8, "SELECT chr(233)"), "\xc3\xa9") << "é in UTF-8";
    EXPECT_EQ(value(latin1, "SHOW client_encoding"), "LATIN1");
    EXPECT_EQ(value(utf8, "SHOW client_encoding"), "UTF8");
  }
  // A client that changes its encoding with SET keeps it.
  ASSERT_TRUE(query_with_deadline(utf8, "SET client_encoding = 'WIN1252'").ok());
  EXPECT_EQ(value(latin1, "SHOW client_encoding"), "LATIN1");
  EXPECT_EQ(value(utf8, "SHOW client_encoding"), "WIN1252");
  EXPECT_EQ(std::string(pg_encoding_to_char(PQclientEncoding(utf8.raw()))), "WIN1252");
}

TEST_F(ProxyPoolOfOneTest, ApplicationNameFromTheStartupPacket) {
  std::string xyz = with_param(proxy(), "application_name=xyz");
  auto p = psql(xyz, {"-At", "-c", "SHOW application_name", "-c",
                      "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"});
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_EQ(p.output, "xyz\nxyz\n");
  // Two clients with different names on the one server connection.
  auto a = connect_or_throw(with_param(proxy(), "application_name=client_a"));
  auto b = connect_or_throw(with_param(proxy(), "application_name=client_b"));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(value(a, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"), "client_a");
    EXPECT_EQ(value(b, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"), "client_b");
    EXPECT_EQ(value(a, "SHOW application_name"), "client_a");
  }
  // Seen in pg_stat_activity while the query runs.
  ASSERT_EQ(PQsendQuery(a.raw(), "SELECT pg_sleep(1.5)"), 1);
  std::string seen;
  bool found = eventually(
      [&] {
        seen = sql_value(cluster().primary_uri(),
                         "SELECT coalesce(string_agg(application_name, ','), '') FROM pg_stat_activity "
                         "WHERE query = 'SELECT pg_sleep(1.5)' AND state = 'active'");
        return seen == "client_a";
      },
      1400ms, 50ms);
  EXPECT_TRUE(found) << "pg_stat_activity shows '" << seen << "' for the running query";
  EXPECT_EQ(finish_query(a.raw(), 5s), "");
  // The admin console lists the names too.
  EXPECT_TRUE(eventually(
      [&] {
        auto t = query_table(cluster().admin_uri(), "SHOW CLIENTS");
        int seen_names = 0;
        for (size_t i = 0; i < t.rows.size(); ++i) {
          std::string name = t.at(i, "application_name");
          seen_names += name == "client_a" || name == "client_b";
        }
        return seen_names == 2;
      },
      3s));
}

TEST_F(ProxyPoolOfOneTest, NamedPreparedStatementsBelongToTheirClient) {
  auto a = connect_or_throw(proxy());
  auto b = connect_or_throw(proxy());
  PGconn* ca = a.raw();
  PGconn* cb = b.raw();
  ConnectionWatchdog guard_a(ca, 60s), guard_b(cb, 60s);
  auto prepare = [](PGconn* c, const char* name, const char* query) {
    PGresult* r = PQprepare(c, name, query, 1, nullptr);
    std::string error = PQresultStatus(r) == PGRES_COMMAND_OK ? "" : PQresultErrorMessage(r);
    PQclear(r);
    return error;
  };
  auto run = [](PGconn* c, const char* name, const std::string& arg) {
    const char* values[] = {arg.c_str()};
    PGresult* r = PQexecPrepared(c, name, 1, values, nullptr, nullptr, 0);
    std::string out = PQresultStatus(r) == PGRES_TUPLES_OK ? std::string(PQgetvalue(r, 0, 0))
                                                            : std::string("ERROR: ") + PQresultErrorMessage(r);
    PQclear(r);
    return out;
  };
  ASSERT_EQ(prepare(ca, "stmt", "SELECT 'A:' || $1::text"), "");
  ASSERT_EQ(prepare(cb, "stmt", "SELECT 'B:' || ($1::int * 2)::text"), "");
  ASSERT_EQ(prepare(ca, "same", "SELECT $1::int + 1"), "");
  ASSERT_EQ(prepare(cb, "same", "SELECT $1::int + 1"), "");
  EXPECT_EQ(value(a, "SELECT pg_backend_pid()"), value(b, "SELECT pg_backend_pid()"));
  for (int i = 0; i < 100; ++i) {
    std::string v = std::to_string(i);
    ASSERT_EQ(run(ca, "stmt", v), "A:" + v);
    ASSERT_EQ(run(cb, "stmt", v), "B:" + std::to_string(2 * i));
    ASSERT_EQ(run(ca, "same", v), std::to_string(i + 1));
    ASSERT_EQ(run(cb, "same", v), std::to_string(i + 1));
  }
  // Describe sees the client's own statement.
  PGresult* d = PQdescribePrepared(cb, "stmt");
  ASSERT_EQ(PQresultStatus(d), PGRES_COMMAND_OK) << PQresultErrorMessage(d);
  EXPECT_EQ(PQnparams(d), 1);
  EXPECT_EQ(PQparamtype(d, 0), 23u) << "B's statement takes an int";
  PQclear(d);
  // A statement of the other client is not visible.
  ASSERT_EQ(prepare(ca, "only_a", "SELECT 'only a'"), "") << "a statement with no parameters";
  PGresult* missing = PQexecPrepared(cb, "only_a", 0, nullptr, nullptr, nullptr, 0);
  EXPECT_EQ(PQresultStatus(missing), PGRES_FATAL_ERROR);
  EXPECT_STREQ(PQresultErrorField(missing, PG_DIAG_SQLSTATE), "26000") << PQresultErrorMessage(missing);
  PQclear(missing);
  EXPECT_EQ(run(ca, "stmt", "still"), "A:still");

  // The server connection is replaced: the statements are prepared again on the new one.
  std::string old_pid = value(a, "SELECT pg_backend_pid()");
  sql(cluster().primary_uri(), "SELECT pg_terminate_backend(" + old_pid + ")");
  ASSERT_TRUE(eventually(
      [&] {
        auto t = query_table(cluster().admin_uri(), "SHOW SERVERS");
        for (size_t i = 0; i < t.rows.size(); ++i) {
          if (t.at(i, "backend_pid") == old_pid) return false;
        }
        return true;
      },
      5s))
      << "the proxy still lists the terminated server connection";
  EXPECT_EQ(run(ca, "stmt", "again"), "A:again");
  EXPECT_EQ(run(cb, "stmt", "21"), "B:42");
  EXPECT_NE(value(a, "SELECT pg_backend_pid()"), old_pid);
}

TEST_F(ProxyPoolOfOneTest, PreparingANameTwiceIsAnErrorAsOnPostgresql) {
  for (const std::string& uri : {cluster().primary_uri(), proxy()}) {
    SCOPED_TRACE(uri == proxy() ? "through the proxy" : "PostgreSQL directly");
    auto conn = connect_or_throw(uri);
    PGconn* c = conn.raw();
    ConnectionWatchdog guard(c, 60s);
    PGresult* r = PQprepare(c, "twice", "SELECT 'first'", 0, nullptr);
    ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
    PQclear(r);
    r = PQprepare(c, "twice", "SELECT 'second'", 0, nullptr);
    EXPECT_EQ(PQresultStatus(r), PGRES_FATAL_ERROR) << "a second Parse of the same name succeeded";
    const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    EXPECT_STREQ(state ? state : "", "42P05") << PQresultErrorMessage(r);
    PQclear(r);
    r = PQexecPrepared(c, "twice", 0, nullptr, nullptr, nullptr, 0);
    ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
    EXPECT_STREQ(PQgetvalue(r, 0, 0), "first") << "the statement was replaced";
    PQclear(r);
  }
}

TEST_F(ProxyPoolOfOneTest, SharedStatementSurvivesAnotherClientsFailedPipelineBatch) {
  // The proxy names server-side statements by their text, so A's and B's statements with the same
  // text are one statement on the (single) server connection.
  auto a = connect_or_throw(proxy());
  auto b = connect_or_throw(proxy());
  ConnectionWatchdog guard_a(a.raw(), 60s), guard_b(b.raw(), 60s);
  const char* text = "SELECT 'shared text', $1::int";
  PGresult* r = PQprepare(a.raw(), "a_stmt", text, 1, nullptr);
  ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
  PQclear(r);
  // B, in one pipeline batch: a failing query, then a Parse of the same text. PostgreSQL skips
  // everything after the error up to the Sync.
  PGconn* cb = b.raw();
  ASSERT_EQ(PQenterPipelineMode(cb), 1);
  ASSERT_EQ(PQsendQueryParams(cb, "SELECT 1/0", 0, nullptr, nullptr, nullptr, nullptr, 0), 1);
  ASSERT_EQ(PQsendPrepare(cb, "b_stmt", text, 1, nullptr), 1);
  ASSERT_EQ(PQpipelineSync(cb), 1);
  int seen = 0;
  bool synced = false;
  auto deadline = Clock::now() + 10s;
  while (!synced && Clock::now() < deadline) {
    while (PQisBusy(cb) != 0 && Clock::now() < deadline) {
      pollfd pfd{PQsocket(cb), POLLIN, 0};
      ::poll(&pfd, 1, 50);
      ASSERT_EQ(PQconsumeInput(cb), 1) << PQerrorMessage(cb);
    }
    PGresult* res = PQgetResult(cb);
    if (res == nullptr) continue;
    ++seen;
    synced = PQresultStatus(res) == PGRES_PIPELINE_SYNC;
    PQclear(res);
  }
  ASSERT_TRUE(synced) << "B's batch did not end (" << seen << " results)";
  ASSERT_EQ(PQexitPipelineMode(cb), 1) << PQerrorMessage(cb);
  // A's statement is still there for A.
  for (int i = 0; i < 3; ++i) {
    std::string v = std::to_string(i);
    const char* values[] = {v.c_str()};
    r = PQexecPrepared(a.raw(), "a_stmt", 1, values, nullptr, nullptr, 0);
    EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << "execution " << i << ": " << PQresultErrorMessage(r);
    PQclear(r);
  }
  // And B can prepare it for real now.
  r = PQprepare(cb, "b_stmt", text, 1, nullptr);
  EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
  PQclear(r);
}

TEST_F(ProxyPoolOfOneTest, WaitingLongerThanQueryWaitTimeoutIsAnError) {
  auto holder = connect_or_throw(proxy());
  ASSERT_TRUE(query_with_deadline(holder, "BEGIN").ok());
  ASSERT_TRUE(query_with_deadline(holder, "SELECT 1").ok());
  auto waiter = connect_or_throw(proxy());
  auto started = Clock::now();
  auto r = query_with_deadline(waiter, "SELECT 'got a server'", 10s);
  double waited = std::chrono::duration<double>(Clock::now() - started).count();
  ASSERT_FALSE(r.ok()) << "the only server connection is in a transaction; the second client got: "
                       << (r.ok() && !r->empty() ? r->front().front().value_or("") : "");
  EXPECT_NE(r.error().find("no server connection available"), std::string::npos) << r.error();
  EXPECT_GE(waited, 1.4) << "query_wait_timeout_ms is 1500";
  EXPECT_LT(waited, 5.0) << "query_wait_timeout_ms is 1500";
  // The holder finishes normally, and a new client gets the connection.
  EXPECT_TRUE(query_with_deadline(holder, "COMMIT").ok());
  EXPECT_EQ(sql_value(proxy(), "SELECT 'next client'"), "next client");
}

TEST_F(ProxyPoolOfOneTest, MaxClientConnRefusesTheClientTooMany) {
  std::vector<postgres::PgConn> clients;
  for (int i = 0; i < 6; ++i) {
    // Clients of earlier tests may still be counted for a moment after they left.
    std::optional<postgres::PgConn> conn;
    ASSERT_TRUE(eventually(
        [&] {
          auto c = postgres::PgConn::connect(with_param(proxy(), "connect_timeout=5"));
          if (!c) return false;
          conn.emplace(std::move(c.value()));
          return true;
        },
        5s))
        << "client " << i + 1 << " of max_client_conn 6: " << connect_error(proxy());
    clients.push_back(std::move(*conn));
  }
  std::string error = connect_error(proxy());
  EXPECT_NE(error.find("too many clients"), std::string::npos) << "7th client: '" << error << "'";
  auto p = psql(proxy(), {"-c", "SELECT 1"});
  EXPECT_NE(p.exit_code, 0);
  EXPECT_NE(p.output.find("too many clients"), std::string::npos) << p.output;
  // The connected clients still work; one leaving makes room.
  EXPECT_EQ(value(clients[0], "SELECT 'still fine'"), "still fine");
  clients.pop_back();
  EXPECT_TRUE(eventually([&] { return connect_error(proxy()).empty(); }, 5s)) << connect_error(proxy());
}

}  // namespace
}  // namespace pgfleet::itest

namespace pgfleet::itest {
namespace {

// The pool's clocks: idle server connections above min_pool_size close after server_idle_timeout,
// any server connection is replaced after server_lifetime, and idle clients are disconnected after
// client_idle_timeout. Seconds, as PgBouncer counts them.
class ProxyTimeoutsTest : public ClusterSuite<ProxyTimeoutsTest> {
 public:
  static std::string cluster_config() {
    return "proxy:\n"
           "  threads: 1\n"
           "  min_pool_size: 1\n"
           "  server_idle_timeout: 1\n"
           "  server_lifetime: 3\n"
           "  client_idle_timeout: 2\n";
  }

 protected:
  // Server connections of the pool for `database` (SHOW SERVERS).
  size_t servers_of(const std::string& database) {
    auto t = query_table(cluster().admin_uri(), "SHOW SERVERS");
    size_t n = 0;
    for (size_t i = 0; i < t.rows.size(); ++i) n += t.at(i, "database") == database ? 1 : 0;
    return n;
  }
};

TEST_F(ProxyTimeoutsTest, IdleServerConnectionsCloseDownToMinPoolSize) {
  // Four clients in a transaction at once need four server connections.
  std::vector<postgres::PgConn> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(connect_or_throw(cluster().proxy_uri()));
    ASSERT_TRUE(query_with_deadline(clients.back(), "BEGIN").ok());
    ASSERT_TRUE(query_with_deadline(clients.back(), "SELECT 1").ok());
  }
  // SHOW SERVERS is at most a second old.
  EXPECT_TRUE(eventually([&] { return servers_of("postgres") >= 4; }, 5s, 100ms))
      << query_table(cluster().admin_uri(), "SHOW SERVERS").dump();
  for (auto& c : clients) ASSERT_TRUE(query_with_deadline(c, "COMMIT").ok());
  // Idle for more than a second: closed, except the one min_pool_size keeps.
  EXPECT_TRUE(eventually([&] { return servers_of("postgres") == 1; }, 10s, 200ms))
      << query_table(cluster().admin_uri(), "SHOW SERVERS").dump();
  // And it stays (server_lifetime replaces it now and then: closed, then opened again at once).
  std::this_thread::sleep_for(1500ms);
  EXPECT_TRUE(eventually([&] { return servers_of("postgres") == 1; }, 3s, 100ms))
      << "min_pool_size must keep one open\n" << query_table(cluster().admin_uri(), "SHOW SERVERS").dump();
}

TEST_F(ProxyTimeoutsTest, ServerConnectionsAreReplacedAfterTheirLifetimeWithoutClientErrors) {
  auto c = connect_or_throw(cluster().proxy_uri());
  const std::string first = value(c, "SELECT pg_backend_pid()::text");
  std::string now = first;
  // A client busy all along (each query a transaction): the old server goes when next idle.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (now == first && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(200ms);
    now = value(c, "SELECT pg_backend_pid()::text");  // throws on any error
  }
  EXPECT_NE(now, first) << "the server connection outlived server_lifetime (3 s)";
  // The old backend is gone from the server, not just from the pool.
  EXPECT_TRUE(eventually(
      [&] {
        return sql_value(cluster().primary_uri(), "SELECT count(*) FROM pg_stat_activity WHERE pid = " + first) == "0";
      },
      5s));
}

TEST_F(ProxyTimeoutsTest, IdleClientsAreDisconnectedAndBusyOnesStay) {
  auto idle = connect_or_throw(cluster().proxy_uri());
  auto busy = connect_or_throw(cluster().proxy_uri());
  ASSERT_TRUE(query_with_deadline(idle, "SELECT 1").ok());
  for (int i = 0; i < 8; ++i) {  // 4 s, one query every 500 ms
    std::this_thread::sleep_for(500ms);
    ASSERT_TRUE(query_with_deadline(busy, "SELECT 1").ok()) << "a client that keeps working was disconnected";
  }
  auto r = query_with_deadline(idle, "SELECT 1");
  ASSERT_FALSE(r.ok()) << "a client idle for 4 s outlived client_idle_timeout (2 s)";
  EXPECT_NE(r.error().find("idle timeout"), std::string::npos) << r.error();
}

}  // namespace
}  // namespace pgfleet::itest
