// Topology: who streams from whom, derived from the config and the current primary (pure logic).
#pragma once

#include <string>
#include <vector>

#include "cluster/config.hpp"

namespace pgfleet::cluster {

// The node `node` streams from while `primary` is the primary: its configured upstream when that
// is another node, with --cascade the first replica for every later replica, else the primary.
// Returns "" for the primary itself.
std::string upstream_of(const ClusterConfig& config, const std::string& node, const std::string& primary);
// Replicas that stream straight from the primary (the only ones that can be synchronous).
std::vector<std::string> direct_replicas(const ClusterConfig& config, const std::string& primary);
// The synchronous_standby_names value for the primary: the direct replicas that are in
// `eligible` (those able to acknowledge right now), '' when sync is off or none is eligible.
std::string synchronous_standby_names(const ClusterConfig& config, const std::string& primary,
                                      const std::vector<std::string>& eligible);
// Port allocation for the k-th node (1-based).
int node_port(const ClusterConfig& config, int index);
int node_api_port(const ClusterConfig& config, int index);
// Next free node name (node1, node2, ...) and a NodeConfig with free ports for it.
NodeConfig next_node(const ClusterConfig& config);

}  // namespace pgfleet::cluster
