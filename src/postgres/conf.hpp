// Rendering of the PostgreSQL files pgfleet manages: pgfleet.conf (included by postgresql.conf)
// and pg_hba.conf. Pure functions of the config, so they are unit tested without a server.
#pragma once

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
std::string render_node_conf(const cluster::ClusterConfig& config, const cluster::NodeConfig& node,
                             const cluster::Layout& layout, const UpstreamInfo* upstream,
                             const std::string& sync_names, bool ssl = false, const std::string& archive_command = "");
std::string render_hba(const cluster::ClusterConfig& config);
// The line appended once to initdb's postgresql.conf.
inline constexpr const char* kIncludeLine = "include_if_exists = 'pgfleet.conf'\t# managed by pgfleet\n";
// Quotes a value for postgresql.conf ('it''s').
std::string quote(const std::string& value);

}  // namespace pgfleet::postgres
