// Status merging: the DCS says what agents last saw; pidfile locks say which agents are alive now.
#include "cluster/status.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <ctime>

#include "backup/catalog.hpp"
#include "cluster/cluster_parameters.hpp"
#include "cluster/discovery.hpp"
#include "dcs/member.hpp"
#include "postgres/instance.hpp"
#include "postgres/lsn.hpp"
#include "util/clock.hpp"

namespace pgfleet::cluster {

const NodeStatus* ClusterStatus::find(const std::string& name) const {
  for (const auto& n : nodes) {
    if (n.name == name) return &n;
  }
  return nullptr;
}

std::string connection_uri(const ClusterConfig& config, const Secrets& secrets,
                           const std::vector<std::pair<std::string, int>>& hosts,
                           const std::string& target_session_attrs) {
  std::string list;
  for (const auto& [host, port] : hosts) list += fmt::format("{}{}:{}", list.empty() ? "" : ",", host, port);
  // Generated passwords are alphanumeric, so they need no percent-encoding.
  std::string uri = fmt::format("postgresql://{}:{}@{}/{}", config.superuser, secrets.superuser_password, list,
                                config.database);
  if (!target_session_attrs.empty()) uri += "?target_session_attrs=" + target_session_attrs;
  return uri;
}

namespace {
// Percent-encodes all but unreserved characters and '/', for a path in a URI's query.
std::string uri_encode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '/' || c == '-' || c == '.' || c == '_' || c == '~') out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const dcs::ReplicationPeer* peer_of(const std::map<std::string, dcs::Member>& members, const std::string& upstream,
                                    const std::string& name) {
  auto it = members.find(upstream);
  if (it == members.end()) return nullptr;
  for (const auto& p : it->second.replication) {
    if (p.application_name == name) return &p;
  }
  return nullptr;
}
}  // namespace

ClusterStatus collect_status(const ClusterConfig& config, const Layout& layout, dcs::Dcs& dcs,
                             const Secrets& secrets) {
  ClusterStatus status;
  status.cluster = config.cluster;
  status.directory = layout.root();
  status.sync = config.sync;

  // One read of the whole cluster: a consistent view, and one request (or file) instead of six.
  auto stored = dcs.list("");
  const std::vector<dcs::KeyValue> none;
  const dcs::ClusterKeys keys(stored ? *stored : none);
  std::map<std::string, dcs::Member> members;
  for (const auto& kv : keys.members) {
    try {
      auto m = dcs::member_from_json(nlohmann::json::parse(kv.value));
      members[m.name] = m;
    } catch (const nlohmann::json::exception&) {
    }
  }
  if (keys.leader != nullptr) status.leader = keys.leader->value;
  if (status.leader.empty()) status.leader = primary_from_data(config, layout);

  std::string primary_lsn;
  if (auto it = members.find(status.leader); it != members.end()) primary_lsn = it->second.current_lsn;

  std::string host = connect_host(config);
  for (const auto& n : config.nodes) {
    NodeStatus s;
    s.name = n.name;
    s.host = n.host.empty() ? host : n.host;
    s.port = n.port;
    s.api_port = n.api_port;
    s.api_url = fmt::format("{}://{}:{}", config.http_tls ? "https" : "http", s.host, n.api_port);
    s.nofailover = n.nofailover;
    s.noloadbalance = n.noloadbalance;
    auto it = members.find(n.name);
    // Several hosts (etcd): a member key (it has a TTL) is the only sign of life of a remote agent.
    const bool multi_host = !config.etcd.endpoints.empty();
    s.agent_pid = !multi_host ? agent_pid(layout, n.name)
                  : it != members.end() && it->second.state != "stopped" ? it->second.agent_pid
                                                                         : 0;
    // A member key written by an earlier agent of this node (killed, then replaced) says nothing
    // about the new one until it publishes.
    bool fresh = it != members.end() && s.agent_pid != 0 &&
                 (multi_host || it->second.agent_pid == 0 || it->second.agent_pid == s.agent_pid);
    if (fresh) {
      const auto& m = it->second;
      s.role = m.role;
      s.state = m.state;
      s.timeline = m.timeline;
      s.pid = m.postmaster_pid;
      s.upstream = m.upstream;
      s.restarts = m.restarts;
      s.rebuilt_at_ms = m.rebuilt_at_ms;
      s.last_error = m.last_error;
      s.stepped_down = m.stepped_down;
      // What the agent runs with (several hosts: its node.yaml; one host: pgfleet.yaml as last reloaded).
      s.nofailover = m.nofailover;
      s.noloadbalance = m.noloadbalance;
      if (s.state == "running" || s.state == "streaming") s.pending_restart = m.pending_restart;
      s.stats = m.stats;
      if (s.state == "running" || s.state == "streaming") s.slots = m.slots;
      if (m.role == "primary") {
        s.lsn = m.current_lsn;
      } else {
        s.lsn = m.replayed_lsn;
        s.received_lsn = m.received_lsn;
        s.replayed_lsn = m.replayed_lsn;
      }
      if (s.pid != 0 && m.postmaster_start > 0) s.uptime_seconds = now_unix() - m.postmaster_start;
    } else {
      s.pid = postgres::running_postmaster(layout, n.name);
      s.state = s.agent_pid != 0 ? "starting" : s.pid != 0 ? "unsupervised" : "stopped";
    }
    if (s.role.empty() || s.role == "unknown") {
      s.role = !postgres::has_data(layout, n.name) ? "unknown"
               : postgres::is_standby(layout, n.name) ? "replica"
                                                       : "primary";
    }
    if (fresh && s.role == "replica") {
      auto p = postgres::parse_lsn(primary_lsn);
      auto r = postgres::parse_lsn(s.replayed_lsn);
      if (p && r) s.lag_bytes = *p > *r ? static_cast<int64_t>(*p - *r) : 0;
      const auto* peer = peer_of(members, s.upstream, n.name);
      if (peer != nullptr) s.sync_state = s.upstream == status.leader ? peer->sync_state : "async";
      if (s.lag_bytes) {
        s.lag_seconds = *s.lag_bytes == 0 ? 0.0
                                          : std::max(it->second.replay_delay_seconds,
                                                     peer != nullptr ? peer->replay_lag_seconds : 0.0);
      }
    }
    status.nodes.push_back(s);
  }

  std::vector<std::pair<std::string, int>> all, replicas;
  for (const auto& s : status.nodes) {
    all.emplace_back(s.host, s.port);
    if (s.name != status.leader) replicas.emplace_back(s.host, s.port);
    status.connection.nodes[s.name] = connection_uri(config, secrets, {{s.host, s.port}}, "");
  }
  const auto backups = backup::list_backups(layout);
  status.backups = static_cast<int>(backups.size());
  if (!backups.empty()) {
    status.newest_backup = backups.back().id;
    status.newest_backup_ms = backups.back().finished_ms;
  }
  status.paused = keys.pause != nullptr;
  status.failsafe_mode = keys.failsafe != nullptr;
  if (keys.parameters != nullptr) {
    if (auto parsed = parameters_from_json(keys.parameters->value)) status.parameters = std::move(*parsed);
  }
  if (keys.slots != nullptr) {
    if (auto parsed = slots_from_json(keys.slots->value)) status.slots = live_slots(*parsed);
  }
  if (keys.sync != nullptr) status.synchronous = keys.sync->value;
  for (const auto& kv : keys.history) {
    try {
      auto j = nlohmann::json::parse(kv.value);
      HistoryEntry e;
      e.time_ms = j.value("time_ms", int64_t{0});
      std::time_t secs = static_cast<std::time_t>(e.time_ms / 1000);
      char buf[32];
      std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&secs));
      e.time = buf;
      e.from = j.value("from", "");
      e.to = j.value("to", "");
      e.reason = j.value("reason", "");
      e.lsn = j.value("lsn", "");
      // started_ms by the agent recording the change, promoted_ms by the new primary.
      int64_t started = j.value("started_ms", int64_t{0}), promoted = j.value("promoted_ms", int64_t{0});
      if (started > 0 && promoted >= started) e.duration_ms = promoted - started;
      status.history.push_back(e);
    } catch (const nlohmann::json::exception&) {
    }
  }
  std::sort(status.history.begin(), status.history.end(),
            [](const HistoryEntry& a, const HistoryEntry& b) { return a.time_ms < b.time_ms; });
  status.proxy.enabled = config.proxy.enabled;
  status.proxy.host = host;
  status.proxy.port = config.ports.proxy;
  status.proxy.pid = agent_pid(layout, "proxy");
  status.proxy.socket_dir = proxy_socket_dir(config.proxy.unix_socket_dir, &layout);
  status.proxy.state = status.proxy.pid != 0 ? "running" : "stopped";
  // The proxy's HTTP port serves the dashboard and cluster metrics; without a proxy, any agent does.
  std::string base = config.proxy.enabled || status.nodes.empty()
                         ? fmt::format("{}://{}:{}", config.http_tls ? "https" : "http", host, config.ports.http)
                         : status.nodes.front().api_url;
  status.dashboard_url = base + "/";
  status.metrics_url = base + "/metrics";
  if (config.proxy.enabled) {
    status.connection.proxy = connection_uri(config, secrets, {{host, config.ports.proxy}}, "");
    status.connection.proxy_primary = connection_uri(config, secrets, {{host, config.ports.proxy_primary}}, "");
    status.connection.proxy_replicas = connection_uri(config, secrets, {{host, config.ports.proxy_replicas}}, "");
    if (!status.proxy.socket_dir.empty()) {
      status.connection.proxy_socket = connection_uri(config, secrets, {}, "") + "?host=" +
                                       uri_encode(status.proxy.socket_dir) + "&port=" + std::to_string(config.ports.proxy);
    }
  }
  // Listing every node lets libpq find the primary even after a switchover.
  status.connection.primary = connection_uri(config, secrets, all, "read-write");
  if (!replicas.empty()) status.connection.replicas = connection_uri(config, secrets, replicas, "standby");
  return status;
}

nlohmann::json to_json(const ClusterStatus& status) {
  nlohmann::json nodes = nlohmann::json::array();
  auto opt_text = [](const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); };
  for (const auto& n : status.nodes) {
    nodes.push_back({{"name", n.name},
                     {"role", n.role},
                     {"state", n.state},
                     {"host", n.host},
                     {"port", n.port},
                     {"api_port", n.api_port},
                     {"api_url", n.api_url},
                     {"timeline", n.timeline == 0 ? nlohmann::json(nullptr) : nlohmann::json(n.timeline)},
                     {"lsn", opt_text(n.lsn)},
                     {"received_lsn", opt_text(n.received_lsn)},
                     {"replayed_lsn", opt_text(n.replayed_lsn)},
                     {"lag_bytes", n.lag_bytes ? nlohmann::json(*n.lag_bytes) : nlohmann::json(nullptr)},
                     {"lag_seconds", n.lag_seconds ? nlohmann::json(*n.lag_seconds) : nlohmann::json(nullptr)},
                     {"sync_state", opt_text(n.sync_state)},
                     {"upstream", opt_text(n.upstream)},
                     {"pid", n.pid == 0 ? nlohmann::json(nullptr) : nlohmann::json(n.pid)},
                     {"agent_pid", n.agent_pid == 0 ? nlohmann::json(nullptr) : nlohmann::json(n.agent_pid)},
                     {"uptime_seconds", n.uptime_seconds},
                     {"restarts", n.restarts},
                     {"rebuilt_at_ms", n.rebuilt_at_ms == 0 ? nlohmann::json(nullptr) : nlohmann::json(n.rebuilt_at_ms)},
                     {"last_error", opt_text(n.last_error)},
                     {"stepped_down", n.stepped_down},
                     {"nofailover", n.nofailover},
                     {"noloadbalance", n.noloadbalance},
                     {"pending_restart", n.pending_restart},
                     {"slots", n.slots},
                     {"stats", n.stats ? dcs::to_json(*n.stats) : nlohmann::json(nullptr)}});
  }
  nlohmann::json history = nlohmann::json::array();
  for (const auto& h : status.history) {
    history.push_back({{"time", h.time}, {"from", opt_text(h.from)}, {"to", h.to}, {"reason", h.reason},
                       {"lsn", opt_text(h.lsn)},
                       {"duration_ms", h.duration_ms >= 0 ? nlohmann::json(h.duration_ms) : nlohmann::json(nullptr)}});
  }
  nlohmann::json proxy = nullptr;
  if (status.proxy.enabled) {
    proxy = {{"state", status.proxy.state},
             {"host", status.proxy.host},
             {"port", status.proxy.port},
             {"pid", status.proxy.pid == 0 ? nlohmann::json(nullptr) : nlohmann::json(status.proxy.pid)},
             {"socket_dir", opt_text(status.proxy.socket_dir)}};
  }
  nlohmann::json connection = {{"proxy", opt_text(status.connection.proxy)},
                               {"proxy_primary", opt_text(status.connection.proxy_primary)},
                               {"proxy_replicas", opt_text(status.connection.proxy_replicas)},
                               {"proxy_socket", opt_text(status.connection.proxy_socket)},
                               {"primary", status.connection.primary},
                               {"replicas", opt_text(status.connection.replicas)},
                               {"nodes", status.connection.nodes}};
  nlohmann::json synchronous = nullptr;
  try {
    if (!status.synchronous.empty()) synchronous = nlohmann::json::parse(status.synchronous);
  } catch (const nlohmann::json::exception&) {
  }
  return {{"cluster", status.cluster},     {"directory", status.directory},
          {"leader", opt_text(status.leader)}, {"sync_mode", to_string(status.sync)},
          {"nodes", nodes},                {"proxy", proxy},
          {"paused", status.paused},       {"failsafe_mode", status.failsafe_mode},
          {"parameters", status.parameters},
          {"slots", nlohmann::json::parse(slots_to_json(status.slots))},
          {"history", history},
          {"backups", {{"count", status.backups},
                       {"newest", opt_text(status.newest_backup)},
                       {"newest_finished_ms", status.newest_backup_ms == 0 ? nlohmann::json(nullptr)
                                                                          : nlohmann::json(status.newest_backup_ms)}}},
          {"synchronous", synchronous},
          {"connection", connection},    {"dashboard_url", status.dashboard_url},
          {"metrics_url", status.metrics_url}};
}

namespace {
std::string dash(const std::string& s) { return s.empty() ? "-" : s; }
}  // namespace

std::string render_table(const ClusterStatus& status) {
  std::string out = fmt::format("cluster {} ({}), leader {}, sync {}{}\n", status.cluster, status.directory,
                                dash(status.leader), to_string(status.sync),
                                std::string(status.paused ? ", PAUSED (no automatic failover)" : "") +
                                    (status.failsafe_mode ? ", failsafe mode" : ""));
  out += fmt::format("{:<8} {:<8} {:<12} {:<8} {:>3} {:<12} {:<12} {:<12} {:>10} {:>7} {:<9} {:>5} {:>7} {:>6}\n",
                     "NODE", "ROLE", "STATE", "UPSTREAM", "TL", "LSN", "RECEIVED", "REPLAYED", "LAG_BYTES",
                     "LAG_S", "SYNC", "PORT", "PID", "UPTIME");
  for (const auto& n : status.nodes) {
    out += fmt::format(
        "{:<8} {:<8} {:<12} {:<8} {:>3} {:<12} {:<12} {:<12} {:>10} {:>7} {:<9} {:>5} {:>7} {:>6}\n", n.name, n.role,
        n.state, dash(n.upstream), n.timeline == 0 ? "-" : std::to_string(n.timeline), dash(n.lsn),
        dash(n.received_lsn), dash(n.replayed_lsn), n.lag_bytes ? std::to_string(*n.lag_bytes) : "-",
        n.lag_seconds ? fmt::format("{:.1f}", *n.lag_seconds) : "-", dash(n.sync_state), n.port,
        n.pid == 0 ? "-" : std::to_string(n.pid), human_duration(n.uptime_seconds));
    // A healthy agent clears its error every loop: one still there is current (e.g. a lost slot).
    if (!n.last_error.empty()) {
      out += fmt::format("         last error: {}\n", n.last_error);
    }
    if (n.nofailover || n.noloadbalance) {
      out += fmt::format("         tags: {}\n", n.nofailover && n.noloadbalance ? "nofailover, noloadbalance"
                                                 : n.nofailover                   ? "nofailover (never promoted)"
                                                                                  : "noloadbalance (no proxy reads)");
    }
    if (!n.pending_restart.empty()) {
      out += fmt::format("         pending restart: {} (`pgfleet restart {}`)\n", fmt::join(n.pending_restart, ", "),
                         n.name);
    }
  }
  if (!status.history.empty()) {
    const auto& h = status.history.back();
    out += fmt::format("last change: {} {} -> {} ({} in all; `pgfleet history`)\n", h.time, h.from.empty() ? "-" : h.from,
                       h.to, status.history.size());
  }
  if (!status.parameters.empty()) {
    std::vector<std::string> set;
    for (const auto& [name, value] : status.parameters) set.push_back(name + "=" + value);
    out += fmt::format("cluster-wide parameters: {} (`pgfleet config`)\n", fmt::join(set, ", "));
  }
  if (!status.slots.empty()) {
    std::vector<std::string> kept;
    for (const auto& [name, slot] : status.slots)
      kept.push_back(slot.type == "logical" ? fmt::format("{} (logical, {}, {})", name, slot.database, slot.plugin)
                                            : name + " (physical)");
    out += fmt::format("permanent slots: {} (`pgfleet slot list`)\n", fmt::join(kept, ", "));
  }
  if (status.backups > 0)
    out += fmt::format("backups: {}, newest {} (finished {}; `pgfleet backup --list`)\n", status.backups,
                       status.newest_backup, backup::format_utc(status.newest_backup_ms));
  if (status.proxy.enabled) {
    out += fmt::format("proxy    {}:{} {}{}\n", status.proxy.host, status.proxy.port, status.proxy.state,
                       status.proxy.pid ? fmt::format(" (pid {})", status.proxy.pid) : "");
  }
  return out;
}

}  // namespace pgfleet::cluster
