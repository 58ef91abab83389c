// `pgfleet up` with the defaults: a primary and two streaming replicas, as a user sees them.
#include <string>
#include <vector>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

using UpTest = PgfleetTest;

TEST_F(UpTest, PrintsConnectionStringsAndStatusJsonDescribesEveryNode) {
  auto r = up();
  ASSERT_EQ(r.exit_code, 0) << r.output;

  auto s = status_json();
  EXPECT_TRUE(s.contains("cluster") && s["cluster"].is_string() && !s["cluster"].get<std::string>().empty()) << s.dump(2);
  EXPECT_EQ(str(s, "leader"), "node1") << s.dump(2);
  ASSERT_TRUE(s.contains("nodes") && s["nodes"].is_array()) << s.dump(2);
  ASSERT_EQ(s["nodes"].size(), 3u) << s.dump(2);

  const std::vector<std::string> fields = {"name", "role",        "state",      "host",       "port",     "timeline",
                                           "lsn",  "lag_bytes",   "lag_seconds", "sync_state", "upstream", "pid"};
  for (int k = 1; k <= 3; ++k) {
    std::string name = "node" + std::to_string(k);
    auto n = node_of(s, name);
    ASSERT_FALSE(n.is_null()) << "no " << name << " in\n" << s.dump(2);
    for (const auto& f : fields) EXPECT_TRUE(n.contains(f)) << name << " lacks field '" << f << "':\n" << n.dump(2);
    EXPECT_EQ(str(n, "host"), "127.0.0.1") << n.dump(2);
    EXPECT_EQ(num(n, "port"), node_port(k)) << n.dump(2);
    EXPECT_EQ(num(n, "timeline"), 1) << n.dump(2);
    EXPECT_FALSE(str(n, "lsn").empty()) << n.dump(2);
    int64_t pid = num(n, "pid");
    EXPECT_GT(pid, 0) << n.dump(2);
    EXPECT_EQ(process_name(pid), "postgres") << name << "'s pid " << pid << " is not a running postgres";
    if (k == 1) {
      EXPECT_EQ(str(n, "role"), "primary") << n.dump(2);
      EXPECT_EQ(str(n, "state"), "running") << n.dump(2);
      EXPECT_TRUE(n["upstream"].is_null()) << n.dump(2);
    } else {
      EXPECT_EQ(str(n, "role"), "replica") << n.dump(2);
      EXPECT_EQ(str(n, "state"), "streaming") << n.dump(2);
      EXPECT_EQ(str(n, "upstream"), "node1") << n.dump(2);
      EXPECT_EQ(str(n, "sync_state"), "async") << n.dump(2);
      EXPECT_TRUE(n["lag_bytes"].is_number() && n["lag_bytes"].get<int64_t>() >= 0) << n.dump(2);
      EXPECT_TRUE(n["lag_seconds"].is_number() && n["lag_seconds"].get<double>() >= 0) << n.dump(2);
    }
  }

  ASSERT_TRUE(s.contains("connection") && s["connection"].is_object()) << s.dump(2);
  const auto& c = s["connection"];
  std::string primary = str(c, "primary");
  std::string replicas = str(c, "replicas");
  ASSERT_FALSE(primary.empty()) << c.dump(2);
  ASSERT_FALSE(replicas.empty()) << c.dump(2);
  for (int k = 1; k <= 3; ++k) EXPECT_NE(primary.find(":" + std::to_string(node_port(k))), std::string::npos) << primary;
  EXPECT_NE(primary.find("target_session_attrs=read-write"), std::string::npos) << primary;
  EXPECT_EQ(replicas.find(":" + std::to_string(node_port(1))), std::string::npos) << replicas;
  for (int k = 2; k <= 3; ++k) EXPECT_NE(replicas.find(":" + std::to_string(node_port(k))), std::string::npos) << replicas;
  EXPECT_NE(replicas.find("target_session_attrs=standby"), std::string::npos) << replicas;
  ASSERT_TRUE(c.contains("nodes") && c["nodes"].is_object()) << c.dump(2);
  EXPECT_EQ(c["nodes"].size(), 3u) << c.dump(2);
  for (int k = 1; k <= 3; ++k) {
    std::string uri = str(c["nodes"], "node" + std::to_string(k));
    EXPECT_NE(uri.find(":" + std::to_string(node_port(k)) + "/"), std::string::npos) << c.dump(2);
  }

  // What `up` printed is what a user pastes into psql.
  EXPECT_NE(r.output.find(primary), std::string::npos) << "up did not print the primary URI:\n" << r.output;
  EXPECT_NE(r.output.find(replicas), std::string::npos) << "up did not print the replicas URI:\n" << r.output;
  EXPECT_EQ(sql_value(primary, "SELECT 1"), "1");
}

TEST_F(UpTest, RowWrittenThroughPrimaryUrlIsReadableOnEveryReplicaWithinOneSecond) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  std::string primary = url({"--primary"});
  sql(primary, "CREATE TABLE greetings (id int PRIMARY KEY, text text NOT NULL)");
  sql(primary, "INSERT INTO greetings VALUES (1, 'hello from the primary')");
  for (const std::string node : {"node2", "node3"}) {
    std::string uri = node_url(node);
    std::string seen;
    bool replicated = eventually(
        [&] {
          seen = sql_value(uri, "SELECT coalesce((SELECT text FROM greetings WHERE id = 1), '')");
          return seen == "hello from the primary";
        },
        1s, 20ms);
    EXPECT_TRUE(replicated) << "row not on " << node << " within 1 s (last read: '" << seen << "')";
  }
}

TEST_F(UpTest, SecretFilesAreReadableByTheOwnerOnly) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  for (const std::string file : {"secrets.json", "pgpass"}) {
    std::string path = dir_ + "/" + file;
    ASSERT_TRUE(path_exists(path)) << path;
    EXPECT_EQ(file_mode(path), 0600) << path << " has mode 0" << std::oct << file_mode(path);
  }
}

TEST_F(UpTest, LogsPrintPostgresqlLogLines) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  auto r = pgfleet({"logs", "node1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("LOG:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("database system is ready to accept connections"), std::string::npos) << r.output;

  auto few = pgfleet({"logs", "node1", "-n", "2"});
  ASSERT_EQ(few.exit_code, 0) << few.output;
  int lines = 0;
  for (char ch : few.output) lines += ch == '\n';
  EXPECT_EQ(lines, 2) << few.output;
}

TEST_F(UpTest, ReplicaUrlConnectsToAStandby) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  std::string replicas = url({"--replica"});
  EXPECT_EQ(sql_value(replicas, "SELECT pg_is_in_recovery()"), "t") << replicas;
  EXPECT_EQ(sql_value(url({"--primary"}), "SELECT pg_is_in_recovery()"), "f");
}

TEST_F(UpTest, DataChecksumsAndWalLogHintsAreOn) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  for (const std::string node : {"node1", "node2", "node3"}) {
    std::string uri = node_url(node);
    EXPECT_EQ(sql_value(uri, "SHOW data_checksums"), "on") << node;
    EXPECT_EQ(sql_value(uri, "SHOW wal_log_hints"), "on") << node;
  }
}

TEST_F(UpTest, PrimaryHasOneReplicationSlotPerReplica) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  auto rows = sql(url({"--primary"}), "SELECT slot_name, slot_type, active FROM pg_replication_slots ORDER BY slot_name");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][0].value_or(""), "node2");
  EXPECT_EQ(rows[1][0].value_or(""), "node3");
  for (const auto& row : rows) {
    EXPECT_EQ(row[1].value_or(""), "physical") << row[0].value_or("");
    EXPECT_EQ(row[2].value_or(""), "t") << "slot " << row[0].value_or("") << " is not in use";
  }
}

TEST_F(UpTest, ReplicationRoleAuthenticatesWithScram) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  std::string primary = url({"--primary"});
  auto rows = sql(primary, "SELECT rolname, rolpassword FROM pg_authid WHERE rolreplication AND NOT rolsuper");
  ASSERT_EQ(rows.size(), 1u) << "expected exactly one replication role";
  EXPECT_EQ(rows[0][1].value_or("").rfind("SCRAM-SHA-256$", 0), 0u)
      << "role " << rows[0][0].value_or("") << " has password '" << rows[0][1].value_or("<null>") << "'";
  // pg_hba.conf asks for SCRAM on every replication line, and the replicas really log in
  // with that role: every walsender runs as it.
  auto hba = sql(primary, "SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE 'replication' = ANY(database)");
  ASSERT_EQ(hba.size(), 1u);
  EXPECT_EQ(hba[0][0].value_or(""), "scram-sha-256");
  auto senders = sql(primary, "SELECT usename FROM pg_stat_replication ORDER BY application_name");
  ASSERT_EQ(senders.size(), 2u);
  for (const auto& row : senders) EXPECT_EQ(row[0], rows[0][0]);
}

}  // namespace
}  // namespace pgfleet::itest
