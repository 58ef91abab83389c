// Cluster-wide PostgreSQL parameters kept in the DCS (`pgfleet config set`, as Patroni's
// `edit-config`): one change reaches every node, on one host or many, without editing each
// host's file. Precedence on a node: pgfleet.yaml's `postgresql:` (node.yaml's on several
// hosts) < these < the node's own `nodes[].postgresql`.
#pragma once

#include <string>
#include <string_view>

#include "cluster/config.hpp"
#include "util/result.hpp"

namespace pgfleet::cluster {

// Why pgfleet does not let `name` be set cluster-wide ("" when it may be): parameters pgfleet
// writes itself per node (ports, replication, archiving, files).
std::string managed_parameter_reason(const std::string& name);

// "work_mem=64MB" -> {"work_mem", "64MB"}; the name is checked (a PostgreSQL parameter name,
// not one pgfleet manages), the value must be one line.
Result<std::pair<std::string, std::string>> parse_parameter_assignment(std::string_view text);

// The DCS key's value: a JSON object of name -> value text.
std::string parameters_to_json(const PgParameters& parameters);
Result<PgParameters> parameters_from_json(const std::string& text);

}  // namespace pgfleet::cluster
