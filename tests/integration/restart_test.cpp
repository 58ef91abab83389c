// Stopping and starting: `down` + `up` keeps data and roles, agents bring back a killed
// postmaster, and `pgfleet restart` restarts one node.
#include <signal.h>

#include <map>
#include <string>
#include <thread>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

class RestartTest : public PgfleetTest {
 protected:
  // Kills `node`'s postmaster with SIGKILL and waits until its agent has started a new one that
  // reaches `state` again, with the restart counted in status.
  void expect_agent_restarts_killed_postmaster(const std::string& node, const std::string& state) {
    auto before = node_status(node);
    int64_t old_pid = num(before, "pid");
    ASSERT_GT(old_pid, 0) << before.dump(2);
    ASSERT_EQ(process_name(old_pid), "postgres") << "pid " << old_pid << " from status is not a postgres";
    ASSERT_EQ(::kill(static_cast<pid_t>(old_pid), SIGKILL), 0);

    nlohmann::json last;
    bool back = eventually(
        [&] {
          last = node_status(node);
          return num(last, "pid") > 0 && num(last, "pid") != old_pid && str(last, "state") == state;
        },
        60s, 200ms);
    ASSERT_TRUE(back) << node << " did not come back after kill -9 of pid " << old_pid << ":\n" << last.dump(2);
    EXPECT_GE(num(last, "restarts"), 1) << last.dump(2);
    EXPECT_EQ(process_name(num(last, "pid")), "postgres");
    EXPECT_FALSE(process_alive(old_pid));
  }
};

TEST_F(RestartTest, DownThenUpKeepsDataAndRoles) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  std::string primary = url();
  sql(primary, "CREATE TABLE durable (id int PRIMARY KEY, v text)");
  sql(primary, "INSERT INTO durable VALUES (7, 'survives a restart')");
  auto before = status_json();

  auto down = pgfleet({"down"});
  ASSERT_EQ(down.exit_code, 0) << down.output;
  for (const auto& n : before["nodes"]) {
    EXPECT_FALSE(process_alive(num(n, "pid"))) << str(n, "name") << "'s postmaster still runs after down";
    EXPECT_FALSE(process_alive(num(n, "agent_pid"))) << str(n, "name") << "'s agent still runs after down";
  }
  auto stopped = status_json();
  for (const auto& n : stopped["nodes"]) EXPECT_EQ(str(n, "state"), "stopped") << stopped.dump(2);

  auto again = pgfleet({"up"});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  auto s = status_json();
  EXPECT_EQ(str(s, "leader"), "node1") << s.dump(2);
  EXPECT_EQ(str(node_of(s, "node1"), "role"), "primary") << s.dump(2);
  for (const std::string node : {"node2", "node3"}) {
    EXPECT_EQ(str(node_of(s, node), "role"), "replica") << s.dump(2);
    EXPECT_EQ(str(node_of(s, node), "state"), "streaming") << s.dump(2);
  }
  EXPECT_EQ(sql_value(url(), "SELECT v FROM durable WHERE id = 7"), "survives a restart");
  for (const std::string node : {"node2", "node3"}) {
    std::string uri = node_url(node);
    EXPECT_TRUE(eventually([&] { return sql_value(uri, "SELECT count(*) FROM durable WHERE id = 7") == "1"; }, 10s))
        << "row missing on " << node;
  }
}

TEST_F(RestartTest, AgentRestartsKilledReplicaPostmaster) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  ASSERT_NO_FATAL_FAILURE(expect_agent_restarts_killed_postmaster("node2", "streaming"));
  // It replicates again.
  std::string primary = url();
  sql(primary, "CREATE TABLE after_crash (id int)");
  sql(primary, "INSERT INTO after_crash VALUES (1)");
  std::string node2 = node_url("node2");
  EXPECT_TRUE(eventually([&] { return sql_value(node2, "SELECT count(*) FROM after_crash") == "1"; }, 10s));
}

TEST_F(RestartTest, AgentRestartsKilledPrimaryPostmaster) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  ASSERT_NO_FATAL_FAILURE(expect_agent_restarts_killed_postmaster("node1", "running"));
  auto s = status_json();
  EXPECT_EQ(str(s, "leader"), "node1") << s.dump(2);
  EXPECT_EQ(str(node_of(s, "node1"), "role"), "primary") << s.dump(2);
  // The replicas reconnect and the primary takes writes that reach them.
  EXPECT_TRUE(wait_all_streaming(60s)) << status_json().dump(2);
  std::string primary = url();
  sql(primary, "CREATE TABLE after_crash (id int)");
  sql(primary, "INSERT INTO after_crash VALUES (1)");
  for (const std::string node : {"node2", "node3"}) {
    std::string uri = node_url(node);
    EXPECT_TRUE(eventually([&] { return sql_value(uri, "SELECT count(*) FROM after_crash") == "1"; }, 10s)) << node;
  }
}

TEST_F(RestartTest, RestartCommandGivesANewPostmasterPid) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  int64_t old_pid = num(node_status("node2"), "pid");
  ASSERT_GT(old_pid, 0);
  auto r = pgfleet({"restart", "node2", "--timeout", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto n = node_status("node2");
  EXPECT_GT(num(n, "pid"), 0) << n.dump(2);
  EXPECT_NE(num(n, "pid"), old_pid) << n.dump(2);
  EXPECT_FALSE(process_alive(old_pid)) << "old postmaster " << old_pid << " still runs";
  EXPECT_TRUE(wait_state("node2", "streaming", 30s)) << status_json().dump(2);
  EXPECT_NE(r.output.find(std::to_string(num(node_status("node2"), "pid"))), std::string::npos)
      << "restart did not report the new pid:\n" << r.output;
}

// The Patroni workflow: edit a parameter that needs a restart, reload, then `restart --pending`
// restarts the replicas one at a time and the primary last, with the proxy paused around the
// primary's restart: pgbench's multi-statement transactions through the proxy see no error.
TEST_F(RestartTest, RestartPendingIsRollingReplicasFirstAndWritersThroughTheProxySeeNoError) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  auto none = pgfleet({"restart", "--pending"});
  ASSERT_TRUE(none.ok()) << none.output;
  EXPECT_NE(none.output.find("no node waits for a restart"), std::string::npos) << none.output;

  ASSERT_NO_FATAL_FAILURE(add_postgresql_parameters("  shared_buffers: 48MB\n"));
  auto reload = pgfleet({"reload"});
  ASSERT_TRUE(reload.ok()) << reload.output;
  EXPECT_NE(reload.output.find("restart them all with `pgfleet restart --pending`"), std::string::npos) << reload.output;
  // Every node's agent publishes `pending` (its list of parameters waiting for a restart).
  auto all_pending = [&](const std::string& pending) {
    const auto status = status_json();  // kept: the loop must not walk a destroyed temporary
    for (const auto& n : status["nodes"])
      if (n["pending_restart"].dump() != pending) return false;
    return true;
  };
  ASSERT_TRUE(eventually([&] { return all_pending(R"(["shared_buffers"])"); }, 15s)) << status_json().dump(2);

  std::map<std::string, int64_t> old_pid;
  for (const char* n : {"node1", "node2", "node3"}) old_pid[n] = num(node_status(n), "pid");
  // pgbench's TPC-B transactions (five statements each) through the proxy during the restarts.
  const std::string proxy = url({"--proxy-primary"});
  auto init = run_program({pg_tool("pgbench"), "-i", "-s", "1", "-q", proxy}, 120s);
  ASSERT_EQ(init.exit_code, 0) << init.output;
  CmdResult bench;
  std::thread load([&] { bench = run_program({pg_tool("pgbench"), "-n", "-c", "4", "-T", "12", proxy}, 120s); });
  std::this_thread::sleep_for(2s);
  auto r = pgfleet({"restart", "--pending", "--timeout", "60"});
  load.join();
  ASSERT_TRUE(r.ok()) << r.output << status_json().dump(2);
  // Replicas first, the primary last, each announced and then reported back.
  const auto pos = [&](const std::string& text) { return r.output.find(text); };
  for (const char* n : {"node2", "node3", "node1"}) {
    EXPECT_NE(pos(std::string("restarting ") + n + " (pending: shared_buffers)"), std::string::npos) << r.output;
    EXPECT_NE(pos(std::string(n) + " restarted (pid "), std::string::npos) << r.output;
  }
  EXPECT_LT(pos("node2 restarted"), pos("restarting node3")) << r.output;
  EXPECT_LT(pos("node3 restarted"), pos("restarting node1")) << r.output;

  EXPECT_EQ(bench.exit_code, 0) << bench.output;
  EXPECT_EQ(bench.output.find("aborted"), std::string::npos) << bench.output;
  EXPECT_NE(bench.output.find("number of failed transactions: 0 "), std::string::npos) << bench.output;
  EXPECT_EQ(status_json()["leader"], "node1");
  for (const char* n : {"node1", "node2", "node3"}) {
    EXPECT_NE(num(node_status(n), "pid"), old_pid[n]) << n;
    EXPECT_EQ(sql_value(url({"--node", n}), "SHOW shared_buffers"), "48MB") << n;
  }
  ASSERT_TRUE(eventually([&] { return all_pending("[]"); }, 15s)) << status_json().dump(2);
  ASSERT_TRUE(wait_all_streaming(60s)) << status_json().dump(2);
}

TEST_F(RestartTest, RestartRefusesWhatItCannotDo) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--replicas", "1"}));
  struct Case {
    std::vector<std::string> args;
    const char* error;
  };
  for (const auto& c : std::vector<Case>{{{"restart"}, "name the nodes to restart"},
                                         {{"restart", "--all", "node1"}, "--all restarts every node"},
                                         {{"restart", "proxy", "--pending"}, "takes neither --all nor --pending"},
                                         {{"restart", "node1", "proxy"}, "restart the proxy on its own"},
                                         {{"restart", "node9"}, "no node named 'node9'"}}) {
    auto r = pgfleet(c.args);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(c.error), std::string::npos) << r.output;
  }
}

TEST_F(RestartTest, UpGivesAKilledAgentsNodeANewAgentThatAdoptsTheRunningServer) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  auto before = node_status("node2");
  int64_t agent = num(before, "agent_pid"), postmaster = num(before, "pid");
  ASSERT_GT(agent, 0) << before.dump(2);
  ASSERT_GT(postmaster, 0) << before.dump(2);
  ASSERT_EQ(::kill(static_cast<pid_t>(agent), SIGKILL), 0);

  // PostgreSQL keeps serving without its agent, and status says so.
  nlohmann::json n;
  EXPECT_TRUE(eventually(
      [&] {
        n = node_status("node2");
        return str(n, "state") == "unsupervised";
      },
      10s, 100ms))
      << n.dump(2);
  EXPECT_EQ(num(n, "pid"), postmaster) << n.dump(2);
  EXPECT_EQ(sql_value(node_url("node2"), "SELECT pg_is_in_recovery()"), "t");

  auto r = pgfleet({"up"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  n = node_status("node2");
  EXPECT_GT(num(n, "agent_pid"), 0) << n.dump(2);
  EXPECT_NE(num(n, "agent_pid"), agent) << n.dump(2);
  EXPECT_TRUE(process_alive(num(n, "agent_pid"))) << n.dump(2);
  EXPECT_EQ(num(n, "pid"), postmaster) << "the running server was restarted instead of adopted:\n" << n.dump(2);
  EXPECT_EQ(str(n, "state"), "streaming") << n.dump(2);
}

}  // namespace
}  // namespace pgfleet::itest
