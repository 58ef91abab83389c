// `pgfleet restart <node>`: the node's agent restarts its postmaster (or is started if absent).
#include <signal.h>

#include <iostream>

#include "cli/commands.hpp"
#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "util/errors.hpp"

namespace pgfleet::cli {

int run_restart(const std::string& dir, const std::string& node, int timeout_seconds) {
  become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  if (!c.config.find_node(node)) throw UserError("no node named '" + node + "' in " + c.layout.root());
  auto before = c.status();
  int64_t old_pid = before.find(node)->pid;
  if (pid_t agent = cluster::agent_pid(c.layout, node); agent > 1) {
    ::kill(agent, SIGUSR1);
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
