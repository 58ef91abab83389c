// The cluster-wide routes every pgfleet HTTP server carries (agents and the proxy's HTTP port):
// GET /api/cluster = `pgfleet status --json` without passwords. The dashboard adds its pages here.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cluster/layout.hpp"
#include "http/metrics.hpp"
#include "http/response.hpp"

namespace pgfleet::http {

// Reads the cluster's state for the HTTP thread that owns it (its own DCS handle; pgfleet.yaml
// re-read when it changed, so `pgfleet scale` shows up). Not thread-safe: one per server.
class ClusterReader {
 public:
  explicit ClusterReader(cluster::Layout layout);
  ~ClusterReader();
  // The status JSON with connection strings stripped of passwords.
  nlohmann::json status_json();
  // Cluster-level metrics (per node role, lag, failovers) derived from the DCS.
  void write_cluster_metrics(MetricsWriter& out);
  [[nodiscard]] const cluster::Layout& layout() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Registers GET /api/cluster on `router`; `reader` must outlive the router's server. Every
// pgfleet HTTP server (agents, the proxy's HTTP port) calls it: cluster pages go here.
void add_cluster_routes(Router& router, std::shared_ptr<ClusterReader> reader);

// GET / from a browser (Accept: text/html): the page to show, or nullopt to answer as the server
// would otherwise (an agent: the /primary check; the proxy's port: 404). Extension point for the
// web dashboard; nullopt until it exists.
std::optional<Response> browser_root(const Request& request, ClusterReader& reader);

// "postgresql://user:secret@host/db" → "postgresql://user@host/db".
std::string strip_password(const std::string& uri);

// Cluster-level figures from the history: failovers/switchovers counted and the last one's
// duration (history entries carry started_ms/promoted_ms when the agents recorded them).
void write_history_metrics(MetricsWriter& out, const nlohmann::json& history_entries);

}  // namespace pgfleet::http
