// The CLI subcommands: options parsed in main.cpp, one run_* function per subcommand.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pgfleet::cli {

struct UpOptions {
  std::string dir;
  std::string config_file;
  std::optional<int> replicas;
  std::optional<int> base_port;
  std::optional<std::string> sync;
  std::optional<int> sync_count;
  std::optional<int> ttl;        // dcs.ttl, seconds
  std::optional<int> loop_wait;  // dcs.loop_wait, seconds
  bool cascade = false;
  bool foreground = false;
  std::string pg_bindir;
  std::optional<std::string> run_as;
  std::vector<std::string> pg_params;  // name=value
  int timeout_seconds = 180;
};
int run_up(const UpOptions& options);

int run_down(const std::string& dir, bool purge);

struct StatusOptions {
  std::string dir;
  bool json = false;
  bool watch = false;
  double interval_seconds = 1.0;
};
int run_status(const StatusOptions& options);

struct CheckOptions {
  std::string dir;
  bool json = false;
  bool nagios = false;
  int timeout_seconds = 5;                 // how long each replica has to replay the test commit
  std::optional<int64_t> lag_warning_bytes;  // default: replication.maximum_lag_on_failover
};
// Exit code 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the cluster could not be read).
int run_check(const CheckOptions& options);

int run_scale(const std::string& dir, int replicas, int timeout_seconds);

// `pgfleet config [show|set NAME=VALUE...|unset NAME...]`: cluster-wide PostgreSQL parameters in
// the DCS, applied by every agent (cluster/cluster_parameters.hpp).
struct ConfigOptions {
  std::string dir;
  std::string action = "show";
  std::vector<std::string> arguments;
  bool json = false;
  int timeout_seconds = 30;  // set/unset: how long the running agents have to apply them
};
int run_config(const ConfigOptions& options);

// `pgfleet slot [list|add NAME|remove NAME]`: permanent replication slots every node keeps
// (cluster/permanent_slots.hpp), as Patroni's `slots:`.
struct SlotOptions {
  std::string dir;
  std::string action = "list";
  std::vector<std::string> names;
  std::string type = "physical";  // add: physical | logical
  std::string database;           // add, logical: default the cluster's database
  std::string plugin = "pgoutput";
  bool json = false;
  int timeout_seconds = 30;  // add/remove: how long the nodes have to create or drop it
};
int run_slot(const SlotOptions& options);

struct BenchOptions {
  std::string dir;
  std::string workload;                // read | write | mixed | custom; "" = mixed (custom with --file)
  std::optional<int> read_percent;     // mixed only; default 80
  int clients = 8;
  int jobs = 2;
  int seconds = 10;
  int rounds = 1;
  std::optional<int> scale;            // pgbench -i -s; default: the existing tables', else 10
  std::string protocol = "simple";
  std::vector<std::string> targets;    // empty = primary, proxy
  std::vector<std::string> files;      // pgbench scripts (path[@weight])
  std::string database = "pgfleet_bench";
  bool init = false;                   // fill the tables again even when they exist
  bool json = false;
};
// Exit 0 when every run completed, 1 when one failed (or the request was wrong).
int run_bench(const BenchOptions& options);

struct UrlOptions {
  std::string dir;
  bool primary = false;
  bool replica = false;
  bool proxy = false;
  bool proxy_primary = false;   // the proxy's primary-only port
  bool proxy_replicas = false;  // the proxy's replicas-only port
  bool proxy_socket = false;    // the proxy's rw-split port through its Unix socket
  std::string node;
};
int run_url(const UrlOptions& options);

struct RestartOptions {
  std::string dir;
  std::vector<std::string> nodes;  // or {"proxy"}
  bool pending = false;            // only the nodes whose pending_restart is not empty
  bool all = false;                // every node
  int timeout_seconds = 180;       // per node
};
int run_restart(const RestartOptions& options);
// `pgfleet reload`: this host's agents and proxy read pgfleet.yaml again; reports per node.
int run_reload(const std::string& dir, int timeout_seconds);
int run_reinit(const std::string& dir, const std::string& node, int timeout_seconds);

struct LogsOptions {
  std::string dir;
  std::string node;
  int lines = 50;
  bool follow = false;
  bool agent = false;
};
int run_logs(const LogsOptions& options);

int run_proxy_command(const std::string& dir, const std::string& config_file, bool takeover);

int run_switchover(const std::string& dir, const std::string& to, int64_t at_unix_ms, int timeout_seconds);
int run_failover(const std::string& dir, const std::string& to, int timeout_seconds);
int run_pause(const std::string& dir, bool pause);
// `pgfleet failsafe on|off|show`: the DCS key that turns failsafe mode on (docs/multihost.md).
int run_failsafe(const std::string& dir, const std::string& setting);
// Several hosts (etcd): marks a stopped node removed so that every agent forgets it.
int run_remove_node(const std::string& dir, const std::string& node);
int run_history(const std::string& dir, bool json);

struct TopOptions {
  std::string dir;
  double interval_seconds = 1.0;
  bool once = false;  // print one screen as text and exit (no terminal needed)
};
int run_top(const TopOptions& options);
// --at: unix seconds or YYYY-MM-DDTHH:MM:SS (local time) → unix ms; "" → 0 (now).
int64_t parse_time(const std::string& text);

// When run as root on a cluster owned by another user, continue as that user, so every file
// written stays the owner's and PostgreSQL never runs as root.
void become_cluster_owner(const std::string& dir);

// Point-in-time recovery (docs/backup.md). `pgfleet backup [--node N] [--keep K]` takes a verified
// base backup; `--list` shows them and the WAL archive's reach.
int run_backup(const std::string& dir, const std::string& node, int keep, bool incremental);
int run_backup_list(const std::string& dir, bool json);
struct RestoreOptions {
  std::string dir;
  std::string time;       // recovery target (parsed by backup::parse_timestamp)
  bool latest = false;    // replay all the WAL there is instead
  std::string backup_id;  // "" = the newest backup finished before the target
  int timeout_seconds = 3600;
};
// `pgfleet restore`: the stopped cluster's data replaced by a backup replayed to the target.
int run_restore(const RestoreOptions& options);
// What PostgreSQL runs: archive_command and restore_command (backup/wal_archive.hpp).
int run_archive_wal(const std::string& dir, const std::string& path, const std::string& name);
int run_restore_wal(const std::string& dir, const std::string& name, const std::string& path,
                    const std::vector<std::string>& fallbacks);

// `pgfleet agent --config node.yaml`: one host of a multi-host (etcd) cluster.
int run_node_agent(const std::string& node_file);

}  // namespace pgfleet::cli
