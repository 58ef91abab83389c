// Rendering of pgfleet.conf and pg_hba.conf.
#include "postgres/conf.hpp"

#include <gtest/gtest.h>

#include "cluster/topology.hpp"

namespace pgfleet::postgres {
namespace {

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

struct ConfTest : ::testing::Test {
  ConfTest() : layout("/srv/pg") {
    for (int i = 0; i < 3; ++i) config.nodes.push_back(cluster::next_node(config));
  }
  cluster::ClusterConfig config;
  cluster::Layout layout;
};

TEST_F(ConfTest, PrimaryHasReplicationSettingsAndNoConninfo) {
  auto text = render_node_conf(config, config.nodes[0], layout, nullptr, "");
  EXPECT_TRUE(has_line(text, "port = 5433"));
  EXPECT_TRUE(has_line(text, "wal_level = replica"));
  EXPECT_TRUE(has_line(text, "wal_log_hints = on"));
  EXPECT_TRUE(has_line(text, "hot_standby = on"));
  EXPECT_TRUE(has_line(text, "max_wal_senders = 10"));
  EXPECT_TRUE(has_line(text, "wal_keep_size = '512MB'"));
  EXPECT_TRUE(has_line(text, "password_encryption = 'scram-sha-256'"));
  EXPECT_TRUE(has_line(text, "unix_socket_directories = '/srv/pg/run'"));
  EXPECT_TRUE(has_line(text, "primary_conninfo = ''"));
  EXPECT_TRUE(has_line(text, "synchronous_standby_names = ''"));
}

TEST_F(ConfTest, ReplicaStreamsFromItsUpstreamThroughItsSlotWithoutAPasswordInTheFile) {
  UpstreamInfo up{"node1", "127.0.0.1", 5433};
  auto text = render_node_conf(config, config.nodes[1], layout, &up, "");
  EXPECT_TRUE(has_line(text, "primary_conninfo = 'host=127.0.0.1 port=5433 user=replicator "
                             "passfile=/srv/pg/pgpass application_name=node2 connect_timeout=5 sslmode=prefer'"));
  EXPECT_TRUE(has_line(text, "primary_slot_name = 'node2'"));
  EXPECT_TRUE(has_line(text, "recovery_target_timeline = 'latest'"));
  EXPECT_EQ(text.find("password="), std::string::npos);
}

TEST_F(ConfTest, SyncNamesAreQuoted) {
  auto text = render_node_conf(config, config.nodes[0], layout, nullptr, R"(ANY 1 ("node2", "node3"))");
  EXPECT_TRUE(has_line(text, R"(synchronous_standby_names = 'ANY 1 ("node2", "node3")')"));
}

TEST_F(ConfTest, UserParametersComeLastAndNodeOverridesWin) {
  config.postgresql["work_mem"] = "8MB";
  config.postgresql["wal_keep_size"] = "1GB";
  config.nodes[0].postgresql["work_mem"] = "16MB";
  auto text = render_node_conf(config, config.nodes[0], layout, nullptr, "");
  auto cluster_wide = text.find("wal_keep_size = '1GB'");
  ASSERT_NE(cluster_wide, std::string::npos);
  EXPECT_GT(cluster_wide, text.find("wal_keep_size = '512MB'"));  // later lines win in PostgreSQL
  EXPECT_GT(text.find("work_mem = '16MB'"), text.find("work_mem = '8MB'"));
}

// `pgfleet config set` (the DCS) overrides pgfleet.yaml's postgresql:, and a node's own wins.
TEST_F(ConfTest, ClusterWideParametersFromTheDcsSitBetweenTheFileAndTheNode) {
  config.postgresql["work_mem"] = "8MB";
  config.cluster_parameters["work_mem"] = "12MB";
  config.cluster_parameters["statement_timeout"] = "30s";
  config.nodes[1].postgresql["work_mem"] = "3MB";
  auto node1 = render_node_conf(config, config.nodes[0], layout, nullptr, "");
  EXPECT_GT(node1.find("work_mem = '12MB'"), node1.find("work_mem = '8MB'"));
  EXPECT_TRUE(has_line(node1, "statement_timeout = '30s'"));
  EXPECT_NE(node1.find("# cluster-wide: pgfleet config set"), std::string::npos);
  auto node2 = render_node_conf(config, config.nodes[1], layout, nullptr, "");
  EXPECT_GT(node2.find("work_mem = '3MB'"), node2.find("work_mem = '12MB'"));
}

// pg_controldata of a standby whose primary ran with max_connections 150.
const char* const kControlData = R"(pg_control version number:            1300
Database cluster state:               in archive recovery
wal_level setting:                    replica
wal_log_hints setting:                on
max_connections setting:              150
max_worker_processes setting:         8
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           64
track_commit_timestamp setting:       off
)";

TEST_F(ConfTest, AStandbyKeepsAtLeastThePrimarysValuesThatRecoveryNeeds) {
  auto floors = standby_parameter_floors(kControlData);
  EXPECT_EQ(floors.size(), 5u);
  EXPECT_EQ(floors.at("max_connections"), 150);
  EXPECT_EQ(floors.at("max_prepared_transactions"), 0);  // pg_controldata says max_prepared_xacts
  EXPECT_EQ(floors.at("max_locks_per_transaction"), 64);
  // Lowered to 100 (PostgreSQL's default) while the primary still runs with 150: the standby
  // starts with 150, after every other setting.
  auto text = render_node_conf(config, config.nodes[1], layout, nullptr, "", false, "", floors);
  EXPECT_TRUE(has_line(text, "max_connections = 150")) << text;
  EXPECT_EQ(text.find("max_worker_processes ="), std::string::npos) << text;  // 8 is not below 8
  // Configured at least as high: nothing is added; quoted values count too.
  config.cluster_parameters["max_connections"] = "200";
  EXPECT_EQ(render_node_conf(config, config.nodes[1], layout, nullptr, "", false, "", floors).find("max_connections = 150"),
            std::string::npos);
  EXPECT_EQ(raise_to_floors("max_connections = '150'\n", floors), "");
  EXPECT_EQ(raise_to_floors("max_connections = 200\nmax_connections = 120\n", floors), "max_connections = 150\n");
  EXPECT_EQ(raise_to_floors("max_connections_extra = 500\n", floors), "max_connections = 150\n");
  EXPECT_EQ(raise_to_floors("max_connections = 150\nmax_locks_per_transaction = 32\n", floors),
            "max_locks_per_transaction = 64\n");
  EXPECT_TRUE(standby_parameter_floors("pg_controldata: error").empty());
}

TEST_F(ConfTest, EveryNodeArchivesWalWhenGivenAnArchiveCommand) {
  const std::string command = R"("/usr/bin/pgfleet" archive-wal --dir "/srv/it's" %p %f)";
  const UpstreamInfo up{"node1", "127.0.0.1", 5433};
  for (const auto* upstream : {static_cast<const UpstreamInfo*>(nullptr), &up}) {
    auto text = render_node_conf(config, config.nodes[1], layout, upstream, "", false, command);
    EXPECT_TRUE(has_line(text, "archive_mode = always")) << text;  // replicas too
    EXPECT_TRUE(has_line(text, R"(archive_command = '"/usr/bin/pgfleet" archive-wal --dir "/srv/it''s" %p %f')")) << text;
  }
  EXPECT_EQ(render_node_conf(config, config.nodes[0], layout, nullptr, "").find("archive_"), std::string::npos);
}

TEST_F(ConfTest, ValuesWithQuotesAreEscaped) {
  EXPECT_EQ(quote("it's"), "'it''s'");
  EXPECT_EQ(quote(R"(a\b)"), R"('a\\b')");
}

TEST_F(ConfTest, SenderSlotsGrowWithTheCluster) {
  for (int i = 0; i < 10; ++i) config.nodes.push_back(cluster::next_node(config));
  auto text = render_node_conf(config, config.nodes[0], layout, nullptr, "");
  EXPECT_TRUE(has_line(text, "max_wal_senders = 30"));
}

TEST_F(ConfTest, HbaHasNoTrustBeyondTheLocalSocket) {
  auto hba = render_hba(config);
  EXPECT_NE(hba.find("local   all          all                     trust"), std::string::npos);
  size_t pos = 0;
  while ((pos = hba.find("trust", pos + 1)) != std::string::npos) {
    auto line_start = hba.rfind('\n', pos) + 1;
    if (hba[line_start] == '#') continue;
    EXPECT_EQ(hba.compare(line_start, 5, "local"), 0) << "trust outside the socket: " << hba.substr(line_start);
  }
  EXPECT_NE(hba.find("host    replication  replicator   127.0.0.1/32       scram-sha-256"), std::string::npos);
  EXPECT_EQ(hba.find("samenet"), std::string::npos);
  config.listen_address = "0.0.0.0";
  EXPECT_NE(render_hba(config).find("samenet"), std::string::npos);
}

// pg_hba from pgfleet.yaml comes first (first match wins), pgfleet's own rules after it.
TEST_F(ConfTest, HbaEntriesFromTheConfigComeBeforePgfleetsOwn) {
  config.pg_hba = {"hostssl all app 10.20.0.0/16 scram-sha-256", "host all intruder 0.0.0.0/0 reject"};
  const auto hba = render_hba(config);
  const auto app = hba.find("hostssl all app 10.20.0.0/16 scram-sha-256\n");
  const auto reject = hba.find("host all intruder 0.0.0.0/0 reject\n");
  const auto own = hba.find("local   all          all                     trust");
  ASSERT_NE(app, std::string::npos) << hba;
  ASSERT_NE(reject, std::string::npos) << hba;
  EXPECT_LT(app, reject);
  EXPECT_LT(reject, own);
}

TEST(Layout, LongDirectoriesGetAShortSocketDirectory) {
  cluster::Layout shallow("/srv/pg");
  EXPECT_EQ(shallow.socket_dir(), "/srv/pg/run");
  cluster::Layout deep("/srv/" + std::string(100, 'x'));
  EXPECT_EQ(deep.socket_dir().rfind("/tmp/pgfleet-", 0), 0u);
  EXPECT_LE(deep.socket_dir().size() + sizeof("/.s.PGSQL.65535.lock"), 108u);
}

}  // namespace
}  // namespace pgfleet::postgres
