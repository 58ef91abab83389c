// run_proxy: the `pgfleet proxy` process — workers, topology, auth cache, signals.
#pragma once

#include <string>

namespace pgfleet::proxy {

struct ProxyOptions {
  // pgfleet.yaml to read. When it sits in a cluster directory (beside dcs/), the proxy follows
  // that cluster's DCS and uses its passfile; otherwise it probes the nodes listed in it.
  std::string config_path;
  // Take the listening sockets over from the proxy already running for this cluster, which then
  // drains and exits: a restart that refuses no connection.
  bool takeover = false;
};

// Runs until SIGTERM (graceful: finish transactions up to proxy.shutdown_timeout), SIGINT
// (immediate) or the admin SHUTDOWN command. SIGHUP reloads the configuration.
int run_proxy(const ProxyOptions& options);

}  // namespace pgfleet::proxy
