// `pgfleet reinit <node>`: throw away a replica's data and copy it afresh from the primary.
#include <chrono>
#include <iostream>
#include <optional>

#include "cli/commands.hpp"
#include "cluster/binaries.hpp"
#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "dcs/member.hpp"
#include "cli/agent_call.hpp"
#include "util/clock.hpp"
#include "util/errors.hpp"

namespace pgfleet::cli {
namespace {

// Asks the node's agent to rebuild it (POST /reinit with the cluster's token); false when its API
// cannot be used (no token, unreachable), so the caller does the work itself.
bool reinit_over_http(const cluster::Cluster& c, const cluster::NodeConfig& node) {
  auto reply = post_to_agent(c, node, "/reinit", "", std::chrono::seconds(2));
  return reply && reply->status == 202;
}

// From another machine (--dcs) the request goes through etcd (`reinit/<node>`, expiring after the
// timeout); the node's agent rebuilds it wherever it runs. Done when the member's rebuild stamp
// moves on (compared with itself: the hosts' clocks need not agree with this one).
int reinit_through_dcs(const cluster::Cluster& c, const std::string& node, const std::string& primary,
                       int timeout_seconds) {
  const auto before = c.status();
  const auto* n = before.find(node);
  if (n == nullptr || n->agent_pid == 0)
    throw UserError("the agent of " + node + " is not running, so nothing can rebuild it",
                    "start it on its host; a node whose data is gone is copied from the primary when it starts");
  const int64_t rebuilt_before = n->rebuilt_at_ms;
  const auto timeout = std::chrono::seconds(timeout_seconds);
  const nlohmann::json request{{"requested_ms", unix_ms()}};
  if (auto put = c.dcs->put(dcs::keys::reinit(node), request.dump(), timeout); !put)
    throw UserError("cannot ask " + node + "'s agent to rebuild it through etcd: " + put.error());
  std::cout << "asked " << node << "'s agent through etcd to rebuild it from " << primary << " ..." << std::endl;
  try {
    auto status = cluster::wait_until(
        c,
        [&](const cluster::ClusterStatus& s) {
          const auto* m = s.find(node);
          return m && m->state == "streaming" && m->rebuilt_at_ms != rebuilt_before;
        },
        timeout, node + " to be rebuilt and stream");
    std::cout << node << " rebuilt and streaming from " << status.find(node)->upstream << "\n";
    return 0;
  } catch (...) {
    (void)c.dcs->remove(dcs::keys::reinit(node));  // not taken: withdrawn
    throw;
  }
}

}  // namespace

int run_reinit(const std::string& dir, const std::string& node, int timeout_seconds) {
  become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  if (!c.config.find_node(node)) throw UserError("no node named '" + node + "' in " + c.layout.root());
  std::optional<cluster::CommandLock> lock;  // one host's commands take turns; etcd has no such lock
  if (!c.remote) lock.emplace(c.layout);
  std::string primary = cluster::discover_primary(c.config, c.layout, *c.dcs);
  if (node == primary) {
    throw UserError(node + " is the primary; reinit rebuilds replicas only",
                    "switch the primary role to another node first");
  }
  if (c.remote) {
    if (primary.empty()) throw UserError("the cluster has no primary now, so there is nothing to copy " + node + " from");
    return reinit_through_dcs(c, node, primary, timeout_seconds);
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
