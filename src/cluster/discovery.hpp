// Finding the running parts of a cluster: its primary, and which agents are alive.
#pragma once

#include <sys/types.h>

#include <string>

#include "cluster/config.hpp"
#include "cluster/layout.hpp"
#include "dcs/dcs.hpp"

namespace pgfleet::cluster {

// The primary's node name: the DCS leader key when it names a configured node; otherwise
// (nothing running yet) the node whose data directory is not a standby. "" if none.
std::string discover_primary(const ClusterConfig& config, const Layout& layout, dcs::Dcs& dcs);
// Same, from the data directories alone.
std::string primary_from_data(const ClusterConfig& config, const Layout& layout);

// Pid of the agent running `node`, or 0. An agent holds an exclusive flock on its pidfile for
// its whole life, so a stale pidfile never counts.
pid_t agent_pid(const Layout& layout, const std::string& node);

// Taken by the agent at start; returns the locked fd (kept open for the process's life), or -1
// with `holder` set to the pid already holding it.
int lock_agent_pidfile(const Layout& layout, const std::string& node, pid_t& holder);

// Advertised address for connections to the nodes (listen_address, or loopback for wildcards).
std::string connect_host(const ClusterConfig& config);

}  // namespace pgfleet::cluster
