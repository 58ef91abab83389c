// `pgfleet reinit <replica>`: rebuild a replica whose data was lost; never the primary.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

using ReinitTest = PgfleetTest;

TEST_F(ReinitTest, RebuildsAReplicaWhoseDataDirectoryWasWiped) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  std::string primary = url({"--primary"});
  sql(primary, "CREATE TABLE precious (id int PRIMARY KEY, v text)");
  sql(primary, "INSERT INTO precious VALUES (1, 'before the wipe')");
  std::string node2 = node_url("node2");
  ASSERT_TRUE(eventually([&] { return sql_value(node2, "SELECT count(*) FROM precious") == "1"; }, 10s));

  // The disk of node2 "fails": its data directory disappears under the running server. (Its agent
  // may notice at once and start rebuilding it itself, so files may vanish or appear meanwhile.)
  std::error_code ignored;
  std::filesystem::remove_all(node_dir("node2") + "/data", ignored);
  sql(primary, "INSERT INTO precious VALUES (2, 'while node2 was broken')");

  auto r = pgfleet({"reinit", "node2", "--timeout", "120"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(POST /reinit)"), std::string::npos) << "the CLI did not ask node2's agent:\n" << r.output;
  auto n = node_status("node2");
  EXPECT_EQ(str(n, "role"), "replica") << n.dump(2);
  EXPECT_EQ(str(n, "state"), "streaming") << n.dump(2);
  EXPECT_EQ(str(n, "upstream"), "node1") << n.dump(2);

  EXPECT_EQ(sql_value(node2, "SELECT pg_is_in_recovery()"), "t");
  EXPECT_TRUE(eventually([&] { return sql_value(node2, "SELECT count(*) FROM precious") == "2"; }, 10s))
      << "node2 lacks rows written before its rebuild";
  sql(primary, "INSERT INTO precious VALUES (3, 'after the rebuild')");
  EXPECT_TRUE(eventually([&] { return sql_value(node2, "SELECT count(*) FROM precious") == "3"; }, 10s))
      << "node2 does not receive new writes after its rebuild";
  // Its slot on the primary is in use again and the other replica was left alone.
  EXPECT_EQ(sql_value(primary, "SELECT active FROM pg_replication_slots WHERE slot_name = 'node2'"), "t");
  EXPECT_EQ(str(node_status("node3"), "state"), "streaming");
}

TEST_F(ReinitTest, AHealthyReplicaIsRebuiltBeforeTheCommandReturns) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  // A file of the old data directory: a rebuild (pg_basebackup into a fresh directory) drops it.
  std::string marker = node_dir("node3") + "/data/pgfleet-test-marker";
  { std::ofstream(marker) << "old data"; }
  ASSERT_TRUE(std::filesystem::exists(marker));
  auto asked = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();

  auto r = pgfleet({"reinit", "node3", "--timeout", "120"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(POST /reinit)"), std::string::npos) << r.output;
  // When the command says so, the rebuild is over: not merely a new postmaster.
  EXPECT_FALSE(std::filesystem::exists(marker)) << "reinit returned before node3's data was replaced:\n" << r.output;
  auto n = node_status("node3");
  EXPECT_EQ(str(n, "state"), "streaming") << n.dump(2);
  ASSERT_TRUE(n.contains("rebuilt_at_ms") && n["rebuilt_at_ms"].is_number()) << n.dump(2);
  EXPECT_GE(n["rebuilt_at_ms"].get<int64_t>(), asked) << n.dump(2);
  // The replica that was not rebuilt says so.
  auto other = node_status("node2");
  EXPECT_TRUE(other.contains("rebuilt_at_ms") && other["rebuilt_at_ms"].is_null()) << other.dump(2);
}

TEST_F(ReinitTest, RefusesThePrimary) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  int64_t pid = num(node_status("node1"), "pid");
  auto r = pgfleet({"reinit", "node1"});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("node1 is the primary"), std::string::npos) << r.output;
  // Nothing happened to it.
  auto n = node_status("node1");
  EXPECT_EQ(str(n, "state"), "running") << n.dump(2);
  EXPECT_EQ(num(n, "pid"), pid) << n.dump(2);
  EXPECT_EQ(sql_value(url({"--primary"}), "SELECT pg_is_in_recovery()"), "f");
}

TEST_F(ReinitTest, UpRebuildsAReplicaWhoseDataIsMissing) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  std::string primary = url({"--primary"});
  sql(primary, "CREATE TABLE precious (id int PRIMARY KEY)");
  sql(primary, "INSERT INTO precious VALUES (1)");
  auto down = pgfleet({"down"});
  ASSERT_EQ(down.exit_code, 0) << down.output;
  std::error_code ignored;
  std::filesystem::remove_all(node_dir("node3") + "/data", ignored);

  auto r = pgfleet({"up"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto n = node_status("node3");
  EXPECT_EQ(str(n, "role"), "replica") << n.dump(2);
  EXPECT_EQ(str(n, "state"), "streaming") << n.dump(2);
  std::string node3 = node_url("node3");
  EXPECT_TRUE(eventually([&] { return sql_value(node3, "SELECT count(*) FROM precious") == "1"; }, 10s));
}

}  // namespace
}  // namespace pgfleet::itest

namespace pgfleet::itest {
namespace {

// A replica down for long holds its slot: max_slot_wal_keep_size (8GB by default, small here) caps
// the WAL kept for it, the primary's agent names the lost slot, and reinit makes the replica stream again.
TEST_F(ReinitTest, ASlotPastMaxSlotWalKeepSizeIsReportedAndReinitRebuildsItsReplica) {
  write_text(tmp_ + "/config.yaml", "postgresql:\n  max_slot_wal_keep_size: '32MB'\n  wal_keep_size: '0'\n");
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--config", tmp_ + "/config.yaml", "--replicas", "1"}));
  std::string primary = url({"--primary"});
  EXPECT_EQ(sql_value(primary, "SHOW max_slot_wal_keep_size"), "32MB");
  sql(primary, "CREATE TABLE wal_filler (id int, v text)");

  // node2 goes down (its agent stops it) while the primary writes ~100 MB of WAL.
  auto agent2 = static_cast<pid_t>(num(node_status("node2"), "agent_pid"));
  ASSERT_EQ(::kill(agent2, SIGTERM), 0);
  ASSERT_TRUE(eventually([&] { return !process_alive(agent2); }, 60s));
  for (int i = 0; i < 7; ++i) {
    sql(primary, "INSERT INTO wal_filler SELECT g, 'row' FROM generate_series(1, 1000) g");
    sql(primary, "SELECT pg_switch_wal()");
  }
  ASSERT_TRUE(eventually(
      [&] {
        sql(primary, "CHECKPOINT");
        return sql_value(primary, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'node2'") == "lost";
      },
      30s))
      << "the slot kept its WAL past max_slot_wal_keep_size";
  // The primary's agent says which replica needs a rebuild, in status and its text form.
  EXPECT_TRUE(eventually(
      [&] { return str(node_status("node1"), "last_error").find("replication slot node2 lost") != std::string::npos; },
      15s))
      << node_status("node1").dump(2);
  auto text = pgfleet({"status"});
  EXPECT_NE(text.output.find("pgfleet reinit <node>"), std::string::npos) << text.output;

  // reinit copies node2 afresh with a new slot; it streams again and has every row.
  auto r = pgfleet({"reinit", "node2", "--timeout", "120"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(str(node_status("node2"), "state"), "streaming");
  EXPECT_EQ(sql_value(primary, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'node2'"), "reserved");
  sql(primary, "INSERT INTO wal_filler VALUES (-1, 'after the rebuild')");
  EXPECT_TRUE(eventually([&] { return sql_value(node_url("node2"), "SELECT count(*) FROM wal_filler") == "7001"; }, 15s));
  EXPECT_TRUE(eventually([&] { return str(node_status("node1"), "last_error").empty(); }, 15s))
      << "the lost-slot error outlived the rebuild: " << node_status("node1").dump(2);
}

}  // namespace
}  // namespace pgfleet::itest
