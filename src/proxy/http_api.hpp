// The proxy's HTTP port (ports.http): GET /metrics (pools, clients, servers, timings, plus the
// cluster-level metrics) and the cluster routes (/api/cluster, the dashboard's pages).
#pragma once

#include <memory>
#include <optional>

#include "cluster/layout.hpp"
#include "http/server.hpp"
#include "proxy/shared.hpp"

namespace pgfleet::proxy {

// The proxy's metrics in Prometheus text format (pure over the shared snapshots).
std::string proxy_metrics_text(ProxyShared& shared);

// Starts the server on listen_address:ports.http (SO_REUSEPORT, so a takeover's new proxy can
// bind while the old one drains). Returns null, after logging why, when it cannot listen.
std::unique_ptr<http::Server> start_http_api(ProxyShared& shared, const std::optional<cluster::Layout>& layout);

}  // namespace pgfleet::proxy
