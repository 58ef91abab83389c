// pgfleet: argument parsing, then one subcommand; errors become a message and an exit code here.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli/commands.hpp"
#include "cluster/config.hpp"
#include "ha/agent.hpp"
#include "util/errors.hpp"

int main(int argc, char** argv) {
  using namespace pgfleet;
  CLI::App app{"pgfleet: highly available PostgreSQL — a primary, streaming replicas and their agents, in one binary",
               "pgfleet"};
  app.set_version_flag("--version", std::string("pgfleet ") + PGFLEET_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  const char* env_dir = std::getenv("PGFLEET_DIR");
  std::string dir = env_dir && *env_dir ? env_dir : "./pgfleet-data";
  app.add_option("--dir,-d", dir, "cluster directory (default ./pgfleet-data, or $PGFLEET_DIR)");
  std::string dcs_url, cluster_name;
  app.add_option("--dcs", dcs_url,
                 "a multi-host cluster through etcd, from any machine: etcd://host:port[,...] (etcds:// for TLS; "
                 "$PGFLEET_ETCD_CA_FILE/_CERT_FILE/_KEY_FILE/_USER/_PASSWORD)");
  app.add_option("--cluster", cluster_name, "with --dcs: the cluster's name");

  cli::UpOptions up;
  auto* up_cmd = app.add_subcommand("up", "create the cluster (or start an existing one) and wait until it streams");
  up_cmd->add_option("--config,-c", up.config_file, "settings for a new cluster (pgfleet.yaml format)")
      ->check(CLI::ExistingFile);
  up_cmd->add_option("--replicas,-r", up.replicas, "number of replicas of a new cluster (default 2)");
  up_cmd->add_option("--base-port", up.base_port,
                     "allocate every port from here: proxy P..P+2, HTTP P+3, nodes P+10.., agents P+50..");
  up_cmd->add_option("--sync", up.sync, "replication mode: off (async), on (one synchronous standby), quorum");
  up_cmd->add_option("--sync-count", up.sync_count, "k in ANY k (...) for --sync quorum (default 1)");
  up_cmd->add_option("--ttl", up.ttl, "seconds the leader key lives without renewal (dcs.ttl, default 30, >= 5)");
  up_cmd->add_option("--loop-wait", up.loop_wait, "seconds between agent loops (dcs.loop_wait, default 1, < ttl / 2)");
  up_cmd->add_flag("--cascade", up.cascade, "replicas after the first stream from the first replica");
  up_cmd->add_flag("--foreground", up.foreground, "stay attached; Ctrl-C stops the cluster");
  up_cmd->add_option("--pg-bindir", up.pg_bindir, "directory of initdb/postgres (default: $PG_BINDIR or discovered)");
  up_cmd->add_option("--run-as", up.run_as, "OS user for the servers when run as root (default postgres)");
  up_cmd->add_option("--set", up.pg_params, "PostgreSQL parameter for every node of a new cluster, name=value");
  up_cmd->add_option("--timeout", up.timeout_seconds, "seconds to wait for the cluster to stream (default 180)");

  bool purge = false;
  auto* down_cmd = app.add_subcommand("down", "stop every node and agent; data is kept unless --purge");
  down_cmd->add_flag("--purge", purge, "also delete the cluster directory and all its data");

  cli::CheckOptions check;
  auto* check_cmd = app.add_subcommand(
      "check", "OK, WARNING or CRITICAL: a test commit reaches every replica, the proxy routes, WAL archiving, backups "
               "(exit code 0/1/2, 3 = cannot tell)");
  auto* check_json = check_cmd->add_flag("--json", check.json, "machine-readable output (see docs/operations.md)");
  check_cmd->add_flag("--nagios", check.nagios, "one line in the Nagios/Icinga plugin format, with performance data")
      ->excludes(check_json);
  check_cmd->add_option("--timeout", check.timeout_seconds,
                        "seconds each replica has to replay the test commit (default 5)");
  check_cmd->add_option("--lag-warning", check.lag_warning_bytes,
                        "bytes a replica may lag before WARNING (default: replication.maximum_lag_on_failover)");

  cli::StatusOptions status;
  auto* status_cmd = app.add_subcommand("status", "one row per node: role, state, LSNs, lag, sync state");
  status_cmd->add_flag("--json", status.json, "machine-readable output (see docs/status-json.md)");
  status_cmd->add_flag("--watch,-w", status.watch, "refresh until Ctrl-C");
  status_cmd->add_option("--interval", status.interval_seconds, "seconds between refreshes with --watch");

  int replicas = -1;
  int timeout = 180;
  auto* scale_cmd = app.add_subcommand("scale", "add or remove replicas while the cluster runs");
  scale_cmd->add_option("--replicas,-r", replicas, "wanted number of replicas")->required();
  scale_cmd->add_option("--timeout", timeout, "seconds to wait for new replicas to stream");

  cli::ConfigOptions config_options;
  auto* config_cmd = app.add_subcommand(
      "config", "cluster-wide PostgreSQL parameters every node applies: show, set NAME=VALUE..., unset NAME...");
  config_cmd->add_option("action", config_options.action, "show (default), set or unset");
  config_cmd->add_option("arguments", config_options.arguments, "set: NAME=VALUE ...; unset: NAME ...");
  config_cmd->add_flag("--json", config_options.json, "show: machine-readable output");
  config_cmd->add_option("--timeout", config_options.timeout_seconds,
                         "set/unset: seconds the running agents have to apply them (default 30)");

  cli::SlotOptions slot_options;
  auto* slot_cmd = app.add_subcommand(
      "slot", "permanent replication slots every node keeps across failovers (for CDC, subscribers): list, add, remove");
  slot_cmd->add_option("action", slot_options.action, "list (default), add or remove");
  slot_cmd->add_option("names", slot_options.names, "add/remove: the slot's name");
  slot_cmd->add_option("--type", slot_options.type, "add: physical (default) or logical");
  slot_cmd->add_option("--database", slot_options.database, "add, logical: the database it decodes (default: the cluster's)");
  slot_cmd->add_option("--plugin", slot_options.plugin, "add, logical: the output plugin (default pgoutput)");
  slot_cmd->add_flag("--json", slot_options.json, "list: machine-readable output");
  slot_cmd->add_option("--timeout", slot_options.timeout_seconds,
                       "add/remove: seconds the nodes have to create or drop it (default 30)");

  cli::BenchOptions bench;
  auto* bench_cmd = app.add_subcommand(
      "bench", "pgbench against the running cluster: through the proxy and directly, in alternating rounds");
  bench_cmd->add_option("--workload,-w", bench.workload,
                        "read (select-only), write (tpcb-like), mixed (both; the default) or custom (--file)");
  bench_cmd->add_option("--read-percent", bench.read_percent, "mixed: share of read-only transactions (default 80)");
  bench_cmd->add_option("--target,-t", bench.targets,
                        "where to connect, in order (default primary,proxy): primary, proxy, proxy-primary, "
                        "proxy-replicas or a node's name; comma-separated")
      ->delimiter(',');
  bench_cmd->add_option("--clients,-c", bench.clients, "concurrent clients (default 8)");
  bench_cmd->add_option("--jobs,-j", bench.jobs, "pgbench threads (default 2)");
  bench_cmd->add_option("--time,-T", bench.seconds, "seconds per run (default 10)");
  bench_cmd->add_option("--rounds", bench.rounds, "runs of every target, alternating; medians are shown (default 1)");
  bench_cmd->add_option("--scale,-s", bench.scale, "pgbench scale when filling the tables (default: the existing tables', "
                                                   "else 10, a million accounts, about 160 MB per node)");
  bench_cmd->add_option("--protocol,-M", bench.protocol, "simple, extended or prepared (default simple)");
  bench_cmd->add_option("--file,-f", bench.files, "your own pgbench script (path[@weight]); repeatable");
  bench_cmd->add_option("--database", bench.database, "database for the benchmark (default pgfleet_bench)");
  bench_cmd->add_flag("--init", bench.init, "fill the pgbench tables again even when they exist");
  bench_cmd->add_flag("--json", bench.json, "machine-readable output (see docs/operations.md)");

  cli::UrlOptions url;
  auto* url_cmd = app.add_subcommand("url", "print a libpq connection URI with the cluster's credentials");
  auto* url_group = url_cmd->add_option_group("target")->require_option(0, 1);
  url_group->add_flag("--primary", url.primary, "the primary (every node listed, target_session_attrs=read-write)");
  url_group->add_flag("--replica", url.replica, "the replicas (target_session_attrs=standby)");
  url_group->add_option("--node", url.node, "one node by name");
  url_group->add_flag("--proxy", url.proxy, "the pgfleet proxy (rw-split port: writes to the primary, reads to replicas)");
  url_group->add_flag("--proxy-primary", url.proxy_primary, "the pgfleet proxy's primary-only port");
  url_group->add_flag("--proxy-replicas", url.proxy_replicas, "the pgfleet proxy's replicas-only port");
  url_group->add_flag("--proxy-socket", url.proxy_socket, "the pgfleet proxy's rw-split port through its Unix socket (same host)");

  std::string node;
  cli::RestartOptions restart;
  auto* restart_cmd = app.add_subcommand(
      "restart", "restart nodes' PostgreSQL servers (replicas first, one at a time, the primary last), or the proxy");
  restart_cmd->add_option("nodes", restart.nodes,
                          "node names, or `proxy` (a new proxy takes over without refusing connections)");
  restart_cmd->add_flag("--pending", restart.pending, "only the nodes with parameters waiting for a restart");
  restart_cmd->add_flag("--all", restart.all, "every node");
  restart_cmd->add_option("--timeout", timeout, "seconds to wait for each node to be back");

  auto* reload_cmd = app.add_subcommand(
      "reload", "apply an edited pgfleet.yaml: agents and proxy read it again; names what needs a restart");
  reload_cmd->add_option("--timeout", timeout, "seconds to wait for the servers to reload (default 180)");

  auto* reinit_cmd = app.add_subcommand("reinit", "rebuild a broken or diverged replica from the primary");
  reinit_cmd->add_option("node", node, "replica name")->required();
  reinit_cmd->add_option("--timeout", timeout, "seconds to wait for it to stream");

  cli::LogsOptions logs;
  auto* logs_cmd = app.add_subcommand("logs", "print a node's PostgreSQL log (and its agent's with --agent)");
  logs_cmd->add_option("node", logs.node, "node name")->required();
  logs_cmd->add_option("--lines,-n", logs.lines, "lines from the end (default 50)");
  logs_cmd->add_flag("--follow,-f", logs.follow, "keep printing new lines");
  logs_cmd->add_flag("--agent", logs.agent, "the agent's log instead of PostgreSQL's");

  std::string proxy_config;
  auto* proxy_cmd = app.add_subcommand("proxy", "run the PostgreSQL proxy (started for you by `up`)");
  proxy_cmd->add_option("--config,-c", proxy_config, "pgfleet.yaml to read (default: the cluster's, from --dir)");
  bool takeover = false;
  proxy_cmd->add_flag("--takeover", takeover, "take the listening sockets over from the running proxy, which drains");

  std::string to;
  std::string at;
  auto* switchover_cmd = app.add_subcommand("switchover", "move the primary role to another node, planned (no client error)");
  switchover_cmd->add_option("--to", to, "the new primary (default: the best replica)");
  switchover_cmd->add_option("--at", at, "when, as unix seconds or YYYY-MM-DDTHH:MM:SS (local time); default now");
  switchover_cmd->add_option("--timeout", timeout, "seconds to wait for the new primary");
  auto* failover_cmd = app.add_subcommand("failover", "make NODE the primary when there is none (manual failover)");
  failover_cmd->add_option("--to", to, "the new primary")->required();
  failover_cmd->add_option("--timeout", timeout, "seconds to wait for it");
  auto* pause_cmd = app.add_subcommand("pause", "maintenance mode: no automatic failover until `resume`");
  auto* resume_cmd = app.add_subcommand("resume", "end maintenance mode");
  std::string failsafe_setting = "show";
  auto* failsafe_cmd = app.add_subcommand("failsafe", "failsafe mode: the primary survives a DCS outage its members confirm");
  failsafe_cmd->add_option("setting", failsafe_setting, "on, off or show (default)")
      ->check(CLI::IsMember({"on", "off", "show"}));
  auto* remove_node_cmd = app.add_subcommand(
      "remove-node", "several hosts: forget a node for good (stop its agent first; starting it again brings it back)");
  remove_node_cmd->add_option("node", node, "node name")->required();
  bool history_json = false;
  auto* history_cmd = app.add_subcommand("history", "failovers and switchovers, oldest first");
  history_cmd->add_flag("--json", history_json, "as JSON");

  std::string backup_node;
  int backup_keep = 0;
  bool backup_list = false, backup_json = false, backup_incremental = false;
  auto* backup_cmd = app.add_subcommand("backup", "take a verified base backup for point-in-time recovery (or --list them)");
  backup_cmd->add_option("--node", backup_node, "copy this node (default: the primary)");
  backup_cmd->add_option("--keep", backup_keep, "afterwards keep only the newest K backups and the WAL they need (default: all)");
  backup_cmd->add_flag("--incremental", backup_incremental,
                      "copy only the files changed since the newest backup; the others are hard links to its copies");
  backup_cmd->add_flag("--list", backup_list, "show the backups and how far the WAL archive reaches");
  backup_cmd->add_flag("--json", backup_json, "with --list: as JSON");

  cli::RestoreOptions restore;
  auto* restore_cmd = app.add_subcommand(
      "restore", "point-in-time recovery: replace the stopped cluster's data with a backup replayed up to --time");
  auto* restore_target = restore_cmd->add_option_group("target")->require_option(1);
  restore_target->add_option("--time", restore.time,
                             "stop replaying here: 'YYYY-MM-DD HH:MM:SS[.fff][+HH:MM|Z]' (no zone: local time)");
  restore_target->add_flag("--latest", restore.latest, "replay all the archived WAL");
  restore_cmd->add_option("--backup", restore.backup_id, "start from this backup (default: the newest before --time)");
  restore_cmd->add_option("--timeout", restore.timeout_seconds, "seconds the replay may take (default 3600)");

  // Run by PostgreSQL (archive_command, restore_command); not for people, so not in --help.
  std::string wal_path, wal_name;
  std::vector<std::string> wal_from;
  auto* archive_wal_cmd = app.add_subcommand("archive-wal", "PostgreSQL's archive_command")->group("");
  archive_wal_cmd->add_option("path", wal_path, "%p")->required();
  archive_wal_cmd->add_option("name", wal_name, "%f")->required();
  auto* restore_wal_cmd = app.add_subcommand("restore-wal", "PostgreSQL's restore_command")->group("");
  restore_wal_cmd->add_option("name", wal_name, "%f")->required();
  restore_wal_cmd->add_option("path", wal_path, "%p")->required();
  restore_wal_cmd->add_option("--from", wal_from, "data directories whose pg_wal to search after the archive");

  cli::TopOptions top;
  auto* top_cmd = app.add_subcommand("top", "live terminal dashboard: nodes, proxy pools, events (q quits)");
  top_cmd->add_option("--interval", top.interval_seconds, "seconds between refreshes (default 1)");
  top_cmd->add_flag("--once", top.once, "print one screen as text and exit");

  ha::AgentOptions agent;
  auto* agent_cmd = app.add_subcommand("agent", "run the agent of one node (started for you by `up`)");
  auto* agent_node = agent_cmd->add_option("--node", agent.node, "node name (a cluster directory's node)");
  std::string node_file;
  agent_cmd->add_option("--config,-c", node_file, "node.yaml of one host of a multi-host cluster (etcd)")
      ->check(CLI::ExistingFile)
      ->excludes(agent_node);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (!dcs_url.empty()) {
      // These act on a cluster directory of this host; on several hosts each host runs its agent.
      const std::pair<CLI::App*, const char*> one_host[] = {
          {up_cmd, "on several hosts, start each host's agent with its node.yaml (docs/multihost.md)"},
          {down_cmd, "stop each host's agent there (systemctl stop pgfleet-agent@NODE)"},
          {scale_cmd, "add a host by starting an agent there; remove one with `pgfleet remove-node --dcs ...`"},
          {reload_cmd, "cluster-wide parameters: `pgfleet config set --dcs ...`; a host's node.yaml: reload its agent "
                       "there (systemctl reload pgfleet-agent@NODE)"},
          {logs_cmd, "on the node's host: pgfleet logs NODE --dir DATA_DIR (the data_dir of its node.yaml)"},
      };
      for (const auto& [command, hint] : one_host) {
        if (command->parsed())
          throw UserError("`pgfleet " + command->get_name() + "` works on a cluster directory of this host, not with --dcs",
                          hint);
      }
      dir = dcs_url + "#" + cluster_name;  // Cluster::open reads the cluster from etcd
    }
    if (up_cmd->parsed()) {
      up.dir = dir;
      return cli::run_up(up);
    }
    if (down_cmd->parsed()) return cli::run_down(dir, purge);
    if (status_cmd->parsed()) {
      status.dir = dir;
      return cli::run_status(status);
    }
    if (check_cmd->parsed()) {
      check.dir = dir;
      return cli::run_check(check);
    }
    if (scale_cmd->parsed()) return cli::run_scale(dir, replicas, timeout);
    if (config_cmd->parsed()) {
      config_options.dir = dir;
      return cli::run_config(config_options);
    }
    if (slot_cmd->parsed()) {
      slot_options.dir = dir;
      return cli::run_slot(slot_options);
    }
    if (bench_cmd->parsed()) {
      bench.dir = dir;
      return cli::run_bench(bench);
    }
    if (url_cmd->parsed()) {
      url.dir = dir;
      return cli::run_url(url);
    }
    if (restart_cmd->parsed()) {
      restart.dir = dir;
      restart.timeout_seconds = timeout;
      return cli::run_restart(restart);
    }
    if (reload_cmd->parsed()) return cli::run_reload(dir, timeout);
    if (reinit_cmd->parsed()) return cli::run_reinit(dir, node, timeout);
    if (logs_cmd->parsed()) {
      logs.dir = dir;
      return cli::run_logs(logs);
    }
    if (switchover_cmd->parsed()) return cli::run_switchover(dir, to, cli::parse_time(at), timeout);
    if (failover_cmd->parsed()) return cli::run_failover(dir, to, timeout);
    if (pause_cmd->parsed()) return cli::run_pause(dir, true);
    if (resume_cmd->parsed()) return cli::run_pause(dir, false);
    if (failsafe_cmd->parsed()) return cli::run_failsafe(dir, failsafe_setting);
    if (history_cmd->parsed()) return cli::run_history(dir, history_json);
    if (backup_cmd->parsed()) {
      if (backup_list) return cli::run_backup_list(dir, backup_json);
      return cli::run_backup(dir, backup_node, backup_keep, backup_incremental);
    }
    if (restore_cmd->parsed()) {
      restore.dir = dir;
      return cli::run_restore(restore);
    }
    if (archive_wal_cmd->parsed()) return cli::run_archive_wal(dir, wal_path, wal_name);
    if (restore_wal_cmd->parsed()) return cli::run_restore_wal(dir, wal_name, wal_path, wal_from);
    if (remove_node_cmd->parsed()) return cli::run_remove_node(dir, node);
    if (top_cmd->parsed()) {
      top.dir = dir;
      return cli::run_top(top);
    }
    if (proxy_cmd->parsed()) return cli::run_proxy_command(dir, proxy_config, takeover);
    if (agent_cmd->parsed()) {
      if (!node_file.empty()) return cli::run_node_agent(node_file);
      if (agent.node.empty()) throw UserError("agent needs --node NAME (with --dir) or --config node.yaml");
      cli::become_cluster_owner(dir);
      agent.directory = dir;
      return ha::run_agent(agent);
    }
  } catch (const UserError& e) {
    std::cerr << "pgfleet: error: " << e.what() << "\n";
    if (!e.hint.empty()) std::cerr << "hint: " << e.hint << "\n";
    return 1;
  } catch (const cluster::ConfigError& e) {
    std::cerr << "pgfleet: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "pgfleet: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
