// NodeMetrics: one node's Prometheus metrics — the agent's view (role, LSNs, lag, sync), the
// server's statistics (transactions, connections, sizes, WAL, checkpoints, slots) and the host's.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "cluster/config.hpp"
#include "cluster/layout.hpp"
#include "http/health.hpp"
#include "http/metrics.hpp"
#include "postgres/pgconn.hpp"

namespace pgfleet::http {

// Owns its own connection to the local server (the HA loop's is never shared). Server thread only.
class NodeMetrics {
 public:
  NodeMetrics(cluster::Layout layout, cluster::ClusterConfig config, std::string node);
  void write(MetricsWriter& out, const NodeFacts& facts);
  // server_version_num of the local server (asked once when unknown), 0 when it cannot be reached.
  int server_version();

 private:
  bool connect();
  void write_postgres(MetricsWriter& out);
  void write_host(MetricsWriter& out);
  void write_backups(MetricsWriter& out);

  cluster::Layout layout_;
  cluster::ClusterConfig config_;
  std::string node_;
  std::optional<postgres::PgConn> conn_;
  int server_version_ = 0;
  std::map<std::string, double> last_cpu_;
};

}  // namespace pgfleet::http
