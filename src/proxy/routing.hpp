// Routing policy of the proxy's listeners, as pure functions: where a statement goes given its
// classification and the session's state, and which replica takes a read. No I/O, no clocks:
// the worker feeds in the health it read, so the rules are unit-tested on their own.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "sql/classifier.hpp"

namespace pgfleet::proxy {

// The three kinds of listening port.
enum class ListenerKind : uint8_t {
  kRwSplit,   // statement routing: reads to replicas, the rest to the primary
  kPrimary,   // everything to the current primary
  kReplicas,  // only replicas (the primary only if replicas_fallback_to_primary)
};
const char* to_string(ListenerKind kind);

// Why a statement went where it went (counted per worker, shown by SHOW ROUTING / SHOW NODES).
enum class RouteReason : uint8_t {
  kRead,                 // autocommit read, balanced over replicas
  kReadOnlyTransaction,  // BEGIN READ ONLY (or default_transaction_read_only) on a replica
  kWrite,                // the classifier sends it to the primary (write, DDL, parse error, ...)
  kFunction,             // it calls a function not known to be read-only (or a writing one)
  kTransaction,          // a read-write transaction begins: the primary for its whole life
  kHint,                 // /* pgfleet:primary */ or /* pgfleet:replica */
  kRule,                 // a routing rule (application_name, user, database)
  kSession,              // the session is pinned to the primary (temp tables, session pool mode)
  kLag,                  // a read, but every healthy replica is too far behind
  kNoReplica,            // a read, but no replica is healthy
  kCausal,               // a read, but no replica has replayed this client's last write yet
  kPrimaryPort,          // the primary listener
  kReplicasPort,         // the replicas listener
  kCount,
};
const char* to_string(RouteReason reason);
// True for the reasons that send a statement to a replica (SHOW ROUTING, metrics).
inline bool routes_to_replica(RouteReason reason) {
  return reason == RouteReason::kRead || reason == RouteReason::kReadOnlyTransaction ||
         reason == RouteReason::kReplicasPort;
}
inline constexpr size_t kRouteReasons = static_cast<size_t>(RouteReason::kCount);

// Per-client state that outlives transactions.
struct SessionRouting {
  bool pinned_to_primary = false;  // created temp objects (they exist only there)
  bool default_read_only = false;  // SET default_transaction_read_only = on
  // A routing rule matched the client at login: nullopt = none, else its route.
  std::optional<sql::Route> rule;
};

struct StatementRoute {
  bool primary = true;
  RouteReason reason = RouteReason::kWrite;
  // It may change data (causal reads then wait for it); false for SET/RESET and for statements
  // only parsed, not executed.
  bool may_write = true;
};

// Where a statement that starts a transaction (or runs in autocommit) goes on the rw-split port,
// before replica health is considered. Updates `session` (temp objects pin it to the primary).
// `text` is the statement text (to tell BEGIN READ WRITE from BEGIN).
StatementRoute route_statement(const sql::Classification& c, SessionRouting& session, std::string_view text);

// Same for a batch of several statements (an extended-protocol batch up to Sync): the primary as
// soon as one of them needs it; the first such statement's reason.
StatementRoute combine(StatementRoute a, StatementRoute b);

// ---- balancing ----

inline constexpr size_t kMaxNodes = 64;

struct Candidate {
  int node = -1;          // node index (Backend::index)
  int weight = 1;         // 0 = never
  bool healthy = false;   // reachable, in recovery, recently polled
  int64_t lag_bytes = 0;
  int64_t lag_ms = 0;
  uint64_t replay_lsn = 0;
  int outstanding = 0;    // this worker's requests in flight on the node
};

struct BalanceLimits {
  int64_t max_lag_bytes = 0;  // 0 = no limit
  int64_t max_lag_ms = 0;     // 0 = no limit
  int primary_weight = 0;     // the primary takes this share of reads (0 = only when no replica)
};

// Smooth weighted round-robin state, one per worker (indexed by node).
struct BalancerState {
  std::array<int64_t, kMaxNodes> current{};
};

struct Choice {
  int node = -1;  // -1: the primary
  RouteReason reason = RouteReason::kRead;
};

// Picks the node for a read among `replicas` (and the primary when primary_weight > 0, as
// `primary`): eligible replicas are healthy, weighted, within the lag limits and have replayed
// `causal_lsn` (0 = no requirement). Weighted round-robin whose effective weights shrink with
// the requests in flight, so idle clients spread by weight and busy nodes get fewer. With no
// eligible replica: node -1 and why (kNoReplica, kLag or kCausal).
Choice choose_replica(std::span<const Candidate> replicas, const Candidate& primary, const BalanceLimits& limits,
                      uint64_t causal_lsn, BalancerState& state);

// ---- a lost connection to the primary ----

// What the proxy knows some time after a client's connection to the primary `node` died.
struct LostPrimaryView {
  std::string_view node;     // the primary whose connection died
  std::string_view primary;  // the topology's primary now ("" = none: the leader key is gone)
  bool polls_failed = false;  // a health poll of `node` failed since the loss
  bool polled_after = false;  // polls of `node` that began after the loss succeeded
  bool in_recovery = false;   // ...and found it in recovery
  int64_t waited_ms = 0;      // since the loss
};

enum class LostPrimaryCause : uint8_t {
  kWait,            // not known yet: look again shortly
  kMovedTo,         // another node is the primary now (LostPrimaryView::primary)
  kGone,            // no primary known, or `node` cannot be reached (failover or restart)
  kDemoted,         // `node` answers as a replica (switchover or failover)
  kConnectionOnly,  // `node` still serves as the primary (or nothing was learned in time)
};

inline constexpr int64_t kLostPrimaryDownMs = 500;    // unreachable this long: say it went away
inline constexpr int64_t kLostPrimaryMaxWaitMs = 1500;  // the client waits for the cause at most this

// Why a client's connection to the primary died, as far as it is known yet.
LostPrimaryCause lost_primary_cause(const LostPrimaryView& v);

}  // namespace pgfleet::proxy
