// Requests to a node's agent over its HTTP API (the cluster's token), over HTTPS verified with the
// cluster CA when http.tls is on: from the cluster's host, or (--dcs) from any other machine.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "cluster/control.hpp"
#include "http/client.hpp"

namespace pgfleet::cli {

// POSTs `body` (JSON, or empty) to `path` on the node's agent. nullopt when its API cannot be used
// (no token or port known, unreachable, a TLS failure): callers then ask another way (a signal,
// the DCS). Any HTTP answer is returned, whatever its status.
std::optional<http::ClientReply> post_to_agent(const cluster::Cluster& c, const cluster::NodeConfig& node,
                                               const std::string& path, const std::string& body,
                                               std::chrono::milliseconds timeout);

}  // namespace pgfleet::cli
