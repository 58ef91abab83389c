// pgfleet.conf and pg_hba.conf text: replication settings pgfleet relies on, then the user's.
#include "postgres/conf.hpp"

#include <fmt/format.h>

#include <algorithm>

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

std::string render_node_conf(const cluster::ClusterConfig& config, const cluster::NodeConfig& node,
                             const cluster::Layout& layout, const UpstreamInfo* upstream,
                             const std::string& sync_names, bool ssl, const std::string& archive_command) {
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
  if (!node.postgresql.empty()) out += fmt::format("\n# nodes.{}.postgresql: from pgfleet.yaml\n", node.name);
  for (const auto& [name, value] : node.postgresql) out += fmt::format("{} = {}\n", name, quote(value));
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
