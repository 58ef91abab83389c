// Cluster lifecycle operations shared by the CLI commands: agents, replicas, waiting, locking.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "cluster/binaries.hpp"
#include "cluster/config.hpp"
#include "cluster/layout.hpp"
#include "cluster/secrets.hpp"
#include "cluster/status.hpp"
#include "dcs/dcs.hpp"
#include "dcs/etcd_dcs.hpp"

namespace pgfleet::cluster {

// An existing cluster directory, opened for a command.
struct Cluster {
  Layout layout;
  ClusterConfig config;
  Secrets secrets;
  std::unique_ptr<dcs::Dcs> dcs;
  bool remote = false;  // read from etcd (--dcs): no cluster directory on this machine
  std::string ca_pem;   // remote: the cluster CA from etcd, to verify the agents' HTTPS (local: a file)

  // Throws UserError when `directory` holds no cluster (or a broken one).
  static Cluster open(const std::string& directory);
  void save_config() const;
  ClusterStatus status() const;
};

// The cluster's DCS: etcd when dcs.etcd.endpoints is set, else the local file store.
std::unique_ptr<dcs::Dcs> open_dcs(const Layout& layout, const ClusterConfig& config);
dcs::EtcdOptions etcd_options(const ClusterConfig& config);

// Exclusive lock over CLI commands that change a cluster (held until destroyed).
class CommandLock {
 public:
  explicit CommandLock(const Layout& layout);  // throws UserError if another command holds it
  ~CommandLock();
  CommandLock(const CommandLock&) = delete;
  CommandLock& operator=(const CommandLock&) = delete;

 private:
  int fd_ = -1;
};

// Starts the agent daemon for `node` and waits until it holds its pidfile lock.
pid_t start_agent(const Layout& layout, const std::string& node);
// SIGTERM to the node's agent, then waits for it to stop its postmaster and exit. Also stops a
// postmaster left without an agent. Returns false when something was still running at the timeout.
bool stop_agent(const Cluster& cluster, const std::string& node, std::chrono::seconds timeout);

// The proxy daemon (`pgfleet proxy --dir`): started once the cluster streams, waits until its
// port accepts connections; stopped with a graceful SIGTERM.
pid_t start_proxy(const Layout& layout, const ClusterConfig& config);
bool stop_proxy(const Layout& layout, std::chrono::seconds timeout);

// Polls the cluster status until `done` is true; throws UserError describing `what` (and the
// last status plus the tail of each failing node's log) at the timeout, or at once when a
// node's postmaster crashes again after its agent restarted it (a server that cannot start fails
// fast, not at the timeout; one crash, e.g. a kill -9, is waited out).
ClusterStatus wait_until(const Cluster& cluster, const std::function<bool(const ClusterStatus&)>& done,
                         std::chrono::seconds timeout, const std::string& what);
// True when every node is up: the primary running, every replica streaming, and in sync
// modes every direct replica of the primary listed with a synchronous role.
bool all_streaming(const ClusterConfig& config, const ClusterStatus& status);

// Builds `node`'s data directory with pg_basebackup from the primary after creating its
// replication slot on its upstream. On failure removes what it made and throws UserError.
void build_replica(const Cluster& cluster, const PgBinaries& bins, const std::string& node);
// Drops `node`'s replication slot on its upstream (best effort).
void drop_replica_slot(const Cluster& cluster, const std::string& node);

}  // namespace pgfleet::cluster
