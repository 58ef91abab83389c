// Patroni-compatible health checks (/primary, /replica?lag=, /sync, ...): pure functions from a
// node's facts to an HTTP status, so HAProxy `option httpchk` configs written for Patroni work.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "dcs/member.hpp"

namespace pgfleet::http {

// What a check looks at: the agent's last published member state plus what the DCS says now.
struct NodeFacts {
  dcs::Member member;             // this node, as its agent last observed it
  bool fenced = false;            // the agent stopped writes (lost the lease)
  int64_t loop_age_ms = 0;        // time since the agent's HA loop last completed
  int64_t ttl_ms = 30000;         // dcs_ttl: a loop older than this is not alive
  std::string cluster;            // cluster name
  std::string leader;             // holder of the leader key ("" when none)
  std::optional<int64_t> lag_bytes;  // replica: leader's WAL position minus this node's replayed one
  std::string sync_state;         // replica: sync | quorum | potential | async ("" when not streaming)
  bool paused = false;            // maintenance mode
  int server_version = 0;         // server_version_num, 0 when unknown
};

// A `lag` limit: "10MB", "16384", "1GB", "5s", "500ms", "2min".
struct LagLimit {
  enum class Kind { Bytes, Seconds } kind = Kind::Bytes;
  double value = 0;
};
// nullopt for text that is not a size or a duration.
std::optional<LagLimit> parse_lag_limit(std::string_view text);

enum class Check { Primary, Leader, Replica, ReadOnly, Health, Liveness, Readiness, Sync, Async };
// "/primary" → Primary, also Patroni's aliases (/master, /leader, /standby, /synchronous, ...).
std::optional<Check> check_for_path(std::string_view path);

// 200 when the check passes, 503 otherwise.
int evaluate(Check check, const NodeFacts& facts, const std::optional<LagLimit>& lag);

// True when this node runs as the primary holding the leader key (not fenced).
bool is_serving_primary(const NodeFacts& facts);
// The node document of `GET /` and of every check's body (Patroni-like fields plus pgfleet's).
nlohmann::json node_document(const NodeFacts& facts);

}  // namespace pgfleet::http
