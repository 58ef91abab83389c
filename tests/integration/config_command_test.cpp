// `pgfleet config`: cluster-wide PostgreSQL parameters kept in the DCS reach every node's server
// (a node's own setting still wins), say which nodes wait for a restart, and a rolling restart
// that lowers max_connections keeps the replicas streaming (they start with at least the
// primary's value, which their recovery needs).
#include <string>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

class ConfigCommandTest : public PgfleetTest {
 protected:
  std::string setting(const std::string& node, const std::string& name) {
    return sql_value(node_url(node), "SELECT current_setting('" + name + "')");
  }
};

TEST_F(ConfigCommandTest, SetReachesEveryNodeANodesOwnWinsAndLoweringRestartsSafely) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  ASSERT_NO_FATAL_FAILURE(add_node_settings("node3", "    postgresql: {work_mem: 3MB}\n"));
  auto reload = pgfleet({"reload"});
  ASSERT_EQ(reload.exit_code, 0) << reload.output;
  ASSERT_TRUE(eventually([&] { return setting("node3", "work_mem") == "3MB"; }, 15s));

  auto none = pgfleet({"config"});
  ASSERT_EQ(none.exit_code, 0) << none.output;
  EXPECT_NE(none.output.find("no cluster-wide parameters"), std::string::npos) << none.output;

  // Applied by every agent before the command returns: no waiting here.
  auto set = pgfleet({"config", "set", "work_mem=12MB", "statement_timeout=45s"}, 120s);
  ASSERT_EQ(set.exit_code, 0) << set.output;
  EXPECT_NE(set.output.find("set work_mem = 12MB cluster-wide"), std::string::npos) << set.output;
  EXPECT_NE(set.output.find("node3 keeps its own work_mem = 3MB"), std::string::npos) << set.output;
  for (const char* node : {"node1", "node2", "node3"}) {
    EXPECT_NE(set.output.find(std::string(node) + ": applied"), std::string::npos) << set.output;
    EXPECT_EQ(setting(node, "statement_timeout"), "45s") << node;
  }
  EXPECT_EQ(setting("node1", "work_mem"), "12MB");
  EXPECT_EQ(setting("node2", "work_mem"), "12MB");
  EXPECT_EQ(setting("node3", "work_mem"), "3MB");
  // Clients of the proxy get them too (they are the servers' settings).
  EXPECT_EQ(sql_value(url({"--proxy"}), "SELECT current_setting('statement_timeout')"), "45s");

  EXPECT_EQ(status_json()["parameters"]["statement_timeout"], "45s");
  auto table = pgfleet({"status"});
  EXPECT_NE(table.output.find("cluster-wide parameters: statement_timeout=45s, work_mem=12MB (`pgfleet config`)"),
            std::string::npos)
      << table.output;

  auto shown = pgfleet({"config", "show", "--json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.output;
  auto doc = nlohmann::json::parse(shown.output);
  EXPECT_EQ(doc["parameters"]["work_mem"], "12MB") << doc.dump(2);
  EXPECT_GT(doc["revision"].get<int64_t>(), 0);
  ASSERT_EQ(doc["nodes"].size(), 3u) << doc.dump(2);
  for (const auto& n : doc["nodes"]) EXPECT_EQ(n["applied"], true) << doc.dump(2);

  // A parameter that needs a restart: named per node, applied by the rolling restart.
  auto raised = pgfleet({"config", "set", "max_connections=150"}, 120s);
  ASSERT_EQ(raised.exit_code, 0) << raised.output;
  EXPECT_NE(raised.output.find("node2: applied; waits for a restart: max_connections"), std::string::npos)
      << raised.output;
  EXPECT_NE(raised.output.find("pgfleet restart --pending"), std::string::npos) << raised.output;
  auto restart = pgfleet({"restart", "--pending"}, 300s);
  ASSERT_EQ(restart.exit_code, 0) << restart.output;
  for (const char* node : {"node1", "node2", "node3"}) EXPECT_EQ(setting(node, "max_connections"), "150") << node;

  // Lowering it: the replicas restart first while the primary still has 150. PostgreSQL refuses
  // to recover with less than the primary's value, so they keep 150 until their next start.
  auto lowered = pgfleet({"config", "unset", "max_connections"}, 120s);
  ASSERT_EQ(lowered.exit_code, 0) << lowered.output;
  EXPECT_NE(lowered.output.find("node1: applied; waits for a restart: max_connections"), std::string::npos)
      << lowered.output;
  auto restart_again = pgfleet({"restart", "--pending"}, 300s);
  ASSERT_EQ(restart_again.exit_code, 0) << restart_again.output;
  ASSERT_TRUE(wait_all_streaming(60s)) << status_json().dump(2);
  EXPECT_EQ(setting("node1", "max_connections"), "100");
  EXPECT_GE(std::stoi(setting("node2", "max_connections")), 100);
  // Restarted now, after the primary: the replica needs no more than 100 and takes it.
  auto replica = pgfleet({"restart", "node2"}, 300s);
  ASSERT_EQ(replica.exit_code, 0) << replica.output;
  EXPECT_EQ(setting("node2", "max_connections"), "100");

  // Unset the rest: the key is gone and every node is back to PostgreSQL's default.
  auto cleared = pgfleet({"config", "unset", "work_mem", "statement_timeout"}, 120s);
  ASSERT_EQ(cleared.exit_code, 0) << cleared.output;
  EXPECT_EQ(setting("node1", "work_mem"), "4MB");
  EXPECT_EQ(setting("node2", "statement_timeout"), "0");
  auto again = pgfleet({"config", "unset", "work_mem"});
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("work_mem was not set cluster-wide"), std::string::npos) << again.output;
}

TEST_F(ConfigCommandTest, WrongRequestsAreRefusedAndChangeNothing) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  struct Refusal {
    std::vector<std::string> args;
    std::string message;
  };
  for (const auto& r : std::vector<Refusal>{
           {{"config", "set", "port=6000"}, "pgfleet sets port itself"},
           {{"config", "set", "synchronous_standby_names=*"}, "set replication.sync"},
           {{"config", "set", "work_mem"}, "'work_mem' is not NAME=VALUE"},
           {{"config", "set", "work-mem=1MB"}, "'work-mem' is not a PostgreSQL parameter name"},
           {{"config", "set", "wal_level=minimal"}, "wal_level must be replica or logical"},
           // PostgreSQL itself judges: such a value would stop every node at its next start.
           {{"config", "set", "work_mem=lots"}, "invalid value for parameter \"work_mem\": \"lots\""},
           {{"config", "set", "log_min_messages=chatty"}, "Available values: debug5"},
           {{"config", "set", "no_such_parameter=1"}, "unrecognized configuration parameter \"no_such_parameter\""},
           {{"config", "set", "work_mem=8MB", "max_connections=many"}, "invalid value for parameter \"max_connections\""},
           {{"config", "set"}, "config set needs NAME=VALUE"},
           {{"config", "unset"}, "config unset needs a NAME"},
           {{"config", "frobnicate"}, "config takes show, set or unset"},
       }) {
    auto refused = pgfleet(r.args, 60s);
    EXPECT_EQ(refused.exit_code, 1) << refused.output;
    EXPECT_NE(refused.output.find(r.message), std::string::npos) << refused.output;
  }
  // Nothing was written, not even work_mem=8MB, which came with a refused one.
  auto shown = pgfleet({"config", "show", "--json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_TRUE(nlohmann::json::parse(shown.output)["parameters"].empty()) << shown.output;
}

}  // namespace
}  // namespace pgfleet::itest
