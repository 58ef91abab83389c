// Read/write splitting as a user sees it, on a real primary and two streaming replicas: reads
// spread over the replicas, every kind of write lands on the primary, transactions stay on one
// server, SET and prepared statements follow the client across nodes, a replica whose replay is
// paused stops getting reads, causal reads never miss the client's own write (and do miss with
// causal_reads off), the primary and replicas ports, rules and hints, pgbench through the rw port,
// primary_read_weight, stopped replicas (no reads; the replicas port's 57P03 and its fallback), and
// what a client in a transaction hears when the primary is switched over or crashes.
#include <libpq-fe.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

using Clock = std::chrono::steady_clock;

// What a client saw of a query: its error's SQLSTATE and every error text, including an error
// libpq passed to the notice receiver because it arrived while the connection was idle.
struct Outcome {
  bool ok = false;
  std::string sqlstate;
  std::string message;
};

void collect_notice(void* arg, const PGresult* res) {
  auto* o = static_cast<Outcome*>(arg);
  const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char* severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  bool error = severity != nullptr && (std::string(severity) == "ERROR" || std::string(severity) == "FATAL");
  if (error && state != nullptr && o->sqlstate.empty()) o->sqlstate = state;
  o->message += PQresultErrorMessage(res);
}

// Errors libpq reports as notices go to `o` while this lives (libpq's default receiver ignores
// its argument, so putting it back with none is exact).
class NoticesInto {
 public:
  NoticesInto(PGconn* conn, Outcome& o) : conn_(conn), previous_(PQsetNoticeReceiver(conn, collect_notice, &o)) {}
  ~NoticesInto() { PQsetNoticeReceiver(conn_, previous_, nullptr); }
  NoticesInto(const NoticesInto&) = delete;
  NoticesInto& operator=(const NoticesInto&) = delete;

 private:
  PGconn* conn_;
  PQnoticeReceiver previous_;
};

// The results of what was sent on `conn` (after PQsendQuery), errors collected into `o`.
void finish(PGconn* conn, Outcome& o, std::chrono::milliseconds timeout) {
  NoticesInto notices(conn, o);
  auto deadline = Clock::now() + timeout;
  while (PQisBusy(conn) && Clock::now() < deadline) {
    if (!PQconsumeInput(conn)) break;
    std::this_thread::sleep_for(10ms);
  }
  o.ok = true;
  if (PQisBusy(conn) && PQstatus(conn) == CONNECTION_OK) {
    o.ok = false;
    o.message += "no answer in time";
    return;
  }
  while (PGresult* r = PQgetResult(conn)) {
    if (PQresultStatus(r) == PGRES_FATAL_ERROR) {
      o.ok = false;
      const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      if (state != nullptr && o.sqlstate.empty()) o.sqlstate = state;
      o.message += PQresultErrorMessage(r);
    }
    PQclear(r);
  }
}

Outcome run_query(PGconn* conn, const std::string& query, std::chrono::milliseconds timeout = 20s) {
  Outcome o;
  {
    NoticesInto notices(conn, o);
    if (PQsendQuery(conn, query.c_str()) != 1) {
      o.message += PQerrorMessage(conn);
      return o;
    }
  }
  finish(conn, o, timeout);
  return o;
}

class ProxyRouting : public ClusterSuite<ProxyRouting> {
 public:
  static std::string cluster_config() {
    return "proxy:\n"
           "  max_replica_lag_seconds: 1\n"
           "  routing_rules:\n"
           "    - {application_name: writer_app, route: primary}\n"
           "    - {application_name: readonly, route: replica}\n";
  }
  static int cluster_replicas() { return 2; }

 protected:
  std::string at_port(int port, const std::string& database = "postgres") {
    return "postgresql://postgres:" + cluster().superuser_password() + "@127.0.0.1:" + std::to_string(port) + "/" +
           database;
  }
  std::string rw() { return cluster().proxy_uri(); }
  std::string primary_port() { return at_port(cluster().proxy_port() + 1); }
  std::string replicas_port() { return at_port(cluster().proxy_port() + 2); }
  std::string node(int k) { return at_port(cluster().node_port(k)); }
  std::string port_of(int k) { return std::to_string(cluster().node_port(k)); }

  // One statement on an open connection; its first row (throws on error).
  static postgres::Row row(postgres::PgConn& c, const std::string& query) {
    auto r = query_with_deadline(c, query);
    if (!r) throw std::runtime_error(query + ": " + r.error());
    if (r->empty()) throw std::runtime_error(query + ": no row");
    return r->front();
  }
  static std::string value(postgres::PgConn& c, const std::string& query) { return row(c, query)[0].value_or(""); }

  // The ports that answer `n` reads on one connection.
  std::map<std::string, int> read_ports(postgres::PgConn& c, int n) {
    std::map<std::string, int> seen;
    for (int i = 0; i < n; ++i) ++seen[value(c, "SELECT inet_server_port()::text")];
    return seen;
  }

  // A proxy setting in pgfleet.yaml changed, then RELOAD.
  void set_proxy_setting(const std::string& key, const std::string& value) {
    std::string yaml = read_text(cluster().config_path());
    std::regex line("\n  " + key + ": [^\n]*");
    ASSERT_TRUE(std::regex_search(yaml, line)) << key << " not in pgfleet.yaml:\n" << yaml;
    write_text(cluster().config_path(), std::regex_replace(yaml, line, "\n  " + key + ": " + value));
    auto r = psql(cluster().admin_uri(), {"-c", "RELOAD"});
    ASSERT_TRUE(r.ok()) << "RELOAD: " << r.output;
  }
  int64_t agent_pid(const std::string& name) {
    auto n = node_of(cluster().status_json(), name);
    return n["agent_pid"].is_null() ? 0 : n["agent_pid"].get<int64_t>();
  }
  std::string node_state(const std::string& name) { return str(node_of(cluster().status_json(), name), "state"); }

  // Both replicas stream and the proxy's poller sees them healthy.
  void wait_replicas_ready() {
    ASSERT_TRUE(eventually(
        [&] {
          auto t = query_table(cluster().admin_uri(), "SHOW NODES");
          int healthy = 0;
          for (size_t i = 0; i < t.rows.size(); ++i) {
            if (t.at(i, "role") == "replica" && t.at(i, "healthy") == "yes") ++healthy;
          }
          return healthy == 2;
        },
        60s))
        << query_table(cluster().admin_uri(), "SHOW NODES").dump();
  }
};

TEST_F(ProxyRouting, ReadsSpreadOverTheReplicasAndWritesGoToThePrimary) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  auto c = connect_or_throw(rw());
  std::map<std::string, int> seen;
  for (int i = 0; i < 40; ++i) {
    auto r = row(c, "SELECT inet_server_port()::text, pg_is_in_recovery()::text");
    ++seen[r[0].value_or("") + "/" + r[1].value_or("")];
  }
  EXPECT_EQ(seen.size(), 2u) << "reads should use both replicas";
  EXPECT_EQ(seen[port_of(2) + "/true"], 20) << "equal weights: an even split";
  EXPECT_EQ(seen[port_of(3) + "/true"], 20);

  // Every kind of write, each reporting where it ran.
  sql(rw(), "DROP TABLE IF EXISTS rt; CREATE TABLE rt (id int primary key, v int); CREATE SEQUENCE IF NOT EXISTS rt_seq");
  sql(rw(), "CREATE OR REPLACE FUNCTION rt_touch() RETURNS int LANGUAGE sql AS 'SELECT 1'");
  const std::vector<std::string> writes = {
      "INSERT INTO rt VALUES (1, 1) RETURNING inet_server_port()::text",
      "UPDATE rt SET v = 2 WHERE id = 1 RETURNING inet_server_port()::text",
      "WITH d AS (DELETE FROM rt WHERE id = 1 RETURNING id) SELECT inet_server_port()::text FROM d",
      "SELECT inet_server_port()::text, nextval('rt_seq')",
      "SELECT inet_server_port()::text, setval('rt_seq', 10)",
      "SELECT inet_server_port()::text, pg_advisory_xact_lock(42)",
      "SELECT inet_server_port()::text FROM (VALUES (1)) v FOR UPDATE",
      "SELECT inet_server_port()::text, rt_touch()",  // not known to be read-only
      "SELECT inet_server_port()::text, txid_current()",
      "/* pgfleet:primary */ SELECT inet_server_port()::text",
      "INSERT INTO rt VALUES (2, 2) RETURNING inet_server_port()::text",
      "SELECT inet_server_port()::text FROM rt FOR SHARE",
  };
  for (const auto& w : writes) {
    auto conn = connect_or_throw(rw());  // a fresh client: no causal-read history
    EXPECT_EQ(value(conn, w), port_of(1)) << w;
  }
  // DDL and SELECT INTO run where a later read on the primary port can see them.
  sql(rw(), "CREATE TABLE rt_ddl AS SELECT inet_server_port() AS port");
  EXPECT_EQ(sql_value(primary_port(), "SELECT port::text FROM rt_ddl"), port_of(1));
  sql(rw(), "DROP TABLE rt_ddl");

  auto admin = query_table(cluster().admin_uri(), "SHOW ROUTING");
  EXPECT_GE(admin.rows.size(), 10u);
}

TEST_F(ProxyRouting, TransactionsStayOnOneServer) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  auto c = connect_or_throw(rw());
  ASSERT_TRUE(c.exec("BEGIN"));
  std::set<std::string> ports;
  for (int i = 0; i < 6; ++i) ports.insert(value(c, "SELECT inet_server_port()::text"));
  EXPECT_EQ(value(c, "SELECT pg_is_in_recovery()::text"), "false");
  ASSERT_TRUE(c.exec("COMMIT"));
  EXPECT_EQ(ports, std::set<std::string>{port_of(1)}) << "a read-write transaction runs on the primary";

  // READ ONLY: one replica for the whole transaction (a fresh client, so no causal wait).
  auto r = connect_or_throw(rw());
  ASSERT_TRUE(r.exec("BEGIN READ ONLY"));
  ports.clear();
  for (int i = 0; i < 6; ++i) ports.insert(value(r, "SELECT inet_server_port()::text"));
  EXPECT_EQ(value(r, "SELECT pg_is_in_recovery()::text"), "true");
  ASSERT_TRUE(r.exec("COMMIT"));
  EXPECT_EQ(ports.size(), 1u);
  EXPECT_NE(*ports.begin(), port_of(1));

  // SET default_transaction_read_only makes a plain BEGIN read-only, and such transactions may
  // use replicas; START TRANSACTION READ WRITE still goes to the primary.
  ASSERT_TRUE(r.exec("SET default_transaction_read_only = on"));
  ASSERT_TRUE(r.exec("BEGIN"));
  EXPECT_EQ(value(r, "SELECT pg_is_in_recovery()::text"), "true");
  ASSERT_TRUE(r.exec("COMMIT"));
  ASSERT_TRUE(r.exec("START TRANSACTION READ WRITE"));
  EXPECT_EQ(value(r, "SELECT inet_server_port()::text"), port_of(1));
  ASSERT_TRUE(r.exec("COMMIT"));

  // A write inside a read-only transaction fails as it would on PostgreSQL itself.
  auto w = query_with_deadline(r, "BEGIN READ ONLY; CREATE TABLE rt_never (a int); COMMIT");
  EXPECT_FALSE(w.ok());
}

TEST_F(ProxyRouting, SetSurvivesBalancing) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  auto c = connect_or_throw(rw());
  ASSERT_TRUE(c.exec("SET work_mem = '7MB'"));
  ASSERT_TRUE(c.exec("SET search_path = pg_catalog, public"));
  std::set<std::string> ports;
  for (int i = 0; i < 20; ++i) {
    auto r = row(c, "SELECT current_setting('work_mem'), current_setting('search_path'), inet_server_port()::text");
    EXPECT_EQ(r[0].value_or(""), "7MB");
    EXPECT_EQ(r[1].value_or(""), "pg_catalog, public");
    ports.insert(r[2].value_or(""));
  }
  EXPECT_EQ(ports, (std::set<std::string>{port_of(2), port_of(3)}));
  std::string standard = sql_value(primary_port(), "SHOW work_mem");
  ASSERT_TRUE(c.exec("RESET work_mem"));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(value(c, "SELECT current_setting('work_mem')"), standard);
}

TEST_F(ProxyRouting, PreparedStatementsWorkAcrossNodes) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  sql(rw(), "CREATE TABLE IF NOT EXISTS rt_prep (id int)");
  auto c = connect_or_throw(rw());
  PGconn* raw = c.raw();
  auto prepare = [&](const char* name, const char* text) {
    PGresult* r = PQprepare(raw, name, text, 0, nullptr);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    std::string error = PQresultErrorMessage(r);
    PQclear(r);
    ASSERT_TRUE(ok) << error;
  };
  auto exec = [&](const char* name, const std::string& param, std::string* out) {
    const char* values[1] = {param.c_str()};
    PGresult* r = PQexecPrepared(raw, name, 1, values, nullptr, nullptr, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK;
    if (ok && PQntuples(r) > 0 && out != nullptr) *out = PQgetvalue(r, 0, 0);
    std::string error = PQresultErrorMessage(r);
    PQclear(r);
    EXPECT_TRUE(ok) << error;
  };
  ASSERT_NO_FATAL_FAILURE(prepare("read_port", "SELECT inet_server_port()::text, $1::int"));
  ASSERT_NO_FATAL_FAILURE(prepare("write_row", "INSERT INTO rt_prep VALUES ($1) RETURNING inet_server_port()::text"));
  std::map<std::string, int> ports;
  for (int i = 0; i < 20; ++i) {
    std::string port;
    exec("read_port", std::to_string(i), &port);
    ++ports[port];
  }
  EXPECT_EQ(ports.size(), 2u) << "a prepared read runs on both replicas";
  EXPECT_EQ(ports.count(port_of(1)), 0u);
  std::string port;
  exec("write_row", "7", &port);
  EXPECT_EQ(port, port_of(1)) << "a prepared write runs on the primary";
  // Inside a read-write transaction the read statement runs on the primary too.
  ASSERT_TRUE(c.exec("BEGIN"));
  exec("read_port", "1", &port);
  EXPECT_EQ(port, port_of(1));
  ASSERT_TRUE(c.exec("COMMIT"));
}

TEST_F(ProxyRouting, PausedReplayExcludesAReplicaUntilItResumes) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  sql(primary_port(), "CREATE TABLE IF NOT EXISTS rt_lag (id int)");
  ASSERT_TRUE(sql(node(3), "SELECT pg_wal_replay_pause()").size() == 1);
  // WAL keeps coming; node3 falls behind by more than max_replica_lag_seconds (1 s).
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    while (!stop) {
      (void)try_sql(primary_port(), "INSERT INTO rt_lag VALUES (1)", 5s);
      std::this_thread::sleep_for(50ms);
    }
  });
  auto c = connect_or_throw(rw());
  std::map<std::string, int> seen;
  bool excluded = eventually(
      [&] {
        seen = read_ports(c, 10);
        return seen.size() == 1 && seen.count(port_of(2)) == 1;
      },
      20s, 200ms);
  std::string nodes_dump = query_table(cluster().admin_uri(), "SHOW NODES").dump();
  ASSERT_TRUE(sql(node(3), "SELECT pg_wal_replay_resume()").size() == 1);
  EXPECT_TRUE(excluded) << "node3 kept getting reads while its replay was paused\n" << nodes_dump;
  for (int i = 0; i < 30; ++i) ++seen[value(c, "SELECT inet_server_port()::text")];
  EXPECT_EQ(seen.count(port_of(1)), 0u) << "node2 still served: reads need not go to the primary";
  bool back = eventually([&] { return read_ports(c, 10).count(port_of(3)) == 1; }, 20s, 200ms);
  stop = true;
  writer.join();
  EXPECT_TRUE(back) << "node3 gets reads again once it has caught up";
  auto routing = query_table(cluster().admin_uri(), "SHOW ROUTING");
  EXPECT_FALSE(routing.rows.empty());
}

// Inserts then reads its own row `iterations` times; the number of reads that missed it.
int causal_misses(const std::string& uri, int iterations, int offset) {
  auto c = connect_or_throw(uri);
  int misses = 0;
  for (int i = 0; i < iterations; ++i) {
    std::string id = std::to_string(offset + i);
    auto w = query_with_deadline(c, "INSERT INTO rt_causal VALUES (" + id + ")");
    if (!w) throw std::runtime_error(w.error());
    auto r = query_with_deadline(c, "SELECT count(*) FROM rt_causal WHERE id = " + id);
    if (!r) throw std::runtime_error(r.error());
    if (r->front()[0].value_or("") != "1") ++misses;
  }
  return misses;
}

void set_causal_reads(SharedCluster& cluster, const std::string& value) {
  std::string yaml = read_text(cluster.config_path());
  yaml = std::regex_replace(yaml, std::regex("causal_reads: [a-z]+"), "causal_reads: " + value);
  write_text(cluster.config_path(), yaml);
  auto r = psql(cluster.admin_uri(), {"-c", "RELOAD"});
  if (!r.ok()) throw std::runtime_error("RELOAD: " + r.output);
}

TEST_F(ProxyRouting, CausalReadsNeverMissTheClientsOwnWrite) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  sql(primary_port(), "DROP TABLE IF EXISTS rt_causal; CREATE TABLE rt_causal (id int)");
  // node3 applies WAL 500 ms late; node2 is an ordinary asynchronous replica.
  sql(node(3), "ALTER SYSTEM SET recovery_min_apply_delay = '500ms'");
  sql(node(3), "SELECT pg_reload_conf()");
  ASSERT_TRUE(eventually([&] { return sql_value(node(3), "SHOW recovery_min_apply_delay") == "500ms"; }, 10s));

  auto started = Clock::now();
  int misses_on = causal_misses(rw(), 10000, 0);
  auto seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::cout << "causal_reads=session: 10000 insert+select pairs in " << seconds << " s, " << misses_on << " misses\n";
  EXPECT_EQ(misses_on, 0);

  // The same with causal_reads off misses (the delayed replica cannot have the row yet).
  set_causal_reads(cluster(), "off");
  int misses_off = causal_misses(rw(), 300, 100000);
  std::cout << "causal_reads=off: " << misses_off << " misses of 300\n";
  set_causal_reads(cluster(), "session");
  sql(node(3), "ALTER SYSTEM RESET recovery_min_apply_delay");
  sql(node(3), "SELECT pg_reload_conf()");
  EXPECT_GT(misses_off, 0);

  // Reads that come later than the replicas' replay do use replicas again.
  auto c = connect_or_throw(rw());
  ASSERT_TRUE(c.exec("INSERT INTO rt_causal VALUES (-1)"));
  bool on_replica = eventually(
      [&] {
        auto r = row(c, "SELECT count(*)::text, pg_is_in_recovery()::text FROM rt_causal WHERE id = -1");
        EXPECT_EQ(r[0].value_or(""), "1");
        return r[1].value_or("") == "true";
      },
      10s, 50ms);
  EXPECT_TRUE(on_replica);
}

TEST_F(ProxyRouting, PrimaryAndReplicasPortsRulesAndHints) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(sql_value(primary_port(), "SELECT pg_is_in_recovery()::text"), "false");
    EXPECT_EQ(sql_value(replicas_port(), "SELECT pg_is_in_recovery()::text"), "true");
  }
  // A write on the replicas port fails as on a standby.
  EXPECT_FALSE(try_sql(replicas_port(), "CREATE TABLE rt_nope (a int)").ok());
  // pgfleet url prints the three ports.
  auto u = cluster().pgfleet({"url", "--proxy-primary"});
  EXPECT_NE(u.output.find(":" + std::to_string(cluster().proxy_port() + 1) + "/"), std::string::npos) << u.output;
  u = cluster().pgfleet({"url", "--proxy-replicas"});
  EXPECT_NE(u.output.find(":" + std::to_string(cluster().proxy_port() + 2) + "/"), std::string::npos) << u.output;

  // application_name rules: writer_app → the primary, readonly → replicas.
  auto writer = connect_or_throw(with_param(rw(), "application_name=writer_app"));
  EXPECT_EQ(read_ports(writer, 5), (std::map<std::string, int>{{port_of(1), 5}}));
  auto reader = connect_or_throw(with_param(rw(), "application_name=readonly"));
  EXPECT_EQ(read_ports(reader, 10).count(port_of(1)), 0u);
  // Hints.
  auto c = connect_or_throw(rw());
  EXPECT_NE(value(c, "/* pgfleet:replica */ SELECT inet_server_port()::text"), port_of(1));
  EXPECT_EQ(value(c, "/* pgfleet:primary */ SELECT inet_server_port()::text"), port_of(1));
}

TEST_F(ProxyRouting, PgbenchSelectOnlySpreadsOverTheReplicas) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  auto init = run_program({pg_tool("pgbench"), "-i", "-s", "1", "-q", primary_port()}, 120s);
  ASSERT_TRUE(init.ok()) << init.output;
  ASSERT_TRUE(eventually([&] { return sql_value(node(2), "SELECT count(*) FROM pgbench_branches") == "1" &&
                                      sql_value(node(3), "SELECT count(*) FROM pgbench_branches") == "1"; },
                         30s));
  auto before = query_table(cluster().admin_uri(), "SHOW NODES");
  for (const char* mode : {"simple", "prepared"}) {
    auto run = run_program({pg_tool("pgbench"), "-n", "-S", "-c", "8", "-j", "2", "-T", "4", "-M", mode, rw()}, 90s);
    EXPECT_TRUE(run.ok()) << run.output;
    EXPECT_NE(run.output.find("number of failed transactions: 0"), std::string::npos) << run.output;
    std::smatch m;
    if (std::regex_search(run.output, m, std::regex(R"(tps = ([0-9.]+) \(without)"))) {
      std::cout << "pgbench -S -M " << mode << " through the rw-split port: " << m[1] << " tps\n";
    }
  }
  Table after;
  std::map<std::string, int64_t> split;
  ASSERT_TRUE(eventually(
      [&] {
        after = query_table(cluster().admin_uri(), "SHOW NODES");
        split.clear();
        for (size_t i = 0; i < after.rows.size(); ++i) {
          int64_t then = 0;
          for (size_t j = 0; j < before.rows.size(); ++j) {
            if (before.at(j, "name") == after.at(i, "name")) then = std::stoll(before.at(j, "statements"));
          }
          split[after.at(i, "name")] = std::stoll(after.at(i, "statements")) - then;
        }
        return split["node2"] > 1000 && split["node3"] > 1000;
      },
      5s))
      << after.dump();
  std::cout << "per-node split of pgbench -S through the rw port: node1 " << split["node1"] << ", node2 "
            << split["node2"] << ", node3 " << split["node3"] << "\n";
  EXPECT_LT(split["node1"], (split["node2"] + split["node3"]) / 10) << "reads belong on the replicas";
  double ratio = static_cast<double>(split["node2"]) / static_cast<double>(split["node3"]);
  EXPECT_GT(ratio, 0.5);
  EXPECT_LT(ratio, 2.0);
}

}  // namespace
}  // namespace pgfleet::itest

namespace pgfleet::itest {
namespace {

TEST_F(ProxyRouting, PrimaryReadWeightGivesThePrimaryAShareOfReads) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  ASSERT_NO_FATAL_FAILURE(set_proxy_setting("primary_read_weight", "1"));
  EXPECT_EQ(query_table(cluster().admin_uri(), "SHOW NODES").at(0, "read_weight"), "1");
  // Weights 1/1/1: about a third of the reads on the primary (a fresh client: no causal history).
  auto c = connect_or_throw(rw());
  auto seen = read_ports(c, 60);
  set_proxy_setting("primary_read_weight", "0");
  EXPECT_GE(seen[port_of(1)], 10) << "primary_read_weight 1 gave the primary too few reads";
  EXPECT_LE(seen[port_of(1)], 30) << "primary_read_weight 1 gave the primary too many reads";
  EXPECT_GE(seen[port_of(2)], 10);
  EXPECT_GE(seen[port_of(3)], 10);
  // Back to 0: none.
  auto again = connect_or_throw(rw());
  EXPECT_EQ(read_ports(again, 30).count(port_of(1)), 0u) << "primary_read_weight 0 still sends reads to the primary";
}

TEST_F(ProxyRouting, HealthPollsAreFastOnlyWhileAClientNeedsThem) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  auto polls = [&] {
    std::map<std::string, int64_t> out;
    auto nodes = query_table(cluster().admin_uri(), "SHOW NODES");
    for (size_t i = 0; i < nodes.rows.size(); ++i) out[nodes.at(i, "name")] = std::stoll(nodes.at(i, "polls"));
    return out;
  };
  auto polls_during = [&](std::chrono::milliseconds d, const std::function<void()>& action = {}) {
    auto before = polls();
    if (action) action();
    std::this_thread::sleep_for(d);
    auto after = polls();
    std::map<std::string, int64_t> delta;
    for (const auto& [name, n] : after) delta[name] = n - before[name];
    return delta;
  };
  // Idle (no client has written for a while): about 5 polls a second per node, not 100.
  std::this_thread::sleep_for(1500ms);
  auto idle = polls_during(2000ms);
  ASSERT_EQ(idle.size(), 3u);
  for (const auto& [name, n] : idle) {
    EXPECT_GE(n, 3) << name << " is not polled while idle";
    EXPECT_LE(n, 30) << name << " is polled too often while the proxy is idle";
  }
  // A client's write makes them fast (its reads wait for the replicas to be seen past it).
  auto c = connect_or_throw(rw());
  sql(primary_port(), "CREATE TABLE IF NOT EXISTS rt_polls (id int)");
  auto busy = polls_during(600ms, [&] { (void)value(c, "INSERT INTO rt_polls VALUES (1) RETURNING id"); });
  for (const auto& [name, n] : busy) EXPECT_GE(n, 15) << name << " is not polled fast after a client's write";
}

TEST_F(ProxyRouting, StoppedReplicasGetNoReadsAndTheReplicasPortSaysSo) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  size_t log_before = read_text(cluster().proxy_log()).size();
  // node3's agent stops (SIGTERM): it stops PostgreSQL and reports the node stopped in the DCS.
  int64_t agent3 = agent_pid("node3");
  ASSERT_GT(agent3, 0);
  ASSERT_EQ(::kill(static_cast<pid_t>(agent3), SIGTERM), 0);
  ASSERT_TRUE(eventually([&] { return !process_alive(agent3); }, 60s));
  EXPECT_EQ(node_state("node3"), "stopped");
  // The proxy learns it from the DCS or from its polls within a moment (a read sent there before
  // would be answered by the primary, without an error); from then on:
  auto proxy_calls_healthy = [&](const std::string& node) {
    auto nodes = query_table(cluster().admin_uri(), "SHOW NODES");
    for (size_t i = 0; i < nodes.rows.size(); ++i) {
      if (nodes.at(i, "name") == node) return nodes.at(i, "healthy") == "yes";
    }
    return false;
  };
  ASSERT_TRUE(eventually([&] { return !proxy_calls_healthy("node3"); }, 5s)) << "SHOW NODES still calls node3 healthy";
  auto c = connect_or_throw(rw());
  // No read reaches node3 (a read that did would fail there and be retried: count where they ran).
  EXPECT_EQ(read_ports(c, 30), (std::map<std::string, int>{{port_of(2), 30}}));
  EXPECT_EQ(sql_value(replicas_port(), "SELECT inet_server_port()::text"), port_of(2));

  // node2 too: no replica is left.
  int64_t agent2 = agent_pid("node2");
  ASSERT_GT(agent2, 0);
  ASSERT_EQ(::kill(static_cast<pid_t>(agent2), SIGTERM), 0);
  ASSERT_TRUE(eventually([&] { return !process_alive(agent2); }, 60s));
  EXPECT_EQ(node_state("node2"), "stopped");
  // The rw-split port reads on the primary, counts it and logs it (at most every 10 s per thread).
  int64_t no_replica_before = 0;
  auto routing = query_table(cluster().admin_uri(), "SHOW ROUTING");
  for (size_t i = 0; i < routing.rows.size(); ++i) {
    if (routing.at(i, "reason") == "no_replica") no_replica_before = std::stoll(routing.at(i, "statements"));
  }
  EXPECT_EQ(read_ports(c, 10), (std::map<std::string, int>{{port_of(1), 10}}));
  bool logged = eventually(
      [&] {
        (void)read_ports(c, 2);
        return read_text(cluster().proxy_log()).find("reads go to the primary: no replica is healthy", log_before) !=
               std::string::npos;
      },
      15s, 500ms);
  EXPECT_TRUE(logged) << tail_lines(read_text(cluster().proxy_log()), 20);
  EXPECT_TRUE(eventually(
      [&] {
        auto t = query_table(cluster().admin_uri(), "SHOW ROUTING");
        for (size_t i = 0; i < t.rows.size(); ++i) {
          if (t.at(i, "reason") == "no_replica") return std::stoll(t.at(i, "statements")) >= no_replica_before + 10;
        }
        return false;
      },
      5s))
      << query_table(cluster().admin_uri(), "SHOW ROUTING").dump();

  // The replicas port refuses, saying why, unless replicas_fallback_to_primary is set.
  {
    auto r = connect_or_throw(replicas_port());
    auto o = run_query(r.raw(), "SELECT inet_server_port()::text");
    EXPECT_FALSE(o.ok);
    EXPECT_EQ(o.sqlstate, "57P03") << o.message;
    EXPECT_NE(o.message.find("no replica"), std::string::npos) << o.message;
  }
  set_proxy_setting("replicas_fallback_to_primary", "true");
  EXPECT_EQ(sql_value(replicas_port(), "SELECT inet_server_port()::text"), port_of(1));
  set_proxy_setting("replicas_fallback_to_primary", "false");

  // Both come back and take reads again.
  for (const char* n : {"node2", "node3"}) {
    auto r = cluster().pgfleet({"restart", n, "--timeout", "90"}, 120s);
    ASSERT_TRUE(r.ok()) << r.output;
  }
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  EXPECT_TRUE(eventually([&] { return read_ports(c, 10).count(port_of(1)) == 0; }, 30s, 200ms));
}

TEST_F(ProxyRouting, ATerminatedBackendOnAHealthyPrimaryIsNotCalledAFailover) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  auto c = connect_or_throw(with_param(rw(), "application_name=terminated_probe"));
  ASSERT_TRUE(c.exec("BEGIN").ok());
  std::string pid = value(c, "SELECT pg_backend_pid()::text");
  EXPECT_EQ(sql_value(node(1), "SELECT pg_terminate_backend(" + pid + ")"), "t");
  // The client gets PostgreSQL's own error, not a failover that did not happen.
  auto o = run_query(c.raw(), "SELECT 1");
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(o.sqlstate, "57P01") << o.message;
  EXPECT_NE(o.message.find("terminating connection due to administrator command"), std::string::npos) << o.message;
  EXPECT_EQ(o.message.find("failover"), std::string::npos) << o.message;
}

TEST_F(ProxyRouting, AReadWhoseReplicaConnectionDiesIsRetriedElsewhere) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  auto c = connect_or_throw(with_param(rw(), "application_name=retry_probe"));
  for (int attempt = 0; attempt < 3; ++attempt) {
    ASSERT_EQ(PQsendQuery(c.raw(), "SELECT inet_server_port()::text, pg_sleep(1.5)"), 1);
    // Find the replica backend running it and terminate it (as a crash or restart of the node would).
    std::string victim_port, pid;
    bool found = eventually(
        [&] {
          for (int k : {2, 3}) {
            pid = sql_value(node(k), "SELECT coalesce(max(pid)::text, '') FROM pg_stat_activity WHERE "
                                     "query LIKE 'SELECT inet_server_port()::text, pg_sleep%' AND state = 'active'");
            if (!pid.empty()) {
              victim_port = port_of(k);
              return true;
            }
          }
          return false;
        },
        3s, 20ms);
    ASSERT_TRUE(found) << "the read did not run on a replica";
    EXPECT_EQ(sql_value(victim_port == port_of(2) ? node(2) : node(3), "SELECT pg_terminate_backend(" + pid + ")"), "t");
    // The client sees no error: the read ran again, on another node.
    std::string error, port;
    auto deadline = Clock::now() + 10s;
    while (PQisBusy(c.raw()) && Clock::now() < deadline) {
      PQconsumeInput(c.raw());
      std::this_thread::sleep_for(10ms);
    }
    while (PGresult* r = PQgetResult(c.raw())) {
      if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) port = PQgetvalue(r, 0, 0);
      else error = PQresultErrorMessage(r);
      PQclear(r);
    }
    EXPECT_EQ(error, "");
    EXPECT_FALSE(port.empty());
    EXPECT_NE(port, victim_port) << "retried on the node that lost the connection";
    EXPECT_EQ(value(c, "SELECT 'still connected'"), "still connected");
    std::this_thread::sleep_for(2500ms);  // the terminated node is skipped for 2 s
  }
}

// Last in the suite: it moves the primary to node2.
TEST_F(ProxyRouting, ZSwitchoverSendsNewTransactionsToTheNewPrimaryAndKeepsIdleClients) {
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  sql(primary_port(), "DROP TABLE IF EXISTS rt_fo; CREATE TABLE rt_fo (id int)");
  auto idle = connect_or_throw(rw());
  EXPECT_EQ(value(idle, "SELECT 'idle'"), "idle");
  auto in_tx = connect_or_throw(rw());
  ASSERT_TRUE(in_tx.exec("BEGIN").ok());
  ASSERT_TRUE(in_tx.exec("INSERT INTO rt_fo VALUES (1)").ok());

  // The open transaction holds the switchover's drain for a while, then the old primary goes.
  auto r = cluster().pgfleet({"switchover", "--to", "node2", "--timeout", "90"}, 120s);
  ASSERT_TRUE(r.ok()) << r.output;

  // The client that was in a transaction on node1 gets an error that names the failover.
  auto o = run_query(in_tx.raw(), "INSERT INTO rt_fo VALUES (2)");
  EXPECT_FALSE(o.ok) << "a transaction begun on the old primary went on";
  EXPECT_TRUE(o.sqlstate == "57P01" || o.sqlstate == "08006") << o.sqlstate << ": " << o.message;
  // The proxy is paused during a switchover: it says so, naming the old primary.
  EXPECT_NE(o.message.find("switchover: the primary node1"), std::string::npos) << o.message;

  // The idle client survives; its new transactions run on the new primary.
  EXPECT_TRUE(eventually([&] { return value(idle, "INSERT INTO rt_fo VALUES (3) RETURNING inet_server_port()::text") == port_of(2); },
                         30s, 200ms));
  EXPECT_EQ(sql_value(primary_port(), "SELECT count(*) FROM rt_fo WHERE id = 1"), "0") << "the open transaction did not commit";
  // Reads still avoid the primary (node1 is now a replica of node2).
  auto reader = connect_or_throw(rw());
  EXPECT_TRUE(eventually([&] { return read_ports(reader, 10).count(port_of(2)) == 0; }, 60s, 500ms));
}

// After the switchover: the host of the primary (node2) dies, agent and postmaster at once.
TEST_F(ProxyRouting, ZzPrimaryCrashGivesOpenTransactionsAFailoverErrorAndKeepsIdleClients) {
  std::string old_primary = cluster().status_json().value("leader", "");
  ASSERT_FALSE(old_primary.empty());
  int k = old_primary.back() - '0';
  sql(primary_port(), "DROP TABLE IF EXISTS rt_crash; CREATE TABLE rt_crash (id int)");
  auto idle = connect_or_throw(rw());
  EXPECT_EQ(value(idle, "INSERT INTO rt_crash VALUES (0) RETURNING inet_server_port()::text"), port_of(k));
  // Both other nodes stream from this primary and have the table (replication is asynchronous:
  // a replica promoted before it had them would not).
  ASSERT_NO_FATAL_FAILURE(wait_replicas_ready());
  for (int other = 1; other <= 3; ++other) {
    if (other == k) continue;
    ASSERT_TRUE(eventually(
        [&] {
          auto r = try_sql(node(other), "SELECT count(*)::text FROM rt_crash", 2s);
          return r.ok() && !r->empty() && r->front()[0].value_or("") == "1";
        },
        30s, 100ms))
        << "node" << other << " did not replay the table";
  }
  auto in_tx = connect_or_throw(rw());  // idle in a transaction
  ASSERT_TRUE(in_tx.exec("BEGIN").ok());
  ASSERT_TRUE(in_tx.exec("INSERT INTO rt_crash VALUES (1)").ok());
  auto busy = connect_or_throw(rw());  // in a transaction, a statement running
  ASSERT_TRUE(busy.exec("BEGIN").ok());
  ASSERT_TRUE(busy.exec("INSERT INTO rt_crash VALUES (2)").ok());
  ASSERT_EQ(PQsendQuery(busy.raw(), "SELECT pg_sleep(60)"), 1);
  // Two statements the server has not read yet when it dies (their backends are stopped): an
  // INSERT inside a transaction cannot have committed; a COMMIT may have.
  std::vector<pid_t> stopped;
  struct Resume {  // should the test end before it kills them
    std::vector<pid_t>& pids;
    ~Resume() {
      for (pid_t pid : pids) ::kill(pid, SIGCONT);
    }
  } resume{stopped};
  auto send_to_stopped_backend = [&](postgres::PgConn& c, int id, const char* statement) {
    ASSERT_TRUE(c.exec("BEGIN").ok());
    ASSERT_TRUE(c.exec("INSERT INTO rt_crash VALUES (" + std::to_string(id) + ")").ok());
    const pid_t backend = std::stoi(value(c, "SELECT pg_backend_pid()::text"));
    ASSERT_EQ(::kill(backend, SIGSTOP), 0);
    stopped.push_back(backend);
    ASSERT_EQ(PQsendQuery(c.raw(), statement), 1);
  };
  auto inserting = connect_or_throw(rw());
  ASSERT_NO_FATAL_FAILURE(send_to_stopped_backend(inserting, 5, "INSERT INTO rt_crash VALUES (6)"));
  auto committing = connect_or_throw(rw());
  ASSERT_NO_FATAL_FAILURE(send_to_stopped_backend(committing, 7, "COMMIT"));
  std::this_thread::sleep_for(300ms);

  auto n = node_of(cluster().status_json(), old_primary);
  ASSERT_FALSE(n["agent_pid"].is_null());
  ASSERT_FALSE(n["pid"].is_null());
  ::kill(static_cast<pid_t>(n["agent_pid"].get<int64_t>()), SIGKILL);
  ::kill(static_cast<pid_t>(n["pid"].get<int64_t>()), SIGKILL);
  for (pid_t backend : stopped) ::kill(backend, SIGKILL);
  auto killed = Clock::now();

  // The running statement ends at once with an error naming the failover, not 60 s later.
  Outcome b;
  finish(busy.raw(), b, 15s);
  double seconds = std::chrono::duration<double>(Clock::now() - killed).count();
  std::cout << "the client with a statement running heard after " << seconds << " s: " << b.message;
  EXPECT_FALSE(b.ok);
  EXPECT_EQ(b.sqlstate, "08006") << b.message;
  EXPECT_NE(b.message.find("failover"), std::string::npos) << b.message;
  EXPECT_NE(b.message.find("the primary " + old_primary), std::string::npos) << b.message;
  EXPECT_NE(b.message.find("the transaction was rolled back"), std::string::npos) << b.message;  // a SELECT in it
  EXPECT_LT(seconds, 5.0);
  // The client idle in its transaction hears it at its next statement.
  auto t = run_query(in_tx.raw(), "INSERT INTO rt_crash VALUES (3)");
  EXPECT_FALSE(t.ok);
  EXPECT_EQ(t.sqlstate, "08006") << t.message;
  EXPECT_NE(t.message.find("failover"), std::string::npos) << t.message;
  EXPECT_NE(t.message.find("rolled back"), std::string::npos) << t.message;
  Outcome i, c;
  finish(inserting.raw(), i, 15s);
  EXPECT_EQ(i.sqlstate, "08006") << i.message;
  EXPECT_NE(i.message.find("rolled back"), std::string::npos) << i.message;
  finish(committing.raw(), c, 15s);
  EXPECT_EQ(c.sqlstate, "08006") << c.message;
  EXPECT_NE(c.message.find("may or may not have taken effect"), std::string::npos) << c.message;

  // A new primary is elected once the lease expires; the idle client then writes there.
  std::string fresh;
  ASSERT_TRUE(eventually(
      [&] {
        fresh = cluster().status_json().value("leader", "");
        return !fresh.empty() && fresh != old_primary;
      },
      90s, 500ms))
      << cluster().status_json().dump(2);
  std::string port;
  EXPECT_TRUE(eventually(
      [&] {
        auto r = query_with_deadline(idle, "INSERT INTO rt_crash VALUES (4) RETURNING inet_server_port()::text");
        port = r && !r->empty() ? r->front()[0].value_or("") : "";
        return port == port_of(fresh.back() - '0');
      },
      30s, 200ms))
      << "the idle client wrote on " << port << ", new primary " << fresh << ", status " << PQstatus(idle.raw());
  EXPECT_EQ(sql_value(primary_port(), "SELECT count(*) FROM rt_crash WHERE id IN (1, 2, 3, 5, 6, 7)"), "0");
}

}  // namespace
}  // namespace pgfleet::itest
