// NodeApi: the HTTP server an agent runs for its node — Patroni-compatible health checks,
// GET / (node JSON), GET /metrics, the cluster routes, and token-guarded POST /switchover,
// /restart, /reinit, /failsafe. It runs on its own thread and never waits for the HA loop.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "cluster/config.hpp"
#include "cluster/layout.hpp"
#include "dcs/member.hpp"
#include "http/server.hpp"

namespace pgfleet::http {

struct NodeApiHooks {
  std::function<void()> restart;  // ask the HA loop to restart the postmaster
  std::function<void()> reinit;   // ask the HA loop to rebuild this replica from the leader
  // POST /failsafe from a primary cut off from the DCS: "" = this node confirms it follows it
  // (and promises not to take the leader key for a TTL), else why not.
  std::function<std::string(const std::string& leader)> failsafe;
};

class NodeApi {
 public:
  NodeApi(cluster::Layout layout, const cluster::ClusterConfig& config, std::string node, NodeApiHooks hooks);
  ~NodeApi();
  // Binds the node's api_port (throws std::runtime_error when it cannot) and starts serving.
  void start();
  // From the HA loop, once per iteration: the member state it just published. Cheap.
  void publish(const dcs::Member& member, bool fenced);
  [[nodiscard]] int port() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
  std::unique_ptr<Server> server_;
};

// The TLS context for pgfleet's HTTP servers when http.tls is on (the cluster's certificate),
// else null. Throws std::runtime_error when the files cannot be loaded.
std::shared_ptr<SSL_CTX> http_tls_context(const cluster::Layout& layout, const cluster::ClusterConfig& config);

}  // namespace pgfleet::http
