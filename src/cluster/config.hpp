// ClusterConfig: every setting of one cluster, read from and written to pgfleet.yaml.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <optional>
#include <string>
#include <vector>

namespace pgfleet::cluster {

enum class SyncMode { Off, On, Quorum };
std::string to_string(SyncMode mode);
// Accepts off|on|quorum (also async → off, sync → on); nullopt otherwise.
std::optional<SyncMode> parse_sync_mode(const std::string& text);

// Parameters passed through to postgresql.conf verbatim, kept as text.
using PgParameters = std::map<std::string, std::string>;
// A PostgreSQL parameter name as postgresql.conf spells it (lower case; dots for extensions').
bool is_guc_name(const std::string& name);

struct NodeConfig {
  std::string name;                  // node1, node2, ... ; [a-z0-9_], unique
  int port = 0;                      // PostgreSQL port
  int api_port = 0;                  // agent HTTP port
  std::optional<std::string> upstream;  // cascading: stream from this node instead of the primary
  PgParameters postgresql;           // per-node overrides of the cluster-wide parameters
  std::string host;                  // address clients use; "" = listen_address (one host)
  bool nofailover = false;           // never promoted (elections, switchovers, manual failovers skip it)
  bool noloadbalance = false;        // the proxy sends it no reads

  bool operator==(const NodeConfig&) const = default;
};

struct Ports {
  int proxy = 6432;           // rw-split listener
  int proxy_primary = 6433;   // primary-only listener
  int proxy_replicas = 6434;  // replicas-only listener
  int http = 8008;            // cluster API and dashboard
  int node_base = 5433;       // first node's PostgreSQL port; node k gets node_base + k - 1
  int api_base = 8009;        // first node's agent HTTP port

  bool operator==(const Ports&) const = default;
};

enum class PoolMode { Session, Transaction, Statement };
std::string to_string(PoolMode mode);
std::optional<PoolMode> parse_pool_mode(const std::string& text);

// Pool settings for one database and/or user ("" matches any); the first match wins.
struct PoolOverride {
  std::string database;
  std::string user;
  std::optional<PoolMode> pool_mode;
  std::optional<int> pool_size;
  bool operator==(const PoolOverride&) const = default;
};

// A routing rule of the proxy's rw-split port: clients matching every non-empty field send their
// reads (route "replica") or everything (route "primary") there; the first match wins.
struct RoutingRule {
  std::string database;
  std::string user;
  std::string application_name;
  std::string route;  // primary | replica
  bool operator==(const RoutingRule&) const = default;
};

// The proxy in front of the cluster (`proxy:` in pgfleet.yaml).
struct ProxyConfig {
  bool enabled = true;                   // started by `pgfleet up`
  int threads = 0;                       // event-loop threads; 0 = default_proxy_threads()
  PoolMode pool_mode = PoolMode::Transaction;
  int default_pool_size = 20;            // server connections per (database, user)
  int min_pool_size = 0;                 // kept open even when idle
  int reserve_pool_size = 5;             // extra connections for clients waiting too long
  int reserve_pool_timeout_ms = 1000;    // wait before a client may use the reserve
  int max_client_conn = 10000;
  int query_wait_timeout_ms = 10000;     // a client waiting longer for a server gets an error
  int server_connect_timeout_ms = 5000;
  int server_idle_timeout_s = 600;       // close server connections idle this long
  int server_lifetime_s = 3600;          // close server connections older than this when idle
  int client_idle_timeout_s = 0;         // 0 = never
  int shutdown_timeout_s = 30;           // SIGTERM: wait this long for transactions to finish
  std::string auth_user;                 // runs auth_query and health checks; "" = postgres.superuser
  std::string auth_file;                 // "user" "SCRAM-SHA-256$…|md5…" lines, checked before auth_query
  // The verifier of user $1, in the last column of its first row (PgBouncer's auth_query returns
  // usename, passwd); no row or NULL = no such user. "" = pg_authid, for login roles still valid.
  std::string auth_query;
  std::vector<std::string> admin_users;  // may use the `pgfleet` admin database; empty = superuser
  std::string tls_mode = "allow";        // clients: disable | allow | require
  std::string tls_cert;                  // PEM files; "" = the cluster's generated pair
  std::string tls_key;
  std::string server_sslmode = "prefer"; // to servers: disable | prefer | require | verify-ca | verify-full
  std::string server_tls_ca;             // CA for verify-ca/-full; "" = the cluster's CA (or its self-signed pair)
  // Reach nodes of a local cluster through their Unix socket (less CPU than TCP loopback, but
  // inet_server_port() is then NULL for clients).
  bool server_unix_socket = false;
  // Where clients on this host reach the proxy through Unix sockets (.s.PGSQL.<port>, one per
  // port), as PgBouncer's unix_socket_dir: "" = the cluster's socket directory (none for a
  // stand-alone proxy), "off" = none, or a directory.
  std::string unix_socket_dir;
  std::vector<PoolOverride> pools;
  // Read/write splitting (the rw-split port) and the replicas port.
  std::string causal_reads = "session";  // session | off: a client reads its own committed writes
  int max_replica_lag_bytes = 16 << 20;  // replicas further behind get no reads; 0 = no limit
  int max_replica_lag_seconds = 10;      // the same in time; 0 = no limit
  int primary_read_weight = 0;           // the primary's share of reads beside replicas (weight 1 each)
  std::map<std::string, int> weights;    // node name -> weight for reads (default 1; 0 = no reads)
  std::string function_routing = "strict";  // strict | permissive: unknown functions go to the primary or not
  std::vector<std::string> read_only_functions;  // also safe on replicas
  std::vector<std::string> writing_functions;    // always the primary
  bool replicas_fallback_to_primary = false;     // replicas port: use the primary when no replica is eligible
  std::vector<RoutingRule> routing_rules;
  bool operator==(const ProxyConfig&) const = default;
};

// The first override matching `database` and `user` ("" matches only overrides that name no
// user, or no database: the database's or user's own settings), nullptr when none.
const PoolOverride* pool_override(const ProxyConfig& proxy, const std::string& database, const std::string& user);

// etcd as the DCS (multi-host clusters): where it is and how to authenticate (`dcs.etcd`).
struct EtcdConfig {
  std::vector<std::string> endpoints;  // http(s)://host:port of the members; empty = the local file DCS
  std::string ca_file;                 // TLS: verify etcd with this CA
  std::string cert_file;               // TLS client certificate and key, when etcd asks for one
  std::string key_file;
  std::string user;                    // etcd authentication
  std::string password;
  bool operator==(const EtcdConfig&) const = default;
};

// Commands run by the agents on HA events (`callbacks:` in pgfleet.yaml), through /bin/sh, with
// PGFLEET_* variables describing the event; never waited for by the HA loop.
struct Callbacks {
  std::string on_role_change;            // this node became primary or replica
  std::string on_failover;               // run by the new primary after a failover or switchover
  int timeout_seconds = 30;              // killed after this
  bool operator==(const Callbacks&) const = default;
};

// Automatic base backups by the primary's agent (docs/backup.md); off by default.
struct BackupSchedule {
  int interval_seconds = 0;              // a backup when the newest is this old; 0 = only `pgfleet backup`
  int keep = 0;                          // then keep the newest K (0 = all)
  int full_interval_seconds = 0;         // incremental until the newest full one is this old; 0 = always full
  bool operator==(const BackupSchedule&) const = default;
};

struct ClusterConfig {
  std::string cluster = "pgfleet";       // cluster name (cluster_name in PostgreSQL, DCS namespace)
  std::string listen_address = "127.0.0.1";
  std::string bindir;                    // PostgreSQL binaries; empty = discover
  std::string run_as = "postgres";       // OS user for servers when pgfleet runs as root
  std::string superuser = "postgres";
  std::string replication_user = "replicator";
  std::string database = "postgres";

  SyncMode sync = SyncMode::Off;
  int sync_count = 1;                    // k of ANY k (...) in quorum mode
  bool cascade = false;                  // replicas after the first stream from the first replica
  bool sync_strict = false;              // sync: writes wait rather than drop a dead standby
  int64_t maximum_lag_on_failover = 1 << 20;  // async: bytes a candidate may be behind the old primary

  int dcs_ttl_seconds = 30;              // leader lease / member key TTL
  int loop_wait_seconds = 1;             // agent loop period
  int primary_start_timeout_seconds = 300;  // leader not running as primary this long: it steps down
  // Written to the DCS when the cluster is created (`pgfleet failsafe on|off` changes it later):
  // a primary cut off from the DCS keeps writing while every member confirms it (docs/multihost.md).
  bool failsafe_mode = false;
  EtcdConfig etcd;                       // dcs.etcd; no endpoints = the local file DCS (one host)

  Callbacks callbacks;
  BackupSchedule backup;
  Ports ports;
  bool http_tls = false;                 // agents' and the proxy's HTTP API over TLS (cluster certificate)
  ProxyConfig proxy;
  PgParameters postgresql;               // cluster-wide pass-through parameters
  // Set with `pgfleet config set` (the DCS key `parameters`), never read from pgfleet.yaml: they
  // override `postgresql:` and are overridden by a node's own (cluster/cluster_parameters.hpp).
  PgParameters cluster_parameters;
  std::vector<std::string> pg_hba;       // pg_hba.conf lines put before pgfleet's own (checked on load)
  std::vector<NodeConfig> nodes;

  [[nodiscard]] const NodeConfig* find_node(const std::string& name) const;
  NodeConfig* find_node(const std::string& name);

  bool operator==(const ClusterConfig&) const = default;
};

// Thrown for an unreadable or invalid configuration; message names the key and line.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Parses YAML text. `source` names the file in messages ("pgfleet.yaml:12: unknown key 'prot'").
// Unknown keys, wrong types and invalid values are ConfigErrors naming key and line.
ClusterConfig parse_config(const std::string& yaml_text, const std::string& source);
ClusterConfig load_config(const std::string& path);
// Renders the config as YAML that parse_config reads back to an equal config.
std::string render_config(const ClusterConfig& config);
// Semantic checks beyond types (unique names and ports, known upstreams, ranges);
// throws ConfigError.
void validate_config(const ClusterConfig& config, const std::string& source);

// The proxy's event-loop threads when `proxy.threads` is 0: half the cores, at least one. The
// servers usually share the host, and a pooler needs far less CPU than they do: on 2 cores one
// thread gave 1.02x PgBouncer's throughput where two gave 0.80x (bench/results/2026-12-06-proxy-threads.md).
int default_proxy_threads();

}  // namespace pgfleet::cluster
