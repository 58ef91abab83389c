// `pgfleet url`: a libpq URI with the generated credentials, for psql "$(pgfleet url)".
#include <iostream>

#include "cli/commands.hpp"
#include "cluster/control.hpp"
#include "util/errors.hpp"

namespace pgfleet::cli {

int run_url(const UrlOptions& o) {
  become_cluster_owner(o.dir);
  auto c = cluster::Cluster::open(o.dir);
  auto status = c.status();
  if ((o.proxy || o.proxy_primary || o.proxy_replicas || o.proxy_socket) && status.connection.proxy.empty()) {
    throw UserError("the proxy is disabled in " + c.layout.config_file() + " (proxy.enabled: false)",
                    "connect to the primary with `pgfleet url --primary`");
  }
  if (o.proxy_socket && status.connection.proxy_socket.empty()) {
    throw UserError("the proxy has no Unix sockets (proxy.unix_socket_dir: off in " + c.layout.config_file() + ")",
                    "use `pgfleet url --proxy` (TCP)");
  }
  if (o.proxy_socket) {
    std::cout << status.connection.proxy_socket << "\n";
  } else if (o.proxy_primary) {
    std::cout << status.connection.proxy_primary << "\n";
  } else if (o.proxy_replicas) {
    std::cout << status.connection.proxy_replicas << "\n";
  } else if (o.proxy || (!o.primary && !o.replica && o.node.empty() && !status.connection.proxy.empty())) {
    std::cout << status.connection.proxy << "\n";
  } else if (!o.node.empty()) {
    auto it = status.connection.nodes.find(o.node);
    if (it == status.connection.nodes.end()) {
      throw UserError("no node named '" + o.node + "' in " + c.layout.root(), "see `pgfleet status` for the names");
    }
    std::cout << it->second << "\n";
  } else if (o.replica) {
    if (status.connection.replicas.empty()) throw UserError("the cluster has no replicas");
    std::cout << status.connection.replicas << "\n";
  } else {
    std::cout << status.connection.primary << "\n";
  }
  return 0;
}

}  // namespace pgfleet::cli
