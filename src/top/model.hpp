// What `pgfleet top` shows: one snapshot of the cluster, the viewer's choices, and the pure
// functions that turn them into screen lines (no terminal I/O here, so they are unit-tested).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pgfleet::top {

struct NodeRow {
  std::string name;
  std::string role;   // primary | replica | unknown
  std::string state;  // as in `pgfleet status`
  std::string upstream;
  std::string sync_state;
  std::optional<int64_t> lag_bytes;
  std::optional<double> lag_seconds;
  std::optional<double> tps;         // commits + rollbacks per second, all databases
  std::optional<int64_t> connections;  // client backends
  std::optional<double> cpu_percent;
  std::optional<double> memory_percent;
  std::optional<double> disk_percent;  // of the file system holding the data directory
  std::optional<double> temperature_c;
};

struct PoolRow {
  std::string database, user, mode;
  int64_t cl_active = 0, cl_waiting = 0, sv_active = 0, sv_idle = 0;
};

struct Event {
  int64_t time_ms = 0;  // unix ms
  std::string kind;     // failover | switchover | down | up | role | leader | scale | backup
  std::string text;
};

struct Snapshot {
  std::string cluster;
  std::string leader;
  bool paused = false;
  int backups = 0;               // pgfleet backup (docs/backup.md)
  std::string newest_backup;     // its id
  int64_t newest_backup_ms = 0;  // when it finished, unix ms
  std::vector<NodeRow> nodes;
  bool proxy_enabled = false;
  std::string proxy_state;   // running | stopped | unreachable: <why>
  std::vector<PoolRow> pools;
  std::map<std::string, int64_t> servers_per_node;  // proxy server connections by backend node
  std::vector<Event> events;  // oldest first
  int64_t taken_ms = 0;
};

enum class View { Overview, Pools, Events };
enum class SortKey { Name, Role, Lag, Tps, Connections };

struct ViewState {
  View view = View::Overview;
  SortKey sort = SortKey::Name;
  bool descending = false;
};

const char* to_string(View v);
const char* to_string(SortKey k);

// Applies one key press: Tab / 1-3 switch views, s cycles the sort column, r reverses it.
// Returns false when the key means quit (q, Q, Ctrl-C).
bool handle_key(ViewState& state, int key);

// Nodes in display order for `state`.
std::vector<NodeRow> sorted_nodes(const std::vector<NodeRow>& nodes, const ViewState& state);

// The whole screen as `height` lines at most (the last is the key footer), each at most `width`
// visible columns. With `color`, ANSI SGR codes mark roles and health.
std::vector<std::string> render(const Snapshot& snapshot, const ViewState& state, int width, int height, bool color);

}  // namespace pgfleet::top
