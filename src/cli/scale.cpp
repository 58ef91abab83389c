// `pgfleet scale --replicas N`: add replicas (basebackup from the primary) or remove the newest
// ones (stop, drop slot, delete data) while the primary keeps serving.
#include <signal.h>

#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <thread>

#include "cli/commands.hpp"
#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "cluster/topology.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"

namespace pgfleet::cli {
namespace {

// Every agent re-reads pgfleet.yaml: the primary adjusts synchronous_standby_names, cascading
// replicas their upstream.
void reload_agents(const cluster::Cluster& c) {
  for (const auto& n : c.config.nodes) {
    if (pid_t pid = cluster::agent_pid(c.layout, n.name); pid > 1) ::kill(pid, SIGHUP);
  }
}

}  // namespace

int run_scale(const std::string& dir, int replicas, int timeout_seconds) {
  if (replicas < 0 || replicas > 32) throw UserError(fmt::format("--replicas must be between 0 and 32, got {}", replicas));
  become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  cluster::CommandLock lock(c.layout);
  std::string primary = cluster::discover_primary(c.config, c.layout, *c.dcs);
  if (primary.empty() || cluster::agent_pid(c.layout, primary) == 0) {
    throw UserError("the cluster in " + c.layout.root() + " is not running", "start it with `pgfleet up`");
  }
  int current = static_cast<int>(c.config.nodes.size()) - 1;
  if (replicas == current) {
    std::cout << "the cluster already has " << current << " replicas\n";
    return 0;
  }
  auto bins = cluster::find_binaries(c.config.bindir);

  if (replicas > current) {
    for (int i = current; i < replicas; ++i) {
      auto node = cluster::next_node(c.config);
      c.config.nodes.push_back(node);
      c.save_config();
      std::cout << "adding replica " << node.name << " (port " << node.port << ") ..." << std::endl;
      try {
        cluster::build_replica(c, bins, node.name);
        cluster::start_agent(c.layout, node.name);
      } catch (...) {
        cluster::stop_agent(c, node.name, std::chrono::seconds(60));
        fs::remove_all(c.layout.node_dir(node.name));
        c.config.nodes.pop_back();
        c.save_config();
        reload_agents(c);
        throw;
      }
    }
    reload_agents(c);
  } else {
    // Newest first, never the primary; a node another one still streams from goes last.
    std::vector<std::string> victims;
    for (auto it = c.config.nodes.rbegin(); it != c.config.nodes.rend() && static_cast<int>(victims.size()) < current - replicas; ++it) {
      if (it->name != primary) victims.push_back(it->name);
    }
    for (const auto& victim : victims) {
      for (const auto& n : c.config.nodes) {
        if (n.upstream && *n.upstream == victim &&
            std::find(victims.begin(), victims.end(), n.name) == victims.end()) {
          throw UserError(n.name + " streams from " + victim + " (upstream: in pgfleet.yaml), so " + victim +
                              " cannot be removed", "change " + n.name + "'s upstream first");
        }
      }
    }
    std::vector<cluster::NodeConfig> removed;
    for (const auto& victim : victims) removed.push_back(*c.config.find_node(victim));
    std::erase_if(c.config.nodes, [&](const cluster::NodeConfig& n) {
      return std::find(victims.begin(), victims.end(), n.name) != victims.end();
    });
    // Take them out of synchronous_standby_names before they stop, so no commit waits on them.
    c.save_config();
    reload_agents(c);
    std::this_thread::sleep_for(std::chrono::seconds(c.config.loop_wait_seconds) + std::chrono::milliseconds(500));
    for (const auto& victim : victims) {
      std::cout << "removing replica " << victim << " ..." << std::endl;
      if (!cluster::stop_agent(c, victim, std::chrono::seconds(90))) {
        throw UserError(victim + " did not stop within 90 s", "look at `pgfleet logs " + victim + " --agent`");
      }
      c.config.nodes.push_back(removed[static_cast<size_t>(&victim - victims.data())]);
      cluster::drop_replica_slot(c, victim);  // needs the node in the config to find its upstream
      c.config.nodes.pop_back();
      (void)c.dcs->remove(std::string("members/") + victim);
      fs::remove_all(c.layout.node_dir(victim));
      fs::remove_all(c.layout.agent_pidfile(victim));
    }
  }
  auto status = cluster::wait_until(
      c, [&](const cluster::ClusterStatus& s) { return cluster::all_streaming(c.config, s); },
      std::chrono::seconds(timeout_seconds), "every replica to stream");
  std::cout << cluster::render_table(status);
  return 0;
}

}  // namespace pgfleet::cli
