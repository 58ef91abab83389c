// NodeFile: one host's node.yaml for multi-host clusters (`pgfleet agent --config node.yaml`).
//
//   node: pi1                      # this node's name            (required)
//   data_dir: /var/lib/pgfleet     # this host's cluster directory (required)
//   advertise_address: 10.0.0.11   # where the others reach it (default: listen_address)
//   port: 5432                     # PostgreSQL port (default 5432)
//   api_port: 8009                 # reserved for the agent API (default 8009)
//   ...every key of pgfleet.yaml except nodes: cluster, listen_address, postgres, replication,
//      dcs (ttl, loop_wait, etcd: {endpoints, ca_file, cert_file, key_file, user, password}),
//      postgresql, proxy, ports
#pragma once

#include <string>

#include "cluster/config.hpp"

namespace pgfleet::cluster {

struct NodeFile {
  std::string node;
  std::string data_dir;
  ClusterConfig config;  // nodes = {this node}; the others are learned from the DCS
};

// Throws ConfigError naming the file and the problem.
NodeFile parse_node_file(const std::string& yaml_text, const std::string& source);
NodeFile load_node_file(const std::string& path);

}  // namespace pgfleet::cluster
