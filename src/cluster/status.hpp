// ClusterStatus: the state of every node, merged from the DCS, the agents and the data directories.
// Its JSON form is the stable interface documented in docs/status-json.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster/config.hpp"
#include "cluster/permanent_slots.hpp"
#include "cluster/layout.hpp"
#include "cluster/secrets.hpp"
#include "dcs/dcs.hpp"
#include "dcs/member.hpp"

namespace pgfleet::cluster {

struct NodeStatus {
  std::string name;
  std::string role;   // primary | replica | unknown
  std::string state;  // starting | running | streaming | crashed | stopping | stopped | unsupervised
  std::string host;
  int port = 0;
  int api_port = 0;
  std::string api_url;       // the agent's HTTP API (health checks, /metrics)
  int timeline = 0;
  std::string lsn;           // primary: current WAL position; replica: replayed position
  std::string received_lsn;  // replica only
  std::string replayed_lsn;  // replica only
  std::optional<int64_t> lag_bytes;  // replica: primary's LSN minus replayed LSN
  std::optional<double> lag_seconds;
  std::string sync_state;    // replica: async | sync | quorum | potential; "" when not streaming
  std::string upstream;
  int64_t pid = 0;           // postmaster
  int64_t agent_pid = 0;
  int64_t uptime_seconds = 0;
  int restarts = 0;
  int64_t rebuilt_at_ms = 0;  // unix ms of the agent's last rebuild of the node (0: none since it started)
  std::string last_error;
  bool stepped_down = false;  // it gave the leadership up recently (primary_start_timeout); elections take it last
  bool nofailover = false;    // tagged: never promoted
  bool noloadbalance = false; // tagged: the proxy sends it no reads
  std::vector<std::string> pending_restart;  // changed parameters that wait for `pgfleet restart`
  std::optional<dcs::NodeStats> stats;  // the agent's load figures (TPS, connections, host)
  std::map<std::string, std::string> slots;  // its copies of the permanent slots: name -> LSN
};

struct ConnectionStrings {
  std::string proxy;                      // through the pgfleet proxy's rw-split port ("" when it is disabled)
  std::string proxy_primary;              // the proxy's primary-only port ("" when it is disabled)
  std::string proxy_replicas;             // the proxy's replicas-only port ("" when it is disabled)
  std::string proxy_socket;               // the rw-split port through the proxy's Unix socket ("" when none)
  std::string primary;                    // every node, target_session_attrs=read-write
  std::string replicas;                   // every replica, target_session_attrs=standby ("" if none)
  std::map<std::string, std::string> nodes;
};

struct ProxyStatus {
  bool enabled = false;
  std::string state;  // running | stopped
  std::string host;
  int port = 0;
  int64_t pid = 0;
  std::string socket_dir;  // its Unix sockets (.s.PGSQL.<port>); "" when none
};

struct HistoryEntry {
  std::string time;  // ISO 8601, UTC
  int64_t time_ms = 0;
  std::string from, to, reason, lsn;
  int64_t duration_ms = -1;  // old primary lost (or released) -> new one promoted; -1 = not recorded
};

struct ClusterStatus {
  std::string cluster;
  std::string directory;
  std::string leader;
  SyncMode sync = SyncMode::Off;
  std::vector<NodeStatus> nodes;
  ProxyStatus proxy;
  ConnectionStrings connection;
  bool paused = false;                 // maintenance mode: no automatic failover
  bool failsafe_mode = false;          // `pgfleet failsafe on`: the primary survives a DCS outage its members confirm
  PgParameters parameters;             // cluster-wide PostgreSQL parameters (`pgfleet config set`)
  SlotSpecs slots;                     // permanent replication slots (`pgfleet slot add`), without removed ones
  std::string synchronous;             // the leader's published sync constraints (DCS `sync` key, JSON), "" = none
  std::vector<HistoryEntry> history;   // failovers and switchovers, oldest first
  std::string dashboard_url;           // the proxy's HTTP port, or the first node's API without a proxy
  std::string metrics_url;             // cluster-level Prometheus metrics (plus the proxy's)
  int backups = 0;                     // base backups in backups/ (`pgfleet backup`)
  std::string newest_backup;           // its id, "" = none
  int64_t newest_backup_ms = 0;        // when it finished (unix ms)

  [[nodiscard]] const NodeStatus* find(const std::string& name) const;
};

ClusterStatus collect_status(const ClusterConfig& config, const Layout& layout, dcs::Dcs& dcs,
                             const Secrets& secrets);
nlohmann::json to_json(const ClusterStatus& status);
std::string render_table(const ClusterStatus& status);

// postgresql:// URI for the superuser to the given host:port list.
std::string connection_uri(const ClusterConfig& config, const Secrets& secrets,
                           const std::vector<std::pair<std::string, int>>& hosts,
                           const std::string& target_session_attrs);

}  // namespace pgfleet::cluster
