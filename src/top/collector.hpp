// Collector: builds a top::Snapshot once a second from the cluster status (DCS + agents), each
// node's own statistics over libpq, and the proxy's admin console. Single-threaded; keeps its
// connections open between refreshes and remembers the previous snapshot to derive events.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "cluster/control.hpp"
#include "postgres/pgconn.hpp"
#include "top/model.hpp"

namespace pgfleet::top {

class Collector {
 public:
  explicit Collector(const cluster::Cluster& cluster) : cluster_(cluster) {}
  Snapshot collect();

 private:
  struct XactSample {
    int64_t xacts = 0;
    std::chrono::steady_clock::time_point at;
  };
  void node_stats(NodeRow& row, const cluster::NodeStatus& status);
  void proxy_stats(Snapshot& snap);
  void derive_events(const Snapshot& snap);

  const cluster::Cluster& cluster_;
  std::map<std::string, std::optional<postgres::PgConn>> nodes_;
  std::map<std::string, XactSample> last_xacts_;
  std::optional<postgres::PgConn> admin_;
  std::optional<Snapshot> previous_;
  std::vector<Event> observed_;  // state changes seen while running, oldest first
};

// The kind of a DCS history entry from its reason text ("switchover from ..." or a failover).
std::string history_kind(const std::string& reason);

// Events that differ between two consecutive snapshots (leader moved, node down/up, node
// added/removed), stamped with `after.taken_ms`.
std::vector<Event> diff_events(const Snapshot& before, const Snapshot& after);

}  // namespace pgfleet::top
