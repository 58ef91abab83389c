// `pgfleet restart <node>`: the node's agent restarts its postmaster (or is started if absent).
#include <signal.h>

#include <iostream>

#include "cli/commands.hpp"
#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "http/client.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"

#include <thread>

namespace pgfleet::cli {

namespace {
// Asks the node's agent over its HTTP API (POST /restart with the cluster's token); false when
// the API cannot be used, so the caller signals the agent instead.
bool restart_over_http(const cluster::Cluster& c, const cluster::NodeConfig& node) {
  if (c.config.http_tls || c.secrets.api_token.empty()) return false;
  auto reply = http::request(node.host.empty() ? cluster::connect_host(c.config) : node.host, node.api_port, "POST",
                             "/restart", {"Authorization: Bearer " + c.secrets.api_token});
  return reply && reply->status == 202;
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
}  // namespace

int run_restart(const std::string& dir, const std::string& node, int timeout_seconds) {
  become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  if (node == "proxy" && !c.config.find_node(node)) return restart_proxy(c, timeout_seconds);
  if (!c.config.find_node(node)) throw UserError("no node named '" + node + "' in " + c.layout.root());
  auto before = c.status();
  int64_t old_pid = before.find(node)->pid;
  if (pid_t agent = cluster::agent_pid(c.layout, node); agent > 1) {
    if (!restart_over_http(c, *c.config.find_node(node))) ::kill(agent, SIGUSR1);
  } else {
    cluster::start_agent(c.layout, node);
  }
  auto status = cluster::wait_until(
      c,
      [&](const cluster::ClusterStatus& s) {
        const auto* n = s.find(node);
        return n && n->pid != 0 && n->pid != old_pid && (n->state == "running" || n->state == "streaming");
      },
      std::chrono::seconds(timeout_seconds), node + " to come back");
  std::cout << node << " restarted (pid " << status.find(node)->pid << ", " << status.find(node)->state << ")\n";
  return 0;
}

}  // namespace pgfleet::cli
