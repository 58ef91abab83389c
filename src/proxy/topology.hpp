// TopologyWatcher: which server is the primary right now, as an immutable snapshot that workers
// read without locks; a background thread keeps it current from the DCS (or by probing the nodes).
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cluster/config.hpp"
#include "cluster/layout.hpp"
#include "dcs/dcs.hpp"

namespace pgfleet::proxy {

struct Backend {
  std::string name;
  std::string host;
  int port = 0;
  // A node of the local cluster: its Unix socket, which costs less per message than TCP
  // loopback (used unless server_sslmode = require).
  std::string socket_path;
  int index = -1;  // position in the configuration's nodes (HealthPoller::node)
  bool operator==(const Backend&) const = default;
};

struct Topology {
  std::optional<Backend> primary;
  std::vector<Backend> replicas;
  uint64_t version = 0;  // changes whenever the primary or the set of replicas changes
  [[nodiscard]] const Backend* replica(const std::string& name) const {
    for (const auto& r : replicas) {
      if (r.name == name) return &r;
    }
    return nullptr;
  }
};

class TopologyWatcher {
 public:
  // With a cluster directory, the DCS leader key names the primary; without one (a proxy in front
  // of servers it does not manage) the nodes are probed with pg_is_in_recovery() as `auth_user`.
  TopologyWatcher(cluster::ClusterConfig config, std::optional<cluster::Layout> layout);
  ~TopologyWatcher();

  void start();
  void stop();
  [[nodiscard]] std::shared_ptr<const Topology> current() const { return current_.load(std::memory_order_acquire); }
  // Cheap change detection for per-worker caches of current().
  [[nodiscard]] uint64_t version() const { return version_.load(std::memory_order_acquire); }
  // The node's agent reports it unfit for reads (DCS member state crashed/stopping/stopped, or
  // a second primary); lock-free, by node index. A missing member key excludes nothing.
  [[nodiscard]] bool member_excluded(int index) const {
    return index >= 0 && static_cast<size_t>(index) < excluded_.size() && excluded_[static_cast<size_t>(index)].load(std::memory_order_relaxed);
  }
  // etcd's proxy_pause key is present: a planned switchover or restart (`pgfleet switchover --dcs`)
  // asks every proxy following etcd to hold new transactions, as PAUSE does.
  [[nodiscard]] bool planned_pause() const { return planned_pause_.load(std::memory_order_relaxed); }
  // Blocks until a primary is known or `timeout` passes; true if known.
  bool wait_for_primary(std::chrono::milliseconds timeout);

 private:
  void run();
  Topology observe();
  void publish(Topology next);
  void apply_planned_pause();
  void end_planned_pause();

  cluster::ClusterConfig config_;
  std::optional<cluster::Layout> layout_;
  std::unique_ptr<dcs::Dcs> remote_;  // etcd (dcs.etcd in the config): watched, used by the thread only
  std::unique_ptr<dcs::Dcs> local_;   // or the cluster directory's local DCS, likewise
  // etcd: the address each member last published (observe() only), for a failsafe primary whose
  // own member key expired.
  std::map<std::string, Backend> last_address_;
  std::atomic<std::shared_ptr<const Topology>> current_;
  std::atomic<uint64_t> version_{0};
  std::array<std::atomic<bool>, 64> excluded_{};
  std::atomic<bool> planned_pause_{false};
  bool pause_seen_ = false;  // by the last observe() (the thread only)
  std::string pause_reason_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;
};

}  // namespace pgfleet::proxy
