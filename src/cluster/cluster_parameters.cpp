#include "cluster/cluster_parameters.hpp"

#include <algorithm>
#include <cctype>
#include <map>

#include <nlohmann/json.hpp>

namespace pgfleet::cluster {

std::string managed_parameter_reason(const std::string& name) {
  static const std::map<std::string, std::string> kManaged = {
      {"port", "each node's port is in pgfleet.yaml (nodes[].port) or node.yaml"},
      {"listen_addresses", "set listen_address in pgfleet.yaml or node.yaml"},
      {"unix_socket_directories", "pgfleet puts the sockets in the cluster directory"},
      {"primary_conninfo", "the agents point each replica at its upstream"},
      {"primary_slot_name", "the agents give each replica its slot"},
      {"synchronous_standby_names", "set replication.sync (off, on, quorum)"},
      {"archive_mode", "pgfleet archives WAL for backups (docs/backup.md)"},
      {"archive_command", "pgfleet archives WAL for backups (docs/backup.md)"},
      {"restore_command", "pgfleet restore sets it for the time of a restore"},
      {"hot_standby", "replicas must serve reads for the proxy and the checks"},
      {"data_directory", "each node's data directory is in its cluster directory"},
      {"config_file", "each node's files are in its cluster directory"},
      {"hba_file", "set pg_hba: in pgfleet.yaml"},
      {"ident_file", "each node's files are in its cluster directory"},
      {"recovery_target_timeline", "replicas follow the latest timeline through failovers"},
  };
  auto it = kManaged.find(name);
  return it == kManaged.end() ? "" : it->second;
}

Result<std::pair<std::string, std::string>> parse_parameter_assignment(std::string_view text) {
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos)
    return Error{"'" + std::string(text) + "' is not NAME=VALUE (e.g. work_mem=64MB)"};
  std::string name(text.substr(0, eq));
  std::string value(text.substr(eq + 1));
  auto blank = [](unsigned char c) { return std::isspace(c) != 0; };
  while (!name.empty() && blank(name.back())) name.pop_back();
  name.erase(name.begin(), std::find_if_not(name.begin(), name.end(), blank));
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  if (!is_guc_name(name)) return Error{"'" + name + "' is not a PostgreSQL parameter name"};
  if (auto why = managed_parameter_reason(name); !why.empty())
    return Error{"pgfleet sets " + name + " itself: " + why};
  if (value.find_first_of("\r\n") != std::string::npos) return Error{"the value of " + name + " must be one line"};
  if (value.empty()) return Error{"no value for " + name + " (to remove it: pgfleet config unset " + name + ")"};
  if (name == "wal_level" && value != "replica" && value != "logical")
    return Error{"wal_level must be replica or logical: the replicas stream WAL"};
  return std::make_pair(name, value);
}

std::string parameters_to_json(const PgParameters& parameters) { return nlohmann::json(parameters).dump(); }

Result<PgParameters> parameters_from_json(const std::string& text) {
  try {
    auto j = nlohmann::json::parse(text);
    if (!j.is_object()) return Error{"not a JSON object"};
    PgParameters out;
    for (const auto& [name, value] : j.items()) {
      if (!value.is_string()) return Error{"the value of " + name + " is not a string"};
      if (!is_guc_name(name)) return Error{"'" + name + "' is not a PostgreSQL parameter name"};
      out[name] = value.get<std::string>();
    }
    return out;
  } catch (const nlohmann::json::exception& e) {
    return Error{std::string("not JSON: ") + e.what()};
  }
}

}  // namespace pgfleet::cluster
