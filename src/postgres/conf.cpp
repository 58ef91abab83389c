// pgfleet.conf and pg_hba.conf text: replication settings pgfleet relies on, then the user's.
#include "postgres/conf.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>

namespace pgfleet::postgres {

std::string quote(const std::string& value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') out += "''";
    else if (c == '\\') out += "\\\\";
    else out += c;
  }
  return out + "'";
}

namespace {
// pg_controldata's label, the parameter's name, and PostgreSQL 15's default for it.
struct FloorParameter {
  const char* label;
  const char* name;
  int64_t default_value;
};
constexpr FloorParameter kFloorParameters[] = {
    {"max_connections setting:", "max_connections", 100},
    {"max_worker_processes setting:", "max_worker_processes", 8},
    {"max_wal_senders setting:", "max_wal_senders", 10},
    {"max_prepared_xacts setting:", "max_prepared_transactions", 0},
    {"max_locks_per_xact setting:", "max_locks_per_transaction", 64},
};

// The value of the last "name = value" line of `conf` ("" when none); quotes removed.
std::string last_assignment(const std::string& conf, const std::string& name) {
  std::string value;
  size_t start = 0;
  while (start < conf.size()) {
    size_t end = conf.find('\n', start);
    if (end == std::string::npos) end = conf.size();
    std::string_view line(conf.data() + start, end - start);
    start = end + 1;
    if (!line.starts_with(name)) continue;
    auto rest = line.substr(name.size());
    size_t eq = rest.find_first_not_of(" \t");
    if (eq == std::string_view::npos || rest[eq] != '=') continue;
    auto v = rest.substr(eq + 1);
    v.remove_prefix(std::min(v.size(), v.find_first_not_of(" \t")));
    if (v.size() >= 2 && v.front() == '\'' && v.back() == '\'') v = v.substr(1, v.size() - 2);
    value = std::string(v);
  }
  return value;
}
}  // namespace

ParameterFloors standby_parameter_floors(const std::string& controldata_output) {
  ParameterFloors floors;
  for (const auto& p : kFloorParameters) {
    auto at = controldata_output.find(p.label);
    if (at == std::string::npos) continue;
    floors[p.name] = std::atoll(controldata_output.c_str() + at + std::string_view(p.label).size());
  }
  return floors;
}

std::string raise_to_floors(const std::string& conf, const ParameterFloors& floors) {
  std::string out;
  for (const auto& p : kFloorParameters) {
    auto floor = floors.find(p.name);
    if (floor == floors.end()) continue;
    std::string text = last_assignment(conf, p.name);
    int64_t configured = text.empty() ? p.default_value : std::atoll(text.c_str());
    if (configured < floor->second) out += fmt::format("{} = {}\n", p.name, floor->second);
  }
  return out;
}

std::string render_node_conf(const cluster::ClusterConfig& config, const cluster::NodeConfig& node,
                             const cluster::Layout& layout, const UpstreamInfo* upstream,
                             const std::string& sync_names, bool ssl, const std::string& archive_command,
                             const ParameterFloors& floors) {
  // Room for every node to stream and for pg_basebackup/pg_rewind to connect while they do.
  int senders = std::max(10, static_cast<int>(config.nodes.size()) * 2 + 4);
  std::string out;
  out += "# Managed by pgfleet: rewritten whenever this node starts or the cluster changes.\n";
  out += "# Put your own settings under `postgresql:` in pgfleet.yaml instead of here.\n";
  out += fmt::format("listen_addresses = {}\n", quote(config.listen_address));
  out += fmt::format("port = {}\n", node.port);
  out += fmt::format("unix_socket_directories = {}\n", quote(layout.socket_dir()));
  out += "unix_socket_permissions = 0700\n";  // only the cluster's OS user: local 'trust' stays private
  out += fmt::format("cluster_name = {}\n", quote(config.cluster + "/" + node.name));
  out += "password_encryption = 'scram-sha-256'\n";
  if (ssl) {
    out += "ssl = on\n";
    out += fmt::format("ssl_cert_file = {}\n", quote(layout.tls_cert()));
    out += fmt::format("ssl_key_file = {}\n", quote(layout.tls_key()));
  }
  out += "wal_level = replica\n";
  out += "wal_log_hints = on\n";  // pg_rewind needs it (checksums are on too)
  out += "hot_standby = on\n";
  out += "hot_standby_feedback = on\n";
  out += fmt::format("max_wal_senders = {}\n", senders);
  out += fmt::format("max_replication_slots = {}\n", senders);
  out += "wal_keep_size = '512MB'\n";
  // A replica that stays down keeps its slot: without a bound its WAL would fill the primary's
  // disk and stop the whole cluster. Past this the slot is lost and that replica needs a
  // `pgfleet reinit` (the primary's agent says so); `postgresql:` in pgfleet.yaml can change it.
  out += "max_slot_wal_keep_size = '8GB'\n";
  out += "wal_sender_timeout = '10s'\n";
  out += "wal_receiver_timeout = '10s'\n";
  out += "wal_receiver_status_interval = '1s'\n";
  // A standby whose upstream went away (crash restart, failover) tries again after this instead of
  // PostgreSQL's 5 s: in sync modes commits wait for it to stream again.
  out += "wal_retrieve_retry_interval = '500ms'\n";
  if (!archive_command.empty()) {
    // Replicas archive too: the archive then has every segment some node received, even what a
    // primary wrote just before it died (docs/backup.md).
    out += "archive_mode = always\n";
    out += fmt::format("archive_command = {}\n", quote(archive_command));
  }
  out += "logging_collector = off\n";  // the agent captures stderr into the node's log directory
  out += "log_line_prefix = '%m [%p] %q%u@%d '\n";
  out += fmt::format("synchronous_standby_names = {}\n", quote(sync_names));
  if (upstream != nullptr) {
    std::string conninfo = fmt::format(
        "host={} port={} user={} passfile={} application_name={} connect_timeout=5 sslmode=prefer",
        upstream->host, upstream->port, config.replication_user, layout.passfile(), node.name);
    out += fmt::format("primary_conninfo = {}\n", quote(conninfo));
    out += fmt::format("primary_slot_name = {}\n", quote(node.name));
    out += "recovery_target_timeline = 'latest'\n";
  } else {
    out += "primary_conninfo = ''\n";
    out += "primary_slot_name = ''\n";
  }
  if (!config.postgresql.empty()) out += "\n# postgresql: from pgfleet.yaml\n";
  for (const auto& [name, value] : config.postgresql) out += fmt::format("{} = {}\n", name, quote(value));
  if (!config.cluster_parameters.empty()) out += "\n# cluster-wide: pgfleet config set (the DCS)\n";
  for (const auto& [name, value] : config.cluster_parameters) out += fmt::format("{} = {}\n", name, quote(value));
  if (!node.postgresql.empty()) out += fmt::format("\n# nodes.{}.postgresql: from pgfleet.yaml\n", node.name);
  for (const auto& [name, value] : node.postgresql) out += fmt::format("{} = {}\n", name, quote(value));
  if (std::string raised = raise_to_floors(out, floors); !raised.empty()) {
    out += "\n# at least the primary's values, which this standby's recovery needs (its next start lowers them)\n";
    out += raised;
  }
  return out;
}

std::string render_hba(const cluster::ClusterConfig& config) {
  std::string out;
  out += "# Managed by pgfleet. TYPE DATABASE USER ADDRESS METHOD\n";
  out += "# The socket directory is 0700: only the cluster's OS user can use local trust.\n";
  if (!config.pg_hba.empty()) {
    // First match wins: the user's entries can grant access pgfleet's do not, or refuse some.
    out += "# pg_hba: from pgfleet.yaml\n";
    for (const auto& line : config.pg_hba) out += line + "\n";
    out += "# pgfleet's own\n";
  }
  out += "local   all          all                     trust\n";
  for (const char* net : {"127.0.0.1/32", "::1/128"}) {
    out += fmt::format("host    replication  {:<12} {:<18} scram-sha-256\n", config.replication_user, net);
    out += fmt::format("host    all          all          {:<18} scram-sha-256\n", net);
  }
  if (config.listen_address != "127.0.0.1" && config.listen_address != "localhost") {
    // Listening beyond loopback: allow the local network, never without a password.
    out += fmt::format("host    replication  {:<12} {:<18} scram-sha-256\n", config.replication_user,
                       "samenet");
    out += fmt::format("host    all          all          {:<18} scram-sha-256\n", "samenet");
  }
  return out;
}

}  // namespace pgfleet::postgres
