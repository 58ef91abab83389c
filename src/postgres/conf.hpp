// Rendering of the PostgreSQL files pgfleet manages: pgfleet.conf (included by postgresql.conf)
// and pg_hba.conf. Pure functions of the config, so they are unit tested without a server.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "cluster/config.hpp"
#include "cluster/layout.hpp"

namespace pgfleet::postgres {

struct UpstreamInfo {
  std::string name;  // node streamed from; its replication slot for us is named after us
  std::string host;
  int port = 0;
};

// Parameters for `node`. `upstream` is empty for the primary; `sync_names` is the primary's
// synchronous_standby_names. Cluster-wide then per-node pass-through parameters come last, so
// they win over pgfleet's defaults.
// `ssl`: the cluster has a certificate (layout.tls_cert/tls_key), so PostgreSQL offers TLS too.
// `archive_command`: how this node archives WAL for point-in-time recovery ("" = it does not).
// Parameters a hot standby must have at least at the primary's values, or PostgreSQL stops its
// recovery ("insufficient parameter settings"): a rolling restart that lowers max_connections
// restarts the replicas first, while the primary still runs with the higher value. Patroni's
// remedy: a standby starts with at least what its control file recorded from the primary.
using ParameterFloors = std::map<std::string, int64_t>;
// From pg_controldata's "max_connections setting: 150" lines (its names for two of them differ).
ParameterFloors standby_parameter_floors(const std::string& controldata_output);
// Lines that raise `conf`'s values (the last assignment of each, else PostgreSQL's default) to the
// floors; "" when none is below.
std::string raise_to_floors(const std::string& conf, const ParameterFloors& floors);

// `floors`: a standby's (standby_parameter_floors), applied after everything else.
std::string render_node_conf(const cluster::ClusterConfig& config, const cluster::NodeConfig& node,
                             const cluster::Layout& layout, const UpstreamInfo* upstream,
                             const std::string& sync_names, bool ssl = false, const std::string& archive_command = "",
                             const ParameterFloors& floors = {});
std::string render_hba(const cluster::ClusterConfig& config);
// The line appended once to initdb's postgresql.conf.
inline constexpr const char* kIncludeLine = "include_if_exists = 'pgfleet.conf'\t# managed by pgfleet\n";
// Quotes a value for postgresql.conf ('it''s').
std::string quote(const std::string& value);

}  // namespace pgfleet::postgres
