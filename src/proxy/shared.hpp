// ProxyShared: what every worker of one proxy process shares — immutable snapshots (config,
// topology) swapped atomically, the auth cache, the cancel registry and process-wide counters.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "cluster/config.hpp"
#include "protocol/buffer.hpp"
#include "util/tls.hpp"
#include "proxy/auth_cache.hpp"
#include "proxy/health.hpp"
#include "proxy/topology.hpp"

namespace pgfleet::proxy {

class Worker;

// Cancel keys we hand to clients → the worker that owns the client. Touched at connect and
// disconnect only, never per query.
class CancelRegistry {
 public:
  void add(int32_t pid, int32_t secret, Worker* worker);
  void remove(int32_t pid);
  Worker* find(int32_t pid, int32_t secret);

 private:
  std::mutex mutex_;
  std::unordered_map<int32_t, std::pair<int32_t, Worker*>> entries_;
};

// Server connections open (or opening) for one (database, user) across all workers: the pool
// size is one budget for the whole proxy, not a share per thread. Touched when a server
// connection opens or closes, never per query.
struct PoolBudget {
  std::atomic<int> servers{0};
  // The first server's parameters (ParameterStatus), for clients of workers that have no
  // server of their own yet.
  std::mutex welcome_mutex;
  std::optional<std::vector<std::pair<std::string, std::string>>> welcome;
};

struct ProxyShared {
  std::atomic<std::shared_ptr<const cluster::ClusterConfig>> config;
  std::atomic<uint64_t> config_version{0};  // bumped by every store to `config`
  std::string config_path;                 // re-read by RELOAD / SIGHUP
  TopologyWatcher* topology = nullptr;
  HealthPoller* health = nullptr;          // every node's health and WAL position
  AuthCache* auth = nullptr;
  CancelRegistry cancels;
  protocol::Bytes mock_secret;             // derives fake verifiers for unknown users
  // Client-side TLS (null when disabled or no certificate) and proxy.tls_mode = require: loaded
  // again by every RELOAD (a renewed certificate at the same path), taken per new connection.
  std::atomic<std::shared_ptr<const tls::ServerContext>> tls;
  std::atomic<bool> tls_required{false};
  // TLS to servers (proxy.server_sslmode): encryption without certificate verification, as
  // libpq's sslmode=require.
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> server_tls{nullptr, &SSL_CTX_free};
  std::atomic<int> clients{0};             // connected clients, all workers
  std::atomic<int32_t> next_client_pid{1};
  std::atomic<bool> paused{false};         // PAUSE: new transactions wait
  std::atomic<std::shared_ptr<const std::vector<std::string>>> paused_databases{
      std::make_shared<const std::vector<std::string>>()};  // PAUSE db
  std::atomic<std::shared_ptr<const std::vector<std::string>>> disabled_databases{
      std::make_shared<const std::vector<std::string>>()};  // DISABLE db: new clients refused
  std::atomic<bool> shutting_down{false};
  std::atomic<bool> handed_over{false};   // the listeners belong to a new proxy process now
  std::vector<Worker*> workers;
  std::function<void()> request_shutdown;  // graceful, from the admin console
  // Re-reads the config: an error (nothing applied), or "" and a warning naming the settings that
  // only a restart applies (kept at their values in force meanwhile).
  struct ReloadOutcome {
    std::string error, warning;
  };
  std::function<ReloadOutcome()> reload;

  // The budget of a (database, user, node) pool (node "" = the primary); the pointer stays valid
  // for the process's life.
  PoolBudget* budget(const std::string& database, const std::string& user, const std::string& node) {
    std::lock_guard lock(budgets_mutex);
    auto& slot = budgets[{database, user, node}];
    if (!slot) slot = std::make_unique<PoolBudget>();
    return slot.get();
  }
  std::mutex budgets_mutex;
  std::map<std::tuple<std::string, std::string, std::string>, std::unique_ptr<PoolBudget>> budgets;

  std::atomic<bool> any_database_paused{false};
  // PAUSE without a database, or a planned change announced in etcd (TopologyWatcher).
  [[nodiscard]] bool all_paused() const {
    return paused.load(std::memory_order_relaxed) || (topology != nullptr && topology->planned_pause());
  }
  [[nodiscard]] bool is_paused(const std::string& database) const {
    if (all_paused()) return true;
    if (!any_database_paused.load(std::memory_order_relaxed)) return false;
    auto dbs = paused_databases.load(std::memory_order_relaxed);
    return !dbs->empty() && std::find(dbs->begin(), dbs->end(), database) != dbs->end();
  }
  [[nodiscard]] bool is_disabled(const std::string& database) const {
    auto dbs = disabled_databases.load(std::memory_order_relaxed);
    return std::find(dbs->begin(), dbs->end(), database) != dbs->end();
  }
  void store_config(std::shared_ptr<const cluster::ClusterConfig> next) {
    config.store(std::move(next), std::memory_order_release);
    config_version.fetch_add(1, std::memory_order_acq_rel);
  }
  [[nodiscard]] std::shared_ptr<const cluster::ClusterConfig> settings() const {
    return config.load(std::memory_order_acquire);
  }
};

}  // namespace pgfleet::proxy
