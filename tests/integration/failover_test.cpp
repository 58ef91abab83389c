// Automatic failover, switchover and rejoin through the real binary: what an operator checks.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <thread>

#include "harness.hpp"
#include "util/process.hpp"

namespace pgfleet::itest {
namespace {

class FailoverTest : public PgfleetTest {
 protected:
  std::string leader() { return status_json().value("leader", ""); }
  int64_t pid_of(const std::string& node, const char* field) {
    auto n = node_status(node);
    return n[field].is_null() ? 0 : n[field].get<int64_t>();
  }
  std::string proxy() { return with_param(url({"--proxy"}), "connect_timeout=3"); }
  // Checks of what was acknowledged read from the primary: a fresh client's read on the
  // rw-split port may run on a replica that has not replayed everything yet.
  std::string proxy_primary() { return with_param(url({"--proxy-primary"}), "connect_timeout=3"); }
};

// The postmaster's children (its backends and auxiliary processes), from /proc.
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    long ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %ld", &state, &ppid) == 2 && ppid == parent)
      out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

// A writer through the proxy, counting acknowledged inserts and errors.
struct Writer {
  std::atomic<bool> stop{false};
  std::atomic<int> acknowledged{0};
  std::atomic<int> errors{0};
  std::string last_error;
  std::thread thread;
  void start(const std::string& uri) {
    thread = std::thread([this, uri] {
      int id = 0;
      while (!stop) {
        auto r = try_sql(uri, "INSERT INTO ha_log VALUES (" + std::to_string(++id) + ")", 10s);
        if (r.ok()) ++acknowledged;
        else {
          ++errors;
          last_error = r.error();
        }
        std::this_thread::sleep_for(20ms);
      }
    });
  }
  void finish() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
};

TEST_F(FailoverTest, HostCrashOfThePrimaryElectsAReplicaAndTheOldPrimaryRejoinsWithRewind) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  sql(proxy(), "CREATE TABLE ha_log (id int)", 10s);
  sql(proxy(), "INSERT INTO ha_log SELECT generate_series(1, 100)", 10s);
  ASSERT_EQ(leader(), "node1");

  // The "host" dies: agent and postmaster together.
  ::kill(static_cast<pid_t>(pid_of("node1", "agent_pid")), SIGKILL);
  ::kill(static_cast<pid_t>(pid_of("node1", "pid")), SIGKILL);
  auto killed = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([&] { return try_sql(proxy(), "INSERT INTO ha_log VALUES (1000)", 3s).ok(); }, 60s, 100ms))
      << status_json().dump(2);
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  std::cout << "writes acknowledged again through the proxy after " << seconds << " s\n";
  std::string fresh = leader();
  EXPECT_NE(fresh, "node1");
  EXPECT_EQ(sql_value(proxy_primary(), "SELECT count(*) FROM ha_log"), "101");
  // The new primary records the change right after promoting.
  nlohmann::json history;
  ASSERT_TRUE(eventually([&] { return !(history = status_json()["history"]).empty(); }, 10s)) << status_json().dump(2);
  EXPECT_EQ(history.back()["to"], fresh);

  // The other replica follows the new primary on its timeline.
  std::string other = fresh == "node2" ? "node3" : "node2";
  EXPECT_TRUE(eventually([&] { return node_status(other)["upstream"] == fresh && node_status(other)["state"] == "streaming"; },
                         30s))
      << status_json().dump(2);

  // Bringing the old primary back: it is rewound and follows; nothing written since is lost.
  auto back = up();
  ASSERT_TRUE(back.ok()) << back.output;
  ASSERT_TRUE(wait_all_streaming(60s)) << status_json().dump(2);
  EXPECT_EQ(node_status("node1")["role"], "replica");
  EXPECT_EQ(node_status("node1")["upstream"], fresh);
  EXPECT_TRUE(eventually([&] { return sql_value(node_url("node1"), "SELECT count(*) FROM ha_log") == "101"; }, 10s));
}

// Sync mode elects the synchronous standby, which may have less WAL than an asynchronous replica
// (commits the standby never confirmed were not acknowledged). That replica replayed past the new
// timeline's fork: its agent must see it in the leader's timeline history and rewind it (found by
// bench/failover.sh: the replica waited forever, "forked off ... before current recovery point").
TEST_F(FailoverTest, AnAsyncReplicaAheadOfTheElectedSyncStandbyIsRewoundAndFollows) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--sync", "on"}));
  sql(proxy_primary(), "CREATE TABLE ahead (id int)", 10s);
  std::string standby, async_replica;
  ASSERT_TRUE(eventually(
      [&] {
        const auto status = status_json();
        for (const auto& n : status["nodes"]) {
          if (n["sync_state"].is_string() && n["sync_state"] == "sync") standby = n["name"];
          else if (n["role"] == "replica" && n["state"] == "streaming") async_replica = n["name"];
        }
        return !standby.empty() && !async_replica.empty();
      },
      30s))
      << status_json().dump(2);

  // The standby's server stops (its agent frozen, so nobody restarts it); a commit is written on
  // the primary and reaches the other replica, but waits for the standby: never acknowledged.
  const std::string standby_lsn = sql_value(node_url(standby), "SELECT pg_last_wal_receive_lsn()");
  const auto standby_agent = static_cast<pid_t>(pid_of(standby, "agent_pid"));
  const auto standby_postmaster = static_cast<pid_t>(pid_of(standby, "pid"));
  ASSERT_EQ(::kill(standby_agent, SIGSTOP), 0);
  // Whatever fails below, the agent must run again (teardown stops the cluster through it).
  std::shared_ptr<void> resume(nullptr, [standby_agent](void*) { ::kill(standby_agent, SIGCONT); });
  ASSERT_EQ(::kill(standby_postmaster, SIGQUIT), 0);  // immediate shutdown
  // Gone, or a zombie its frozen agent cannot reap yet (process::alive counts neither).
  ASSERT_TRUE(eventually([&] { return !process::alive(standby_postmaster); }, 10s));
  auto waiting = std::async(std::launch::async, [&] {
    return try_sql(node_url("node1"), "INSERT INTO ahead SELECT generate_series(1, 1000)", 3s);
  });
  EXPECT_TRUE(eventually(
      [&] {
        return sql_value(node_url(async_replica), "SELECT pg_last_wal_replay_lsn() > '" + standby_lsn + "'::pg_lsn") == "t";
      },
      5s))
      << "the asynchronous replica did not get ahead of the standby";
  EXPECT_FALSE(waiting.get().ok()) << "the commit was acknowledged without the synchronous standby";

  // The primary's host dies; the standby's agent wakes, starts its server, and is elected.
  ::kill(static_cast<pid_t>(pid_of("node1", "agent_pid")), SIGKILL);
  ::kill(static_cast<pid_t>(pid_of("node1", "pid")), SIGKILL);
  ::kill(standby_agent, SIGCONT);
  ASSERT_TRUE(eventually([&] { return leader() == standby; }, 60s)) << status_json().dump(2);

  // The replica that was ahead is rewound and streams from the new primary. Before the rewind it
  // may stream for a moment: the new primary serves the old timeline up to where it forked, so
  // the check waits for the rewind in its log and for the new primary's timeline.
  const std::string agent_log = node_dir(async_replica) + "/log/agent.log";
  EXPECT_TRUE(eventually(
      [&] {
        const auto status = status_json();
        const auto n = node_of(status, async_replica), primary = node_of(status, standby);
        return read_text(agent_log).find("rewinding " + async_replica) != std::string::npos &&
               n["upstream"] == standby && n["state"] == "streaming" && n["timeline"] == primary["timeline"];
      },
      90s))
      << status_json().dump(2) << read_text(agent_log);
  sql(proxy_primary(), "INSERT INTO ahead VALUES (-1)", 10s);
  EXPECT_TRUE(eventually(
      [&] { return sql_value(node_url(async_replica), "SELECT count(*) FROM ahead WHERE id = -1") == "1"; }, 10s));
}

TEST_F(FailoverTest, PostmasterCrashOfThePrimaryIsRestartedInPlaceWithoutFailover) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  int64_t before = pid_of("node1", "pid");
  ::kill(static_cast<pid_t>(before), SIGKILL);
  ASSERT_TRUE(eventually([&] { return try_sql(proxy(), "SELECT 1", 3s).ok() && pid_of("node1", "pid") != before; }, 30s))
      << status_json().dump(2);
  EXPECT_EQ(leader(), "node1");
  EXPECT_TRUE(status_json()["history"].empty());
}

// A primary whose PostgreSQL fails every start (here a value it refuses, as after a bad ALTER
// SYSTEM) held the leader key for good: its agent renewed it while restarting the server with
// back-off, and nobody else was elected. After dcs.primary_start_timeout it steps down and a
// replica takes over; once the setting is mended the old primary rejoins as a replica.
TEST_F(FailoverTest, APrimaryThatCannotStartStepsDownAndAReplicaTakesOver) {
  write_text(tmp_ + "/config.yaml", "dcs:\n  ttl: 10\n  primary_start_timeout: 8\n");
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--config", tmp_ + "/config.yaml"}));
  sql(proxy(), "CREATE TABLE ha_log (id int)", 10s);
  sql(proxy(), "INSERT INTO ha_log SELECT generate_series(1, 100)", 10s);
  ASSERT_EQ(leader(), "node1");

  const std::string auto_conf = node_dir("node1") + "/data/postgresql.auto.conf";
  const std::string good = read_text(auto_conf);
  write_text(auto_conf, good + "shared_buffers = 'plenty'\n");
  ::kill(static_cast<pid_t>(pid_of("node1", "pid")), SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  const std::string agent_log = node_dir("node1") + "/log/agent.log";
  ASSERT_TRUE(eventually([&] { return try_sql(proxy(), "INSERT INTO ha_log VALUES (1000)", 3s).ok(); }, 120s, 200ms))
      << status_json().dump(2) << read_text(agent_log);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  std::cout << "writes acknowledged again through the proxy after " << seconds << " s\n";
  EXPECT_GE(seconds, 8) << "stepped down before primary_start_timeout";
  const std::string fresh = leader();
  EXPECT_NE(fresh, "node1");
  EXPECT_EQ(sql_value(proxy_primary(), "SELECT count(*) FROM ha_log"), "101");
  const std::string log = read_text(agent_log);
  EXPECT_NE(log.find("without PostgreSQL running as primary (it did not start within primary_start_timeout"),
            std::string::npos)
      << log;
  EXPECT_NE(read_text(node_dir("node1") + "/log/postgresql.log").find("plenty"), std::string::npos);

  write_text(auto_conf, good);
  ASSERT_TRUE(wait_all_streaming(120s)) << status_json().dump(2) << read_text(agent_log);
  EXPECT_EQ(node_status("node1")["role"], "replica");
  EXPECT_EQ(node_status("node1")["upstream"], fresh);
  EXPECT_TRUE(eventually([&] { return sql_value(node_url("node1"), "SELECT count(*) FROM ha_log") == "101"; }, 10s));
}

TEST_F(FailoverTest, UpRightAfterKill9WaitsForTheNodesToComeBack) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  // A replica's "host" crashes and `up` runs at once: its postmaster may still exist (a zombie
  // nobody reaped yet, backends holding its shared memory), which a new server refuses.
  int64_t old_replica = pid_of("node2", "pid");
  ::kill(static_cast<pid_t>(pid_of("node2", "agent_pid")), SIGKILL);
  ::kill(static_cast<pid_t>(old_replica), SIGKILL);
  auto r = up();
  ASSERT_TRUE(r.ok()) << r.output << status_json().dump(2);
  ASSERT_TRUE(wait_all_streaming(60s)) << status_json().dump(2);
  EXPECT_NE(pid_of("node2", "pid"), old_replica);

  // The primary's postmaster is killed (its agent lives: the node shows "crashed" until the agent
  // restarts it) while another node's agent is down, and `up` runs at once: it waits, not fails.
  int64_t old_primary = pid_of("node1", "pid");
  ::kill(static_cast<pid_t>(pid_of("node3", "agent_pid")), SIGKILL);
  ::kill(static_cast<pid_t>(old_primary), SIGKILL);
  r = up();
  ASSERT_TRUE(r.ok()) << r.output << status_json().dump(2);
  ASSERT_TRUE(wait_all_streaming(60s)) << status_json().dump(2);
  EXPECT_NE(pid_of("node1", "pid"), old_primary);
  EXPECT_NE(pid_of("node3", "agent_pid"), 0);
  EXPECT_TRUE(try_sql(proxy_primary(), "SELECT 1", 10s).ok());
}

TEST_F(FailoverTest, ProxyAbandonsAHungPrimaryOnceAnotherNodeLeads) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--ttl", "6"}));
  // A database no proxy pool has used yet: a client logging in to it needs a new server
  // connection (for the server's parameters), which a hung primary accepts and never answers.
  sql(node_url("node1"), "CREATE DATABASE hang", 30s);
  sql(with_param(node_url("node1"), "dbname=hang"), "CREATE TABLE t (node int)", 30s);
  ASSERT_TRUE(wait_all_streaming(60s)) << status_json().dump(2);

  // The primary's "host" hangs: agent, postmaster and backends stopped (SIGCONT at the end).
  std::vector<pid_t> hung = {static_cast<pid_t>(pid_of("node1", "agent_pid")), static_cast<pid_t>(pid_of("node1", "pid"))};
  for (pid_t child : children_of(hung[1])) hung.push_back(child);
  auto wake = [hung] {
    for (pid_t p : hung) ::kill(p, SIGCONT);
  };
  add_cleanup(wake);
  for (pid_t p : hung) ::kill(p, SIGSTOP);
  auto stopped = std::chrono::steady_clock::now();

  // A client arrives during the hang; it must reach whichever primary there is once there is one.
  std::string uri = with_param(with_param(url({"--proxy"}), "dbname=hang"), "connect_timeout=60");
  auto client = std::async(std::launch::async, [uri] {
    auto conn = postgres::PgConn::connect(uri);
    if (!conn) return std::string("cannot connect: ") + conn.error();
    auto r = query_with_deadline(*conn, "INSERT INTO t SELECT inet_server_port() RETURNING node", 30s);
    return r ? std::string("ok") : r.error();
  });
  std::string leader_now;
  ASSERT_TRUE(eventually([&] {
    leader_now = leader();
    return !leader_now.empty() && leader_now != "node1" && node_status(leader_now)["role"] == "primary" &&
           node_status(leader_now)["state"] == "running";
  }, 60s, 100ms)) << status_json().dump(2);
  auto led = std::chrono::steady_clock::now();
  ASSERT_EQ(client.wait_for(30s), std::future_status::ready);
  auto answered = std::chrono::steady_clock::now();
  EXPECT_EQ(client.get(), "ok");
  std::cout << "hang: " << leader_now << " leads "
            << std::chrono::duration<double>(led - stopped).count() << " s after the hang; the waiting client's insert "
            << "was acknowledged " << std::chrono::duration<double>(answered - led).count() << " s after that\n";
  EXPECT_LT(answered - led, 2s);
  // It landed on the new primary, and a new client goes there too while node1 is still stopped.
  EXPECT_EQ(sql_value(with_param(node_url(leader_now), "dbname=hang"), "SELECT count(*) FROM t"), "1");
  EXPECT_TRUE(try_sql(uri, "INSERT INTO t VALUES (0)", 5s).ok());

  // The old primary wakes up and rejoins as a replica.
  wake();
  ASSERT_TRUE(wait_all_streaming(90s)) << status_json().dump(2);
  EXPECT_EQ(node_status("node1")["role"], "replica");
}

TEST_F(FailoverTest, SwitchoverUnderWritesThroughTheProxyGivesNoClientError) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  sql(proxy(), "CREATE TABLE ha_log (id int)", 10s);
  Writer writer;
  writer.start(proxy());
  std::this_thread::sleep_for(500ms);
  auto r = pgfleet({"switchover", "--to", "node2", "--timeout", "60"});
  std::this_thread::sleep_for(500ms);
  writer.finish();
  ASSERT_TRUE(r.ok()) << r.output << status_json().dump(2);
  EXPECT_EQ(leader(), "node2");
  EXPECT_EQ(writer.errors.load(), 0) << writer.last_error;
  EXPECT_GT(writer.acknowledged.load(), 0);
  EXPECT_EQ(sql_value(proxy_primary(), "SELECT count(*) FROM ha_log"), std::to_string(writer.acknowledged.load()));
  ASSERT_TRUE(wait_all_streaming(60s)) << status_json().dump(2);
  EXPECT_EQ(node_status("node1")["upstream"], "node2");
}

TEST_F(FailoverTest, SwitchoverWithoutTargetIsRecordedOnceInTheHistory) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  auto r = pgfleet({"switchover", "--timeout", "60"});
  ASSERT_TRUE(r.ok()) << r.output << status_json().dump(2);
  const std::string fresh = leader();
  ASSERT_NE(fresh, "node1");
  // The new primary records a failover right after promoting if it takes the change for one:
  // give it time to do so before counting.
  nlohmann::json history;
  ASSERT_TRUE(eventually([&] { return !(history = status_json()["history"]).empty() && !history.back()["duration_ms"].is_null(); },
                         10s))
      << status_json().dump(2);
  std::this_thread::sleep_for(2s);
  history = status_json()["history"];
  ASSERT_EQ(history.size(), 1u) << history.dump(2);
  const auto& h = history[0];
  EXPECT_EQ(h["from"], "node1");
  EXPECT_EQ(h["to"], fresh);
  EXPECT_TRUE(h["reason"].get<std::string>().starts_with("switchover from node1 to " + fresh)) << h.dump();
  EXPECT_TRUE(h["lsn"].is_string() && h["lsn"].get<std::string>().find('/') != std::string::npos) << h.dump();
  EXPECT_GT(h["duration_ms"].get<int64_t>(), 0) << h.dump();
  EXPECT_LT(h["duration_ms"].get<int64_t>(), 30000) << h.dump();
  // `pgfleet history` shows the same single line.
  auto text = pgfleet({"history"});
  ASSERT_TRUE(text.ok()) << text.output;
  EXPECT_EQ(std::count(text.output.begin(), text.output.end(), '\n'), 1) << text.output;
  EXPECT_NE(text.output.find("node1 -> " + fresh), std::string::npos) << text.output;
}

TEST_F(FailoverTest, BackToBackSwitchoversWaitForTheTargetToStream) {
  // Right after a switchover the old primary is stopped and then rejoins, and the other replica
  // moves to the new timeline: an operator switching straight back (or on to the third node) is
  // waited for, not refused with "not streaming".
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  for (const char* to : {"node2", "node1", "node3", "node1"}) {
    auto r = pgfleet({"switchover", "--to", to, "--timeout", "60"});
    ASSERT_TRUE(r.ok()) << "switchover to " << to << ": " << r.output << status_json().dump(2);
    EXPECT_NE(r.output.find(std::string("to ") + to), std::string::npos) << r.output;
    EXPECT_EQ(leader(), to);
  }
  ASSERT_TRUE(eventually([&] { return status_json()["history"].size() == 4u; }, 10s)) << status_json().dump(2);
}

TEST_F(FailoverTest, PauseStopsAutomaticFailover) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  ASSERT_TRUE(succeeded(pgfleet({"pause"})));
  EXPECT_TRUE(status_json()["paused"].get<bool>());
  ::kill(static_cast<pid_t>(pid_of("node1", "agent_pid")), SIGKILL);
  ::kill(static_cast<pid_t>(pid_of("node1", "pid")), SIGKILL);
  std::this_thread::sleep_for(4s);  // asserting that nothing happens within a while
  EXPECT_TRUE(status_json()["history"].empty()) << status_json().dump(2);
  ASSERT_TRUE(succeeded(pgfleet({"resume"})));
  EXPECT_TRUE(eventually([&] { return !status_json()["history"].empty(); }, 30s)) << status_json().dump(2);
}

// Patroni's tags, set in pgfleet.yaml and applied by `pgfleet reload`: a replica tagged
// nofailover is never promoted (a delayed or a small replica); noloadbalance keeps the proxy's
// reads off it.
TEST_F(FailoverTest, ATaggedReplicaIsNeverPromotedAndTakesNoProxyReads) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  ASSERT_NO_FATAL_FAILURE(add_node_settings("node2", "    nofailover: true\n    noloadbalance: true\n"));
  auto reload = pgfleet({"reload"});
  ASSERT_EQ(reload.exit_code, 0) << reload.output;
  ASSERT_TRUE(eventually([&] { auto n = node_status("node2"); return n["nofailover"] == true && n["noloadbalance"] == true; },
                         15s))
      << status_json().dump(2);
  EXPECT_EQ(node_status("node3")["nofailover"], false);
  auto table = pgfleet({"status"});
  EXPECT_NE(table.output.find("tags: nofailover, noloadbalance"), std::string::npos) << table.output;

  auto refused = pgfleet({"switchover", "--to", "node2"});
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("node2 is tagged nofailover: it is never promoted"), std::string::npos) << refused.output;
  EXPECT_EQ(leader(), "node1");

  // The proxy's replicas port sends every read to node3.
  const std::string replicas = with_param(url({"--proxy-replicas"}), "connect_timeout=3");
  const std::string node3_port = std::to_string(node_port(3));
  ASSERT_TRUE(eventually([&] { return sql_value(replicas, "SELECT inet_server_port()") == node3_port; }, 15s));
  for (int i = 0; i < 20; ++i) EXPECT_EQ(sql_value(replicas, "SELECT inet_server_port()"), node3_port) << "read " << i;

  // The primary's host dies. node2 has the same WAL as node3, but only node3 may be elected.
  sql(proxy(), "CREATE TABLE tagged (id int)", 10s);
  ::kill(static_cast<pid_t>(pid_of("node1", "agent_pid")), SIGKILL);
  ::kill(static_cast<pid_t>(pid_of("node1", "pid")), SIGKILL);
  ASSERT_TRUE(eventually([&] { return try_sql(proxy_primary(), "INSERT INTO tagged VALUES (1)", 3s).ok(); }, 60s, 200ms))
      << status_json().dump(2);
  EXPECT_EQ(leader(), "node3") << status_json().dump(2);
  EXPECT_EQ(str(node_status("node2"), "role"), "replica");
  // `pgfleet check` sees that no node could take over now: node1 is down, node2 is tagged.
  auto check = pgfleet({"check"}, 60s);
  EXPECT_EQ(check.exit_code, 2) << check.output;
  EXPECT_NE(check.output.find("no replica could take over if node3 failed"), std::string::npos) << check.output;
}

// The node that `up` initializes is the first one not tagged nofailover.
TEST_F(FailoverTest, ACreatedClusterStartsOnTheFirstNodeNotTaggedNofailover) {
  write_text(tmp_ + "/config.yaml", three_nodes_yaml({{1, ", nofailover: true"}}));
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--config", tmp_ + "/config.yaml"}));
  EXPECT_EQ(leader(), "node2") << status_json().dump(2);
  EXPECT_EQ(str(node_status("node1"), "role"), "replica");
  EXPECT_EQ(str(node_status("node1"), "state"), "streaming");
  EXPECT_EQ(node_status("node1")["nofailover"], true);
}

}  // namespace
}  // namespace pgfleet::itest
