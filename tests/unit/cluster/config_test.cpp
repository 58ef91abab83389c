// Unit tests for pgfleet.yaml parsing, validation and rendering (cluster/config.hpp).
#include "cluster/config.hpp"
#include "cluster/layout.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace pgfleet::cluster {
namespace {

constexpr const char* kFullExample = R"(cluster: pgfleet
listen_address: 127.0.0.1
postgres:
  bindir: /usr/lib/postgresql/15/bin
  run_as: postgres
  superuser: postgres
  replication_user: replicator
  database: postgres
replication:
  sync: off
  sync_count: 1
  cascade: false
dcs:
  ttl: 30
  loop_wait: 1
  primary_start_timeout: 120
ports:
  proxy: 6432
  proxy_primary: 6433
  proxy_replicas: 6434
  http: 8008
  node_base: 5433
  api_base: 8009
postgresql:
  shared_buffers: 128MB
  max_connections: 200
nodes:
  - name: node1
    port: 5433
    api_port: 8009
  - name: node2
    port: 5434
    api_port: 8010
    upstream: node1
    postgresql:
      work_mem: 8MB
)";

constexpr const char* kTwoNodes = R"(nodes:
  - name: node1
    port: 5433
    api_port: 8009
  - name: node2
    port: 5434
    api_port: 8010
)";

// Parses text expecting a ConfigError and returns its message.
std::string error_of(const std::string& text) {
  try {
    parse_config(text, "test.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for:\n" << text;
  return "";
}

std::string validation_error_of(const ClusterConfig& config) {
  try {
    validate_config(config, "test.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError";
  return "";
}

ClusterConfig two_nodes() { return parse_config(kTwoNodes, "test.yaml"); }

TEST(ConfigTest, EmptyTextGivesDefaults) {
  for (const char* text : {"", "# nothing yet\n", "{}"}) {
    ClusterConfig c = parse_config(text, "test.yaml");
    EXPECT_EQ(c, ClusterConfig{}) << text;
  }
  ClusterConfig c = parse_config("", "test.yaml");
  EXPECT_EQ(c.cluster, "pgfleet");
  EXPECT_EQ(c.listen_address, "127.0.0.1");
  EXPECT_EQ(c.sync, SyncMode::Off);
  EXPECT_EQ(c.ports.proxy, 6432);
  EXPECT_TRUE(c.nodes.empty());
}

TEST(ConfigTest, ParsesFullExample) {
  ClusterConfig c = parse_config(kFullExample, "pgfleet.yaml");
  EXPECT_EQ(c.cluster, "pgfleet");
  EXPECT_EQ(c.listen_address, "127.0.0.1");
  EXPECT_EQ(c.bindir, "/usr/lib/postgresql/15/bin");
  EXPECT_EQ(c.run_as, "postgres");
  EXPECT_EQ(c.superuser, "postgres");
  EXPECT_EQ(c.replication_user, "replicator");
  EXPECT_EQ(c.database, "postgres");
  EXPECT_EQ(c.sync, SyncMode::Off);
  EXPECT_EQ(c.sync_count, 1);
  EXPECT_FALSE(c.cascade);
  EXPECT_EQ(c.dcs_ttl_seconds, 30);
  EXPECT_EQ(c.loop_wait_seconds, 1);
  EXPECT_EQ(c.primary_start_timeout_seconds, 120);
  EXPECT_EQ(c.ports, (Ports{6432, 6433, 6434, 8008, 5433, 8009}));
  EXPECT_EQ(c.postgresql, (PgParameters{{"shared_buffers", "128MB"}, {"max_connections", "200"}}));
  ASSERT_EQ(c.nodes.size(), 2u);
  EXPECT_EQ(c.nodes[0], (NodeConfig{"node1", 5433, 8009, std::nullopt, {}, "", false, false}));
  EXPECT_EQ(c.nodes[1], (NodeConfig{"node2", 5434, 8010, "node1", {{"work_mem", "8MB"}}, "", false, false}));

  ASSERT_NE(c.find_node("node2"), nullptr);
  EXPECT_EQ(c.find_node("node2")->port, 5434);
  EXPECT_EQ(c.find_node("node3"), nullptr);
  c.find_node("node1")->port = 6000;
  EXPECT_EQ(c.nodes[0].port, 6000);
}

TEST(ConfigTest, RenderParsesBackEqual) {
  ClusterConfig c = parse_config(kFullExample, "pgfleet.yaml");
  c.cluster = "prod-1";
  c.bindir = "";
  c.sync = SyncMode::Quorum;
  c.sync_count = 2;
  c.cascade = true;
  c.http_tls = true;
  c.sync_strict = true;
  c.maximum_lag_on_failover = 16777216;
  c.callbacks = Callbacks{"logger -t pgfleet \"$PGFLEET_NODE is $PGFLEET_ROLE\"", "/usr/local/bin/move-vip.sh", 5};
  // Values YAML would retype if they were not read as text.
  c.postgresql["synchronous_commit"] = "on";
  c.postgresql["log_line_prefix"] = "%m [%p] # ";
  c.postgresql["search_path"] = "'\"$user\", public'";
  c.postgresql["archive_command"] = "";
  c.postgresql["unix_socket_permissions"] = "0777";
  c.nodes.push_back(NodeConfig{"node3", 5435, 8011, "node2", {{"hot_standby", "yes"}}, "", false, false});

  const std::string text = render_config(c);
  EXPECT_EQ(text.rfind("# pgfleet cluster configuration; see docs/configuration.md\n", 0), 0u) << text;
  EXPECT_NE(text.find("sync: \"quorum\""), std::string::npos) << text;
  EXPECT_EQ(parse_config(text, "rendered.yaml"), c) << text;

  for (SyncMode mode : {SyncMode::Off, SyncMode::On}) {
    c.sync = mode;
    EXPECT_EQ(parse_config(render_config(c), "rendered.yaml"), c);
  }
  ClusterConfig defaults;
  EXPECT_EQ(parse_config(render_config(defaults), "rendered.yaml"), defaults) << render_config(defaults);
}

TEST(ConfigTest, PgHbaEntriesAreCheckedWhenTheFileIsRead) {
  const auto c = parse_config(
      "pg_hba:\n"
      "  - hostssl all app 10.20.0.0/16 scram-sha-256\n"
      "  - host    all all 192.168.1.0 255.255.255.0 md5\n"
      "  - local   sales all peer map=sales\n"
      "  - host all intruder ::/0 reject\n",
      "t.yaml");
  ASSERT_EQ(c.pg_hba.size(), 4u);
  EXPECT_EQ(c.pg_hba[1], "host    all all 192.168.1.0 255.255.255.0 md5");
  EXPECT_EQ(parse_config(render_config(c), "rendered.yaml"), c) << render_config(c);
  // PostgreSQL would not start with these: the mistake is named with its line.
  EXPECT_NE(error_of("cluster: x\npg_hba:\n  - hots all all 10.0.0.0/8 scram-sha-256\n")
                .find("test.yaml:3: pg_hba entry 'hots all all 10.0.0.0/8 scram-sha-256': 'hots' is not a connection type"),
            std::string::npos)
      << error_of("cluster: x\npg_hba:\n  - hots all all 10.0.0.0/8 scram-sha-256\n");
  EXPECT_NE(error_of("pg_hba:\n  - host all all 10.0.0.0/8 scram\n").find("'scram' is not an authentication method"),
            std::string::npos);
  EXPECT_NE(error_of("pg_hba:\n  - host all all scram-sha-256\n").find("expected: host DATABASE USER ADDRESS METHOD"),
            std::string::npos);
  EXPECT_NE(error_of("pg_hba:\n  - '# a comment'\n").find("no comments"), std::string::npos);
  EXPECT_NE(error_of("pg_hba: host all all 10.0.0.0/8 md5\n").find("a sequence of pg_hba.conf lines"),
            std::string::npos);
  // Security by default: no trust over TCP, no clear-text password outside TLS.
  EXPECT_NE(error_of("pg_hba:\n  - host all all 10.0.0.0/8 trust\n").find("trust over TCP"), std::string::npos);
  EXPECT_NE(error_of("pg_hba:\n  - host all all 10.0.0.0/8 password\n").find("clear text"), std::string::npos);
  EXPECT_EQ(parse_config("pg_hba:\n  - hostssl all all 10.0.0.0/8 password\n  - local all all trust\n", "t.yaml")
                .pg_hba.size(),
            2u);
}

TEST(ConfigTest, HttpTlsIsReadFromTheHttpSection) {
  EXPECT_FALSE(parse_config("cluster: x\n", "t.yaml").http_tls);
  EXPECT_TRUE(parse_config("cluster: x\nhttp:\n  tls: true\n", "t.yaml").http_tls);
  EXPECT_NE(error_of("cluster: x\nhttp:\n  tsl: true\n").find("unknown key 'tsl'"), std::string::npos);
}

TEST(ConfigTest, UnknownTopLevelKeyNamesLine) {
  const std::string message = error_of("cluster: x\n\nclustre: y\n");
  EXPECT_NE(message.find("test.yaml:3: unknown key 'clustre'"), std::string::npos) << message;
  EXPECT_NE(message.find("known: cluster, listen_address, postgres"), std::string::npos) << message;
}

TEST(ConfigTest, UnknownKeyInPortsNamesLineAndKnownKeys) {
  const std::string message = error_of("ports:\n  proxy: 6432\n  prot: 1\n");
  EXPECT_EQ(message,
            "test.yaml:3: unknown key 'prot' in 'ports' (known: proxy, proxy_primary, proxy_replicas, http, "
            "node_base, api_base)");
}

TEST(ConfigTest, UnknownKeyInNodeNamesLine) {
  const std::string message = error_of(std::string(kTwoNodes) + "    prot: 1\n");
  EXPECT_NE(message.find("test.yaml:8: unknown key 'prot' in 'nodes[1]'"), std::string::npos) << message;
}

TEST(ConfigTest, DuplicateKeyIsAnError) {
  const std::string message = error_of("ports:\n  proxy: 1\n  proxy: 2\n");
  EXPECT_NE(message.find("test.yaml:3: duplicate key 'proxy' in 'ports' (first on line 2)"),
            std::string::npos)
      << message;
}

TEST(ConfigTest, WrongTypesNameKeyAndLine) {
  EXPECT_EQ(error_of("cluster: a\nports:\n  proxy: abc\n"),
            "test.yaml:3: 'ports.proxy' must be an integer, got 'abc'");
  EXPECT_EQ(error_of("ports:\n  proxy: 12.5\n"), "test.yaml:2: 'ports.proxy' must be an integer, got '12.5'");
  EXPECT_EQ(error_of("replication:\n  cascade: maybe\n"),
            "test.yaml:2: 'replication.cascade' must be a boolean (true or false), got 'maybe'");
  EXPECT_EQ(error_of("nodes: 5\n"), "test.yaml:1: 'nodes' must be a sequence, got '5'");
  EXPECT_EQ(error_of("ports: 5\n"), "test.yaml:1: 'ports' must be a mapping, got '5'");
  EXPECT_EQ(error_of("cluster:\n  name: x\n"), "test.yaml:1: 'cluster' must be a string, got a mapping");
  EXPECT_EQ(error_of("dcs:\n  ttl: [1, 2]\n"), "test.yaml:2: 'dcs.ttl' must be an integer, got a sequence");
  EXPECT_EQ(error_of("nodes:\n  - node1\n"), "test.yaml:2: 'nodes[0]' must be a mapping, got 'node1'");
  EXPECT_EQ(error_of("- a\n- b\n"), "test.yaml:1: top level must be a mapping, got a sequence");
  EXPECT_EQ(error_of("postgresql:\n  work_mem:\n    a: 1\n"),
            "test.yaml:2: 'postgresql.work_mem' must be a single value, got a mapping");
}

TEST(ConfigTest, SyncAcceptsBooleansAndStrings) {
  EXPECT_EQ(parse_config("replication: {sync: off}", "t").sync, SyncMode::Off);
  EXPECT_EQ(parse_config("replication: {sync: on}", "t").sync, SyncMode::On);
  EXPECT_EQ(parse_config("replication: {sync: false}", "t").sync, SyncMode::Off);
  EXPECT_EQ(parse_config("replication: {sync: true}", "t").sync, SyncMode::On);
  EXPECT_EQ(parse_config("replication: {sync: 'off'}", "t").sync, SyncMode::Off);
  EXPECT_EQ(parse_config("replication: {sync: \"on\"}", "t").sync, SyncMode::On);
  EXPECT_EQ(parse_config("replication: {sync: quorum, sync_count: 2}", "t").sync, SyncMode::Quorum);
  EXPECT_EQ(parse_config("replication: {sync: async}", "t").sync, SyncMode::Off);
  EXPECT_EQ(parse_config("replication: {sync: sync}", "t").sync, SyncMode::On);
}

TEST(ConfigTest, InvalidSyncValue) {
  EXPECT_EQ(error_of("replication:\n  sync: sometimes\n"),
            "test.yaml:2: 'replication.sync' must be off, on or quorum, got 'sometimes'");
  // Quoted "true" is a string, not a YAML boolean.
  EXPECT_NE(error_of("replication:\n  sync: 'true'\n").find("got 'true'"), std::string::npos);
}

TEST(ConfigTest, SyncModeStrings) {
  EXPECT_EQ(to_string(SyncMode::Off), "off");
  EXPECT_EQ(to_string(SyncMode::On), "on");
  EXPECT_EQ(to_string(SyncMode::Quorum), "quorum");
  EXPECT_EQ(parse_sync_mode("async"), SyncMode::Off);
  EXPECT_EQ(parse_sync_mode("sync"), SyncMode::On);
  EXPECT_EQ(parse_sync_mode("quorum"), SyncMode::Quorum);
  EXPECT_EQ(parse_sync_mode("maybe"), std::nullopt);
}

TEST(ConfigTest, PostgresqlValuesKeptAsWritten) {
  ClusterConfig c =
      parse_config("postgresql:\n  hot_standby: on\n  port_x.y: 0100\n  archive_command: ''\n", "t");
  EXPECT_EQ(c.postgresql,
            (PgParameters{{"hot_standby", "on"}, {"port_x.y", "0100"}, {"archive_command", ""}}));
}

TEST(ConfigTest, BadGucName) {
  EXPECT_EQ(error_of("postgresql:\n  shared_buffers: 1MB\n  Work-Mem: 8MB\n"),
            "test.yaml:3: 'Work-Mem' in 'postgresql' is not a PostgreSQL parameter name");
  EXPECT_NE(
      error_of(std::string(kTwoNodes) + "    postgresql:\n      9lives: x\n").find("test.yaml:9: '9lives'"),
      std::string::npos);
  ClusterConfig c;
  c.postgresql["bad name"] = "x";
  EXPECT_EQ(validation_error_of(c),
            "test.yaml: 'bad name' in 'postgresql' is not a PostgreSQL parameter name");
}

TEST(ConfigTest, DuplicateNodeNames) {
  ClusterConfig c = two_nodes();
  c.nodes[1].name = "node1";
  EXPECT_EQ(validation_error_of(c), "test.yaml: 'nodes[1].name': node 'node1' is defined twice");
}

TEST(ConfigTest, DuplicatePorts) {
  ClusterConfig c = two_nodes();
  c.nodes[1].port = 5433;
  EXPECT_EQ(validation_error_of(c), "test.yaml: 'nodes[0].port' and 'nodes[1].port' both use port 5433");
  c = two_nodes();
  c.nodes[1].api_port = 8009;
  EXPECT_EQ(validation_error_of(c),
            "test.yaml: 'nodes[0].api_port' and 'nodes[1].api_port' both use port 8009");
  c = two_nodes();
  c.nodes[0].port = 6432;
  EXPECT_EQ(validation_error_of(c), "test.yaml: 'ports.proxy' and 'nodes[0].port' both use port 6432");
  c = two_nodes();
  c.nodes[1].api_port = 8008;
  EXPECT_EQ(validation_error_of(c), "test.yaml: 'ports.http' and 'nodes[1].api_port' both use port 8008");
  // Parsing validates too, naming the source.
  EXPECT_EQ(error_of("nodes:\n  - {name: a, port: 5433, api_port: 5433}\n"),
            "test.yaml: 'nodes[0].port' and 'nodes[0].api_port' both use port 5433");
}

TEST(ConfigTest, UpstreamMustNameAnotherNode) {
  ClusterConfig c = two_nodes();
  c.nodes[1].upstream = "node9";
  EXPECT_EQ(validation_error_of(c), "test.yaml: 'nodes[1].upstream' names unknown node 'node9'");
  c.nodes[1].upstream = "node2";
  EXPECT_EQ(validation_error_of(c), "test.yaml: 'nodes[1].upstream': node 'node2' cannot stream from itself");
}

TEST(ConfigTest, NodeTagsParseRenderAndValidate) {
  ClusterConfig c = parse_config(R"(
nodes:
  - {name: node1, port: 5433, api_port: 8009}
  - {name: node2, port: 5434, api_port: 8010, nofailover: true}
  - {name: node3, port: 5435, api_port: 8011, noloadbalance: yes}
)",
                                 "test.yaml");
  EXPECT_FALSE(c.nodes[0].nofailover);
  EXPECT_FALSE(c.nodes[0].noloadbalance);
  EXPECT_TRUE(c.nodes[1].nofailover);
  EXPECT_FALSE(c.nodes[1].noloadbalance);
  EXPECT_TRUE(c.nodes[2].noloadbalance);
  std::string text = render_config(c);
  EXPECT_NE(text.find("nofailover: true"), std::string::npos) << text;
  EXPECT_EQ(parse_config(text, "rendered"), c);
  EXPECT_EQ(error_of("nodes:\n  - {name: a, port: 5433, api_port: 8009, nofailover: sometimes}\n"),
            "test.yaml:2: 'nodes[0].nofailover' must be a boolean (true or false), got 'sometimes'");
  c.nodes[0].nofailover = c.nodes[2].nofailover = true;
  EXPECT_EQ(validation_error_of(c),
            "test.yaml: every node is tagged 'nofailover': none could ever be promoted; tag replicas only");
  c.etcd.endpoints = {"http://10.0.0.1:2379"};  // a node.yaml lists its own node only
  EXPECT_NO_THROW(validate_config(c, "test.yaml"));
}

TEST(ConfigTest, UpstreamCycle) {
  ClusterConfig c = two_nodes();
  c.nodes.push_back(NodeConfig{"node3", 5435, 8011, "node2", {}, "", false, false});
  c.nodes[1].upstream = "node3";
  EXPECT_EQ(validation_error_of(c), "test.yaml: 'upstream' settings form a cycle: node2 -> node3 -> node2");
  c.nodes[1].upstream = "node1";
  EXPECT_NO_THROW(validate_config(c, "test.yaml"));
}

TEST(ConfigTest, FailoverSettingsAndCallbacks) {
  ClusterConfig c = parse_config(R"(
replication:
  sync: on
  strict: true
  maximum_lag_on_failover: 0
callbacks:
  on_role_change: /bin/true
  on_failover: "echo $PGFLEET_NEW_PRIMARY"
  timeout: 10
)",
                                 "test.yaml");
  EXPECT_TRUE(c.sync_strict);
  EXPECT_EQ(c.maximum_lag_on_failover, 0);
  EXPECT_EQ(c.callbacks.on_role_change, "/bin/true");
  EXPECT_EQ(c.callbacks.on_failover, "echo $PGFLEET_NEW_PRIMARY");
  EXPECT_EQ(c.callbacks.timeout_seconds, 10);
  ClusterConfig defaults;
  EXPECT_FALSE(defaults.sync_strict);
  EXPECT_EQ(defaults.maximum_lag_on_failover, 1 << 20);
  EXPECT_TRUE(defaults.callbacks.on_failover.empty());
  EXPECT_EQ(defaults.callbacks.timeout_seconds, 30);
}

TEST(ConfigTest, BadFailoverSettingsAreNamed) {
  auto error_of = [](const std::string& text) {
    try {
      parse_config(text, "test.yaml");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of("replication:\n  maximum_lag_on_failover: -1\n"),
            "test.yaml: 'replication.maximum_lag_on_failover' must be 0 or more bytes, got -1");
  EXPECT_EQ(error_of("callbacks:\n  timeout: 0\n"),
            "test.yaml: 'callbacks.timeout' must be between 1 and 3600 seconds, got 0");
  EXPECT_NE(error_of("callbacks:\n  on_promote: x\n").find("unknown key 'on_promote' in 'callbacks'"),
            std::string::npos);
  EXPECT_NE(error_of("replication:\n  strict: maybe\n").find("replication.strict"), std::string::npos)
      << error_of("replication:\n  strict: maybe\n");
}

TEST(ConfigTest, RangeAndNameChecks) {
  auto with = [](auto change) {
    ClusterConfig c = two_nodes();
    change(c);
    return validation_error_of(c);
  };
  EXPECT_EQ(with([](ClusterConfig& c) { c.cluster = "Prod"; }),
            "test.yaml: 'cluster' must be non-empty and use only a-z, 0-9, '_' and '-', got 'Prod'");
  EXPECT_EQ(with([](ClusterConfig& c) { c.listen_address = ""; }),
            "test.yaml: 'listen_address' must not be empty");
  EXPECT_EQ(with([](ClusterConfig& c) { c.sync_count = 0; }),
            "test.yaml: 'replication.sync_count' must be at least 1, got 0");
  EXPECT_EQ(with([](ClusterConfig& c) { c.dcs_ttl_seconds = 4; }),
            "test.yaml: 'dcs.ttl' must be at least 5 seconds, got 4");
  EXPECT_EQ(with([](ClusterConfig& c) { c.loop_wait_seconds = 0; }),
            "test.yaml: 'dcs.loop_wait' must be at least 1 second, got 0");
  EXPECT_EQ(with([](ClusterConfig& c) { c.loop_wait_seconds = 15; }),
            "test.yaml: 'dcs.loop_wait' (15) must be less than half of 'dcs.ttl' (30)");
  EXPECT_EQ(with([](ClusterConfig& c) { c.primary_start_timeout_seconds = -1; }),
            "test.yaml: 'dcs.primary_start_timeout' must be 0 to 86400 seconds, got -1");
  EXPECT_EQ(with([](ClusterConfig& c) { c.backup.interval_seconds = 59; }),
            "test.yaml: 'backup.interval' must be 0 (off) or 60 to 2678400 seconds, got 59");
  EXPECT_EQ(with([](ClusterConfig& c) { c.backup.keep = -1; }), "test.yaml: 'backup.keep' must be 0 (all) or more, got -1");
  EXPECT_EQ(with([](ClusterConfig& c) { c.backup.full_interval_seconds = 30; }),
            "test.yaml: 'backup.full_interval' must be 0 (every backup full) or 60 to 31622400 seconds, got 30");
  EXPECT_EQ(with([](ClusterConfig& c) { c.ports.http = 70000; }),
            "test.yaml: 'ports.http' must be between 1 and 65535, got 70000");
  EXPECT_EQ(with([](ClusterConfig& c) { c.nodes[1].port = 0; }),
            "test.yaml: 'nodes[1].port' must be between 1 and 65535, got 0");
  EXPECT_EQ(with([](ClusterConfig& c) { c.nodes[0].name = "node-1"; }),
            "test.yaml: 'nodes[0].name' must be 1 to 63 characters of a-z, 0-9 and '_', got 'node-1'");
  EXPECT_NE(with([](ClusterConfig& c) { c.nodes[0].name = std::string(64, 'n'); }).find("'nodes[0].name'"),
            std::string::npos);
  EXPECT_EQ(
      with([](ClusterConfig& c) {
        c.nodes.clear();
        for (int i = 0; i < 65; ++i)
          c.nodes.push_back(NodeConfig{"n" + std::to_string(i), 10000 + i, 20000 + i, std::nullopt, {}, "", false, false});
      }),
      "test.yaml: 'nodes' has 65 entries; at most 64 are supported");
}

TEST(ConfigTest, SyntaxErrorReportsLine) {
  const std::string message = error_of("cluster: x\nports:\n  proxy: [1, 2\n  http: 3\n");
  EXPECT_EQ(message.rfind("test.yaml:4: ", 0), 0u) << message;
  EXPECT_EQ(error_of("a: 1\n b: 2\n").rfind("test.yaml:2: ", 0), 0u);
}

TEST(ConfigTest, LoadConfigOfMissingFile) {
  try {
    load_config("/nonexistent/pgfleet.yaml");
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "cannot read /nonexistent/pgfleet.yaml: No such file or directory");
  }
  EXPECT_THROW(load_config("/"), ConfigError);
}

TEST(ConfigTest, LoadConfigReadsFile) {
  const std::string path = ::testing::TempDir() + "pgfleet_config_test.yaml";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("cluster: x\nports:\n  prot: 1\n", f);
    std::fclose(f);
  }
  try {
    load_config(path);
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ":3: unknown key 'prot'", 0), 0u) << e.what();
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace pgfleet::cluster

namespace pgfleet::cluster {
namespace {

TEST(ConfigTest, ProxyRoutingSettingsParseRenderAndValidate) {
  ClusterConfig c = parse_config(
      "proxy:\n"
      "  causal_reads: \"off\"\n"
      "  max_replica_lag_bytes: 1048576\n"
      "  max_replica_lag_seconds: 3\n"
      "  primary_read_weight: 1\n"
      "  weights: {node2: 2, node3: 0}\n"
      "  function_routing: permissive\n"
      "  read_only_functions: [report]\n"
      "  writing_functions: [app.audit]\n"
      "  replicas_fallback_to_primary: true\n"
      "  routing_rules:\n"
      "    - {application_name: readonly, route: replica}\n"
      "    - {user: etl, route: primary}\n",
      "t");
  EXPECT_EQ(c.proxy.causal_reads, "off");
  EXPECT_EQ(c.proxy.max_replica_lag_bytes, 1048576);
  EXPECT_EQ(c.proxy.max_replica_lag_seconds, 3);
  EXPECT_EQ(c.proxy.primary_read_weight, 1);
  EXPECT_EQ(c.proxy.weights, (std::map<std::string, int>{{"node2", 2}, {"node3", 0}}));
  EXPECT_EQ(c.proxy.function_routing, "permissive");
  EXPECT_EQ(c.proxy.writing_functions, std::vector<std::string>{"app.audit"});
  EXPECT_TRUE(c.proxy.replicas_fallback_to_primary);
  ASSERT_EQ(c.proxy.routing_rules.size(), 2u);
  EXPECT_EQ(c.proxy.routing_rules[1].user, "etl");
  EXPECT_EQ(c.proxy.routing_rules[1].route, "primary");
  EXPECT_EQ(parse_config(render_config(c), "rendered.yaml"), c) << render_config(c);

  for (const char* bad : {"proxy: {causal_reads: always}", "proxy: {function_routing: loose}",
                          "proxy: {max_replica_lag_seconds: -1}", "proxy: {weights: {node2: -1}}",
                          "proxy: {routing_rules: [{application_name: x, route: sideways}]}"}) {
    EXPECT_THROW(validate_config(parse_config(bad, "t"), "t"), ConfigError) << bad;
  }
}

TEST(ConfigTest, ProxyAuthQueryTakesTheUserAsDollarOne) {
  ClusterConfig c = parse_config(
      "proxy:\n  auth_query: SELECT usename, passwd FROM pgbouncer.get_auth($1)\n", "t");
  validate_config(c, "t");
  EXPECT_EQ(c.proxy.auth_query, "SELECT usename, passwd FROM pgbouncer.get_auth($1)");
  EXPECT_EQ(parse_config(render_config(c), "rendered.yaml"), c) << render_config(c);
  try {
    validate_config(parse_config("proxy: {auth_query: SELECT passwd FROM pg_shadow}", "t"), "t");
    ADD_FAILURE() << "an auth_query without $1 was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'proxy.auth_query' must take the user name as $1"), std::string::npos)
        << e.what();
  }
}

TEST(ConfigTest, ProxyServerSslModesIncludeVerification) {
  for (const char* mode : {"disable", "prefer", "require", "verify-ca", "verify-full"}) {
    ClusterConfig c = parse_config(std::string("proxy: {server_sslmode: ") + mode + ", server_tls_ca: /etc/ca.pem}", "t");
    validate_config(c, "t");
    EXPECT_EQ(c.proxy.server_sslmode, mode);
    EXPECT_EQ(parse_config(render_config(c), "rendered.yaml"), c) << render_config(c);
  }
  EXPECT_THROW(validate_config(parse_config("proxy: {server_sslmode: verify}", "t"), "t"), ConfigError);
}

TEST(ConfigTest, ProxyUnixSocketDirectory) {
  ClusterConfig c = parse_config("proxy: {unix_socket_dir: /var/run/pgfleet}", "t");
  EXPECT_EQ(c.proxy.unix_socket_dir, "/var/run/pgfleet");
  EXPECT_EQ(parse_config(render_config(c), "rendered.yaml"), c);
  validate_config(c, "t");
  validate_config(parse_config("proxy: {unix_socket_dir: \"off\"}", "t"), "t");
  // Relative, or too long for sun_path with ".s.PGSQL.65535" after it.
  for (const std::string& bad : {std::string("run/sockets"), "/" + std::string(92, 'd')}) {
    EXPECT_THROW(validate_config(parse_config("proxy: {unix_socket_dir: " + bad + "}", "t"), "t"), ConfigError) << bad;
  }
  validate_config(parse_config("proxy: {unix_socket_dir: /" + std::string(91, 'd') + "}", "t"), "t");

  // Empty: the cluster's socket directory, none for a stand-alone proxy; "off": none.
  Layout cluster("/srv/c");
  EXPECT_EQ(proxy_socket_dir("", &cluster), cluster.socket_dir());
  EXPECT_EQ(proxy_socket_dir("", nullptr), "");
  EXPECT_EQ(proxy_socket_dir("off", &cluster), "");
  EXPECT_EQ(proxy_socket_dir("/var/run/pgfleet", nullptr), "/var/run/pgfleet");
}

}  // namespace
}  // namespace pgfleet::cluster

namespace pgfleet::cluster {
namespace {

// The pool settings of a (database, user): the first override that matches wins, as the proxy's
// pools apply them; "" asks for the database's or the user's own (SHOW DATABASES, SHOW USERS).
TEST(ConfigTest, PoolOverrideFirstMatchWins) {
  ProxyConfig p;
  p.pools = {{"app", "report", PoolMode::Session, 2}, {"app", "", std::nullopt, 50}, {"", "batch", PoolMode::Statement, std::nullopt}};
  EXPECT_EQ(pool_override(p, "app", "report")->pool_size, 2);
  EXPECT_EQ(pool_override(p, "app", "web")->pool_size, 50);
  EXPECT_EQ(pool_override(p, "app", "")->pool_size, 50);  // the database's own: not report's
  EXPECT_EQ(pool_override(p, "app", "batch")->pool_size, 50);  // the database entry comes first
  EXPECT_EQ(pool_override(p, "other", "batch")->pool_mode, PoolMode::Statement);
  EXPECT_EQ(pool_override(p, "", "batch")->pool_mode, PoolMode::Statement);
  EXPECT_EQ(pool_override(p, "other", "web"), nullptr);
  EXPECT_EQ(pool_override(p, "", "report"), nullptr);  // report's override is for app only
}

}  // namespace
}  // namespace pgfleet::cluster
