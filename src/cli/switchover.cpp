// `pgfleet switchover | failover | pause | resume | failsafe | remove-node | history`: requests written to the DCS for the
// agents' decide() to carry out, with the proxy paused around a switchover so clients see no error.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/agent_call.hpp"
#include "cli/commands.hpp"
#include "cli/planned_pause.hpp"
#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "dcs/member.hpp"
#include "postgres/instance.hpp"
#include "postgres/pgconn.hpp"
#include "util/clock.hpp"
#include "util/errors.hpp"
#include "util/log.hpp"

namespace pgfleet::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::string current_leader(const cluster::Cluster& c) {
  auto leader = c.dcs->get(dcs::keys::kLeader);
  if (!leader) throw UserError("the DCS cannot be read: " + leader.error());
  return leader.value() ? leader.value()->value : "";
}

// The proxy stays paused until this returns: poll every 20 ms, and ask the new leader itself
// whether it accepts writes (its agent may publish that a little later). Returns its name, and
// nothing slower than that (the whole status read from etcd would hold the clients longer).
std::string wait_for_leader(const cluster::Cluster& c, const std::string& old_leader, const std::string& to,
                                       int timeout_seconds) {
  auto ready = [&](const cluster::ClusterStatus& s) {
    if (s.leader.empty() || s.leader == old_leader || (!to.empty() && s.leader != to)) return false;
    const auto* n = s.find(s.leader);
    return n && n->role == "primary" && n->state == "running";
  };
  auto fast_until = Clock::now() + std::chrono::seconds(std::min(timeout_seconds, 10));
  while (Clock::now() < fast_until) {
    auto leader = c.dcs->get(dcs::keys::kLeader);
    if (leader && leader.value()) {
      const std::string& holder = leader.value()->value;
      if (holder != old_leader && (to.empty() || holder == to) && accepts_writes(c, holder)) return holder;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cluster::wait_until(c, ready, std::chrono::seconds(std::max(1, timeout_seconds - 10)), "the new primary").leader;
}

// Asks the leader's agent (POST /switchover with the cluster's token), as Patroni's patronictl
// does, over HTTPS when http.tls is on; false when its API cannot be used (no token, unreachable),
// so the caller writes the request to the DCS itself. A refusal by the agent is an error for the user.
bool switchover_over_http(const cluster::Cluster& c, const std::string& leader, const std::string& to) {
  const auto* node = c.config.find_node(leader);
  if (node == nullptr) return false;
  nlohmann::json body = {{"leader", leader}};
  if (!to.empty()) body["candidate"] = to;
  auto reply = post_to_agent(c, *node, "/switchover", body.dump(), std::chrono::seconds(1));  // the proxy is paused meanwhile
  if (!reply) return false;
  if (reply->status == 202) return true;
  std::string why = reply->body;
  try {
    why = nlohmann::json::parse(reply->body).value("error", reply->body);
  } catch (const nlohmann::json::exception&) {
  }
  throw UserError(fmt::format("{}'s agent refused the switchover (HTTP {}): {}", leader, reply->status, why));
}

[[noreturn]] void throw_tagged_nofailover(const std::string& node) {
  throw UserError(node + " is tagged nofailover: it is never promoted",
                  "choose another node, or remove `nofailover: true` from its entry in pgfleet.yaml (its node.yaml "
                  "on several hosts) and run `pgfleet reload`");
}

}  // namespace

// How long `switchover --to` waits for a running replica to stream before refusing.
constexpr std::chrono::seconds kTargetWait{15};

int run_switchover(const std::string& dir, const std::string& to, int64_t at_unix_ms, int timeout_seconds) {
  become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  std::string leader = current_leader(c);
  if (leader.empty()) {
    throw UserError("there is no primary to switch over from", "use `pgfleet failover --to NODE` instead");
  }
  auto status = c.status();
  if (to.empty() && std::all_of(status.nodes.begin(), status.nodes.end(), [&](const cluster::NodeStatus& n) {
        return n.name == leader || n.nofailover;
      }))
    throw UserError("no node could take over: every node but " + leader + " is tagged nofailover");
  if (!to.empty()) {
    const auto* target = status.find(to);
    if (target == nullptr) throw UserError("no node named '" + to + "'");
    if (to == leader) throw UserError(to + " is already the primary");
    if (target->nofailover) throw_tagged_nofailover(to);
    if (target->state != "streaming" && target->agent_pid != 0) {
      // A node whose agent runs (a replica that restarted, or an old primary rejoining right after
      // another switchover) streams again within a few loops: wait for it rather than refuse.
      std::cerr << to << " is " << target->state << ", not streaming yet: waiting up to " << kTargetWait.count()
                << " s\n";
      auto deadline = Clock::now() + kTargetWait;
      while (Clock::now() < deadline && (target == nullptr || target->state != "streaming")) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        status = c.status();
        target = status.find(to);
      }
      if (target == nullptr) throw UserError("no node named '" + to + "'");
    }
    if (target->state != "streaming") {
      throw UserError(to + " is not streaming (state " + target->state + ")", "wait for it, or choose another node");
    }
  }
  nlohmann::json request = {{"from", leader}, {"to", to}, {"not_before_ms", at_unix_ms}, {"requested_ms", unix_ms()}};
  if (at_unix_ms > unix_ms()) {
    if (auto r = c.dcs->put(dcs::keys::kSwitchover, request.dump()); !r) throw UserError(r.error());
    std::cout << "switchover from " << leader << " scheduled\n";
    return 0;
  }
  checkpoint_before_pause(c, leader);
  auto started = Clock::now();
  auto drained = started;
  std::string after;
  {
    ProxyPause pause(c, "switching over");
    pause.drain(c, leader, std::chrono::milliseconds(5000));
    drained = Clock::now();
    if (!switchover_over_http(c, leader, to)) {
      if (auto r = c.dcs->put(dcs::keys::kSwitchover, request.dump()); !r) throw UserError(r.error());
    }
    try {
      after = wait_for_leader(c, leader, to, timeout_seconds);
    } catch (...) {
      (void)c.dcs->remove(dcs::keys::kSwitchover);
      throw;
    }
  }  // RESUME: paused clients continue on the new primary
  auto ms = [](Clock::time_point from, Clock::time_point until) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(until - from).count();
  };
  auto now = Clock::now();
  std::cout << fmt::format("switched over from {} to {} in {} ms (proxy paused: {} ms draining, {} ms handing over)\n",
                           leader, after, ms(started, now), ms(started, drained), ms(drained, now));
  return 0;
}

int run_failover(const std::string& dir, const std::string& to, int timeout_seconds) {
  become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  if (!c.config.find_node(to)) throw UserError("no node named '" + to + "'");
  if (const auto* target = c.status().find(to); target != nullptr && target->nofailover) throw_tagged_nofailover(to);
  std::string leader = current_leader(c);
  if (!leader.empty()) {
    throw UserError(leader + " is the primary and holds the leader key",
                    "use `pgfleet switchover --to " + to + "` for a planned change");
  }
  nlohmann::json request = {{"to", to}};
  if (auto r = c.dcs->put(dcs::keys::kFailover, request.dump()); !r) throw UserError(r.error());
  auto after = wait_for_leader(c, "", to, timeout_seconds);
  std::cout << "failed over to " << after << "\n";
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

int run_failsafe(const std::string& dir, const std::string& setting) {
  become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  if (setting == "show" || setting.empty()) {
    auto k = c.dcs->get(dcs::keys::kFailsafe);
    if (!k) throw UserError(k.error());
    std::cout << "failsafe mode is " << (k.value() ? "on" : "off") << "\n";
    return 0;
  }
  if (setting != "on" && setting != "off")
    throw UserError("failsafe takes 'on', 'off' or 'show', not '" + setting + "'");
  const bool on = setting == "on";
  if (on) {
    if (auto r = c.dcs->put(dcs::keys::kFailsafe, "1"); !r) throw UserError(r.error());
  } else if (auto r = c.dcs->remove(dcs::keys::kFailsafe); !r) {
    throw UserError(r.error());
  }
  std::cout << (on ? "failsafe mode on: while the DCS is unreachable the primary keeps writing as long as every member "
                     "confirms over the agents' API that it follows it\n"
                   : "failsafe mode off: a primary that cannot reach the DCS stops writes when its lease ends\n");
  return 0;
}

int run_remove_node(const std::string& dir, const std::string& node) {
  become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  if (c.config.etcd.endpoints.empty())
    throw UserError("remove-node is for clusters on several hosts (etcd)",
                    "on one host, `pgfleet scale --replicas N` removes replicas");
  auto leader = c.dcs->get(dcs::keys::kLeader);
  if (!leader) throw UserError(leader.error());
  if (leader.value() && leader.value()->value == node)
    throw UserError(node + " is the primary", "switch over to another node first (pgfleet switchover --to NODE)");
  auto member = c.dcs->get(std::string(dcs::keys::kMembersPrefix) + node);
  if (!member) throw UserError(member.error());
  // An agent that stopped says so in its last status; any other state is a node still running
  // (or one that vanished less than a TTL ago and may come back).
  std::string state;
  if (member.value()) {
    try {
      state = dcs::member_from_json(nlohmann::json::parse(member.value()->value)).state;
    } catch (const nlohmann::json::exception&) {
      state = "unreadable";
    }
  }
  if (member.value() && state != "stopped")
    throw UserError(node + " is still running (its agent publishes the state '" + state + "')",
                    "stop its agent on its host first (e.g. systemctl stop pgfleet), or wait " +
                        std::to_string(c.config.dcs_ttl_seconds) + " s if that host is gone, and run this again");
  const std::string mark = std::string(dcs::keys::kRemovedPrefix) + node;
  if (auto r = c.dcs->put(mark, nlohmann::json{{"removed_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                  std::chrono::system_clock::now().time_since_epoch())
                                                                  .count()}}
                                    .dump());
      !r)
    throw UserError(r.error());
  std::cout << node << " removed: every agent forgets it on its next loop (failsafe rounds stop asking it, the "
            << "primary drops its replication slot). Starting its agent again brings it back.\n";
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
    std::string took = h.duration_ms >= 0 ? fmt::format("  ({:.2f} s)", static_cast<double>(h.duration_ms) / 1000.0) : "";
    std::cout << fmt::format("{}  {} -> {}{}  {}\n", h.time, h.from.empty() ? "-" : h.from, h.to, took, h.reason);
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
