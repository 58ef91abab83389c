// Cluster routes and cluster-level metrics, computed from the same collect_status as the CLI.
#include "http/cluster_api.hpp"

#include <sys/stat.h>

#include "cluster/config.hpp"
#include "cluster/health_check.hpp"
#include "cluster/control.hpp"
#include "cluster/secrets.hpp"
#include "cluster/status.hpp"
#include "dashboard/routes.hpp"
#include "dcs/member.hpp"
#include "util/log.hpp"

namespace pgfleet::http {

struct ClusterReader::State {
  cluster::Layout layout;
  std::optional<cluster::ClusterConfig> config;
  int64_t config_mtime_ns = -1;
  std::unique_ptr<dcs::Dcs> dcs;

  const cluster::ClusterConfig& current_config() {
    struct stat st {};
    if (::stat(layout.config_file().c_str(), &st) == 0) {
      int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
      if (mtime != config_mtime_ns || !config) {
        try {
          config = cluster::load_config(layout.config_file());
          config_mtime_ns = mtime;
        } catch (const std::exception& e) {
          if (!config) throw;
          log::warn("http: keeping the previous configuration: {}", e.what());
        }
      }
    }
    if (!config) throw std::runtime_error("cannot read " + layout.config_file());
    if (!dcs) dcs = cluster::open_dcs(layout, *config);
    return *config;
  }

  cluster::ClusterStatus status() {
    const auto& current = current_config();
    // No passwords leave through HTTP: the URIs are built with empty ones and stripped.
    return cluster::collect_status(current, layout, *dcs, cluster::Secrets{});
  }
};

ClusterReader::ClusterReader(cluster::Layout layout) : state_(std::make_unique<State>(State{std::move(layout), {}, -1, {}})) {}
ClusterReader::~ClusterReader() = default;

std::string strip_password(const std::string& uri) {
  size_t scheme = uri.find("://");
  if (scheme == std::string::npos) return uri;
  size_t at = uri.find('@', scheme + 3);
  size_t slash = uri.find('/', scheme + 3);
  if (at == std::string::npos || (slash != std::string::npos && slash < at)) return uri;
  size_t colon = uri.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return uri;
  return uri.substr(0, colon) + uri.substr(at);
}

nlohmann::json ClusterReader::status_json() {
  auto j = cluster::to_json(state_->status());
  auto& c = j["connection"];
  for (const char* key : {"proxy", "primary", "replicas"}) {
    if (c.contains(key) && c[key].is_string()) c[key] = strip_password(c[key].get<std::string>());
  }
  if (c.contains("nodes")) {
    for (auto& [name, uri] : c["nodes"].items()) uri = strip_password(uri.get<std::string>());
  }
  return j;
}

void write_history_metrics(MetricsWriter& out, const nlohmann::json& history) {
  int failovers = 0, switchovers = 0;
  double last_duration = -1, last_time = 0;
  for (const auto& h : history) {
    std::string reason = h.value("reason", "");
    bool switchover = reason.rfind("switchover", 0) == 0;
    (switchover ? switchovers : failovers)++;
    int64_t started = h.value("started_ms", int64_t{0}), promoted = h.value("promoted_ms", int64_t{0});
    last_time = static_cast<double>(h.value("time_ms", int64_t{0})) / 1000.0;
    last_duration = started > 0 && promoted >= started ? static_cast<double>(promoted - started) / 1000.0 : -1;
  }
  out.family("pgfleet_cluster_leader_changes_total", "counter",
             "Changes of the primary recorded in the DCS history, by kind (failover includes manual failovers).");
  out.add("pgfleet_cluster_leader_changes_total", {{"kind", "failover"}}, failovers);
  out.add("pgfleet_cluster_leader_changes_total", {{"kind", "switchover"}}, switchovers);
  out.counter("pgfleet_cluster_failovers_total", "Failovers (automatic and manual, not switchovers) in the history.",
              failovers);
  if (!history.empty()) {
    out.gauge("pgfleet_cluster_last_leader_change_timestamp_seconds",
              "Unix time of the last failover or switchover.", last_time);
    if (last_duration >= 0) {
      out.gauge("pgfleet_cluster_last_leader_change_duration_seconds",
                "Time from losing (or releasing) the old primary to the new one being promoted, for the last change.",
                last_duration);
    }
  }
}

void ClusterReader::write_cluster_metrics(MetricsWriter& out) {
  auto& st = *state_;
  auto status = st.status();
  int primaries = 0;
  out.family("pgfleet_cluster_node_role", "gauge", "1 for the node's current role (primary, replica, unknown).");
  out.family("pgfleet_cluster_node_running", "gauge", "1 when the node's PostgreSQL runs (agent's view).");
  out.family("pgfleet_cluster_node_lag_bytes", "gauge", "Replica's replay distance behind the primary, in bytes.");
  out.family("pgfleet_cluster_node_lag_seconds", "gauge", "Replica's replay delay in seconds.");
  for (const auto& n : status.nodes) {
    bool running = n.state == "running" || n.state == "streaming";
    if (n.name == status.leader && n.role == "primary" && running) ++primaries;
    for (const char* role : {"primary", "replica", "unknown"}) {
      out.add("pgfleet_cluster_node_role", {{"node", n.name}, {"role", role}}, n.role == role ? 1 : 0);
    }
    out.add("pgfleet_cluster_node_running", {{"node", n.name}}, running ? 1 : 0);
    if (n.lag_bytes) out.add("pgfleet_cluster_node_lag_bytes", {{"node", n.name}}, static_cast<double>(*n.lag_bytes));
    if (n.lag_seconds) out.add("pgfleet_cluster_node_lag_seconds", {{"node", n.name}}, *n.lag_seconds);
  }
  out.gauge("pgfleet_cluster_primaries", "Nodes running as the primary that hold the leader key (1 when healthy).",
            primaries);
  out.gauge("pgfleet_cluster_nodes", "Nodes in the configuration.", static_cast<double>(status.nodes.size()));
  out.gauge("pgfleet_cluster_failover_candidates",
            "Replicas that could be promoted now (streaming, not tagged nofailover, within maximum_lag_on_failover "
            "or synchronous).",
            static_cast<double>(cluster::failover_candidates(st.current_config(), status).size()));
  out.gauge("pgfleet_cluster_paused", "1 in maintenance mode (no automatic failover).", status.paused ? 1 : 0);
  nlohmann::json history = nlohmann::json::array();
  if (auto h = st.dcs->list(dcs::keys::kHistoryPrefix); h) {
    for (const auto& kv : *h) {
      try {
        history.push_back(nlohmann::json::parse(kv.value));
      } catch (const nlohmann::json::exception&) {
      }
    }
  }
  write_history_metrics(out, history);
}

const cluster::Layout& ClusterReader::layout() const { return state_->layout; }

// The web dashboard's page for every browser asking for /.
std::optional<Response> browser_root(const Request&, ClusterReader&) { return dashboard::page(); }

void add_cluster_routes(Router& router, std::shared_ptr<ClusterReader> reader) {
  // GET /api/cluster (the status JSON plus events and load history), /display and the dashboard script.
  dashboard::add_routes(router, std::move(reader));
}

}  // namespace pgfleet::http
