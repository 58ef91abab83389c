// `pgfleet check` against a real cluster: a healthy one exits 0; a replica whose replay is paused,
// stopped replicas, failing WAL archiving and an unreadable cluster give the exit codes and the
// lines a monitoring system (Nagios, Icinga, a cron job) acts on.
#include <signal.h>
#include <sys/stat.h>

#include <sstream>
#include <string>

#include "harness.hpp"
#include "http/client.hpp"

namespace pgfleet::itest {
namespace {

class CheckTest : public PgfleetTest {
 protected:
  // The check named `name` from `pgfleet check --json` output.
  static nlohmann::json check_of(const nlohmann::json& report, const std::string& name) {
    for (const auto& c : report["checks"])
      if (c["name"] == name) return c;
    return nullptr;
  }
  nlohmann::json check_json(const std::vector<std::string>& extra = {}, int expected_exit = 0) {
    std::vector<std::string> args{"check", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = pgfleet(args, 60s);
    EXPECT_EQ(r.exit_code, expected_exit) << r.output;
    return nlohmann::json::parse(r.output);
  }
  void stop_agent_of(const std::string& node) {
    int64_t agent = num(node_status(node), "agent_pid");
    ASSERT_GT(agent, 0);
    ASSERT_EQ(::kill(static_cast<pid_t>(agent), SIGTERM), 0);
    ASSERT_TRUE(wait_state(node, "stopped", 60s)) << status_json().dump(2);
  }
};

TEST_F(CheckTest, HealthyThenAPausedReplayThenStoppedReplicas) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());

  auto healthy = pgfleet({"check"}, 60s);
  ASSERT_EQ(healthy.exit_code, 0) << healthy.output;
  EXPECT_NE(healthy.output.find("OK: 9 checks passed"), std::string::npos) << healthy.output;
  auto report = check_json();
  EXPECT_EQ(report["status"], "OK");
  for (const auto& c : report["checks"]) EXPECT_EQ(c["status"], "OK") << c.dump();
  std::string replication = check_of(report, "replication")["detail"];
  EXPECT_NE(replication.find("was replayed on node2 after"), std::string::npos) << replication;
  EXPECT_NE(replication.find("node3 after"), std::string::npos) << replication;
  std::string proxy = check_of(report, "proxy")["detail"];
  EXPECT_NE(proxy.find("reaches node1 (primary)"), std::string::npos) << proxy;
  EXPECT_NE(proxy.find("(replica)"), std::string::npos) << proxy;
  auto nagios = pgfleet({"check", "--nagios"}, 60s);
  EXPECT_EQ(nagios.exit_code, 0);
  EXPECT_EQ(nagios.output.rfind("PGFLEET OK - 9 checks passed, primary node1 | 'node2_lag'=", 0), 0u) << nagios.output;

  // A replica that streams but does not replay: status still says streaming; the check's test
  // commit finds it.
  std::string node3 = node_url("node3");
  sql(node3, "SELECT pg_wal_replay_pause()");
  ASSERT_EQ(str(node_status("node3"), "state"), "streaming");
  auto paused = check_json({"--timeout", "1"}, 1);
  EXPECT_EQ(paused["status"], "WARNING");
  auto paused_replication = check_of(paused, "replication");
  EXPECT_EQ(paused_replication["status"], "WARNING") << paused.dump(2);
  EXPECT_NE(std::string(paused_replication["detail"]).find("node3 had not replayed it after 1000 ms"), std::string::npos)
      << paused_replication.dump();
  EXPECT_EQ(check_of(paused, "failover")["detail"], "candidates: node2");
  sql(node3, "SELECT pg_wal_replay_resume()");
  EXPECT_TRUE(eventually([&] { return pgfleet({"check"}, 60s).exit_code == 0; }, 30s, 500ms));

  // A proxy that accepts logins but answers no query (PAUSE): the check reports it, it does not hang.
  std::string admin = url({"--proxy"});
  admin = admin.substr(0, admin.rfind('/')) + "/pgfleet";
  auto console = connect_or_throw(admin);
  ASSERT_TRUE(query_with_deadline(console, "PAUSE", 10s).ok());
  auto paused_proxy = pgfleet({"check", "--json"}, 60s);
  ASSERT_TRUE(query_with_deadline(console, "RESUME", 10s).ok());
  EXPECT_EQ(paused_proxy.exit_code, 2) << paused_proxy.output;
  auto proxy_row = check_of(nlohmann::json::parse(paused_proxy.output), "proxy");
  EXPECT_EQ(proxy_row["status"], "CRITICAL") << paused_proxy.output;
  EXPECT_NE(std::string(proxy_row["detail"]).find("fails: no answer within 2000 ms"), std::string::npos) << proxy_row;

  // One replica stopped: degraded (WARNING, exit 1); both: nothing could take over (CRITICAL, exit 2).
  ASSERT_NO_FATAL_FAILURE(stop_agent_of("node3"));
  auto one_down = pgfleet({"check"}, 60s);
  EXPECT_EQ(one_down.exit_code, 1) << one_down.output;
  EXPECT_NE(one_down.output.find("WARNING: node3\n"), std::string::npos) << one_down.output;
  ASSERT_NO_FATAL_FAILURE(stop_agent_of("node2"));
  auto both_down = check_json({}, 2);
  EXPECT_EQ(both_down["status"], "CRITICAL");
  EXPECT_EQ(check_of(both_down, "failover")["status"], "CRITICAL") << both_down.dump(2);
  EXPECT_EQ(check_of(both_down, "node2")["status"], "WARNING");
  EXPECT_EQ(check_of(both_down, "leader")["status"], "OK") << "the primary still takes writes";
  auto line = pgfleet({"check", "--nagios"}, 60s);
  EXPECT_EQ(line.exit_code, 2);
  EXPECT_EQ(line.output.rfind("PGFLEET CRITICAL - node2: replica, stopped", 0), 0u) << line.output;
}

TEST_F(CheckTest, FailingWalArchivingIsCritical) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--replicas", "1"}));
  auto backup = pgfleet({"backup"});  // from the first backup on, the archive keeps WAL
  ASSERT_EQ(backup.exit_code, 0) << backup.output;
  auto before = check_json();
  EXPECT_EQ(check_of(before, "wal archive")["status"], "OK") << before.dump(2);
  EXPECT_NE(std::string(check_of(before, "backups")["detail"]).find("1 backup(s)"), std::string::npos);

  // The archive becomes unwritable (a full or read-only disk acts alike for archive_command).
  const std::string archive = dir_ + "/archive";
  ASSERT_EQ(::chmod(archive.c_str(), 0), 0);
  add_cleanup([archive] { ::chmod(archive.c_str(), 0700); });
  sql(url({"--primary"}), "SELECT pg_switch_wal() FROM (SELECT pg_current_xact_id()) x");
  nlohmann::json failing;
  ASSERT_TRUE(eventually(
      [&] {
        failing = nlohmann::json::parse(pgfleet({"check", "--json"}, 60s).output);
        return check_of(failing, "wal archive")["status"] == "CRITICAL";
      },
      30s, 500ms))
      << failing.dump(2);
  EXPECT_EQ(failing["exit_code"], 2);
  EXPECT_NE(std::string(check_of(failing, "wal archive")["detail"]).find("archiving fails on node1"), std::string::npos)
      << failing.dump(2);

  // Fixed: the archiver catches up and the check passes again.
  ASSERT_EQ(::chmod(archive.c_str(), 0700), 0);
  EXPECT_TRUE(eventually([&] { return pgfleet({"check"}, 60s).exit_code == 0; }, 120s, 1s))
      << pgfleet({"check"}, 60s).output;
}

TEST_F(CheckTest, AClusterThatCannotBeReadIsUnknown) {
  auto missing = run_pgfleet({"check", "--dir", tmp_ + "/no-such-cluster"}, 30s);
  EXPECT_EQ(missing.exit_code, 3) << missing.output;
  EXPECT_NE(missing.output.find("cannot read the cluster: no pgfleet cluster in"), std::string::npos) << missing.output;
  auto nagios = run_pgfleet({"check", "--nagios", "--dir", tmp_ + "/no-such-cluster"}, 30s);
  EXPECT_EQ(nagios.exit_code, 3);
  EXPECT_EQ(nagios.output.rfind("PGFLEET UNKNOWN - no pgfleet cluster in", 0), 0u) << nagios.output;
  auto bad = run_pgfleet({"check", "--timeout", "0", "--dir", tmp_ + "/no-such-cluster"}, 30s);
  EXPECT_EQ(bad.exit_code, 3) << bad.output;
  EXPECT_NE(bad.output.find("--timeout must be positive"), std::string::npos) << bad.output;
  auto both = run_pgfleet({"check", "--json", "--nagios", "--dir", tmp_}, 30s);
  EXPECT_NE(both.exit_code, 0);
  EXPECT_NE(both.output.find("excludes"), std::string::npos) << both.output;
}

// A delayed replica (recovery_min_apply_delay) tagged nofailover and noloadbalance, as Patroni
// users run one to undo mistakes: it receives everything at once and replays an hour later, and
// the check counts receipt for it.
TEST_F(CheckTest, ADelayedReplicaPassesOnReceipt) {
  write_text(tmp_ + "/config.yaml",
             three_nodes_yaml({{3, ", nofailover: true, noloadbalance: true, postgresql: {recovery_min_apply_delay: 1h}"}}));
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--config", tmp_ + "/config.yaml"}));
  sql(url({"--primary"}), "CREATE TABLE undo (id int); INSERT INTO undo VALUES (1)");
  EXPECT_TRUE(eventually([&] { return sql_value(node_url("node2"), "SELECT count(*) FROM undo") == "1"; }, 10s));
  auto report = check_json();
  std::string replication = check_of(report, "replication")["detail"];
  EXPECT_NE(replication.find("node3 received after"), std::string::npos) << report.dump(2);
  EXPECT_NE(replication.find("recovery_min_apply_delay 1h"), std::string::npos) << replication;
  // It did not replay: the table is not there yet.
  EXPECT_EQ(sql_value(node_url("node3"), "SELECT count(*) FROM pg_class WHERE relname = 'undo'"), "0");
  // Its agent exports the delay, which PgfleetReplicaLagging subtracts (deploy/alerts.yml; the
  // rule itself is tested by promtool in MonitoringTest); node2 has none.
  auto delay_of = [&](int k) {
    auto r = http::request("127.0.0.1", base_port_ + 50 + k - 1, "GET", "/metrics");
    if (!r || r->status != 200) return std::string("no metrics");
    std::istringstream lines(r->body);
    for (std::string line; std::getline(lines, line);)
      if (line.rfind("pgfleet_replication_apply_delay_seconds{", 0) == 0) return line.substr(line.rfind(' ') + 1);
    return std::string("absent");
  };
  EXPECT_EQ(delay_of(3), "3600");
  EXPECT_EQ(delay_of(2), "0");
}

}  // namespace
}  // namespace pgfleet::itest
