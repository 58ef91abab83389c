// Synchronous replication: `up --sync on` (one synchronous standby) and `--sync quorum` (ANY k).
#include <algorithm>
#include <string>
#include <vector>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

using SyncTest = PgfleetTest;

std::vector<std::string> replica_sync_states(const nlohmann::json& status) {
  std::vector<std::string> out;
  for (const auto& n : status["nodes"]) {
    if (str(n, "role") == "replica") out.push_back(str(n, "sync_state"));
  }
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// A write on the primary must commit (the synchronous standbys acknowledge it) well within 10 s.
void expect_writes_commit(const std::string& primary) {
  sql(primary, "CREATE TABLE sync_probe (id int PRIMARY KEY)", 10s);
  for (int i = 1; i <= 5; ++i) {
    auto r = try_sql(primary, "INSERT INTO sync_probe VALUES (" + std::to_string(i) + ")", 10s);
    ASSERT_TRUE(r.ok()) << "insert " << i << " did not commit: " << r.error();
  }
  EXPECT_EQ(sql_value(primary, "SELECT count(*) FROM sync_probe"), "5");
}

// `on` names exactly one standby (the DCS records it, so only it may be promoted without loss);
// the other replica stays asynchronous rather than "potential", which PostgreSQL would promote to
// synchronous behind the leader's back.
TEST_F(SyncTest, SyncOnHasExactlyOneSynchronousReplica) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--sync", "on"}));
  std::vector<std::string> states;
  bool settled = eventually(
      [&] {
        states = replica_sync_states(status_json());
        return states.size() == 2 && std::count(states.begin(), states.end(), "sync") == 1 &&
               std::count(states.begin(), states.end(), "async") == 1;
      },
      15s, 200ms);
  EXPECT_TRUE(settled) << "replica sync_state values: " << joined(states) << "\n" << status_json().dump(2);
  EXPECT_EQ(str(status_json(), "sync_mode"), "on");

  std::string primary = url({"--primary"});
  std::string names = sql_value(primary, "SHOW synchronous_standby_names");
  EXPECT_EQ(names.rfind("FIRST 1", 0), 0u) << names;
  ASSERT_NO_FATAL_FAILURE(expect_writes_commit(primary));
  // The server agrees with status: exactly one standby is synchronous.
  EXPECT_EQ(sql_value(primary, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"), "1");
}

TEST_F(SyncTest, SyncQuorumMakesEveryReplicaAQuorumMember) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--sync", "quorum"}));
  std::vector<std::string> states;
  bool settled = eventually(
      [&] {
        states = replica_sync_states(status_json());
        return states.size() == 2 && std::count(states.begin(), states.end(), "quorum") == 2;
      },
      15s, 200ms);
  EXPECT_TRUE(settled) << "replica sync_state values: " << joined(states) << "\n" << status_json().dump(2);
  EXPECT_EQ(str(status_json(), "sync_mode"), "quorum");

  std::string primary = url({"--primary"});
  std::string names = sql_value(primary, "SHOW synchronous_standby_names");
  EXPECT_EQ(names.rfind("ANY 1", 0), 0u) << names;
  EXPECT_NE(names.find("node2"), std::string::npos) << names;
  EXPECT_NE(names.find("node3"), std::string::npos) << names;
  ASSERT_NO_FATAL_FAILURE(expect_writes_commit(primary));
}

}  // namespace
}  // namespace pgfleet::itest
