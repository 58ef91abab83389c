// Collecting what `pgfleet top` shows: status from the DCS, per-node counters over libpq, pools
// from the proxy's admin console.
#include "top/collector.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "cluster/discovery.hpp"
#include "util/clock.hpp"

namespace pgfleet::top {
namespace {

int64_t to_int(const std::optional<std::string>& v) {
  if (!v) return 0;
  try {
    return std::stoll(*v);
  } catch (const std::exception&) {
    return 0;
  }
}

bool healthy(const std::string& state) { return state == "running" || state == "streaming"; }

}  // namespace

std::string history_kind(const std::string& reason) {
  return reason.rfind("switchover", 0) == 0 ? "switchover" : "failover";
}

std::vector<Event> diff_events(const Snapshot& before, const Snapshot& after) {
  std::vector<Event> out;
  auto add = [&](const std::string& kind, const std::string& text) { out.push_back({after.taken_ms, kind, text}); };
  if (before.leader != after.leader) {
    add("leader", after.leader.empty() ? "no primary (leader key " + before.leader + " gone)"
                                       : "primary is now " + after.leader +
                                             (before.leader.empty() ? "" : " (was " + before.leader + ")"));
  }
  for (const auto& n : after.nodes) {
    auto it = std::find_if(before.nodes.begin(), before.nodes.end(), [&](const NodeRow& b) { return b.name == n.name; });
    if (it == before.nodes.end()) {
      add("scale", n.name + " added");
      continue;
    }
    if (healthy(it->state) && !healthy(n.state)) add("down", n.name + " " + it->state + " -> " + n.state);
    if (!healthy(it->state) && healthy(n.state)) add("up", n.name + " " + it->state + " -> " + n.state);
    if (it->role != n.role && it->role != "unknown" && n.role != "unknown") {
      add("role", n.name + " " + it->role + " -> " + n.role);
    }
  }
  if (after.newest_backup_ms > before.newest_backup_ms && !after.newest_backup.empty())
    add("backup", "backup " + after.newest_backup + " finished");
  for (const auto& b : before.nodes) {
    bool kept = std::any_of(after.nodes.begin(), after.nodes.end(), [&](const NodeRow& n) { return n.name == b.name; });
    if (!kept) add("scale", b.name + " removed");
  }
  return out;
}

void Collector::node_stats(NodeRow& row, const cluster::NodeStatus& status) {
  auto& conn = nodes_[status.name];
  if (!healthy(status.state)) {
    conn.reset();
    last_xacts_.erase(status.name);
    return;
  }
  if (!conn) {
    // Short timeouts: one dead node must not freeze the screen.
    auto c = postgres::PgConn::connect(fmt::format(
        "host={} port={} dbname={} user={} passfile={} connect_timeout=1 application_name=pgfleet-top "
        "options='-c statement_timeout=1000'",
        status.host, status.port, cluster_.config.database, cluster_.config.superuser, cluster_.layout.passfile()));
    if (!c) return;
    conn.emplace(std::move(c.value()));
  }
  auto rows = conn->query_prepared(  // every refresh: planned once per connection
      "SELECT (SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database)::bigint, "
      "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')");
  if (!rows || rows->empty() || rows->front().size() < 2) {
    conn.reset();
    return;
  }
  int64_t xacts = to_int(rows->front()[0]);
  // Our own query is one transaction and one connection: leave both out.
  row.connections = std::max<int64_t>(0, to_int(rows->front()[1]) - 1);
  auto now = std::chrono::steady_clock::now();
  if (auto it = last_xacts_.find(status.name); it != last_xacts_.end() && xacts >= it->second.xacts) {
    double secs = std::chrono::duration<double>(now - it->second.at).count();
    if (secs > 0.05) row.tps = std::max(0.0, static_cast<double>(xacts - it->second.xacts - 1) / secs);
  }
  last_xacts_[status.name] = {xacts, now};
}

void Collector::proxy_stats(Snapshot& snap) {
  const auto& cfg = cluster_.config;
  snap.proxy_enabled = cfg.proxy.enabled;
  if (!cfg.proxy.enabled) return;
  if (cluster::agent_pid(cluster_.layout, "proxy") == 0) {
    snap.proxy_state = "stopped";
    admin_.reset();
    return;
  }
  if (!admin_) {
    auto c = postgres::PgConn::connect(fmt::format(
        "host={} port={} dbname=pgfleet user={} passfile={} connect_timeout=1 application_name=pgfleet-top",
        cluster::connect_host(cfg), cfg.ports.proxy, cfg.superuser, cluster_.layout.passfile()));
    if (!c) {
      snap.proxy_state = "unreachable: " + c.error();
      return;
    }
    admin_.emplace(std::move(c.value()));
  }
  auto pools = admin_->query("SHOW POOLS");
  auto servers = pools ? admin_->query("SHOW SERVERS") : pools;
  if (!pools || !servers) {
    snap.proxy_state = "unreachable: " + (pools ? servers.error() : pools.error());
    admin_.reset();
    return;
  }
  snap.proxy_state = fmt::format("running on port {}", cfg.ports.proxy);
  for (const auto& r : *pools) {
    if (r.size() < 10) continue;
    PoolRow p;
    p.database = r[0].value_or("");
    p.user = r[1].value_or("");
    p.cl_active = to_int(r[2]);
    p.cl_waiting = to_int(r[3]);
    p.sv_active = to_int(r[4]);
    p.sv_idle = to_int(r[5]);
    p.mode = r[9].value_or("");
    // The admin console's own pseudo-pool is not traffic.
    if (p.database == "pgfleet") continue;
    snap.pools.push_back(p);
  }
  for (const auto& r : *servers) {
    if (r.size() > 4 && r[4]) ++snap.servers_per_node[*r[4]];
  }
}

void Collector::derive_events(const Snapshot& snap) {
  if (previous_) {
    for (auto& e : diff_events(*previous_, snap)) observed_.push_back(std::move(e));
    constexpr size_t kKeep = 200;
    if (observed_.size() > kKeep) observed_.erase(observed_.begin(), observed_.end() - kKeep);
  }
}

Snapshot Collector::collect() {
  auto status = cluster_.status();
  Snapshot snap;
  snap.taken_ms = unix_ms();
  snap.cluster = status.cluster;
  snap.leader = status.leader;
  snap.paused = status.paused;
  snap.backups = status.backups;
  snap.newest_backup = status.newest_backup;
  snap.newest_backup_ms = status.newest_backup_ms;
  for (const auto& n : status.nodes) {
    NodeRow row;
    row.name = n.name;
    row.role = n.role;
    row.state = n.state;
    row.upstream = n.upstream;
    row.sync_state = n.sync_state;
    row.lag_bytes = n.lag_bytes;
    row.lag_seconds = n.lag_seconds;
    if (n.stats) {  // host figures sampled by the node's agent
      row.cpu_percent = n.stats->cpu_percent;
      row.memory_percent = n.stats->memory_percent;
      row.disk_percent = n.stats->disk_used_percent;
      row.temperature_c = n.stats->temperature_celsius;
    }
    node_stats(row, n);
    snap.nodes.push_back(std::move(row));
  }
  proxy_stats(snap);
  derive_events(snap);
  for (const auto& h : status.history) {
    snap.events.push_back({h.time_ms, history_kind(h.reason), h.reason.empty() ? h.from + " -> " + h.to : h.reason});
  }
  snap.events.insert(snap.events.end(), observed_.begin(), observed_.end());
  std::stable_sort(snap.events.begin(), snap.events.end(),
                   [](const Event& a, const Event& b) { return a.time_ms < b.time_ms; });
  previous_ = snap;
  return snap;
}

}  // namespace pgfleet::top
