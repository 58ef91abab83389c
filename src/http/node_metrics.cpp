// The node's metrics. Names follow Prometheus conventions: pgfleet_ prefix, base units (bytes,
// seconds), counters end in _total. Each scrape runs a few short queries (2 s statement timeout).
#include "http/node_metrics.hpp"

#include <cstdlib>

#include "backup/catalog.hpp"
#include "postgres/instance.hpp"
#include "postgres/lsn.hpp"
#include "http/host_stats.hpp"

namespace pgfleet::http {
namespace {

double num(const std::optional<std::string>& v) { return v ? std::atof(v->c_str()) : 0; }

std::optional<double> lsn_bytes(const std::string& text) {
  auto v = postgres::parse_lsn(text);
  if (!v) return std::nullopt;
  return static_cast<double>(*v);
}

}  // namespace

NodeMetrics::NodeMetrics(cluster::Layout layout, cluster::ClusterConfig config, std::string node)
    : layout_(std::move(layout)), config_(std::move(config)), node_(std::move(node)) {}

void NodeMetrics::write(MetricsWriter& out, const NodeFacts& f) {
  const auto& m = f.member;
  bool running = dcs::is_running(m);
  out.set_common_labels({{"cluster", config_.cluster}, {"node", node_}});
  out.gauge("pgfleet_agent_up", "1: the node's agent HA loop ran within the DCS TTL.", f.loop_age_ms <= f.ttl_ms ? 1 : 0);
  out.gauge("pgfleet_agent_loop_age_seconds", "Time since the agent's HA loop last completed.",
            static_cast<double>(std::min<int64_t>(f.loop_age_ms, 1000000000)) / 1000.0);
  out.gauge("pgfleet_up", "1 when PostgreSQL on this node accepts connections (agent's view).", running ? 1 : 0);
  out.family("pgfleet_node_role", "gauge", "1 for the node's current role.");
  for (const char* role : {"primary", "replica", "unknown"}) out.add("pgfleet_node_role", {{"role", role}}, m.role == role ? 1 : 0);
  out.gauge("pgfleet_primary", "1 when this node is the primary serving writes (holds the leader key, not fenced).",
            is_serving_primary(f) ? 1 : 0);
  out.gauge("pgfleet_fenced", "1 when the agent stopped writes on this node (lost its lease).", f.fenced ? 1 : 0);
  if (m.timeline > 0) out.gauge("pgfleet_timeline", "PostgreSQL timeline of the node.", m.timeline);
  out.counter("pgfleet_postmaster_restarts_total", "Postmaster restarts after crashes by this agent.", m.restarts);
  if (m.postmaster_start > 0) {
    out.gauge("pgfleet_postmaster_start_time_seconds", "Unix time the postmaster started.",
              static_cast<double>(m.postmaster_start));
  }
  if (m.role == "primary") {
    if (auto v = lsn_bytes(m.current_lsn)) {
      out.gauge("pgfleet_wal_current_lsn_bytes", "Primary's current WAL write position, in bytes.", *v);
    }
    int sync = 0, streaming = 0;
    for (const auto& p : m.replication) {
      if (p.state == "streaming") ++streaming;
      if (p.sync_state == "sync" || p.sync_state == "quorum") ++sync;
    }
    out.gauge("pgfleet_replicas_streaming", "Standbys streaming from this node.", streaming);
    out.gauge("pgfleet_sync_standbys", "Standbys of this primary that acknowledge commits synchronously.", sync);
    out.gauge("pgfleet_sync_mode_enabled", "1 when the cluster runs in synchronous mode (sync: on or quorum).",
              config_.sync == cluster::SyncMode::Off ? 0 : 1);
  } else if (m.role == "replica") {
    if (auto v = lsn_bytes(m.received_lsn)) out.gauge("pgfleet_wal_received_lsn_bytes", "WAL position received by this replica.", *v);
    if (auto v = lsn_bytes(m.replayed_lsn)) out.gauge("pgfleet_wal_replayed_lsn_bytes", "WAL position replayed by this replica.", *v);
    if (f.lag_bytes) {
      out.gauge("pgfleet_replication_lag_bytes", "Primary's WAL position minus this replica's replayed position.",
                static_cast<double>(*f.lag_bytes));
    }
    out.gauge("pgfleet_replication_lag_seconds", "Time since the last transaction replayed, while replay is behind.",
              m.replay_delay_seconds);
    out.gauge("pgfleet_replication_streaming", "1 when the WAL receiver streams.", m.wal_receiver_streaming ? 1 : 0);
    out.family("pgfleet_replication_sync_state", "gauge", "1 for this replica's state in its upstream's pg_stat_replication.");
    for (const char* s : {"sync", "quorum", "potential", "async"}) {
      out.add("pgfleet_replication_sync_state", {{"state", s}}, f.sync_state == s ? 1 : 0);
    }
  }
  if (running) write_postgres(out);
  write_backups(out);
  write_host(out);
}

bool NodeMetrics::connect() {
  if (conn_) return true;
  const auto* n = config_.find_node(node_);
  if (!n) return false;
  auto info = postgres::local_conninfo(layout_, config_, *n);
  auto pos = info.find("application_name=pgfleet");
  if (pos != std::string::npos) info.insert(pos + 24, "-metrics");
  auto pos2 = info.find("statement_timeout=5000");
  if (pos2 != std::string::npos) info.replace(pos2, 22, "statement_timeout=2000");
  auto c = postgres::PgConn::connect(info);
  if (!c) return false;
  conn_.emplace(std::move(c.value()));
  return true;
}

int NodeMetrics::server_version() {
  if (server_version_ == 0 && connect()) {
    if (auto v = conn_->query("SELECT current_setting('server_version_num')::int"); v && !v->empty()) {
      server_version_ = static_cast<int>(num(v->front()[0]));
    } else {
      conn_.reset();
    }
  }
  return server_version_;
}

void NodeMetrics::write_postgres(MetricsWriter& out) {
  if (!connect()) return;
  auto fail = [this] { conn_.reset(); };
  auto version = conn_->query(
      "SELECT current_setting('server_version_num')::int, pg_is_in_recovery() AND pg_is_wal_replay_paused(), "
      "CASE WHEN pg_is_in_recovery() THEN (SELECT setting::float8 / 1000 FROM pg_settings "
      "WHERE name = 'recovery_min_apply_delay') END");
  if (!version) return fail();
  server_version_ = static_cast<int>(num(version->at(0)[0]));
  out.gauge("pgfleet_pg_server_version", "server_version_num of the node's PostgreSQL.", server_version_);
  out.gauge("pgfleet_pg_replay_paused", "1 when WAL replay is paused (pg_wal_replay_pause()).",
            version->at(0)[1] == std::optional<std::string>("t") ? 1 : 0);
  if (version->at(0)[2]) {
    // A delayed replica's replay lag is by design: the lag alert subtracts this.
    out.gauge("pgfleet_replication_apply_delay_seconds", "recovery_min_apply_delay of this replica (0 = none).",
              num(version->at(0)[2]));
  }

  auto dbs = conn_->query(
      "SELECT d.datname, s.xact_commit, s.xact_rollback, pg_database_size(d.oid), s.deadlocks, s.blks_read, s.blks_hit "
      "FROM pg_database d JOIN pg_stat_database s ON s.datid = d.oid WHERE d.datallowconn ORDER BY 1");
  if (!dbs) return fail();
  out.family("pgfleet_pg_xact_commit_total", "counter", "Transactions committed, by database.");
  out.family("pgfleet_pg_xact_rollback_total", "counter", "Transactions rolled back, by database.");
  out.family("pgfleet_pg_database_size_bytes", "gauge", "Database size on disk.");
  out.family("pgfleet_pg_deadlocks_total", "counter", "Deadlocks detected, by database.");
  out.family("pgfleet_pg_blocks_read_total", "counter", "Blocks read from disk, by database.");
  out.family("pgfleet_pg_blocks_hit_total", "counter", "Blocks found in shared buffers, by database.");
  for (const auto& r : *dbs) {
    Labels l = {{"datname", r[0].value_or("")}};
    out.add("pgfleet_pg_xact_commit_total", l, num(r[1]));
    out.add("pgfleet_pg_xact_rollback_total", l, num(r[2]));
    out.add("pgfleet_pg_database_size_bytes", l, num(r[3]));
    out.add("pgfleet_pg_deadlocks_total", l, num(r[4]));
    out.add("pgfleet_pg_blocks_read_total", l, num(r[5]));
    out.add("pgfleet_pg_blocks_hit_total", l, num(r[6]));
  }

  auto conns = conn_->query(
      "SELECT s.state, count(a.state) FROM unnest(ARRAY['active','idle','idle in transaction',"
      "'idle in transaction (aborted)','fastpath function call','disabled']) AS s(state) "
      "LEFT JOIN pg_stat_activity a ON a.state = s.state AND a.backend_type = 'client backend' GROUP BY 1 ORDER BY 1");
  if (!conns) return fail();
  out.family("pgfleet_pg_connections", "gauge", "Client connections by state.");
  for (const auto& r : *conns) out.add("pgfleet_pg_connections", {{"state", r[0].value_or("")}}, num(r[1]));
  auto limits = conn_->query(
      "SELECT current_setting('max_connections')::int, (SELECT count(*) FROM pg_settings WHERE pending_restart)");
  if (limits) {
    out.gauge("pgfleet_pg_max_connections", "max_connections of the server.", num(limits->at(0)[0]));
    out.gauge("pgfleet_pg_pending_restart",
              "Parameters changed in the configuration that take effect only after a restart (pgfleet restart).",
              num(limits->at(0)[1]));
  }

  auto wal = conn_->query(
      "SELECT w.wal_bytes, w.wal_records, b.checkpoints_timed, b.checkpoints_req, b.checkpoint_write_time, "
      "b.checkpoint_sync_time, b.buffers_checkpoint FROM pg_stat_wal w, pg_stat_bgwriter b");
  if (!wal) return fail();
  const auto& w = wal->at(0);
  out.counter("pgfleet_pg_wal_bytes_total", "WAL generated by this server (pg_stat_wal).", num(w[0]));
  out.counter("pgfleet_pg_wal_records_total", "WAL records generated by this server.", num(w[1]));
  out.family("pgfleet_pg_checkpoints_total", "counter", "Checkpoints, by trigger (timed or requested).");
  out.add("pgfleet_pg_checkpoints_total", {{"kind", "timed"}}, num(w[2]));
  out.add("pgfleet_pg_checkpoints_total", {{"kind", "requested"}}, num(w[3]));
  out.counter("pgfleet_pg_checkpoint_write_seconds_total", "Time spent writing checkpoint files.", num(w[4]) / 1000.0);
  out.counter("pgfleet_pg_checkpoint_sync_seconds_total", "Time spent syncing checkpoint files.", num(w[5]) / 1000.0);
  out.counter("pgfleet_pg_checkpoint_buffers_written_total", "Buffers written by checkpoints.", num(w[6]));

  auto slots = conn_->query(
      "SELECT slot_name, active::int, coalesce(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() "
      "THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, restart_lsn), 0) "
      "FROM pg_replication_slots ORDER BY 1");
  if (!slots) return fail();
  out.family("pgfleet_pg_replication_slot_retained_bytes", "gauge", "WAL kept on this node for a replication slot.");
  out.family("pgfleet_pg_replication_slot_active", "gauge", "1 when a client uses the replication slot.");
  for (const auto& r : *slots) {
    Labels l = {{"slot", r[0].value_or("")}};
    out.add("pgfleet_pg_replication_slot_retained_bytes", l, num(r[2]));
    out.add("pgfleet_pg_replication_slot_active", l, num(r[1]));
  }

  auto archiver = conn_->query(
      "SELECT archived_count, failed_count, coalesce(extract(epoch FROM last_archived_time), 0) FROM pg_stat_archiver");
  if (!archiver) return fail();
  const auto& a = archiver->at(0);
  out.counter("pgfleet_pg_wal_archived_total", "WAL files this node archived (pg_stat_archiver; docs/backup.md).", num(a[0]));
  out.counter("pgfleet_pg_wal_archive_failures_total",
              "Failed attempts to archive a WAL file (PostgreSQL keeps the file and retries).", num(a[1]));
  if (num(a[2]) > 0) out.gauge("pgfleet_pg_wal_last_archived_time_seconds", "Unix time this node last archived a WAL file.", num(a[2]));
}

void NodeMetrics::write_backups(MetricsWriter& out) {
  const auto backups = backup::list_backups(layout_);
  out.gauge("pgfleet_backups", "Base backups in the cluster directory (pgfleet backup).", static_cast<double>(backups.size()));
  if (!backups.empty())
    out.gauge("pgfleet_backup_last_finished_time_seconds", "Unix time the newest base backup finished.",
              static_cast<double>(backups.back().finished_ms) / 1000.0);
}

void NodeMetrics::write_host(MetricsWriter& out) {
  auto h = read_host_stats(layout_.data_dir(node_));
  out.family("pgfleet_host_cpu_seconds_total", "counter", "CPU time of the host, all CPUs, by mode.");
  for (const auto& [mode, seconds] : h.cpu_seconds) out.add("pgfleet_host_cpu_seconds_total", {{"mode", mode}}, seconds);
  if (auto p = cpu_percent(last_cpu_, h.cpu_seconds)) {
    out.gauge("pgfleet_host_cpu_percent", "Host CPU busy percentage since the previous scrape (since boot on the first).", *p);
  }
  last_cpu_ = h.cpu_seconds;
  out.gauge("pgfleet_host_cpus", "CPUs of the host.", h.cpus);
  out.gauge("pgfleet_host_load1", "Host load average over 1 minute.", h.load1);
  out.gauge("pgfleet_host_load5", "Host load average over 5 minutes.", h.load5);
  out.gauge("pgfleet_host_load15", "Host load average over 15 minutes.", h.load15);
  out.gauge("pgfleet_host_memory_total_bytes", "Host memory.", static_cast<double>(h.memory_total_bytes));
  out.gauge("pgfleet_host_memory_available_bytes", "Host memory available to new work (MemAvailable).",
            static_cast<double>(h.memory_available_bytes));
  if (h.disk_total_bytes) {
    out.gauge("pgfleet_host_data_disk_total_bytes", "Size of the file system holding the node's data directory.",
              static_cast<double>(*h.disk_total_bytes));
    out.gauge("pgfleet_host_data_disk_free_bytes", "Free space (for unprivileged users) on the data directory's file system.",
              static_cast<double>(*h.disk_free_bytes));
    out.gauge("pgfleet_host_data_disk_used_bytes", "Used space on the data directory's file system.",
              static_cast<double>(*h.disk_total_bytes - std::min(*h.disk_total_bytes, *h.disk_free_bytes)));
  }
  out.family("pgfleet_host_network_receive_bytes_total", "counter", "Bytes received, by interface.");
  out.family("pgfleet_host_network_transmit_bytes_total", "counter", "Bytes sent, by interface.");
  for (const auto& [iface, rxtx] : h.network) {
    out.add("pgfleet_host_network_receive_bytes_total", {{"interface", iface}}, static_cast<double>(rxtx.first));
    out.add("pgfleet_host_network_transmit_bytes_total", {{"interface", iface}}, static_cast<double>(rxtx.second));
  }
  if (!h.temperatures_celsius.empty()) {
    out.family("pgfleet_host_temperature_celsius", "gauge", "Temperature of each thermal zone (/sys/class/thermal).");
    for (const auto& [zone, celsius] : h.temperatures_celsius) out.add("pgfleet_host_temperature_celsius", {{"zone", zone}}, celsius);
  }
}

}  // namespace pgfleet::http
