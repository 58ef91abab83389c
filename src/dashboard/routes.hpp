// The dashboard's HTTP side: pages, the shared script, and /api/cluster extended with the
// agents' load figures over the last 15 minutes and a timeline of events.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster/layout.hpp"
#include "http/cluster_api.hpp"
#include "http/response.hpp"
#include "top/model.hpp"

namespace pgfleet::dashboard {

// Fifteen minutes of per-node samples (TPS, lag) and the events seen between samples. add() is
// pure bookkeeping (unit-tested); Sampler feeds it once a second. Thread-safe.
class History {
 public:
  static constexpr size_t kCapacity = 15 * 60;  // one sample a second

  // Records one `pgfleet status --json` document taken at `now_ms`.
  void add(const nlohmann::json& status, int64_t now_ms);
  // {"t": [ms...], "nodes": {name: {"tps": [...], "lag_bytes": [...], "lag_seconds": [...]}}}
  // for samples taken after `since_ms`.
  [[nodiscard]] nlohmann::json series_since(int64_t since_ms) const;
  // The DCS history (failovers, switchovers) merged with changes seen between samples (node
  // down/up, role, leader, scale), oldest first: [{"time_ms", "kind", "text"}].
  [[nodiscard]] nlohmann::json events(const nlohmann::json& status) const;

 private:
  struct Point {
    int64_t t = 0;
    std::map<std::string, std::array<std::optional<double>, 3>> nodes;  // tps, lag_bytes, lag_seconds
  };
  mutable std::mutex mu_;
  std::deque<Point> points_;
  std::optional<top::Snapshot> previous_;
  std::vector<top::Event> observed_;
};

// Samples the cluster (its own DCS handle) into a History every second on its own thread.
class Sampler {
 public:
  explicit Sampler(cluster::Layout layout);
  ~Sampler();  // stops and joins
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;
  [[nodiscard]] const History& history() const { return history_; }

 private:
  void run(cluster::Layout layout);
  History history_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

// Proxy figures only the proxy process knows (server connections by node), merged into the
// JSON's "proxy" object; null where there is none.
using ProxyFigures = std::function<nlohmann::json()>;

// GET /api/cluster (status JSON + "events", + "series" with ?since=MS), GET /display and
// GET /dashboard/common.js. Starts a Sampler that lives as long as the router's handlers.
void add_routes(http::Router& router, std::shared_ptr<http::ClusterReader> reader, ProxyFigures proxy = {});

// The dashboard page, for GET / from browsers (http::browser_root).
http::Response page();

}  // namespace pgfleet::dashboard
