// The rules of `pgfleet check`: which facts make a check OK, WARNING or CRITICAL, and the exit code.
#include "cluster/health_check.hpp"

#include <gtest/gtest.h>

namespace pgfleet::cluster {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;

NodeStatus node(const std::string& name, const std::string& role, const std::string& state) {
  NodeStatus n;
  n.name = name;
  n.role = role;
  n.state = state;
  n.timeline = 1;
  n.uptime_seconds = 600;
  if (role == "replica") {
    n.upstream = "node1";
    n.sync_state = state == "streaming" ? "async" : "";
    n.lag_bytes = 0;
  }
  return n;
}

// A healthy three-node cluster with its proxy, and the facts a healthy check measures.
struct Healthy {
  ClusterConfig config;
  ClusterStatus status;
  CheckFacts facts;
  CheckLimits limits;

  Healthy() {
    status.leader = "node1";
    status.nodes = {node("node1", "primary", "running"), node("node2", "replica", "streaming"),
                    node("node3", "replica", "streaming")};
    status.proxy.enabled = true;
    status.proxy.state = "running";
    status.proxy.port = 6432;
    facts.now_ms = kNow;
    facts.leader_in_recovery = false;
    facts.write_lsn = "0/3000148";
    facts.replays = {{"node2", 3, "", ""}, {"node3", 4, "", ""}};
    facts.proxy_routes = {route("proxy", 6432, false, "node1"), route("proxy_primary", 6433, false, "node1"),
                          route("proxy_replicas", 6434, true, "node2")};
    ArchiverFact a;
    a.node = "node1";
    a.archiving = true;
    a.last_archived_wal = "000000010000000000000003";
    a.last_archived_ms = kNow - 5000;
    a.ready_files = 0;
    facts.archivers = {a};
  }
  static ProxyRouteFact route(const std::string& name, int port, bool in_recovery, const std::string& node) {
    ProxyRouteFact r;
    r.port_name = name;
    r.port = port;
    r.answered = true;
    r.in_recovery = in_recovery;
    r.node = node;
    return r;
  }
  NodeStatus& at(const std::string& name) {
    for (auto& n : status.nodes)
      if (n.name == name) return n;
    throw std::out_of_range(name);
  }
  std::vector<CheckResult> checks() const { return evaluate_checks(config, status, facts, limits); }
  CheckResult check(const std::string& name) const {
    for (const auto& c : checks())
      if (c.name == name) return c;
    return {"(absent)", CheckLevel::Unknown, ""};
  }
};

TEST(HealthCheck, AHealthyClusterPassesEveryCheckAndExitsZero) {
  Healthy h;
  auto checks = h.checks();
  std::vector<std::string> names;
  for (const auto& c : checks) {
    names.push_back(c.name);
    EXPECT_EQ(c.level, CheckLevel::Ok) << c.name << ": " << c.detail;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"leader", "node1", "node2", "node3", "replication", "failover", "proxy",
                                             "wal archive", "backups"}));
  EXPECT_EQ(overall_level(checks), CheckLevel::Ok);
  EXPECT_EQ(static_cast<int>(overall_level(checks)), 0);
  EXPECT_NE(h.check("replication").detail.find("node2 after 3 ms, node3 after 4 ms"), std::string::npos)
      << h.check("replication").detail;
  EXPECT_NE(h.check("proxy").detail.find("6434 reaches node2 (replica)"), std::string::npos) << h.check("proxy").detail;
}

TEST(HealthCheck, NoLeaderIsCritical) {
  Healthy h;
  h.status.leader.clear();
  h.facts = CheckFacts{};
  h.facts.now_ms = kNow;
  EXPECT_EQ(h.check("leader").level, CheckLevel::Critical);
  EXPECT_EQ(h.check("failover").level, CheckLevel::Critical);
  EXPECT_EQ(h.check("replication").name, "(absent)") << "nothing to measure without a primary";
  EXPECT_EQ(overall_level(h.checks()), CheckLevel::Critical);
}

TEST(HealthCheck, ALeaderThatCannotBeAskedOrRunsAsReplicaIsCritical) {
  Healthy h;
  h.facts.leader_error = "connection refused";
  EXPECT_EQ(h.check("leader").level, CheckLevel::Critical);
  EXPECT_NE(h.check("leader").detail.find("connection refused"), std::string::npos);

  Healthy r;
  r.facts.leader_in_recovery = true;
  EXPECT_EQ(r.check("leader").level, CheckLevel::Critical);

  Healthy stopped;  // `pgfleet down`: the leader is the node whose data directory is a primary
  stopped.at("node1").state = "stopped";
  stopped.facts.leader_error = "connection refused";
  EXPECT_EQ(stopped.check("leader").level, CheckLevel::Critical);
  EXPECT_EQ(stopped.check("leader").detail,
            "the primary, node1, is stopped: nothing takes writes (`pgfleet up` starts it)");
  EXPECT_EQ(stopped.check("node1").level, CheckLevel::Critical);
}

TEST(HealthCheck, AStoppedReplicaIsAWarningWhileAnotherCanTakeOver) {
  Healthy h;
  h.at("node3") = node("node3", "replica", "stopped");
  h.facts.replays = {{"node2", 3, "", ""}};
  EXPECT_EQ(h.check("node3").level, CheckLevel::Warning);
  EXPECT_EQ(h.check("node3").detail, "replica, stopped: not replicating (`pgfleet up` starts it)");
  h.config.etcd.endpoints = {"http://10.0.0.1:2379"};  // several hosts: no `pgfleet up` there
  EXPECT_EQ(h.check("node3").detail, "replica, stopped: not replicating (start its agent on its host)");
  h.config.etcd.endpoints.clear();
  EXPECT_EQ(h.check("failover").level, CheckLevel::Ok);
  EXPECT_EQ(h.check("failover").detail, "candidates: node2");
  EXPECT_NE(h.check("replication").detail.find("node3 not asked (stopped)"), std::string::npos);
  EXPECT_EQ(overall_level(h.checks()), CheckLevel::Warning);
}

TEST(HealthCheck, NoReplicaThatCouldTakeOverIsCritical) {
  Healthy h;
  h.at("node2") = node("node2", "replica", "crashed");
  h.at("node3") = node("node3", "replica", "running");  // runs, does not stream
  h.facts.replays.clear();
  EXPECT_EQ(h.check("node3").level, CheckLevel::Warning);
  EXPECT_NE(h.check("node3").detail.find("not streaming"), std::string::npos);
  EXPECT_EQ(h.check("failover").level, CheckLevel::Critical);
  EXPECT_EQ(overall_level(h.checks()), CheckLevel::Critical);
}

TEST(HealthCheck, ReplicaLagBeyondTheLimitWarnsAndRemovesTheCandidate) {
  Healthy h;
  h.limits.lag_warning_bytes = 1 << 20;
  h.config.maximum_lag_on_failover = 1 << 20;
  h.at("node2").lag_bytes = (1 << 20) + 1;
  EXPECT_EQ(h.check("node2").level, CheckLevel::Warning);
  EXPECT_EQ(h.check("failover").detail, "candidates: node3");
  h.at("node2").lag_bytes = 1 << 20;  // at the limit is still within it
  EXPECT_EQ(h.check("node2").level, CheckLevel::Ok);
}

TEST(HealthCheck, ANodeTaggedNofailoverIsNoCandidate) {
  Healthy h;
  h.at("node2").nofailover = true;
  EXPECT_EQ(h.check("failover").detail, "candidates: node3");
  h.at("node3").nofailover = true;
  EXPECT_EQ(h.check("failover").level, CheckLevel::Critical);
}

TEST(HealthCheck, ADelayedNofailoverReplicaPassesOnReceiptAndItsLagIsNoWarning) {
  Healthy h;
  h.at("node3").nofailover = true;
  h.at("node3").lag_bytes = 64 << 20;  // replay an hour behind
  h.facts.replays = {{"node2", 3, "", ""}, {"node3", 5, "", "1h"}};
  EXPECT_EQ(h.check("node3").level, CheckLevel::Ok) << h.check("node3").detail;
  EXPECT_NE(h.check("node3").detail.find("64.0 MB behind"), std::string::npos) << h.check("node3").detail;
  auto replication = h.check("replication");
  EXPECT_EQ(replication.level, CheckLevel::Ok);
  EXPECT_NE(replication.detail.find("node3 received after 5 ms (replay delayed by recovery_min_apply_delay 1h)"),
            std::string::npos)
      << replication.detail;
  h.at("node3").nofailover = false;  // the same lag on a replica that could be promoted
  EXPECT_EQ(h.check("node3").level, CheckLevel::Warning);
}

TEST(HealthCheck, AReplicaThatDidNotReplayTheTestCommitWarnsAndIsNoCandidate) {
  Healthy h;
  h.facts.replays = {{"node2", std::nullopt, "", ""}, {"node3", 4, "", ""}};
  auto replication = h.check("replication");
  EXPECT_EQ(replication.level, CheckLevel::Warning);
  EXPECT_NE(replication.detail.find("node2 had not replayed it after 5000 ms"), std::string::npos) << replication.detail;
  EXPECT_EQ(h.check("failover").detail, "candidates: node3");

  h.facts.replays = {{"node2", std::nullopt, "server closed the connection", ""}, {"node3", 4, "", ""}};
  EXPECT_NE(h.check("replication").detail.find("node2 cannot be asked: server closed"), std::string::npos);
}

TEST(HealthCheck, AFailedTestCommitIsCritical) {
  Healthy h;
  h.facts.write_error = "could not extend file: No space left on device";
  h.facts.write_lsn.clear();
  h.facts.replays.clear();
  EXPECT_EQ(h.check("replication").level, CheckLevel::Critical);
  EXPECT_NE(h.check("replication").detail.find("No space left"), std::string::npos);
  // The replicas stream: without a commit to replay they still count as candidates.
  EXPECT_EQ(h.check("failover").detail, "candidates: node2, node3");
}

TEST(HealthCheck, AReplicaOnAnotherTimelineWarns) {
  Healthy h;
  h.at("node1").timeline = 2;
  h.at("node3").timeline = 1;
  h.at("node2").timeline = 2;
  EXPECT_EQ(h.check("node3").level, CheckLevel::Warning);
  EXPECT_NE(h.check("node3").detail.find("timeline 1, the primary on 2"), std::string::npos);
  EXPECT_EQ(h.check("node2").level, CheckLevel::Ok);
}

TEST(HealthCheck, ASecondRunningPrimaryIsCritical) {
  Healthy h;
  h.at("node3") = node("node3", "primary", "running");
  EXPECT_EQ(h.check("node3").level, CheckLevel::Critical);
  EXPECT_NE(h.check("node3").detail.find("while node1 leads"), std::string::npos);
}

TEST(HealthCheck, AnUnsupervisedNodeOrAnAgentErrorWarns) {
  Healthy h;
  h.at("node1").state = "unsupervised";
  EXPECT_EQ(h.check("node1").level, CheckLevel::Warning);

  Healthy e;
  e.at("node2").last_error = "replication slot node2 lost the WAL its replica needs";
  EXPECT_EQ(e.check("node2").level, CheckLevel::Warning);
  EXPECT_NE(e.check("node2").detail.find("agent: replication slot node2 lost"), std::string::npos);
}

TEST(HealthCheck, PendingRestartIsNotedNotWarned) {
  Healthy h;
  h.at("node2").pending_restart = {"shared_buffers"};
  EXPECT_EQ(h.check("node2").level, CheckLevel::Ok);
  EXPECT_NE(h.check("node2").detail.find("pending restart: shared_buffers"), std::string::npos);
}

TEST(HealthCheck, MaintenanceModeWarns) {
  Healthy h;
  h.status.paused = true;
  EXPECT_EQ(h.check("failover").level, CheckLevel::Warning);
  EXPECT_NE(h.check("failover").detail.find("pgfleet resume"), std::string::npos);
}

TEST(HealthCheck, ASingleNodeClusterHasNothingToFailOverToAndThatIsOk) {
  Healthy h;
  h.status.nodes = {node("node1", "primary", "running")};
  h.facts.replays.clear();
  EXPECT_EQ(h.check("failover").level, CheckLevel::Ok);
  EXPECT_EQ(overall_level(h.checks()), CheckLevel::Ok);
}

TEST(HealthCheck, SyncModeCountsTheSynchronousStandbys) {
  Healthy h;
  h.config.sync = SyncMode::On;
  h.at("node2").sync_state = "sync";
  h.at("node3").sync_state = "potential";
  EXPECT_EQ(h.check("sync").level, CheckLevel::Ok);
  EXPECT_EQ(h.check("failover").detail, "candidates: node2") << "only a synchronous standby may be promoted";

  h.at("node2").sync_state = "potential";
  EXPECT_EQ(h.check("sync").level, CheckLevel::Warning);
  EXPECT_EQ(h.check("failover").level, CheckLevel::Critical);
  h.config.sync_strict = true;
  EXPECT_EQ(h.check("sync").level, CheckLevel::Critical) << "strict: commits wait";

  Healthy q;
  q.config.sync = SyncMode::Quorum;
  q.config.sync_count = 5;  // clamped to the two replicas
  q.at("node2").sync_state = "quorum";
  q.at("node3").sync_state = "quorum";
  EXPECT_EQ(q.check("sync").level, CheckLevel::Ok) << q.check("sync").detail;
  EXPECT_EQ(Healthy().check("sync").name, "(absent)") << "no sync row when sync is off";
}

TEST(HealthCheck, ProxyRoutes) {
  Healthy h;
  h.status.proxy.state = "stopped";
  EXPECT_EQ(h.check("proxy").level, CheckLevel::Critical);

  Healthy wrong;
  wrong.facts.proxy_routes[1] = Healthy::route("proxy_primary", 6433, true, "node2");
  EXPECT_EQ(wrong.check("proxy").level, CheckLevel::Critical);
  EXPECT_NE(wrong.check("proxy").detail.find("6433 reaches node2 (replica), not the primary"), std::string::npos);

  Healthy reads;
  reads.facts.proxy_routes[2] = Healthy::route("proxy_replicas", 6434, false, "node1");
  EXPECT_EQ(reads.check("proxy").level, CheckLevel::Warning);

  Healthy refused;
  refused.facts.proxy_routes[2].answered = false;
  refused.facts.proxy_routes[2].error = "FATAL: no replica can take reads now";
  EXPECT_EQ(refused.check("proxy").level, CheckLevel::Warning);
  // ... which is expected when no replica streams.
  refused.at("node2").state = "stopped";
  refused.at("node3").state = "stopped";
  EXPECT_EQ(refused.check("proxy").level, CheckLevel::Ok);

  Healthy down;
  down.facts.proxy_routes[0].answered = false;
  EXPECT_EQ(down.check("proxy").level, CheckLevel::Critical);

  Healthy disabled;
  disabled.status.proxy.enabled = false;
  EXPECT_EQ(disabled.check("proxy").name, "(absent)");
}

TEST(HealthCheck, ArchivingThatFailsNowIsCriticalOnThePrimaryAndOldFailuresAreForgotten) {
  Healthy h;
  h.facts.archivers[0].last_failed_wal = "000000010000000000000004";
  h.facts.archivers[0].last_failed_ms = kNow - 1000;  // after the last success
  EXPECT_EQ(h.check("wal archive").level, CheckLevel::Critical);
  EXPECT_NE(h.check("wal archive").detail.find("archiving fails on node1 (last 000000010000000000000004"),
            std::string::npos)
      << h.check("wal archive").detail;

  h.facts.archivers[0].last_failed_ms = kNow - 11 * 60 * 1000;  // the archiver retries every minute: this is over
  h.facts.archivers[0].last_archived_ms = kNow - 12 * 60 * 1000;
  EXPECT_EQ(h.check("wal archive").level, CheckLevel::Ok);

  h.facts.archivers[0].last_failed_ms = kNow - 6000;  // failed, then archived again since
  h.facts.archivers[0].last_archived_ms = kNow - 5000;
  EXPECT_EQ(h.check("wal archive").level, CheckLevel::Ok);

  Healthy replica;
  ArchiverFact a;
  a.node = "node2";
  a.archiving = true;
  a.last_failed_wal = "000000010000000000000004";
  a.last_failed_ms = kNow - 1000;
  replica.facts.archivers.push_back(a);
  EXPECT_EQ(replica.check("wal archive").level, CheckLevel::Warning) << "a replica's archive copy is a spare";

  Healthy behind;
  behind.facts.archivers[0].ready_files = 17;
  EXPECT_EQ(behind.check("wal archive").level, CheckLevel::Warning);
  EXPECT_NE(behind.check("wal archive").detail.find("17 WAL files wait"), std::string::npos);

  Healthy off;
  off.facts.archivers[0].archiving = false;
  EXPECT_EQ(off.check("wal archive").name, "(absent)");
}

TEST(HealthCheck, ScheduledBackupsThatStoppedWarn) {
  Healthy h;
  EXPECT_EQ(h.check("backups").level, CheckLevel::Ok) << "no schedule, no backup: nothing is late";
  h.config.backup.interval_seconds = 3600;
  EXPECT_EQ(h.check("backups").level, CheckLevel::Warning);
  h.status.backups = 2;
  h.status.newest_backup_ms = kNow - 5400 * 1000;  // 1.5 intervals: the next one may be running
  EXPECT_EQ(h.check("backups").level, CheckLevel::Ok);
  h.status.newest_backup_ms = kNow - 2 * 3600 * 1000 - 1000;
  EXPECT_EQ(h.check("backups").level, CheckLevel::Warning);
  EXPECT_NE(h.check("backups").detail.find("not being taken"), std::string::npos);

  Healthy remote;
  remote.config.etcd.endpoints = {"http://10.0.0.1:2379"};
  EXPECT_EQ(remote.check("backups").name, "(absent)") << "several hosts have no cluster directory for backups";
}

TEST(HealthCheck, PermanentSlotsMustHaveACopyOnEveryRunningNode) {
  Healthy h;
  h.status.slots["cdc"] = SlotSpec{"logical", "app", "pgoutput", false};
  h.status.slots["dr"] = SlotSpec{"physical", "", "", false};
  for (auto& n : h.status.nodes) n.slots = {{"cdc", "0/3000060"}, {"dr", "0/3000028"}};
  EXPECT_EQ(h.check("slots").level, CheckLevel::Ok);
  EXPECT_EQ(h.check("slots").detail, "cdc, dr on every running node");
  // A replica without its copy yet: a failover to it would lose the consumer's place.
  h.status.nodes[2].slots.erase("cdc");
  EXPECT_EQ(h.check("slots").level, CheckLevel::Warning);
  EXPECT_NE(h.check("slots").detail.find("node3 has no copy of cdc"), std::string::npos) << h.check("slots").detail;
  // A stopped node is the node check's business.
  h.status.nodes[2].state = "stopped";
  EXPECT_EQ(h.check("slots").level, CheckLevel::Ok);
  // The primary without the slot: its consumer fails now.
  h.status.nodes[0].slots.clear();
  EXPECT_EQ(h.check("slots").level, CheckLevel::Critical);
  EXPECT_NE(h.check("slots").detail.find("the primary node1 has no slot cdc, dr"), std::string::npos)
      << h.check("slots").detail;
  // No permanent slots: no check.
  h.status.slots.clear();
  for (const auto& c : h.checks()) EXPECT_NE(c.name, "slots");
}

TEST(HealthCheck, OverallLevelIsTheWorstAndUnknownRanksBelowAFailure) {
  std::vector<CheckResult> checks{{"a", CheckLevel::Ok, ""}, {"b", CheckLevel::Unknown, ""}};
  EXPECT_EQ(overall_level(checks), CheckLevel::Unknown);
  checks.push_back({"c", CheckLevel::Warning, ""});
  EXPECT_EQ(overall_level(checks), CheckLevel::Warning);
  checks.push_back({"d", CheckLevel::Critical, ""});
  EXPECT_EQ(overall_level(checks), CheckLevel::Critical);
  EXPECT_EQ(overall_level({}), CheckLevel::Ok);
}

TEST(HealthCheck, OutputForms) {
  Healthy h;
  h.at("node3") = node("node3", "replica", "stopped");
  h.facts.replays = {{"node2", 3, "", ""}};
  auto checks = h.checks();

  std::string table = render_checks(checks);
  EXPECT_EQ(table.substr(0, table.find('\n')).find("CHECK"), 0u);
  EXPECT_NE(table.find("\nnode3        WARNING   replica, stopped"), std::string::npos) << table;
  EXPECT_NE(table.find("\nWARNING: node3\n"), std::string::npos) << table;

  auto json = checks_to_json(checks);
  EXPECT_EQ(json["status"], "WARNING");
  EXPECT_EQ(json["exit_code"], 1);
  EXPECT_EQ(json["checks"].size(), checks.size());
  EXPECT_EQ(json["checks"][3]["name"], "node3");

  std::string line = nagios_line(checks, h.status, h.facts);
  EXPECT_EQ(line.rfind("PGFLEET WARNING - node3: replica, stopped", 0), 0u) << line;
  EXPECT_NE(line.find(" | 'node2_lag'=0B 'node3_lag'=0B 'node2_replay'=3ms"), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
  // One '|' only: the one before the performance data.
  EXPECT_EQ(line.find('|'), line.rfind('|'));

  Healthy ok;
  EXPECT_EQ(nagios_line(ok.checks(), ok.status, ok.facts).rfind("PGFLEET OK - 9 checks passed, primary node1 | ", 0), 0u);
}

}  // namespace
}  // namespace pgfleet::cluster
