// Cluster operations on top of agents, the DCS and the PostgreSQL tools.
#include "cluster/control.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "cluster/discovery.hpp"
#include "dcs/member.hpp"
#include "cluster/topology.hpp"
#include "dcs/etcd_dcs.hpp"
#include "dcs/local_dcs.hpp"
#include "postgres/instance.hpp"
#include "postgres/pgconn.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"
#include "util/log.hpp"
#include "util/ports.hpp"
#include "util/process.hpp"

namespace pgfleet::cluster {

using namespace std::chrono_literals;

std::unique_ptr<dcs::Dcs> open_dcs(const Layout& layout, const ClusterConfig& config) {
  if (config.etcd.endpoints.empty()) return std::make_unique<dcs::LocalDcs>(layout.dcs_dir());
  return std::make_unique<dcs::EtcdDcs>(etcd_options(config));
}

dcs::EtcdOptions etcd_options(const ClusterConfig& config) {
  dcs::EtcdOptions o;
  o.endpoints = config.etcd.endpoints;
  o.cluster = config.cluster;
  o.tls.ca_file = config.etcd.ca_file;
  o.tls.cert_file = config.etcd.cert_file;
  o.tls.key_file = config.etcd.key_file;
  o.user = config.etcd.user;
  o.password = config.etcd.password;
  // A request may use at most a fifth of the lease, so a dead endpoint and a retry still fit.
  o.request_timeout = dcs::Millis(std::clamp(config.dcs_ttl_seconds * 200, 500, 3000));
  return o;
}

namespace {
std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// A cluster seen from any machine through etcd ("etcd://h:p,...#name", from --dcs and --cluster):
// settings and secrets from the keys the initializing agent wrote, nodes from the member keys.
Cluster open_remote(const std::string& target) {
  const auto hash = target.rfind('#');
  const std::string url = target.substr(0, hash);
  const std::string name = hash == std::string::npos ? "" : target.substr(hash + 1);
  if (name.empty()) throw UserError("--dcs needs --cluster NAME", "name the cluster, as in the agents' node.yaml");
  EtcdConfig etcd;
  etcd.endpoints = dcs::parse_etcd_endpoints(url);
  etcd.ca_file = env_or_empty("PGFLEET_ETCD_CA_FILE");
  etcd.cert_file = env_or_empty("PGFLEET_ETCD_CERT_FILE");
  etcd.key_file = env_or_empty("PGFLEET_ETCD_KEY_FILE");
  etcd.user = env_or_empty("PGFLEET_ETCD_USER");
  etcd.password = env_or_empty("PGFLEET_ETCD_PASSWORD");
  ClusterConfig probe;
  probe.cluster = name;
  probe.etcd = etcd;
  auto dcs = std::make_unique<dcs::EtcdDcs>(etcd_options(probe));
  auto stored = dcs->get("config");
  if (!stored) throw UserError("cannot read cluster " + name + " from etcd: " + stored.error());
  if (!stored.value())
    throw UserError("no pgfleet cluster named '" + name + "' in etcd at " + url,
                    "check --cluster (the 'cluster' of the agents' node.yaml) and --dcs");
  ClusterConfig config = parse_config(stored.value()->value, "etcd key /pgfleet/" + name + "/config");
  config.cluster = name;
  config.etcd = etcd;
  if (auto members = dcs->list(dcs::keys::kMembersPrefix); members) {
    for (const auto& kv : *members) {
      try {
        auto m = dcs::member_from_json(nlohmann::json::parse(kv.value));
        NodeConfig n;
        n.name = m.name;
        n.host = m.host;
        n.port = m.port;
        n.api_port = m.api_port;
        if (!n.name.empty() && !config.find_node(n.name)) config.nodes.push_back(n);
      } catch (const nlohmann::json::exception&) {
      }
    }
  }
  Secrets secrets;
  std::string ca_pem;
  if (auto s = dcs->get("secrets"); s && s.value()) {
    try {
      auto j = nlohmann::json::parse(s.value()->value);
      secrets = Secrets{j.at("superuser_password"), j.at("replication_password"), j.at("api_token")};
      ca_pem = j.value("ca_cert", "");
    } catch (const nlohmann::json::exception&) {
    }
  }
  // No directory on this machine: a path that holds nothing, so every local check finds nothing.
  Layout layout("/nonexistent/pgfleet-remote/" + name);
  return Cluster{std::move(layout), std::move(config), std::move(secrets), std::move(dcs), true, std::move(ca_pem)};
}
}  // namespace

Cluster Cluster::open(const std::string& directory) {
  if (directory.starts_with("etcd://") || directory.starts_with("etcds://")) return open_remote(directory);
  Layout layout(directory);
  if (!fs::exists(layout.config_file())) {
    throw UserError("no pgfleet cluster in " + layout.root() + " (" + layout.config_file() + " not found)",
                    "create one with `pgfleet up --dir " + directory + "`, or pass the right --dir");
  }
  ClusterConfig config;
  try {
    config = load_config(layout.config_file());
  } catch (const ConfigError& e) {
    throw UserError(e.what(), "fix the file and run the command again; nothing was changed");
  }
  Secrets secrets = load_secrets(layout);
  auto dcs = open_dcs(layout, config);
  return Cluster{std::move(layout), std::move(config), std::move(secrets), std::move(dcs), false, ""};
}

ClusterStatus Cluster::status() const {
  ClusterStatus status = collect_status(config, layout, *dcs, secrets);
  if (remote && status.proxy.enabled) {
    // Proxies of a cluster on several hosts run on their own (`pgfleet proxy --config`), wherever
    // clients are: this machine cannot tell where, so none is named rather than a wrong one.
    status.proxy = ProxyStatus{};
    status.connection.proxy.clear();
    status.connection.proxy_primary.clear();
    status.connection.proxy_replicas.clear();
    status.connection.proxy_socket.clear();
    if (!status.nodes.empty()) {
      status.dashboard_url = status.nodes.front().api_url + "/";
      status.metrics_url = status.nodes.front().api_url + "/metrics";
    }
  }
  return status;
}

void Cluster::save_config() const {
  validate_config(config, layout.config_file());
  fs::write_file_atomic(layout.config_file(), render_config(config), 0600);
}

CommandLock::CommandLock(const Layout& layout) {
  fs::make_directories(layout.run_dir(), 0700);
  fd_ = ::open(layout.cli_lock().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) throw UserError("cannot open " + layout.cli_lock() + ": " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    (void)!::pread(fd_, buf, sizeof buf - 1, 0);
    ::close(fd_);
    fd_ = -1;
    throw UserError(fmt::format("another pgfleet command (pid {}) is changing the cluster in {}", std::atol(buf),
                                layout.root()),
                    "wait for it to finish, then run this command again");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
    log::warn("cannot record pid in {}", layout.cli_lock());
  }
}

CommandLock::~CommandLock() {
  if (fd_ >= 0) ::close(fd_);
}

pid_t start_agent(const Layout& layout, const std::string& node) {
  fs::make_directories(layout.log_dir(node), 0700);
  fs::make_directories(layout.run_dir(), 0700);
  pid_t pid = process::spawn_daemon({process::self_exe(), "agent", "--dir", layout.root(), "--node", node},
                                    layout.agent_log(node));
  if (pid <= 0) throw UserError("cannot start the agent for " + node + ": " + std::strerror(errno));
  // Started once the pidfile names it: right after taking the lock the file may still hold the pid
  // of a killed predecessor. A loaded machine may take seconds to get there: wait while it lives.
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    pid_t running = agent_pid(layout, node);
    if (running == pid) return pid;
    if (!process::alive(pid)) {
      if (running > 1 && process::alive(running)) return running;  // another agent already runs the node
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  throw UserError("the agent for " + node + " did not start. Last lines of " + layout.agent_log(node) + ":\n" +
                  fs::tail(layout.agent_log(node), 15));
}

bool stop_agent(const Cluster& cluster, const std::string& node, std::chrono::seconds timeout) {
  const auto& layout = cluster.layout;
  if (pid_t pid = agent_pid(layout, node); pid > 1) {
    ::kill(pid, SIGTERM);
    if (!process::wait_gone(pid, timeout)) return false;
  }
  // A postmaster whose agent was killed keeps running; stop it the same way the agent would.
  if (pid_t postmaster = postgres::running_postmaster(layout, node); postmaster != 0) {
    ::kill(postmaster, SIGINT);
    if (!process::wait_gone(postmaster, timeout)) return false;
  }
  return true;
}

pid_t start_proxy(const Layout& layout, const ClusterConfig& config) {
  if (pid_t running = agent_pid(layout, "proxy"); running != 0) return running;
  pid_t pid = process::spawn_daemon({process::self_exe(), "proxy", "--dir", layout.root()}, layout.proxy_log());
  if (pid <= 0) throw UserError(std::string("cannot start the proxy: ") + std::strerror(errno));
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline) {
    pid_t running = agent_pid(layout, "proxy");
    if (running != 0 && !ports::is_free(connect_host(config), config.ports.proxy)) return running;
    if (!process::alive(pid)) break;
    std::this_thread::sleep_for(50ms);
  }
  throw UserError("the proxy did not start. Last lines of " + layout.proxy_log() + ":\n" +
                  fs::tail(layout.proxy_log(), 15));
}

bool stop_proxy(const Layout& layout, std::chrono::seconds timeout) {
  pid_t pid = agent_pid(layout, "proxy");
  if (pid <= 1) return true;
  ::kill(pid, SIGTERM);
  if (process::wait_gone(pid, timeout)) return true;
  ::kill(pid, SIGINT);  // clients still in transactions after the grace period
  return process::wait_gone(pid, 5s);
}

bool all_streaming(const ClusterConfig& config, const ClusterStatus& status) {
  if (status.leader.empty()) return false;
  for (const auto& n : status.nodes) {
    if (n.name == status.leader) {
      if (n.state != "running" || n.role != "primary") return false;
    } else if (n.state != "streaming" || n.sync_state.empty()) {
      return false;  // not streaming yet, or its upstream has not reported it yet
    }
  }
  // Synchronous modes: the leader names its standbys once they stream — one in `on` mode, every
  // direct replica in `quorum` mode.
  auto direct = direct_replicas(config, status.leader);
  if (config.sync == SyncMode::On && !direct.empty()) {
    bool one_sync = false;
    for (const auto& name : direct) {
      const auto* n = status.find(name);
      one_sync = one_sync || (n != nullptr && n->sync_state == "sync");
    }
    if (!one_sync) return false;
  }
  if (config.sync == SyncMode::Quorum) {
    for (const auto& name : direct) {
      const auto* n = status.find(name);
      if (n == nullptr || n->sync_state != "quorum") return false;
    }
  }
  return true;
}

ClusterStatus wait_until(const Cluster& cluster, const std::function<bool(const ClusterStatus&)>& done,
                         std::chrono::seconds timeout, const std::string& what) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // A crash (kill -9, OOM) just before or during the wait is its agent's to handle: it restarts
  // the postmaster at once or hands over. Only a node that crashes again after that (a server
  // that cannot start) fails the wait early; the restart count tells them apart.
  std::map<std::string, int64_t> first_crash;  // node -> its restart count when first seen crashed
  while (true) {
    ClusterStatus status = cluster.status();
    if (done(status)) return status;
    const NodeStatus* crashed = nullptr;
    for (const auto& n : status.nodes) {
      if (n.state != "crashed") continue;
      auto [seen, first] = first_crash.try_emplace(n.name, n.restarts);
      if (first) {
        std::cout << fmt::format("PostgreSQL on {} crashed; waiting for its agent to restart it or hand over "
                                 "(up to {} s)",
                                 n.name, std::chrono::duration_cast<std::chrono::seconds>(
                                             deadline - std::chrono::steady_clock::now())
                                             .count())
                  << std::endl;
      } else if (n.restarts > seen->second) {
        crashed = &n;
      }
    }
    if (crashed != nullptr) {
      throw UserError(fmt::format("PostgreSQL on {} stopped unexpectedly again after its agent restarted it, while "
                                  "waiting for {}.\nLast lines of {}:\n{}",
                                  crashed->name, what, cluster.layout.postgres_log(crashed->name),
                                  fs::tail(cluster.layout.postgres_log(crashed->name), 15)),
                      "fix the cause shown above; PostgreSQL settings come from `postgresql:` in pgfleet.yaml, "
                      "--set or --config");
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      std::string detail = render_table(status);
      for (const auto& n : status.nodes) {
        if (n.state == "running" || n.state == "streaming") continue;
        detail += fmt::format("\nlast lines of {}:\n{}", cluster.layout.postgres_log(n.name),
                              fs::tail(cluster.layout.postgres_log(n.name), 12));
      }
      throw UserError(fmt::format("timed out after {} s waiting for {}\n{}", timeout.count(), what, detail),
                      "see the logs with `pgfleet logs <node> --dir " + cluster.layout.root() + "`");
    }
    std::this_thread::sleep_for(200ms);
  }
}

namespace {
postgres::PgConn connect_superuser(const Cluster& cluster, const std::string& node) {
  const NodeConfig* n = cluster.config.find_node(node);
  auto c = postgres::PgConn::connect(
      postgres::tcp_conninfo(cluster.layout, cluster.config, *n, cluster.config.superuser, cluster.config.database));
  if (!c) throw UserError("cannot connect to " + node + ": " + c.error());
  return std::move(c.value());
}
}  // namespace

void drop_replica_slot(const Cluster& cluster, const std::string& node) {
  std::string primary = discover_primary(cluster.config, cluster.layout, *cluster.dcs);
  if (primary.empty() || primary == node) return;
  std::string upstream = upstream_of(cluster.config, node, primary);
  try {
    auto conn = connect_superuser(cluster, upstream);
    auto r = conn.query(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active",
        {node});
    if (!r) log::warn("cannot drop replication slot {} on {}: {}", node, upstream, r.error());
  } catch (const UserError& e) {
    log::warn("cannot drop replication slot {} on {}: {}", node, upstream, e.what());
  }
}

void build_replica(const Cluster& cluster, const PgBinaries& bins, const std::string& node) {
  const auto& layout = cluster.layout;
  std::string primary = discover_primary(cluster.config, layout, *cluster.dcs);
  if (primary.empty()) throw UserError("no primary found to copy " + node + " from", "start the cluster with `pgfleet up`");
  std::string upstream = upstream_of(cluster.config, node, primary);
  {
    auto conn = connect_superuser(cluster, upstream);
    auto r = conn.query(
        "SELECT pg_create_physical_replication_slot($1, true) "
        "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
        {node});
    if (!r) throw UserError("cannot create replication slot " + node + " on " + upstream + ": " + r.error());
  }
  fs::remove_all(layout.data_dir(node));
  fs::make_directories(layout.log_dir(node), 0700);
  const NodeConfig* from = cluster.config.find_node(primary);
  log::debug("copying {} from {} with pg_basebackup", node, primary);
  auto copied = postgres::basebackup(bins, layout, cluster.config, node,
                                     from->host.empty() ? connect_host(cluster.config) : from->host, from->port,
                                     upstream == primary ? node : "");
  if (!copied) {
    fs::remove_all(layout.data_dir(node));
    drop_replica_slot(cluster, node);
    bool disk_full = copied.error().find("No space left on device") != std::string::npos;
    throw UserError(copied.error(), disk_full ? "free disk space under " + layout.root() +
                                                    " (df -h), then run the command again; the partial copy was removed"
                                              : "the partial copy was removed; fix the cause and run the command again");
  }
}

}  // namespace pgfleet::cluster
