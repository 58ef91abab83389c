// HA settings through the real binary: callbacks on role changes and failovers (run in the
// background with a timeout), the --ttl/--loop-wait checks of `up`, and `pgfleet reload` of an
// edited pgfleet.yaml.
#include <sys/stat.h>

#include <fmt/format.h>

#include <thread>

#include "harness.hpp"
#include "http/client.hpp"

namespace pgfleet::itest {
namespace {

class HaSettingsTest : public PgfleetTest {};

TEST_F(HaSettingsTest, CallbacksRunOnSwitchoverWithTheirEnvironmentAndDoNotBlockTheAgents) {
  // The agents run as the cluster's OS user: give them a directory they can write.
  const std::string events = tmp_ + "/events";
  ASSERT_EQ(::mkdir(events.c_str(), 0777), 0);
  ::chmod(events.c_str(), 0777);
  // on_role_change also hangs: the 2 s timeout must kill it, and the switchover must not wait for it.
  write_text(tmp_ + "/config.yaml",
             "callbacks:\n"
             "  on_role_change: 'echo \"$PGFLEET_EVENT $PGFLEET_NODE $PGFLEET_OLD_ROLE->$PGFLEET_ROLE "
             "old=$PGFLEET_OLD_PRIMARY new=$PGFLEET_NEW_PRIMARY\" >> " + events + "/log; sleep 600'\n"
             "  on_failover: 'echo \"$PGFLEET_EVENT $PGFLEET_NODE $PGFLEET_ROLE old=$PGFLEET_OLD_PRIMARY "
             "new=$PGFLEET_NEW_PRIMARY reason=$PGFLEET_REASON\" >> " + events + "/log'\n"
             "  timeout: 2\n");
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--config", tmp_ + "/config.yaml"}));

  auto started = std::chrono::steady_clock::now();
  auto r = pgfleet({"switchover", "--to", "node2", "--timeout", "60"});
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 20s) << "a hanging callback must not delay the switchover";
  ASSERT_TRUE(wait_all_streaming(60s)) << status_json().dump(2);

  std::string log;
  auto has = [&](const std::string& line) { return log.find(line) != std::string::npos; };
  EXPECT_TRUE(eventually(
      [&] {
        log = read_text(events + "/log");
        // A switchover is recorded (and on_failover run) by the old primary's agent.
        return has("on_failover node1 replica old=node1 new=node2 reason=switchover") &&
               has("on_role_change node2 replica->primary old=node1 new=node2") &&
               has("on_role_change node1 primary->replica old=node1 new=node2");
      },
      30s))
      << log;
  // The hanging on_role_change commands were killed after callbacks.timeout.
  EXPECT_TRUE(eventually(
      [&] {
        return read_text(dir_ + "/nodes/node1/log/agent.log").find("callback on_role_change") != std::string::npos &&
               read_text(dir_ + "/nodes/node1/log/agent.log").find("killed after 2 s") != std::string::npos;
      },
      30s))
      << read_text(dir_ + "/nodes/node1/log/agent.log");
}

TEST_F(HaSettingsTest, UpRejectsUnsafeTtlAndLoopWait) {
  auto r = up({"--ttl", "4"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--ttl must be at least 5 seconds, got 4"), std::string::npos) << r.output;
  r = up({"--loop-wait", "0"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--loop-wait must be at least 1 second, got 0"), std::string::npos) << r.output;
  r = up({"--ttl", "6", "--loop-wait", "3"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--loop-wait (3 s) must be less than half of --ttl (6 s)"), std::string::npos) << r.output;
  EXPECT_TRUE(absent_or_empty(dir_ + "/nodes")) << "nothing is created for a rejected command";

  ASSERT_NO_FATAL_FAILURE(start_cluster({"--ttl", "10", "--loop-wait", "2"}));
  const std::string yaml = read_text(dir_ + "/pgfleet.yaml");
  EXPECT_NE(yaml.find("ttl: 10"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("loop_wait: 2"), std::string::npos) << yaml;
}

// An edited pgfleet.yaml reaches every server with `pgfleet reload` (as Patroni's edit-config and
// reload): a reloadable parameter takes effect on the primary and the replica, one that needs a
// restart is named, a value the server refuses is reported, and a file that does not load
// changes nothing.
TEST_F(HaSettingsTest, ReloadAppliesAnEditedConfigurationAndNamesWhatNeedsARestart) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--replicas", "1"}));
  const std::string file = dir_ + "/pgfleet.yaml";
  const std::string original = read_text(file);
  auto with_parameters = [&](const std::string& lines) {  // the original file plus `lines`
    write_text(file, original);
    add_postgresql_parameters(lines);
  };
  const std::vector<std::string> node_url{url({"--node", "node1"}), url({"--node", "node2"})};
  auto show = [&](int node, const std::string& name) { return sql_value(node_url[node - 1], "SHOW " + name); };

  with_parameters("  work_mem: 7MB\n  shared_buffers: 64MB\n");
  auto r = pgfleet({"reload"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* node : {"node1", "node2"}) {
    EXPECT_NE(r.output.find(std::string(node) + ": reloaded; pending restart (`pgfleet restart " + node +
                            "`): shared_buffers"),
              std::string::npos)
        << r.output;
  }
  EXPECT_EQ(show(1, "work_mem"), "7MB");
  EXPECT_EQ(show(2, "work_mem"), "7MB");
  // The agents publish what waits for a restart (Patroni's "pending restart"): status, --json, metrics.
  auto pending = [&](const std::string& node) { return node_status(node)["pending_restart"].dump(); };
  EXPECT_TRUE(eventually([&] { return pending("node1") == R"(["shared_buffers"])"; }, 10s)) << pending("node1");
  EXPECT_TRUE(eventually([&] { return pending("node2") == R"(["shared_buffers"])"; }, 10s)) << pending("node2");
  EXPECT_NE(pgfleet({"status"}).output.find("pending restart: shared_buffers (`pgfleet restart node2`)"),
            std::string::npos);
  auto pending_metric = [&](int k) {  // node k's agent API
    auto m = http::request("127.0.0.1", base_port_ + 50 + k - 1, "GET", "/metrics");
    if (!m) return std::string();
    const auto at = m->body.find("\npgfleet_pg_pending_restart{");
    if (at == std::string::npos) return std::string();
    const std::string line = m->body.substr(at + 1, m->body.find('\n', at + 1) - at - 1);
    return line.substr(line.rfind(' ') + 1);
  };
  EXPECT_EQ(pending_metric(2), "1");
  ASSERT_TRUE(succeeded(pgfleet({"restart", "node2"})));
  EXPECT_TRUE(eventually([&] { return pending("node2") == "[]"; }, 30s)) << pending("node2");
  EXPECT_EQ(show(2, "shared_buffers"), "64MB");
  // (the first scrape after the restart may find the agent's old connection broken)
  EXPECT_TRUE(eventually([&] { return pending_metric(2) == "0"; }, 10s)) << pending_metric(2);
  EXPECT_EQ(pending("node1"), R"(["shared_buffers"])");

  with_parameters("  work_mem: banana\n");
  r = pgfleet({"reload"});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("node1: rejected work_mem"), std::string::npos) << r.output;
  EXPECT_EQ(show(1, "work_mem"), "7MB") << "a refused value replaced the one in force";

  write_text(file, original + "postgresql: [\n");
  r = pgfleet({"reload"});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("pgfleet.yaml"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("nothing was changed"), std::string::npos) << r.output;
  EXPECT_EQ(show(2, "work_mem"), "7MB");
  write_text(file, original);  // for the teardown's `pgfleet down`
}

// pg_hba entries in pgfleet.yaml: written before pgfleet's own on every node, applied by
// `pgfleet reload`; a dangerous or broken one is refused before any server sees it.
TEST_F(HaSettingsTest, PgHbaEntriesFromTheConfigApplyOnReload) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--replicas", "1"}));
  sql(node_url("node1"), "CREATE ROLE app LOGIN PASSWORD 'app-secret'");
  auto as_app = [&](int k) {
    return fmt::format("postgresql://app:app-secret@127.0.0.1:{}/postgres", node_port(k));
  };
  ASSERT_TRUE(eventually([&] { return connect_error(as_app(2)).empty(); }, 30s)) << connect_error(as_app(2));
  const std::string file = dir_ + "/pgfleet.yaml";
  const std::string original = read_text(file);

  write_text(file, original + "pg_hba:\n  - host all app 127.0.0.1/32 reject\n");
  auto r = pgfleet({"reload"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("node1: reloaded"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("node2: reloaded"), std::string::npos) << r.output;
  for (int k : {1, 2}) {
    EXPECT_NE(connect_error(as_app(k)).find("pg_hba.conf rejects connection"), std::string::npos)
        << "node" << k << ": " << connect_error(as_app(k));
  }
  EXPECT_EQ(sql_value(node_url("node2"), "SELECT 1"), "1");  // pgfleet's own rules still apply

  // Refused before it reaches a server: nothing changes.
  write_text(file, original + "pg_hba:\n  - host all app 127.0.0.1/32 trust\n");
  r = pgfleet({"reload"});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("trust over TCP"), std::string::npos) << r.output;
  EXPECT_NE(connect_error(as_app(1)).find("pg_hba.conf rejects connection"), std::string::npos);

  write_text(file, original);
  r = pgfleet({"reload"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(connect_error(as_app(1)).empty()) << connect_error(as_app(1));
  EXPECT_TRUE(connect_error(as_app(2)).empty()) << connect_error(as_app(2));
}

}  // namespace
}  // namespace pgfleet::itest
