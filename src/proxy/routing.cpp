// Routing policy: statement → primary or replica, and the replica choice.
#include "proxy/routing.hpp"

#include <algorithm>
#include <cctype>

namespace pgfleet::proxy {

const char* to_string(ListenerKind kind) {
  switch (kind) {
    case ListenerKind::kRwSplit: return "rw-split";
    case ListenerKind::kPrimary: return "primary";
    case ListenerKind::kReplicas: return "replicas";
  }
  return "?";
}

const char* to_string(RouteReason reason) {
  switch (reason) {
    case RouteReason::kRead: return "read";
    case RouteReason::kReadOnlyTransaction: return "read_only_transaction";
    case RouteReason::kWrite: return "write";
    case RouteReason::kFunction: return "function";
    case RouteReason::kTransaction: return "transaction";
    case RouteReason::kHint: return "hint";
    case RouteReason::kRule: return "rule";
    case RouteReason::kSession: return "session";
    case RouteReason::kLag: return "lag";
    case RouteReason::kNoReplica: return "no_replica";
    case RouteReason::kCausal: return "causal";
    case RouteReason::kPrimaryPort: return "primary_port";
    case RouteReason::kReplicasPort: return "replicas_port";
    case RouteReason::kCount: break;
  }
  return "?";
}

namespace {

bool mentions_read_write(std::string_view text) {
  // "READ WRITE" in any case and spacing; only consulted for BEGIN under default_transaction_read_only.
  std::string flat;
  flat.reserve(text.size());
  for (char ch : text) {
    if (std::isspace(static_cast<unsigned char>(ch))) {
      if (!flat.empty() && flat.back() != ' ') flat += ' ';
    } else {
      flat += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
  }
  return flat.find("read write") != std::string::npos;
}

bool function_reason(const std::string& reason) { return reason.rfind("calls ", 0) == 0; }

}  // namespace

StatementRoute route_statement(const sql::Classification& c, SessionRouting& session, std::string_view text) {
  if (c.uses_temp_objects) session.pinned_to_primary = true;
  if (c.hint == sql::Route::Primary) return {true, RouteReason::kHint};
  if (session.pinned_to_primary) return {true, RouteReason::kSession};
  // A replica hint is honoured for reads and for functions the classifier does not know (the user
  // knows them); never for a statement that writes or calls a known writer.
  if (c.hint == sql::Route::Replica &&
      (c.route == sql::Route::Replica || c.reason.rfind("calls function ", 0) == 0)) {
    return {false, RouteReason::kHint};
  }
  if (session.rule == sql::Route::Primary) return {true, RouteReason::kRule};
  if (c.begins_transaction) {
    if (c.route == sql::Route::Replica && c.read_only_transaction) return {false, RouteReason::kReadOnlyTransaction};
    // A plain BEGIN under default_transaction_read_only = on starts a read-only transaction.
    bool unsaid = c.reason == "BEGIN (read-write)" || c.reason == "START TRANSACTION (read-write)";
    if (unsaid && session.default_read_only && !mentions_read_write(text)) {
      return {false, RouteReason::kReadOnlyTransaction};
    }
    return {true, function_reason(c.reason) ? RouteReason::kFunction : RouteReason::kTransaction};
  }
  if (c.route == sql::Route::Primary) {
    // SET/RESET are replayed on every server the session uses; they change no data.
    bool session_only = c.sets_session_state && (c.reason == "SET" || c.reason == "RESET");
    return {true, function_reason(c.reason) ? RouteReason::kFunction : RouteReason::kWrite, !session_only};
  }
  if (session.rule == sql::Route::Replica) return {false, RouteReason::kRule};
  return {false, RouteReason::kRead};
}

StatementRoute combine(StatementRoute a, StatementRoute b) {
  if (a.primary) {
    a.may_write = a.may_write || (b.primary && b.may_write);
    return a;
  }
  if (b.primary) return b;
  // Both replicas: a read-only transaction beginning anywhere in the batch is what matters.
  return b.reason == RouteReason::kReadOnlyTransaction ? b : a;
}

Choice choose_replica(std::span<const Candidate> replicas, const Candidate& primary, const BalanceLimits& limits,
                      uint64_t causal_lsn, BalancerState& state) {
  // Effective weight: the configured weight scaled down by the requests in flight.
  auto effective = [](const Candidate& c) { return int64_t{c.weight} * 1024 / (c.outstanding + 1); };
  bool any_healthy = false, any_fresh = false;
  int64_t total = 0;
  const Candidate* best = nullptr;
  auto consider = [&](const Candidate& c) {
    if (c.node < 0 || static_cast<size_t>(c.node) >= kMaxNodes) return;
    int64_t w = std::max<int64_t>(1, effective(c));
    state.current[static_cast<size_t>(c.node)] += w;
    total += w;
    if (best == nullptr || state.current[static_cast<size_t>(c.node)] > state.current[static_cast<size_t>(best->node)]) {
      best = &c;
    }
  };
  for (const auto& r : replicas) {
    if (!r.healthy || r.weight <= 0) continue;
    any_healthy = true;
    if ((limits.max_lag_bytes > 0 && r.lag_bytes > limits.max_lag_bytes) ||
        (limits.max_lag_ms > 0 && r.lag_ms > limits.max_lag_ms)) {
      continue;
    }
    any_fresh = true;
    if (r.replay_lsn < causal_lsn) continue;
    consider(r);
  }
  if (best == nullptr) {
    return {-1, !any_healthy ? RouteReason::kNoReplica : !any_fresh ? RouteReason::kLag : RouteReason::kCausal};
  }
  if (limits.primary_weight > 0) {
    Candidate p = primary;
    p.weight = limits.primary_weight;
    consider(p);
    if (best == &p) {
      state.current[static_cast<size_t>(p.node)] -= total;
      return {-1, RouteReason::kRead};
    }
  }
  state.current[static_cast<size_t>(best->node)] -= total;
  return {best->node, RouteReason::kRead};
}

LostPrimaryCause lost_primary_cause(const LostPrimaryView& v) {
  if (!v.primary.empty() && v.primary != v.node) return LostPrimaryCause::kMovedTo;
  if (v.primary.empty()) return LostPrimaryCause::kGone;
  if (v.polled_after && !v.polls_failed) return v.in_recovery ? LostPrimaryCause::kDemoted : LostPrimaryCause::kConnectionOnly;
  // Down for a moment and no new leader yet: say so rather than keep the client waiting.
  if (v.polls_failed && v.waited_ms >= kLostPrimaryDownMs) return LostPrimaryCause::kGone;
  return v.waited_ms < kLostPrimaryMaxWaitMs ? LostPrimaryCause::kWait : LostPrimaryCause::kConnectionOnly;
}

}  // namespace pgfleet::proxy
