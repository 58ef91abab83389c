// Layout: where every file of one cluster lives under its directory.
#pragma once

#include <string>

namespace pgfleet::cluster {

class Layout {
 public:
  explicit Layout(const std::string& directory);  // made absolute

  [[nodiscard]] const std::string& root() const { return root_; }
  [[nodiscard]] std::string config_file() const { return root_ + "/pgfleet.yaml"; }
  [[nodiscard]] std::string secrets_file() const { return root_ + "/secrets.json"; }
  [[nodiscard]] std::string passfile() const { return root_ + "/pgpass"; }  // libpq passfile, 0600
  [[nodiscard]] std::string dcs_dir() const { return root_ + "/dcs"; }
  [[nodiscard]] std::string run_dir() const { return root_ + "/run"; }
  [[nodiscard]] std::string cli_lock() const { return run_dir() + "/cli.lock"; }
  [[nodiscard]] std::string nodes_dir() const { return root_ + "/nodes"; }
  [[nodiscard]] std::string node_dir(const std::string& node) const { return nodes_dir() + "/" + node; }
  [[nodiscard]] std::string data_dir(const std::string& node) const { return node_dir(node) + "/data"; }
  [[nodiscard]] std::string log_dir(const std::string& node) const { return node_dir(node) + "/log"; }
  [[nodiscard]] std::string postgres_log(const std::string& node) const {
    return log_dir(node) + "/postgresql.log";
  }
  [[nodiscard]] std::string agent_log(const std::string& node) const { return log_dir(node) + "/agent.log"; }
  [[nodiscard]] std::string agent_pidfile(const std::string& node) const {
    return run_dir() + "/agent-" + node + ".pid";
  }
  [[nodiscard]] std::string proxy_log() const { return root_ + "/proxy.log"; }
  // Point-in-time recovery: archived WAL (archive_command) and base backups (`pgfleet backup`).
  [[nodiscard]] std::string archive_dir() const { return root_ + "/archive"; }
  [[nodiscard]] std::string backups_dir() const { return root_ + "/backups"; }
  // The cluster's generated TLS certificate and key (proxy and PostgreSQL listeners).
  [[nodiscard]] std::string tls_dir() const { return root_ + "/tls"; }
  [[nodiscard]] std::string tls_cert() const { return tls_dir() + "/server.crt"; }
  [[nodiscard]] std::string tls_key() const { return tls_dir() + "/server.key"; }
  // Several hosts: the cluster's CA (shared through the DCS with the passwords), which issued
  // server.crt. One host has none: server.crt is self-signed.
  [[nodiscard]] std::string tls_ca_cert() const { return tls_dir() + "/ca.crt"; }
  [[nodiscard]] std::string tls_ca_key() const { return tls_dir() + "/ca.key"; }
  // What verifies this cluster's servers: the CA where there is one, else the self-signed certificate.
  [[nodiscard]] std::string tls_trust() const;
  // Directory of the nodes' Unix sockets. Socket paths are limited to 107 bytes, so a deep
  // cluster directory gets a short directory under /tmp instead of <root>/run.
  [[nodiscard]] std::string socket_dir() const;

 private:
  std::string root_;
};

// The directory of the proxy's Unix sockets: proxy.unix_socket_dir as configured, the cluster's
// socket directory when that is empty and there is a cluster, "" for none.
std::string proxy_socket_dir(const std::string& configured, const Layout* cluster);

}  // namespace pgfleet::cluster
