// Proxy metrics from the workers' once-a-second snapshots: no counter is read on the hot path.
#include "proxy/http_api.hpp"

#include <map>

#include "dashboard/routes.hpp"
#include "http/cluster_api.hpp"
#include "http/metrics.hpp"
#include "http/node_api.hpp"
#include "proxy/admin.hpp"
#include "proxy/worker.hpp"
#include "util/log.hpp"

namespace pgfleet::proxy {
namespace {

// A Prometheus histogram (cumulative _bucket, _sum, _count) of latency_bucket() counts.
void add_latency_histogram(http::MetricsWriter& out, const std::string& name, const http::Labels& labels,
                           const uint64_t (&buckets)[kLatencyBuckets], uint64_t sum_us) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kLatencyBuckets; ++i) {
    cumulative += buckets[i];
    if (i + 1 == kLatencyBuckets) break;  // the last bucket is open-ended: +Inf below
    http::Labels l = labels;
    l.emplace_back("le", http::format_value(static_cast<double>(latency_bucket_upper_us(i)) / 1e6));
    out.add(name, l, static_cast<double>(cumulative), "_bucket");
  }
  http::Labels inf = labels;
  inf.emplace_back("le", "+Inf");
  out.add(name, inf, static_cast<double>(cumulative), "_bucket");
  out.add(name, labels, static_cast<double>(sum_us) / 1e6, "_sum");
  out.add(name, labels, static_cast<double>(cumulative), "_count");
}

}  // namespace

std::string proxy_metrics_text(ProxyShared& shared) {
  http::MetricsWriter out;
  auto config = shared.settings();
  out.set_common_labels({{"cluster", config->cluster}});
  out.gauge("pgfleet_proxy_up", "1 while the proxy runs.", 1);
  out.gauge("pgfleet_proxy_workers", "Event-loop threads of the proxy.", static_cast<double>(shared.workers.size()));
  out.gauge("pgfleet_proxy_client_connections", "Clients connected to the proxy.", shared.clients.load());
  out.gauge("pgfleet_proxy_paused", "1 while the proxy holds new transactions (PAUSE, or etcd's proxy_pause).",
            shared.all_paused() ? 1 : 0);

  out.family("pgfleet_proxy_clients", "gauge", "Clients per pool and state.");
  out.family("pgfleet_proxy_servers", "gauge", "Server connections per pool and state.");
  out.family("pgfleet_proxy_max_wait_seconds", "gauge", "Longest current wait of a client for a server, per pool.");
  out.family("pgfleet_proxy_transactions_total", "counter", "Transactions through the pool.");
  out.family("pgfleet_proxy_queries_total", "counter", "Queries through the pool.");
  out.family("pgfleet_proxy_received_bytes_total", "counter", "Bytes received from clients.");
  out.family("pgfleet_proxy_sent_bytes_total", "counter", "Bytes sent to clients.");
  out.family("pgfleet_proxy_errors_total", "counter", "Error responses of the servers passed on to clients, per pool.");
  out.family("pgfleet_proxy_wait_seconds", "histogram", "Time clients waited for a server connection, per pool.");
  out.family("pgfleet_proxy_query_duration_seconds", "histogram",
             "Time from a client's first message to ReadyForQuery, per pool.");
  for (const auto& [key, p] : merged_pools(shared)) {
    http::Labels pool = {{"database", p.database}, {"user", p.user}};
    auto with = [&](const char* name, const char* value) {
      http::Labels l = pool;
      l.emplace_back(name, value);
      return l;
    };
    out.add("pgfleet_proxy_clients", with("state", "active"), p.clients_active);
    out.add("pgfleet_proxy_clients", with("state", "waiting"), p.clients_waiting);
    out.add("pgfleet_proxy_clients", with("state", "idle"), p.clients_idle);
    out.add("pgfleet_proxy_servers", with("state", "active"), p.servers_active);
    out.add("pgfleet_proxy_servers", with("state", "idle"), p.servers_idle);
    out.add("pgfleet_proxy_servers", with("state", "connecting"), p.servers_connecting);
    out.add("pgfleet_proxy_servers", with("state", "canceling"), p.servers_being_canceled);
    out.add("pgfleet_proxy_max_wait_seconds", pool, static_cast<double>(p.max_wait_us) / 1e6);
    const auto& s = p.stats;
    out.add("pgfleet_proxy_transactions_total", pool, static_cast<double>(s.transactions));
    out.add("pgfleet_proxy_queries_total", pool, static_cast<double>(s.queries));
    out.add("pgfleet_proxy_received_bytes_total", pool, static_cast<double>(s.bytes_received));
    out.add("pgfleet_proxy_sent_bytes_total", pool, static_cast<double>(s.bytes_sent));
    out.add("pgfleet_proxy_errors_total", pool, static_cast<double>(s.errors));
    add_latency_histogram(out, "pgfleet_proxy_wait_seconds", pool, s.wait_hist, s.wait_us_total);
    add_latency_histogram(out, "pgfleet_proxy_query_duration_seconds", pool, s.query_hist, s.query_us_total);
  }
  // Routing: statements per node, why statements went to the primary, the proxy's own errors.
  std::array<uint64_t, 64> statements{};
  std::array<uint64_t, 16> reasons{};
  std::array<uint64_t, kErrorKinds> errors{};
  for (Worker* w : shared.workers) {
    auto snap = w->snapshot();
    for (size_t i = 0; i < statements.size(); ++i) statements[i] += snap->node_statements[i];
    for (size_t i = 0; i < reasons.size(); ++i) reasons[i] += snap->route_counts[i];
    for (size_t i = 0; i < errors.size(); ++i) errors[i] += snap->errors[i];
  }
  auto topo = shared.topology->current();
  out.family("pgfleet_proxy_statements_routed_total", "counter", "Statements (and transactions) sent to each node.");
  auto routed = [&](const Backend& b, const char* role) {
    if (b.index >= 0 && static_cast<size_t>(b.index) < statements.size()) {
      out.add("pgfleet_proxy_statements_routed_total", {{"node", b.name}, {"role", role}},
              static_cast<double>(statements[static_cast<size_t>(b.index)]));
    }
  };
  if (topo->primary) routed(*topo->primary, "primary");
  for (const auto& r : topo->replicas) routed(r, "replica");
  out.family("pgfleet_proxy_routing_decisions_total", "counter",
             "Routing decisions by reason (read, write, function, hint, lag, no_replica, ...) and target.");
  for (size_t i = 0; i < kRouteReasons; ++i) {
    auto reason = static_cast<RouteReason>(i);
    out.add("pgfleet_proxy_routing_decisions_total",
            {{"reason", to_string(reason)}, {"target", routes_to_replica(reason) ? "replica" : "primary"}},
            static_cast<double>(reasons[i]));
  }
  out.family("pgfleet_proxy_client_errors_total", "counter",
             "Errors the proxy itself sent clients, by kind (auth, wait_timeout, too_many_clients, protocol, "
             "server_lost, no_replica, terminated, slow_subscriber, other).");
  for (size_t i = 0; i < kErrorKinds; ++i) {
    out.add("pgfleet_proxy_client_errors_total", {{"kind", to_string(static_cast<ErrorKind>(i))}},
            static_cast<double>(errors[i]));
  }
  // Where server connections go: the traffic split between the nodes.
  std::map<std::pair<std::string, std::string>, int> by_node;
  for (Worker* w : shared.workers) {
    for (const auto& s : w->snapshot()->servers) {
      by_node[{s.backend.substr(0, s.backend.find(' ')), s.state}]++;
    }
  }
  out.family("pgfleet_proxy_node_servers", "gauge", "Server connections per node and state.");
  for (const auto& [key, count] : by_node) out.add("pgfleet_proxy_node_servers", {{"node", key.first}, {"state", key.second}}, count);
  out.family("pgfleet_proxy_backend", "gauge", "1 for each node the proxy routes to, by role.");
  if (topo->primary) out.add("pgfleet_proxy_backend", {{"node", topo->primary->name}, {"role", "primary"}}, 1);
  for (const auto& r : topo->replicas) out.add("pgfleet_proxy_backend", {{"node", r.name}, {"role", "replica"}}, 1);
  return out.text();
}

std::unique_ptr<http::Server> start_http_api(ProxyShared& shared, const std::optional<cluster::Layout>& layout) {
  auto config = shared.settings();
  if (config->ports.http <= 0) return nullptr;
  http::Router router;
  std::shared_ptr<http::ClusterReader> reader;
  if (layout) {
    reader = std::make_shared<http::ClusterReader>(*layout);
    // The dashboard lives on the proxy's port (status dashboard_url): its API gains the traffic split.
    dashboard::add_routes(router, reader, [&shared] {
      std::map<std::string, int> by_node;
      for (Worker* w : shared.workers) {
        for (const auto& s : w->snapshot()->servers) by_node[s.backend.substr(0, s.backend.find(' '))]++;
      }
      return nlohmann::json{{"servers_by_node", by_node}};
    });
    router.add("GET", "/", [reader](const http::Request& r) {
      if (auto page = http::browser_root(r, *reader)) return *page;
      return http::Response::text(404, "the dashboard is a page for browsers; JSON at /api/cluster, metrics at /metrics");
    });
  }
  router.add("GET", "/metrics", [&shared, reader](const http::Request&) {
    std::string text = proxy_metrics_text(shared);
    if (reader) {
      http::MetricsWriter cluster;
      cluster.set_common_labels({{"cluster", shared.settings()->cluster}});
      try {
        reader->write_cluster_metrics(cluster);
        text += cluster.text();
      } catch (const std::exception& e) {
        log::warn("http: cluster metrics unavailable: {}", e.what());
      }
    }
    http::Response r;
    r.content_type = http::kMetricsContentType;
    r.body = std::move(text);
    return r;
  });
  http::ServerOptions options;
  options.address = config->listen_address;
  options.port = config->ports.http;
  options.reuse_port = true;
  try {
    static std::shared_ptr<SSL_CTX> tls;  // lives as long as the process, like the server
    if (layout) tls = http::http_tls_context(*layout, *config);
    options.tls = tls.get();
    auto server = std::make_unique<http::Server>(std::move(options), std::move(router));
    server->start();
    log::info("HTTP (metrics, cluster API) on {}:{}", config->listen_address, server->port());
    return server;
  } catch (const std::exception& e) {
    log::error("HTTP port not served: {}", e.what());
    return nullptr;
  }
}

}  // namespace pgfleet::proxy
