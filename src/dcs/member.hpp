// Member: what an agent publishes about its node under members/<name>, and the DCS key layout.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dcs/dcs.hpp"

namespace pgfleet::dcs {

namespace keys {
inline constexpr const char* kLeader = "leader";        // value: name of the node holding the lease
inline constexpr const char* kMembersPrefix = "members/";
inline std::string member(const std::string& name) { return std::string(kMembersPrefix) + name; }
inline constexpr const char* kSync = "sync";              // the leader's synchronous-commit constraints (JSON)
inline constexpr const char* kPause = "pause";            // present: maintenance mode, no automatic failover
inline constexpr const char* kFailsafe = "failsafe";      // present: failsafe mode (primary survives a DCS outage)
inline constexpr const char* kSwitchover = "switchover";  // {"from", "to", "not_before_ms", "requested_ms"}: a planned switchover
inline constexpr const char* kFailover = "failover";      // {"to"}: a manual failover
inline constexpr const char* kHistoryPrefix = "history/"; // one key per failover or switchover
inline constexpr const char* kRemovedPrefix = "removed/"; // removed/<node>: forgotten by the agents (`pgfleet remove-node`)
inline constexpr const char* kParameters = "parameters";  // {"name": "value"}: cluster-wide PostgreSQL parameters (`pgfleet config set`)
inline constexpr const char* kSlots = "slots";            // {"name": {"type", ...}}: permanent replication slots (`pgfleet slot`)
inline constexpr const char* kRestartPrefix = "restart/"; // restart/<node>: restart its PostgreSQL (`pgfleet restart --dcs`)
inline std::string restart(const std::string& name) { return std::string(kRestartPrefix) + name; }
inline constexpr const char* kReinitPrefix = "reinit/";   // reinit/<node>: rebuild that replica (`pgfleet reinit --dcs`)
inline std::string reinit(const std::string& name) { return std::string(kReinitPrefix) + name; }
// present (with a TTL, renewed while needed): the proxies following etcd hold new transactions,
// as PAUSE does, while a planned switchover or restart moves the primary. {"reason", "requested_ms"}
inline constexpr const char* kProxyPause = "proxy_pause";
}  // namespace keys

// The cluster's keys as one read of the whole namespace (Dcs::list("")) sorts them out; the
// pointers point into that read, which must outlive this.
struct ClusterKeys {
  explicit ClusterKeys(const std::vector<KeyValue>& all);
  std::vector<KeyValue> members;     // members/*
  std::vector<KeyValue> history;     // history/*, oldest first
  std::vector<std::string> removed;  // node names under removed/
  std::vector<KeyValue> restarts;    // restart/*: restarts asked for from another machine
  std::vector<KeyValue> reinits;     // reinit/*: rebuilds asked for from another machine
  const KeyValue* leader = nullptr;
  const KeyValue* sync = nullptr;
  const KeyValue* pause = nullptr;
  const KeyValue* failsafe = nullptr;
  const KeyValue* switchover = nullptr;
  const KeyValue* failover = nullptr;
  const KeyValue* parameters = nullptr;
  const KeyValue* slots = nullptr;
};

// One row of the primary's (or a cascading upstream's) pg_stat_replication.
struct ReplicationPeer {
  std::string application_name;
  std::string state;       // streaming, catchup, backup, ...
  std::string sync_state;  // async, sync, quorum, potential
  std::string replay_lsn;
  double replay_lag_seconds = 0;
};

// Load figures an agent samples each loop for the dashboards; null when unknown.
struct NodeStats {
  std::optional<double> tps;              // commits + rollbacks per second, all databases
  std::optional<int64_t> connections;     // client backends
  std::optional<double> cpu_percent;      // host CPU busy since the previous sample
  std::optional<double> memory_percent;   // host memory in use (total - available)
  std::optional<double> disk_used_percent;  // file system of the data directory
  std::optional<int64_t> disk_free_bytes;
  std::optional<double> temperature_celsius;  // hottest thermal zone, when the host has one
  std::optional<double> load1;
};
nlohmann::json to_json(const NodeStats& stats);
NodeStats node_stats_from_json(const nlohmann::json& j);

struct Member {
  std::string name;
  std::string role = "unknown";  // primary | replica | unknown
  std::string state = "starting";  // starting | running | streaming | crashed | stopping | stopped
  std::string host;
  int port = 0;
  int api_port = 0;
  int64_t postmaster_pid = 0;
  int64_t agent_pid = 0;
  int64_t postmaster_start = 0;  // unix seconds
  int timeline = 0;
  std::string current_lsn;       // primary: pg_current_wal_lsn()
  std::string received_lsn;      // replica: pg_last_wal_receive_lsn()
  std::string replayed_lsn;      // replica: pg_last_wal_replay_lsn()
  double replay_delay_seconds = 0;  // replica: now - last replayed commit, when behind (probe: -1
                                    // when behind with no commit replayed since start; see agent)
  std::string upstream;          // node streamed from ("" for the primary)
  bool wal_receiver_streaming = false;
  int restarts = 0;              // postmaster restarts after crashes, by this agent
  int64_t rebuilt_at_ms = 0;     // unix ms when this agent last finished rebuilding the node (reinit)
  std::string last_error;
  int64_t updated_at_ms = 0;     // unix ms of publication
  int64_t updated_mono_ms = 0;   // CLOCK_MONOTONIC ms of publication (comparable on one host)
  std::string sync_standby_names;  // primary: synchronous_standby_names in force
  std::string failsafe_for;      // failsafe mode: the primary this node confirmed to within a TTL
  bool stepped_down = false;     // it gave the leadership up recently (primary_start_timeout): elections take it last
  // Just promoted, its checkpoint after the promotion not done yet: clients may use it, but
  // pg_rewind from it would find the old timeline in its pg_control (Patroni's checkpoint_after_promote).
  bool checkpoint_pending = false;
  bool nofailover = false;       // its node's tag: never promoted
  bool noloadbalance = false;    // its node's tag: proxies send it no reads
  std::vector<std::string> pending_restart;  // parameters changed in the files that wait for a restart
  int64_t parameters_revision = 0;  // mod_revision of the DCS key `parameters` its files have (0 = none)
  // Its copies of the permanent replication slots (`pgfleet slot`): name -> LSN (logical:
  // confirmed_flush_lsn, physical: restart_lsn). The primary's are what the replicas follow.
  std::map<std::string, std::string> slots;
  std::vector<ReplicationPeer> replication;  // who streams from this node
  NodeStats stats;
};

nlohmann::json to_json(const Member& member);
// Tolerant: missing fields keep their defaults (members written by older versions).
Member member_from_json(const nlohmann::json& j);

// Every member key that parses (an unreadable DCS gives none), in key order.
std::vector<Member> read_members(Dcs& dcs);

// PostgreSQL is up on the member (as a primary or a replica).
bool is_running(const Member& m);

// Reads the members every 200 ms until `done` holds for each, or `timeout` passes; the last read.
std::vector<Member> wait_for_members(Dcs& dcs, std::chrono::seconds timeout, const std::function<bool(const Member&)>& done);

}  // namespace pgfleet::dcs
