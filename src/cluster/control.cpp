// Cluster operations on top of agents, the DCS and the PostgreSQL tools.
#include "cluster/control.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <fmt/format.h>

#include <thread>

#include "cluster/discovery.hpp"
#include "cluster/topology.hpp"
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

std::unique_ptr<dcs::Dcs> open_dcs(const Layout& layout, const ClusterConfig&) {
  return std::make_unique<dcs::LocalDcs>(layout.dcs_dir());
}

Cluster Cluster::open(const std::string& directory) {
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
  return Cluster{std::move(layout), std::move(config), std::move(secrets), std::move(dcs)};
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
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pid_t running = agent_pid(layout, node); running != 0) return running;
    if (!process::alive(pid)) break;
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
  while (true) {
    ClusterStatus status = cluster.status();
    if (done(status)) return status;
    const NodeStatus* crashed = nullptr;
    for (const auto& n : status.nodes) {
      if (n.state == "crashed") crashed = &n;
    }
    if (crashed != nullptr) {
      throw UserError(fmt::format("PostgreSQL on {} stopped unexpectedly while waiting for {}.\nLast lines of {}:\n{}",
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
  auto copied = postgres::basebackup(bins, layout, cluster.config, node, connect_host(cluster.config), from->port,
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
