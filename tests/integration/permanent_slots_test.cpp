// `pgfleet slot`: permanent replication slots. A logical decoding consumer (test_decoding, as
// Debezium would use pgoutput) goes on after a switchover from exactly where it stopped: every
// replica kept a copy of its slot, advanced as the consumer confirmed changes on the primary.
#include <signal.h>

#include <string>
#include <vector>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

class PermanentSlotsTest : public PgfleetTest {
 protected:
  // The rows the consumer of slot `cdc` receives now on the primary (and confirms), as
  // "x[integer]:N" from test_decoding's "table public.t: INSERT: x[integer]:N".
  std::vector<std::string> consume() {
    std::vector<std::string> out;
    for (const auto& row : sql(url({"--primary"}), "SELECT data FROM pg_logical_slot_get_changes('cdc', NULL, NULL) "
                                                   "WHERE data LIKE 'table public.t:%'")) {
      std::string data = row[0].value_or("");
      out.push_back(data.substr(data.rfind(' ') + 1));
    }
    return out;
  }
  // The slots each node has, as PostgreSQL lists them.
  std::string slots_on(const std::string& node) {
    return sql_value(node_url(node), "SELECT coalesce(string_agg(slot_name || ':' || slot_type, ',' ORDER BY slot_name), '') "
                                     "FROM pg_replication_slots");
  }
  // Every node's copy of `slot` is where the consumer left the primary's (as `pgfleet slot list
  // --json` shows them; the agents publish each loop, so the primary's own entry may lag).
  bool copies_caught_up(const std::string& slot, nlohmann::json& last, size_t nodes_count = 3) {
    const std::string confirmed = sql_value(
        url({"--primary"}), "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '" + slot + "'");
    auto listed = pgfleet({"slot", "list", "--json"});
    if (listed.exit_code != 0) return false;
    last = nlohmann::json::parse(listed.output);
    last["confirmed_on_the_primary"] = confirmed;
    for (const auto& s : last["slots"]) {
      if (s["name"] != slot) continue;
      const auto& nodes = s["nodes"];
      for (const auto& [name, lsn] : nodes.items())
        if (lsn != confirmed) return false;
      return nodes.size() == nodes_count;
    }
    return false;
  }
};

TEST_F(PermanentSlotsTest, ALogicalConsumerGoesOnAfterASwitchoverWithoutLossOrRepeats) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--set", "wal_level=logical"}));
  auto none = pgfleet({"slot", "list"});
  ASSERT_EQ(none.exit_code, 0) << none.output;
  EXPECT_NE(none.output.find("no permanent replication slots"), std::string::npos) << none.output;

  auto added = pgfleet({"slot", "add", "cdc", "--type", "logical", "--plugin", "test_decoding"}, 120s);
  ASSERT_EQ(added.exit_code, 0) << added.output;
  EXPECT_NE(added.output.find("added the permanent slot cdc (logical, plugin test_decoding in database postgres)"),
            std::string::npos)
      << added.output;
  for (const char* node : {"node1 (primary)", "node2", "node3"})
    EXPECT_NE(added.output.find(std::string(node) + ": has it at"), std::string::npos) << added.output;
  auto physical = pgfleet({"slot", "add", "standby_dr"}, 120s);
  ASSERT_EQ(physical.exit_code, 0) << physical.output;
  for (const char* node : {"node1", "node2", "node3"}) {
    EXPECT_EQ(slots_on(node).find("cdc:logical"), 0u) << node << ": " << slots_on(node);
    EXPECT_NE(slots_on(node).find("standby_dr:physical"), std::string::npos) << node << ": " << slots_on(node);
  }
  auto status = status_json();
  EXPECT_EQ(status["slots"]["cdc"]["plugin"], "test_decoding") << status["slots"].dump();
  EXPECT_EQ(status["slots"]["standby_dr"]["type"], "physical") << status["slots"].dump();
  EXPECT_FALSE(str(node_of(status, "node2")["slots"], "cdc").empty()) << node_of(status, "node2").dump(2);
  EXPECT_NE(pgfleet({"status"}).output.find("permanent slots: cdc (logical, postgres, test_decoding), standby_dr (physical)"),
            std::string::npos);
  auto check = pgfleet({"check", "--json"}, 60s);
  EXPECT_NE(check.output.find("cdc, standby_dr on every running node"), std::string::npos) << check.output;

  // The consumer reads two changes; a third is written and not read yet.
  const std::string primary = url({"--primary"});
  sql(primary, "CREATE TABLE t (x int)");
  sql(primary, "INSERT INTO t VALUES (1)");
  sql(primary, "INSERT INTO t VALUES (2)");
  EXPECT_EQ(consume(), (std::vector<std::string>{"x[integer]:1", "x[integer]:2"}));
  sql(primary, "INSERT INTO t VALUES (3)");
  nlohmann::json listed;
  ASSERT_TRUE(eventually([&] { return copies_caught_up("cdc", listed); }, 30s)) << listed.dump(2);

  // After the switchover, node2's copy gives exactly what was not confirmed, then what follows.
  auto sw = pgfleet({"switchover", "--to", "node2"});
  ASSERT_EQ(sw.exit_code, 0) << sw.output;
  sql(url({"--primary"}), "INSERT INTO t VALUES (4)");
  EXPECT_EQ(consume(), (std::vector<std::string>{"x[integer]:3", "x[integer]:4"}));

  // node1, a replica now, follows node2's slot with its own old copy.
  ASSERT_TRUE(wait_all_streaming());
  ASSERT_TRUE(eventually([&] { return copies_caught_up("cdc", listed); }, 30s)) << listed.dump(2);
  sql(url({"--primary"}), "INSERT INTO t VALUES (5)");
  ASSERT_TRUE(eventually([&] { return copies_caught_up("cdc", listed); }, 30s)) << listed.dump(2);
  auto back = pgfleet({"switchover", "--to", "node1"});
  ASSERT_EQ(back.exit_code, 0) << back.output;
  EXPECT_EQ(consume(), (std::vector<std::string>{"x[integer]:5"}));

  // Removed: every node drops its copy before the command returns.
  auto removed = pgfleet({"slot", "remove", "cdc"}, 120s);
  ASSERT_EQ(removed.exit_code, 0) << removed.output;
  for (const char* node : {"node1", "node2", "node3"})
    EXPECT_EQ(slots_on(node).find("cdc"), std::string::npos) << node << ": " << slots_on(node);
  auto after = pgfleet({"slot", "list"});
  EXPECT_EQ(after.output.find("cdc"), std::string::npos) << after.output;
  EXPECT_NE(after.output.find("standby_dr"), std::string::npos) << after.output;

  // Wrong requests change nothing.
  auto node_name = pgfleet({"slot", "add", "node2"});
  EXPECT_EQ(node_name.exit_code, 1);
  EXPECT_NE(node_name.output.find("'node2' is the name of a node"), std::string::npos) << node_name.output;
  auto bad_name = pgfleet({"slot", "add", "My-Slot"});
  EXPECT_NE(bad_name.output.find("lower-case letters, digits and underscores"), std::string::npos) << bad_name.output;
  auto no_db = pgfleet({"slot", "add", "cdc2", "--type", "logical", "--database", "nowhere"});
  EXPECT_EQ(no_db.exit_code, 1);
  EXPECT_NE(no_db.output.find("there is no database 'nowhere'"), std::string::npos) << no_db.output;
  auto retyped = pgfleet({"slot", "add", "standby_dr", "--type", "logical"});
  EXPECT_EQ(retyped.exit_code, 1);
  EXPECT_NE(retyped.output.find("the permanent slot standby_dr is kept as physical"), std::string::npos) << retyped.output;
  auto unknown = pgfleet({"slot", "remove", "nothing"});
  EXPECT_NE(unknown.output.find("no permanent slot named nothing"), std::string::npos) << unknown.output;
  auto listed_json = nlohmann::json::parse(pgfleet({"slot", "list", "--json"}).output);
  EXPECT_EQ(listed_json["slots"].size(), 1u) << listed_json.dump(2);
}

TEST_F(PermanentSlotsTest, TheConsumerGoesOnAfterTheHostOfThePrimaryCrashes) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--replicas", "1", "--set", "wal_level=logical"}));
  auto added = pgfleet({"slot", "add", "cdc", "--type", "logical", "--plugin", "test_decoding"}, 120s);
  ASSERT_EQ(added.exit_code, 0) << added.output;
  const std::string primary = url({"--primary"});
  sql(primary, "CREATE TABLE t (x int)");
  sql(primary, "INSERT INTO t VALUES (1)");
  EXPECT_EQ(consume(), (std::vector<std::string>{"x[integer]:1"}));
  sql(primary, "INSERT INTO t VALUES (2)");
  nlohmann::json listed;
  ASSERT_TRUE(eventually([&] { return copies_caught_up("cdc", listed, 2); }, 30s)) << listed.dump(2);

  // The "host" of node1 dies: agent and postmaster together. node2 takes over with its copy.
  ::kill(static_cast<pid_t>(num(node_status("node1"), "agent_pid")), SIGKILL);
  ::kill(static_cast<pid_t>(num(node_status("node1"), "pid")), SIGKILL);
  ASSERT_TRUE(eventually([&] { return try_sql(url({"--primary"}), "INSERT INTO t VALUES (3)", 3s).ok(); }, 60s, 200ms))
      << status_json().dump(2);
  EXPECT_EQ(str(status_json(), "leader"), "node2");
  EXPECT_EQ(consume(), (std::vector<std::string>{"x[integer]:2", "x[integer]:3"}));

  // node1 comes back as a replica and its old copy follows node2's slot.
  auto back = up();
  ASSERT_TRUE(back.ok()) << back.output;
  ASSERT_TRUE(wait_all_streaming(60s)) << status_json().dump(2);
  sql(url({"--primary"}), "INSERT INTO t VALUES (4)");
  EXPECT_EQ(consume(), (std::vector<std::string>{"x[integer]:4"}));
  // Had node1 been rebuilt (pg_basebackup, when a rewind fails), it would lack the WAL from before
  // its backup and wait to copy the slot until the slot moves past it: a checkpoint (a snapshot
  // decoding can restart from) and a read by the consumer move it.
  ASSERT_TRUE(eventually(
      [&] {
        sql(url({"--primary"}), "CHECKPOINT");
        EXPECT_TRUE(consume().empty());
        return !str(node_status("node1")["slots"], "cdc").empty();
      },
      90s, 2s))
      << status_json().dump(2);
  ASSERT_TRUE(eventually([&] { return copies_caught_up("cdc", listed, 2); }, 30s)) << listed.dump(2);
}

TEST_F(PermanentSlotsTest, ALogicalSlotNeedsWalLevelLogical) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--replicas", "1"}));
  auto refused = pgfleet({"slot", "add", "cdc", "--type", "logical"});
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("a logical slot needs wal_level = logical; the cluster runs with replica"),
            std::string::npos)
      << refused.output;
  EXPECT_NE(refused.output.find("pgfleet config set wal_level=logical"), std::string::npos) << refused.output;
  EXPECT_NE(pgfleet({"slot", "list"}).output.find("no permanent replication slots"), std::string::npos);
  EXPECT_EQ(sql_value(url({"--primary"}), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'cdc'"), "0");
}

}  // namespace
}  // namespace pgfleet::itest
