// The checks' rules, one place: who is a primary, a usable replica, a synchronous one.
#include "http/health.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <string>

#include "postgres/lsn.hpp"

namespace pgfleet::http {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool replica_ok(const NodeFacts& f, const std::optional<LagLimit>& lag) {
  const auto& m = f.member;
  if (m.role != "replica" || m.state != "streaming" || f.leader == m.name) return false;
  if (!lag) return true;
  if (lag->kind == LagLimit::Kind::Bytes) return f.lag_bytes && static_cast<double>(*f.lag_bytes) <= lag->value;
  // Replay delay: 0 when replay has caught up with what was received.
  return m.replay_delay_seconds <= lag->value;
}

}  // namespace

std::optional<LagLimit> parse_lag_limit(std::string_view text) {
  std::string t = lower(text);
  while (!t.empty() && t.back() == ' ') t.pop_back();
  size_t i = 0;
  while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.')) ++i;
  if (i == 0) return std::nullopt;
  double number = 0;
  try {
    size_t used = 0;
    number = std::stod(t.substr(0, i), &used);
    if (used != i) return std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
  std::string unit = t.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  struct Unit {
    const char* name;
    LagLimit::Kind kind;
    double factor;
  };
  // Sizes in PostgreSQL's sense (kB = 1024), durations as in postgresql.conf.
  static const Unit units[] = {
      {"", LagLimit::Kind::Bytes, 1},         {"b", LagLimit::Kind::Bytes, 1},
      {"kb", LagLimit::Kind::Bytes, 1024.0},  {"mb", LagLimit::Kind::Bytes, 1024.0 * 1024},
      {"gb", LagLimit::Kind::Bytes, 1024.0 * 1024 * 1024}, {"tb", LagLimit::Kind::Bytes, 1024.0 * 1024 * 1024 * 1024},
      {"ms", LagLimit::Kind::Seconds, 0.001}, {"s", LagLimit::Kind::Seconds, 1},
      {"sec", LagLimit::Kind::Seconds, 1},    {"min", LagLimit::Kind::Seconds, 60},
      {"h", LagLimit::Kind::Seconds, 3600},
  };
  for (const auto& u : units) {
    if (unit == u.name) {
      double value = number * u.factor;
      if (!std::isfinite(value)) return std::nullopt;
      return LagLimit{u.kind, value};
    }
  }
  return std::nullopt;
}

std::optional<Check> check_for_path(std::string_view path) {
  if (path == "/primary" || path == "/master" || path == "/read-write") return Check::Primary;
  if (path == "/leader") return Check::Leader;
  if (path == "/replica" || path == "/standby") return Check::Replica;
  if (path == "/read-only") return Check::ReadOnly;
  if (path == "/health") return Check::Health;
  if (path == "/liveness") return Check::Liveness;
  if (path == "/readiness") return Check::Readiness;
  if (path == "/sync" || path == "/synchronous") return Check::Sync;
  if (path == "/async" || path == "/asynchronous") return Check::Async;
  return std::nullopt;
}

bool is_serving_primary(const NodeFacts& f) {
  return f.leader == f.member.name && f.member.role == "primary" && dcs::is_running(f.member) && !f.fenced;
}

int evaluate(Check check, const NodeFacts& f, const std::optional<LagLimit>& lag) {
  const auto& m = f.member;
  bool ok = false;
  switch (check) {
    case Check::Primary: ok = is_serving_primary(f); break;
    case Check::Leader: ok = f.leader == m.name && !f.fenced; break;
    // The load-balancing checks, as Patroni's: a replica tagged noloadbalance is kept out of them.
    case Check::Replica: ok = replica_ok(f, lag) && !m.noloadbalance; break;
    case Check::ReadOnly: ok = is_serving_primary(f) || (replica_ok(f, lag) && !m.noloadbalance); break;
    case Check::Health: ok = dcs::is_running(m); break;
    case Check::Liveness: ok = f.loop_age_ms <= f.ttl_ms; break;
    case Check::Readiness: ok = is_serving_primary(f) || replica_ok(f, lag); break;
    case Check::Sync: ok = replica_ok(f, lag) && (f.sync_state == "sync" || f.sync_state == "quorum"); break;
    case Check::Async: ok = replica_ok(f, lag) && f.sync_state != "sync" && f.sync_state != "quorum"; break;
  }
  return ok ? 200 : 503;
}

nlohmann::json node_document(const NodeFacts& f) {
  const auto& m = f.member;
  auto lsn = [](const std::string& text) -> nlohmann::json {
    auto v = postgres::parse_lsn(text);
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  };
  nlohmann::json doc = {{"name", m.name},
                        {"state", m.state},
                        {"role", m.role},
                        {"timeline", m.timeline},
                        {"server_version", f.server_version},
                        {"postmaster_start_time", m.postmaster_start},
                        {"leader", f.leader.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.leader)},
                        {"cluster_unlocked", f.leader.empty()},
                        {"is_leader", f.leader == m.name},
                        {"fenced", f.fenced},
                        {"pause", f.paused},
                        {"host", m.host},
                        {"port", m.port},
                        {"api_port", m.api_port},
                        {"upstream", m.upstream.empty() ? nlohmann::json(nullptr) : nlohmann::json(m.upstream)},
                        {"restarts", m.restarts},
                        {"last_error", m.last_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(m.last_error)},
                        {"patroni", {{"scope", f.cluster}, {"name", m.name}}}};
  // Patroni's form: only the tags that are set.
  nlohmann::json tags = nlohmann::json::object();
  if (m.nofailover) tags["nofailover"] = true;
  if (m.noloadbalance) tags["noloadbalance"] = true;
  if (!tags.empty()) doc["tags"] = tags;
  if (m.role == "primary") {
    doc["xlog"] = {{"location", lsn(m.current_lsn)}};
    doc["lsn"] = m.current_lsn;
  } else {
    doc["xlog"] = {{"received_location", lsn(m.received_lsn)}, {"replayed_location", lsn(m.replayed_lsn)}};
    doc["received_lsn"] = m.received_lsn;
    doc["replayed_lsn"] = m.replayed_lsn;
    doc["lag_bytes"] = f.lag_bytes ? nlohmann::json(*f.lag_bytes) : nlohmann::json(nullptr);
    doc["lag_seconds"] = m.replay_delay_seconds;
    doc["sync_state"] = f.sync_state.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.sync_state);
  }
  nlohmann::json replication = nlohmann::json::array();
  for (const auto& p : m.replication) {
    replication.push_back({{"application_name", p.application_name},
                           {"state", p.state},
                           {"sync_state", p.sync_state},
                           {"replay_lsn", p.replay_lsn},
                           {"replay_lag_seconds", p.replay_lag_seconds}});
  }
  doc["replication"] = replication;
  return doc;
}

}  // namespace pgfleet::http
