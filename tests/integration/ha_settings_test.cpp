// HA settings through the real binary: callbacks on role changes and failovers (run in the
// background with a timeout), and the --ttl/--loop-wait checks of `up`.
#include <sys/stat.h>

#include <thread>

#include "harness.hpp"

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

}  // namespace
}  // namespace pgfleet::itest
