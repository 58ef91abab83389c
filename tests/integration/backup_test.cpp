// Point-in-time recovery through the real binary, as an operator uses it: `pgfleet backup`, the
// WAL archive every node feeds, `pgfleet restore --time`, then `pgfleet up`.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "harness.hpp"
#include "http/client.hpp"

namespace pgfleet::itest {
namespace {

class BackupTest : public PgfleetTest {
 protected:
  std::string primary() { return with_param(url({"--primary"}), "connect_timeout=3"); }
  std::string ids() { return sql_value(primary(), "SELECT string_agg(id::text, ',' ORDER BY id) FROM events"); }
  // Now, as an operator would copy it from a clock: UTC, to the millisecond.
  static std::string utc_now() {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                       tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
  }
  // nodes/<node>/data.before-restore-* directories.
  int set_aside(const std::string& node) {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(node_dir(node)))
      n += e.path().filename().string().starts_with("data.before-restore-");
    return n;
  }
};

TEST_F(BackupTest, RestoreToATimeBringsTheClusterBackAsItWasThenEvenAcrossASwitchover) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  sql(primary(), "CREATE TABLE events (id int PRIMARY KEY)", 10s);
  sql(primary(), "INSERT INTO events VALUES (1)", 10s);
  auto r = pgfleet({"backup"});
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_NE(r.output.find("verified (pg_verifybackup)"), std::string::npos) << r.output;
  const auto backups = status_json()["backups"];
  EXPECT_EQ(backups["count"], 1) << backups.dump();
  EXPECT_NE(r.output.find("backup " + backups["newest"].get<std::string>() + " of node1"), std::string::npos) << r.output;
  EXPECT_NE(pgfleet({"status"}).output.find("backups: 1, newest " + backups["newest"].get<std::string>()),
            std::string::npos);
  const auto top = pgfleet({"top", "--once"});
  EXPECT_NE(top.output.find("last backup "), std::string::npos) << top.output;

  // A switchover after the backup: the replay has to follow the archive onto the next timeline.
  r = pgfleet({"switchover", "--to", "node2", "--timeout", "60"});
  ASSERT_TRUE(r.ok()) << r.output;
  ASSERT_TRUE(wait_all_streaming(60s)) << status_json().dump(2);
  sql(primary(), "INSERT INTO events VALUES (2)", 10s);
  std::this_thread::sleep_for(1200ms);
  const std::string target = utc_now();
  std::this_thread::sleep_for(1200ms);
  sql(primary(), "INSERT INTO events VALUES (3)", 10s);  // the mistake to undo
  ASSERT_EQ(ids(), "1,2,3");

  // While the cluster runs a restore refuses and touches nothing.
  r = pgfleet({"restore", "--time", target});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("pgfleet down"), std::string::npos) << r.output;
  EXPECT_EQ(set_aside("node1"), 0);
  EXPECT_EQ(ids(), "1,2,3");

  ASSERT_TRUE(succeeded(pgfleet({"down"})));
  r = pgfleet({"restore", "--time", target});
  ASSERT_TRUE(r.ok()) << r.output << read_text(node_dir("node1") + "/log/postgresql.log");
  EXPECT_NE(r.output.find("pgfleet up"), std::string::npos) << r.output;
  r = up();
  ASSERT_TRUE(r.ok()) << r.output;
  ASSERT_TRUE(wait_all_streaming(60s)) << status_json().dump(2);
  EXPECT_EQ(ids(), "1,2");

  // A cluster again: writable, every replica copied from the restored node, the restore recorded.
  sql(primary(), "INSERT INTO events VALUES (4)", 10s);
  for (const char* node : {"node1", "node2", "node3"})
    EXPECT_TRUE(eventually([&] { return sql_value(node_url(node), "SELECT count(*) FROM events") == "3"; }, 10s))
        << node;
  const auto history = status_json()["history"];
  ASSERT_FALSE(history.empty());
  EXPECT_NE(history.back()["reason"].get<std::string>().find("restore from backup"), std::string::npos)
      << history.dump(2);
  // Nothing was deleted: the data from before the restore is still there, for every node.
  for (const char* node : {"node1", "node2", "node3"}) EXPECT_EQ(set_aside(node), 1) << node;
}

// The disks of every node are lost: the backup and the archive are all there is.
TEST_F(BackupTest, KeepPrunesOldBackupsAndTheirWalAndLatestReplaysTheArchiveWhenEveryNodeIsLost) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--replicas", "1"}));
  sql(primary(), "CREATE TABLE events (id int PRIMARY KEY)", 10s);
  auto r = pgfleet({"backup"});
  ASSERT_TRUE(r.ok()) << r.output;
  sql(primary(), "INSERT INTO events VALUES (1); SELECT pg_switch_wal()", 10s);
  // The second one from the replica (it spares the primary the copy's reads).
  r = pgfleet({"backup", "--node", "node2", "--keep", "1"});
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_NE(r.output.find(" of node2: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("removed backup"), std::string::npos) << r.output;
  r = pgfleet({"backup", "--list", "--json"});
  ASSERT_TRUE(r.ok()) << r.output;
  const auto list = nlohmann::json::parse(r.output);
  ASSERT_EQ(list["backups"].size(), 1u) << r.output;
  const std::string first_needed = list["backups"][0]["start_wal"];
  int segments = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/archive")) {
    std::string name = e.path().filename().string();
    if (name.ends_with(".zst")) name.resize(name.size() - 4);  // segments are kept compressed
    if (name.size() != 24) continue;                           // history and backup files stay
    ++segments;
    EXPECT_GE(name.substr(8), first_needed.substr(8)) << name << " is older than every kept backup";
  }
  EXPECT_GT(segments, 0);

  // Written after the backup, in segments of their own; 4 shares its segment with nothing yet.
  std::string last_archived;
  for (int id : {2, 3})
    last_archived = sql_value(primary(), fmt::format("INSERT INTO events VALUES ({}); SELECT pg_walfile_name(pg_switch_wal())", id));
  ASSERT_TRUE(eventually([&] { return std::filesystem::exists(dir_ + "/archive/" + last_archived + ".zst"); }, 30s))
      << last_archived << " was not archived";
  sql(primary(), "INSERT INTO events VALUES (4)", 10s);

  // A clean stop switches to a new segment while archiving is on: the archive gets 4 as well.
  ASSERT_TRUE(succeeded(pgfleet({"down"})));
  for (const char* node : {"node1", "node2"}) std::filesystem::remove_all(node_dir(node) + "/data");
  r = pgfleet({"restore", "--latest"});
  ASSERT_TRUE(r.ok()) << r.output << read_text(node_dir("node1") + "/log/postgresql.log");
  ASSERT_TRUE(succeeded(up()));
  ASSERT_TRUE(wait_all_streaming(60s)) << status_json().dump(2);
  EXPECT_EQ(status_json()["leader"], "node2");  // restored where the backup came from
  EXPECT_EQ(ids(), "1,2,3,4");

  // A time the WAL does not reach yet: PostgreSQL's reason, in words that say what to do.
  ASSERT_TRUE(succeeded(pgfleet({"down"})));
  r = pgfleet({"restore", "--time", utc_now()});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("neither the archive nor the nodes' pg_wal reach it"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rename it back to data to undo"), std::string::npos) << r.output;
}

// A failing archive_command fills the disk with WAL: status, metrics and the alert rule say so.
TEST_F(BackupTest, AFailingArchiveIsReportedUntilItWorksAgain) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--replicas", "1"}));
  ASSERT_TRUE(succeeded(pgfleet({"backup"})));
  const std::string archive = dir_ + "/archive";
  ASSERT_EQ(::chmod(archive.c_str(), 0500), 0);  // the servers' OS user can no longer write it
  sql(primary(), "CREATE TABLE filler (id int)", 10s);  // a switch needs WAL in the segment
  const std::string segment = sql_value(primary(), "SELECT pg_walfile_name(pg_switch_wal())");
  // node1's value of a metric from its agent's /metrics ("" when absent).
  auto metric = [&](const char* name) {
    auto r = http::request("127.0.0.1", base_port_ + 50, "GET", "/metrics");
    if (!r) return std::string();
    auto at = r->body.find(std::string("\n") + name + "{");
    if (at == std::string::npos) return std::string();
    const std::string line = r->body.substr(at + 1, r->body.find('\n', at + 1) - at - 1);
    return line.substr(line.rfind(' ') + 1);
  };
  ASSERT_TRUE(eventually([&] {
    auto e = node_status("node1")["last_error"];
    return e.is_string() && e.get<std::string>().find("archiving WAL fails (" + segment) != std::string::npos;
  }, 30s)) << status_json().dump(2);
  const std::string failures = metric("pgfleet_pg_wal_archive_failures_total");
  EXPECT_FALSE(failures.empty() || failures == "0") << failures;
  EXPECT_EQ(metric("pgfleet_backups"), "1");

  ASSERT_EQ(::chmod(archive.c_str(), 0700), 0);
  EXPECT_TRUE(eventually([&] { return std::filesystem::exists(archive + "/" + segment + ".zst"); }, 90s));
  EXPECT_TRUE(eventually([&] { return node_status("node1")["last_error"].is_null(); }, 30s)) << status_json().dump(2);
}

// backup.interval: the primary's agent takes them; not again before the interval has passed.
TEST_F(BackupTest, ThePrimarysAgentTakesBackupsOnSchedule) {
  write_text(tmp_ + "/config.yaml", "backup:\n  interval: 3600\n  keep: 2\n");
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--config", tmp_ + "/config.yaml", "--replicas", "1"}));
  ASSERT_TRUE(eventually([&] { return status_json()["backups"]["count"] == 1; }, 60s, 500ms))
      << status_json().dump(2) << read_text(node_dir("node1") + "/log/agent.log");
  EXPECT_NE(read_text(node_dir("node1") + "/log/agent.log").find("starting a backup (backup.interval 3600 s; newest backup none)"),
            std::string::npos);
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(status_json()["backups"]["count"], 1);
  auto r = pgfleet({"backup", "--list", "--json"});
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_EQ(nlohmann::json::parse(r.output)["backups"][0]["node"], "node1");
}

// `backup --incremental` copies the files changed since the newest backup and hard-links the
// rest; pg_verifybackup checks it through its own manifest, and a restore from it replays to a
// point after it as from a full one.
TEST_F(BackupTest, AnIncrementalBackupCopiesWhatChangedIsVerifiedAndRestores) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--replicas", "1"}));
  auto r = pgfleet({"backup", "--incremental"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--incremental needs a backup to build on"), std::string::npos) << r.output;

  sql(primary(), "CREATE TABLE events (id int PRIMARY KEY)", 10s);
  sql(primary(), "CREATE TABLE ballast AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 50000) g", 10s);
  // Written to disk once and for all (autovacuum would otherwise set hint bits in it later), and
  // more than 2 whole seconds before the full backup starts: a file written in a backup's copy
  // window is copied again by the next incremental backup.
  sql(primary(), "VACUUM FREEZE ballast", 30s);
  sql(primary(), "CHECKPOINT", 30s);
  std::this_thread::sleep_for(3500ms);
  sql(primary(), "INSERT INTO events VALUES (1)", 10s);
  ASSERT_TRUE(succeeded(pgfleet({"backup"})));
  sql(primary(), "INSERT INTO events VALUES (2)", 10s);
  r = pgfleet({"backup", "--incremental"});
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_NE(r.output.find("verified (pg_verifybackup)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("copied, the rest linked to backup "), std::string::npos) << r.output;

  auto list = nlohmann::json::parse(pgfleet({"backup", "--list", "--json"}).output);
  ASSERT_EQ(list["backups"].size(), 2u) << list.dump(2);
  const auto full = list["backups"][0], incremental = list["backups"][1];
  EXPECT_TRUE(full["parent"].is_null()) << list.dump(2);
  EXPECT_EQ(incremental["parent"], full["id"]) << list.dump(2);
  // The ballast table (about 12 MB) did not change: it is linked, not copied.
  EXPECT_LT(incremental["copied_bytes"].get<uint64_t>() + (8u << 20), incremental["bytes"].get<uint64_t>()) << list.dump(2);
  const std::string full_data = dir_ + "/backups/" + full["id"].get<std::string>() + "/data";
  const std::string incr_data = dir_ + "/backups/" + incremental["id"].get<std::string>() + "/data";
  const std::string ballast = sql_value(primary(), "SELECT pg_relation_filepath('ballast')");
  struct stat a {}, b {};
  ASSERT_EQ(::stat((full_data + "/" + ballast).c_str(), &a), 0) << ballast;
  ASSERT_EQ(::stat((incr_data + "/" + ballast).c_str(), &b), 0) << ballast;
  EXPECT_EQ(a.st_ino, b.st_ino) << "the unchanged table is one file in both backups";
  EXPECT_NE(pgfleet({"backup", "--list"}).output.find("incremental (links into " + full["id"].get<std::string>()),
            std::string::npos);

  // Its manifest holds real checksums: a damaged copy is caught.
  const std::string verify = pg_tool("pg_verifybackup");
  EXPECT_EQ(run_program({verify, "--no-parse-wal", incr_data}).exit_code, 0);
  const std::string pg_version = incr_data + "/PG_VERSION";
  ASSERT_EQ(::unlink(pg_version.c_str()), 0);  // a hard link: replaced, not written through the shared inode
  write_text(pg_version, "14\n");
  auto damaged = run_program({verify, "--no-parse-wal", incr_data});
  EXPECT_NE(damaged.exit_code, 0);
  EXPECT_NE(damaged.output.find("PG_VERSION"), std::string::npos) << damaged.output;
  ::unlink(pg_version.c_str());
  ASSERT_EQ(::link((full_data + "/PG_VERSION").c_str(), pg_version.c_str()), 0);  // the very file it was

  // From a replica: it cannot switch WAL segments, so the primary does, until the backup's last
  // segment is archived (waiting for the archive there used to hang).
  r = pgfleet({"backup", "--incremental", "--node", "node2"});
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_NE(r.output.find(" of node2: "), std::string::npos) << r.output;

  // Restored from the primary's incremental backup, to after it.
  sql(primary(), "INSERT INTO events VALUES (3)", 10s);
  ASSERT_TRUE(succeeded(pgfleet({"down"})));
  r = pgfleet({"restore", "--latest", "--backup", incremental["id"].get<std::string>()}, 300s);
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_NE(r.output.find("from backup " + incremental["id"].get<std::string>()), std::string::npos) << r.output;
  ASSERT_TRUE(succeeded(up()));
  EXPECT_EQ(ids(), "1,2,3");
  EXPECT_EQ(sql_value(primary(), "SELECT count(*) FROM ballast"), "50000");
}

TEST_F(BackupTest, BadRequestsSayWhatIsWrongAndMoveNothing) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--replicas", "1"}));
  auto r = pgfleet({"restore", "--time", "last tuesday"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("cannot read 'last tuesday'"), std::string::npos) << r.output;
  r = pgfleet({"restore"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--time"), std::string::npos) << r.output;
  r = pgfleet({"backup", "--node", "node9"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("no node named 'node9'"), std::string::npos) << r.output;
  r = pgfleet({"backup", "--list"});
  ASSERT_TRUE(r.ok()) << r.output;
  EXPECT_NE(r.output.find("no backups"), std::string::npos) << r.output;

  ASSERT_TRUE(succeeded(pgfleet({"down"})));
  r = pgfleet({"backup"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("is not running, so there is nothing to copy"), std::string::npos) << r.output;
  r = pgfleet({"restore", "--latest"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("take one with `pgfleet backup`"), std::string::npos) << r.output;
  ASSERT_TRUE(succeeded(up()));
  ASSERT_TRUE(succeeded(pgfleet({"backup"})));
  ASSERT_TRUE(succeeded(pgfleet({"down"})));
  r = pgfleet({"restore", "--time", "2000-01-01 00:00:00Z"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("no backup finished before 2000-01-01 00:00:00.000+00"), std::string::npos) << r.output;
  r = pgfleet({"restore", "--latest", "--backup", "20000101T000000Z"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("no backup 20000101T000000Z"), std::string::npos) << r.output;
  EXPECT_EQ(set_aside("node1"), 0);
  EXPECT_EQ(set_aside("node2"), 0);
  ASSERT_TRUE(succeeded(up()));  // the cluster is as it was
  EXPECT_TRUE(wait_all_streaming(60s));
}

}  // namespace
}  // namespace pgfleet::itest
