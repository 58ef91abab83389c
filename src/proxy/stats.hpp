// Counters and the per-worker snapshot the admin console reads (published once a second).
#pragma once

#include <array>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

namespace pgfleet::proxy {

// Per pool, updated only by the owning worker's thread.
struct PoolStats {
  uint64_t transactions = 0;
  uint64_t queries = 0;
  uint64_t bytes_received = 0;  // from clients
  uint64_t bytes_sent = 0;      // to clients
  uint64_t wait_us_total = 0;   // time clients waited for a server
  uint64_t waits = 0;
  uint64_t query_us_total = 0;  // time from a client's first message to ReadyForQuery
  uint64_t errors = 0;
  // Log-scale histogram of query time in microseconds: bucket i counts values < 2^(i+4) us.
  uint64_t query_hist[24] = {};
  void add_query_time(uint64_t us) {
    query_us_total += us;
    size_t i = 0;
    while (i + 1 < std::size(query_hist) && us >= (uint64_t{16} << i)) ++i;
    ++query_hist[i];
  }
  [[nodiscard]] uint64_t query_p99_us() const {
    uint64_t total = 0;
    for (auto c : query_hist) total += c;
    uint64_t seen = 0;
    for (size_t i = 0; i < std::size(query_hist); ++i) {
      seen += query_hist[i];
      if (total && seen * 100 >= total * 99) return uint64_t{16} << i;
    }
    return 0;
  }
};

struct PoolRow {
  std::string database, user, mode;
  int clients_active = 0, clients_waiting = 0, clients_idle = 0;
  int servers_active = 0, servers_idle = 0, servers_connecting = 0;
  int64_t max_wait_us = 0;
  PoolStats stats;
};

struct ClientRow {
  int32_t pid;
  std::string user, database, state, address, application_name, server;
  int64_t connected_seconds;
};

struct ServerRow {
  uint64_t id;
  std::string user, database, state, backend;
  int32_t backend_pid;
  int64_t connected_seconds;
  int prepared;
};

struct WorkerSnapshot {
  int worker = 0;
  std::array<uint64_t, 16> route_counts{};     // by RouteReason
  std::array<uint64_t, 64> node_statements{};  // by node index
  std::vector<PoolRow> pools;
  std::vector<ClientRow> clients;  // at most kSnapshotRows
  std::vector<ServerRow> servers;
  static constexpr size_t kSnapshotRows = 2000;
};

}  // namespace pgfleet::proxy
