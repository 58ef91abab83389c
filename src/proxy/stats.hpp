// Counters and the per-worker snapshot the admin console reads (published once a second).
#pragma once

#include <array>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

namespace pgfleet::proxy {

// Log-scale latency buckets in microseconds: bucket i counts values < 2^(i+4) us (16 us .. 67 s);
// the last one is open-ended.
inline constexpr size_t kLatencyBuckets = 24;
inline size_t latency_bucket(uint64_t us) {
  size_t i = 0;
  while (i + 1 < kLatencyBuckets && us >= (uint64_t{16} << i)) ++i;
  return i;
}
inline uint64_t latency_bucket_upper_us(size_t i) { return uint64_t{16} << i; }

// The errors the proxy itself sends clients, by what a person would look for in a dashboard.
enum class ErrorKind : uint8_t {
  kAuth,            // wrong password, unknown user, TLS required, not an admin
  kWaitTimeout,     // no server connection within query_wait_timeout_ms
  kTooManyClients,  // max_client_conn
  kProtocol,        // malformed or unsupported messages
  kServerLost,      // the server connection died (failover, crash, network)
  kNoReplica,       // the replicas port had no replica to offer
  kTerminated,      // shutdown, KILL, idle timeout
  kSlowSubscriber,  // a LISTEN client cut off for not reading its notifications
  kOther,
  kCount,
};
inline constexpr size_t kErrorKinds = static_cast<size_t>(ErrorKind::kCount);
const char* to_string(ErrorKind kind);
// The kind of an error the proxy sends, from its SQLSTATE (and message, where one SQLSTATE covers two kinds).
ErrorKind classify_error(std::string_view sqlstate, std::string_view message);

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
  uint64_t query_hist[kLatencyBuckets] = {};  // query times, by latency_bucket()
  uint64_t wait_hist[kLatencyBuckets] = {};   // waits for a server connection, likewise
  // Sums another pool's counters (or another thread's share of the same pool) into these.
  void add(const PoolStats& o) {
    transactions += o.transactions;
    queries += o.queries;
    bytes_received += o.bytes_received;
    bytes_sent += o.bytes_sent;
    wait_us_total += o.wait_us_total;
    waits += o.waits;
    query_us_total += o.query_us_total;
    errors += o.errors;
    for (size_t i = 0; i < kLatencyBuckets; ++i) {
      query_hist[i] += o.query_hist[i];
      wait_hist[i] += o.wait_hist[i];
    }
  }
  void add_query_time(uint64_t us) {
    query_us_total += us;
    ++query_hist[latency_bucket(us)];
  }
  void add_wait_time(uint64_t us) {
    wait_us_total += us;
    ++waits;
    ++wait_hist[latency_bucket(us)];
  }
  [[nodiscard]] uint64_t query_p99_us() const { return p99_us(query_hist); }
  [[nodiscard]] uint64_t wait_p99_us() const { return p99_us(wait_hist); }
  // The upper bound of the bucket holding the 99th percentile (0 when nothing was counted).
  static uint64_t p99_us(const uint64_t (&hist)[kLatencyBuckets]) {
    uint64_t total = 0;
    for (auto c : hist) total += c;
    uint64_t seen = 0;
    for (size_t i = 0; i < kLatencyBuckets; ++i) {
      seen += hist[i];
      if (total && seen * 100 >= total * 99) return latency_bucket_upper_us(i);
    }
    return 0;
  }
};

struct PoolRow {
  std::string database, user, mode;
  // Clients linked to a server connection, queued for one, and logged in without one.
  int clients_active = 0, clients_waiting = 0, clients_idle = 0;
  int servers_active = 0, servers_idle = 0, servers_connecting = 0;
  // Cancel requests forwarded and not yet taken by the server, and the server connections kept
  // from every client until then (PgBouncer's cl_active_cancel_req and sv_being_canceled).
  int cancels_in_flight = 0, servers_being_canceled = 0;
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
  std::array<uint64_t, kErrorKinds> errors{};   // errors the proxy sent, by ErrorKind
  std::vector<PoolRow> pools;
  int clients_login = 0;           // clients still logging in (in no pool yet)
  std::vector<ClientRow> clients;  // at most kSnapshotRows
  std::vector<ServerRow> servers;
  static constexpr size_t kSnapshotRows = 2000;
};

}  // namespace pgfleet::proxy
