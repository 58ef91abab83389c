// Topology rules in one place so the agent, the CLI and status agree on them.
#include "cluster/topology.hpp"

#include <algorithm>
#include <set>

namespace pgfleet::cluster {

std::string upstream_of(const ClusterConfig& config, const std::string& node, const std::string& primary) {
  if (node == primary) return "";
  const NodeConfig* self = config.find_node(node);
  if (self && self->upstream && *self->upstream != node && config.find_node(*self->upstream)) {
    return *self->upstream;
  }
  if (config.cascade) {
    for (const auto& n : config.nodes) {
      if (n.name == primary) continue;
      // The first replica is the hub: it streams from the primary, later ones from it.
      return n.name == node ? primary : n.name;
    }
  }
  return primary;
}

std::vector<std::string> direct_replicas(const ClusterConfig& config, const std::string& primary) {
  std::vector<std::string> out;
  for (const auto& n : config.nodes) {
    if (n.name != primary && upstream_of(config, n.name, primary) == primary) out.push_back(n.name);
  }
  return out;
}

std::string synchronous_standby_names(const ClusterConfig& config, const std::string& primary,
                                      const std::vector<std::string>& eligible) {
  if (config.sync == SyncMode::Off) return "";
  std::vector<std::string> names;
  for (const auto& n : direct_replicas(config, primary)) {
    if (std::find(eligible.begin(), eligible.end(), n) != eligible.end()) names.push_back(n);
  }
  if (names.empty()) return "";
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "\"" : ", \"") + n + "\"";
  if (config.sync == SyncMode::On) return "FIRST 1 (" + list + ")";
  int k = std::clamp(config.sync_count, 1, static_cast<int>(names.size()));
  return "ANY " + std::to_string(k) + " (" + list + ")";
}

int node_port(const ClusterConfig& config, int index) { return config.ports.node_base + index - 1; }
int node_api_port(const ClusterConfig& config, int index) { return config.ports.api_base + index - 1; }

NodeConfig next_node(const ClusterConfig& config) {
  std::set<int> used_ports;
  std::set<std::string> used_names;
  for (const auto& n : config.nodes) {
    used_ports.insert(n.port);
    used_ports.insert(n.api_port);
    used_names.insert(n.name);
  }
  int index = 1;
  while (used_names.count("node" + std::to_string(index)) || used_ports.count(node_port(config, index)) ||
         used_ports.count(node_api_port(config, index))) {
    ++index;
  }
  NodeConfig node;
  node.name = "node" + std::to_string(index);
  node.port = node_port(config, index);
  node.api_port = node_api_port(config, index);
  return node;
}

}  // namespace pgfleet::cluster
