// `pgfleet reinit <node>`: throw away a replica's data and copy it afresh from the primary.
#include <chrono>
#include <iostream>

#include "cli/commands.hpp"
#include "cluster/binaries.hpp"
#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "http/client.hpp"
#include "util/errors.hpp"

namespace pgfleet::cli {
namespace {

// Asks the node's agent to rebuild it (POST /reinit with the cluster's token); false when its API
// cannot be used (HTTPS, no token, unreachable), so the caller does the work itself.
bool reinit_over_http(const cluster::Cluster& c, const cluster::NodeConfig& node) {
  if (c.config.http_tls || c.secrets.api_token.empty()) return false;
  auto reply = http::request(node.host.empty() ? cluster::connect_host(c.config) : node.host, node.api_port, "POST",
                             "/reinit", {"Authorization: Bearer " + c.secrets.api_token}, "", std::chrono::seconds(2));
  return reply && reply->status == 202;
}

}  // namespace

int run_reinit(const std::string& dir, const std::string& node, int timeout_seconds) {
  become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  if (!c.config.find_node(node)) throw UserError("no node named '" + node + "' in " + c.layout.root());
  cluster::CommandLock lock(c.layout);
  std::string primary = cluster::discover_primary(c.config, c.layout, *c.dcs);
  if (node == primary) {
    throw UserError(node + " is the primary; reinit rebuilds replicas only",
                    "switch the primary role to another node first");
  }
  if (primary.empty() || cluster::agent_pid(c.layout, primary) == 0) {
    throw UserError("the primary is not running, so there is nothing to copy " + node + " from",
                    "start the cluster with `pgfleet up`");
  }
  // The agent stamps its member with the time it finished the rebuild: a new postmaster pid alone
  // could also be a restart that happened just before the rebuild began.
  const int64_t asked_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  if (cluster::agent_pid(c.layout, node) != 0 && reinit_over_http(c, *c.config.find_node(node))) {
    // Its agent stops the server, copies the primary with pg_basebackup and starts it again.
    std::cout << "asked " << node << "'s agent to rebuild it from " << primary << " (POST /reinit) ..." << std::endl;
    auto status = cluster::wait_until(
        c,
        [&](const cluster::ClusterStatus& s) {
          const auto* n = s.find(node);
          return n && n->state == "streaming" && n->rebuilt_at_ms >= asked_at_ms;
        },
        std::chrono::seconds(timeout_seconds), node + " to be rebuilt and stream");
    std::cout << node << " rebuilt and streaming from " << status.find(node)->upstream << "\n";
    return 0;
  }
  auto bins = cluster::find_binaries(c.config.bindir);
  std::cout << "stopping " << node << " ..." << std::endl;
  if (!cluster::stop_agent(c, node, std::chrono::seconds(90))) throw UserError(node + " did not stop within 90 s");
  std::cout << "copying " << node << " from " << primary << " ..." << std::endl;
  cluster::build_replica(c, bins, node);
  cluster::start_agent(c.layout, node);
  auto status = cluster::wait_until(
      c,
      [&](const cluster::ClusterStatus& s) {
        const auto* n = s.find(node);
        return n && n->state == "streaming";
      },
      std::chrono::seconds(timeout_seconds), node + " to stream");
  std::cout << node << " rebuilt and streaming from " << status.find(node)->upstream << "\n";
  return 0;
}

}  // namespace pgfleet::cli
