// `pgfleet restart NODE... | --pending | --all | proxy`: each node's agent restarts its postmaster (or
// the agent is started if absent), replicas first and one at a time, the primary last.
#include <signal.h>

#include <algorithm>
#include <iostream>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/commands.hpp"
#include "cli/planned_pause.hpp"
#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "dcs/member.hpp"
#include "cli/agent_call.hpp"
#include "util/clock.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"

#include <thread>

namespace pgfleet::cli {

namespace {
// Asks the node's agent over its HTTP API (POST /restart with the cluster's token); false when
// the API cannot be used, so the caller signals the agent instead.
bool restart_over_http(const cluster::Cluster& c, const cluster::NodeConfig& node) {
  auto reply = post_to_agent(c, node, "/restart", "", std::chrono::seconds(5));
  return reply && reply->status == 202;
}

// From another machine (--dcs) the request goes through the DCS: no agent runs here to signal,
// and the agents' HTTP APIs may be out of reach. It expires unanswered after `timeout`, so an
// agent that is away does not restart its server long after the command gave up.
void restart_through_dcs(const cluster::Cluster& c, const std::string& node, std::chrono::seconds timeout) {
  const nlohmann::json request{{"requested_ms", unix_ms()}};
  if (auto put = c.dcs->put(dcs::keys::restart(node), request.dump(), timeout); !put)
    throw UserError("cannot ask " + node + "'s agent to restart through etcd: " + put.error());
}

// A new proxy process takes the listening sockets over; the old one finishes its transactions.
int restart_proxy(const cluster::Cluster& c, int timeout_seconds) {
  pid_t old = cluster::agent_pid(c.layout, "proxy");
  if (old == 0) {
    pid_t pid = cluster::start_proxy(c.layout, c.config);
    std::cout << "proxy started (pid " << pid << ")\n";
    return 0;
  }
  pid_t spawned = process::spawn_daemon({process::self_exe(), "proxy", "--dir", c.layout.root(), "--takeover"},
                                        c.layout.proxy_log());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    pid_t now = cluster::agent_pid(c.layout, "proxy");
    if (now != 0 && now != old) {
      std::cout << "proxy restarted (pid " << now << "; the old one drained and exited)\n";
      return 0;
    }
    if (!process::alive(spawned)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw UserError("the new proxy did not take over. Last lines of " + c.layout.proxy_log() + ":\n" +
                  fs::tail(c.layout.proxy_log(), 15));
}

// Restarts one node through its agent and waits until it is back: a replica streaming again (a
// rolling restart takes the next one down only then), the primary accepting writes, with the
// proxy paused meanwhile so that clients in transaction mode see a pause rather than an error.
void restart_node(const cluster::Cluster& c, const std::string& node, bool is_leader, int timeout_seconds) {
  auto before = c.status();
  const int64_t old_pid = before.find(node)->pid;
  const bool was_streaming = before.find(node)->state == "streaming";
  const auto wait = std::chrono::seconds(timeout_seconds);
  auto trigger = [&] {
    if (c.remote) return restart_through_dcs(c, node, wait);
    if (pid_t agent = cluster::agent_pid(c.layout, node); agent > 1) {
      if (!restart_over_http(c, *c.config.find_node(node))) ::kill(agent, SIGUSR1);
    } else {
      cluster::start_agent(c.layout, node);
    }
  };
  auto back = [&](const cluster::ClusterStatus& s) {
    const auto* n = s.find(node);
    if (!n || n->pid == 0 || n->pid == old_pid) return false;
    if (was_streaming) return n->state == "streaming";
    return n->state == "running" || n->state == "streaming";
  };
  std::optional<cluster::ClusterStatus> status;
  try {
    if (is_leader && old_pid != 0) {
      checkpoint_before_pause(c, node);
      ProxyPause pause(c, "restarting " + node);
      pause.drain(c, node, std::chrono::milliseconds(5000));
      trigger();
      status = cluster::wait_until(
          c, [&](const cluster::ClusterStatus& s) { return back(s) && accepts_writes(c, node); }, wait,
          node + " to come back");
    } else {
      trigger();
      status = cluster::wait_until(c, back, wait, node + " to come back" + (was_streaming ? " and stream" : ""));
    }
  } catch (...) {
    if (c.remote) (void)c.dcs->remove(dcs::keys::restart(node));  // not taken: withdrawn
    throw;
  }
  std::cout << node << " restarted (pid " << status->find(node)->pid << ", " << status->find(node)->state << ")\n";
}

}  // namespace

int run_restart(const RestartOptions& o) {
  become_cluster_owner(o.dir);
  auto c = cluster::Cluster::open(o.dir);
  if (o.nodes.size() == 1 && o.nodes[0] == "proxy" && !c.config.find_node("proxy")) {
    if (o.all || o.pending) throw UserError("`pgfleet restart proxy` takes neither --all nor --pending");
    if (c.remote)
      throw UserError("the proxies of a cluster on several hosts run on their own (`pgfleet proxy --config`)",
                      "restart each on its own host (`systemctl restart pgfleet-proxy` with deploy/systemd)");
    return restart_proxy(c, o.timeout_seconds);
  }
  if (o.nodes.empty() && !o.all && !o.pending) {
    throw UserError("name the nodes to restart", "or use --pending (those waiting for a restart) or --all");
  }
  if (o.all && !o.nodes.empty()) throw UserError("--all restarts every node: name none with it");
  for (const auto& n : o.nodes) {
    if (n == "proxy") throw UserError("restart the proxy on its own: `pgfleet restart proxy`");
    if (!c.config.find_node(n)) throw UserError("no node named '" + n + "' in " + c.layout.root());
  }
  auto status = c.status();
  // Which nodes, in the order given (config order for --all and --pending alone).
  std::vector<std::string> chosen;
  for (const auto& n : o.nodes)
    if (std::find(chosen.begin(), chosen.end(), n) == chosen.end()) chosen.push_back(n);
  if (o.nodes.empty())
    for (const auto& n : c.config.nodes) chosen.push_back(n.name);
  if (o.pending) {
    std::erase_if(chosen, [&](const std::string& n) {
      const auto* s = status.find(n);
      return s == nullptr || s->pending_restart.empty();
    });
    if (chosen.empty()) {
      std::cout << "no node waits for a restart\n";
      return 0;
    }
  }
  // Replicas first, the primary last: the cluster keeps every other node while one restarts, and
  // the primary goes once its replicas already run with the new settings.
  std::stable_partition(chosen.begin(), chosen.end(), [&](const std::string& n) { return n != status.leader; });
  for (const auto& n : chosen) {
    const auto* s = status.find(n);
    if (s != nullptr && !s->pending_restart.empty())
      std::cout << "restarting " << n << " (pending: " << fmt::format("{}", fmt::join(s->pending_restart, ", ")) << ")\n";
    else
      std::cout << "restarting " << n << "\n";
    std::cout.flush();
    // The primary now, not at the start: a failover during a rolling restart moves it.
    const std::string leader = c.status().leader;
    restart_node(c, n, n == leader, o.timeout_seconds);
  }
  return 0;
}

}  // namespace pgfleet::cli
