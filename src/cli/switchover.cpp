// `pgfleet switchover | failover | pause | resume | history`: requests written to the DCS for the
// agents' decide() to carry out, with the proxy paused around a switchover so clients see no error.
#include <fmt/format.h>
#include <libpq-fe.h>
#include <poll.h>

#include <chrono>
#include <ctime>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "dcs/member.hpp"
#include "postgres/pgconn.hpp"
#include "util/errors.hpp"
#include "util/log.hpp"

namespace pgfleet::cli {
namespace {

using Clock = std::chrono::steady_clock;

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string current_leader(const cluster::Cluster& c) {
  auto leader = c.dcs->get(dcs::keys::kLeader);
  if (!leader) throw UserError("the DCS cannot be read: " + leader.error());
  return leader.value() ? leader.value()->value : "";
}

// The proxy's admin console, to hold new transactions while the primary moves.
class ProxyPause {
 public:
  // Holds new transactions at once; waits up to `drain_limit` for the running ones to finish
  // (PAUSE answers when they have), then lets the switchover go on anyway.
  ProxyPause(const cluster::Cluster& c, std::chrono::milliseconds drain_limit) : conninfo_(admin_conninfo(c)) {
    if (!c.config.proxy.enabled || cluster::agent_pid(c.layout, "proxy") == 0) return;
    auto conn = postgres::PgConn::connect(conninfo_);
    if (!conn) {
      std::cerr << "note: cannot reach the proxy's admin console (" << conn.error()
                << "); switching over without pausing it\n";
      return;
    }
    conn_.emplace(std::move(conn.value()));
    PGconn* raw = conn_->raw();
    if (PQsendQuery(raw, "PAUSE") == 0) {
      std::cerr << "note: PAUSE failed: " << PQerrorMessage(raw) << "\n";
      conn_.reset();
      return;
    }
    auto deadline = Clock::now() + drain_limit;
    while (PQisBusy(raw) != 0 && Clock::now() < deadline) {
      pollfd pfd{PQsocket(raw), POLLIN, 0};
      ::poll(&pfd, 1, 10);
      if (PQconsumeInput(raw) == 0) break;
    }
    if (PQisBusy(raw) != 0) {
      std::cerr << "note: transactions still running after " << drain_limit.count() << " ms; switching over anyway\n";
      pending_ = true;
      return;
    }
    while (PGresult* r = PQgetResult(raw)) {
      if (PQresultStatus(r) != PGRES_COMMAND_OK) std::cerr << "note: PAUSE failed: " << PQresultErrorMessage(r);
      PQclear(r);
    }
  }
  ~ProxyPause() {
    if (!conn_) return;
    if (!pending_) {
      (void)conn_->exec("RESUME");
      return;
    }
    // The first console is still waiting for its PAUSE to complete: resume through another.
    if (auto other = postgres::PgConn::connect(conninfo_); other) (void)other.value().exec("RESUME");
  }
  ProxyPause(const ProxyPause&) = delete;
  ProxyPause& operator=(const ProxyPause&) = delete;

 private:
  static std::string admin_conninfo(const cluster::Cluster& c) {
    return fmt::format(
        "host={} port={} dbname=pgfleet user={} passfile={} connect_timeout=3 application_name=pgfleet-switchover",
        cluster::connect_host(c.config), c.config.ports.proxy, c.config.superuser, c.layout.passfile());
  }
  std::string conninfo_;
  std::optional<postgres::PgConn> conn_;
  bool pending_ = false;
};

cluster::ClusterStatus wait_for_leader(const cluster::Cluster& c, const std::string& old_leader, const std::string& to,
                                       int timeout_seconds) {
  return cluster::wait_until(
      c,
      [&](const cluster::ClusterStatus& s) {
        if (s.leader.empty() || s.leader == old_leader || (!to.empty() && s.leader != to)) return false;
        const auto* n = s.find(s.leader);
        return n && n->role == "primary" && n->state == "running";
      },
      std::chrono::seconds(timeout_seconds), "the new primary");
}

}  // namespace

int run_switchover(const std::string& dir, const std::string& to, int64_t at_unix_ms, int timeout_seconds) {
  become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  std::string leader = current_leader(c);
  if (leader.empty()) {
    throw UserError("there is no primary to switch over from", "use `pgfleet failover --to NODE` instead");
  }
  auto status = c.status();
  if (!to.empty()) {
    const auto* target = status.find(to);
    if (target == nullptr) throw UserError("no node named '" + to + "'");
    if (to == leader) throw UserError(to + " is already the primary");
    if (target->state != "streaming") {
      throw UserError(to + " is not streaming (state " + target->state + ")", "wait for it, or choose another node");
    }
  }
  nlohmann::json request = {{"from", leader}, {"to", to}, {"not_before_ms", at_unix_ms}};
  if (at_unix_ms > unix_ms()) {
    if (auto r = c.dcs->put(dcs::keys::kSwitchover, request.dump()); !r) throw UserError(r.error());
    std::cout << "switchover from " << leader << " scheduled\n";
    return 0;
  }
  auto started = Clock::now();
  std::optional<cluster::ClusterStatus> after;
  {
    ProxyPause pause(c, std::chrono::milliseconds(5000));
    if (auto r = c.dcs->put(dcs::keys::kSwitchover, request.dump()); !r) throw UserError(r.error());
    try {
      after = wait_for_leader(c, leader, to, timeout_seconds);
    } catch (...) {
      (void)c.dcs->remove(dcs::keys::kSwitchover);
      throw;
    }
  }  // RESUME: paused clients continue on the new primary
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
  std::cout << fmt::format("switched over from {} to {} in {} ms\n", leader, after->leader, ms);
  return 0;
}

int run_failover(const std::string& dir, const std::string& to, int timeout_seconds) {
  become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  if (!c.config.find_node(to)) throw UserError("no node named '" + to + "'");
  std::string leader = current_leader(c);
  if (!leader.empty()) {
    throw UserError(leader + " is the primary and holds the leader key",
                    "use `pgfleet switchover --to " + to + "` for a planned change");
  }
  nlohmann::json request = {{"to", to}};
  if (auto r = c.dcs->put(dcs::keys::kFailover, request.dump()); !r) throw UserError(r.error());
  auto after = wait_for_leader(c, "", to, timeout_seconds);
  std::cout << "failed over to " << after.leader << "\n";
  return 0;
}

int run_pause(const std::string& dir, bool pause) {
  become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  auto r = pause ? c.dcs->put(dcs::keys::kPause, "1") : Result<int64_t>(int64_t{0});
  if (!pause) (void)c.dcs->remove(dcs::keys::kPause);
  if (!r) throw UserError(r.error());
  std::cout << (pause ? "automatic failover paused (maintenance mode); `pgfleet resume` ends it\n"
                      : "automatic failover resumed\n");
  return 0;
}

int run_history(const std::string& dir, bool json) {
  become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  auto status = c.status();
  if (json) {
    std::cout << cluster::to_json(status)["history"].dump(2) << "\n";
    return 0;
  }
  if (status.history.empty()) std::cout << "no failover or switchover yet\n";
  for (const auto& h : status.history) {
    std::cout << fmt::format("{}  {} -> {}  {}\n", h.time, h.from.empty() ? "-" : h.from, h.to, h.reason);
  }
  return 0;
}

}  // namespace pgfleet::cli

namespace pgfleet::cli {

int64_t parse_time(const std::string& text) {
  if (text.empty()) return 0;
  if (text.find_first_not_of("0123456789") == std::string::npos) return std::stoll(text) * 1000;
  std::tm tm{};
  if (strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr &&
      strptime(text.c_str(), "%Y-%m-%d %H:%M:%S", &tm) == nullptr) {
    throw UserError("--at: cannot read '" + text + "'", "give unix seconds or YYYY-MM-DDTHH:MM:SS");
  }
  tm.tm_isdst = -1;
  return static_cast<int64_t>(std::mktime(&tm)) * 1000;
}

}  // namespace pgfleet::cli
