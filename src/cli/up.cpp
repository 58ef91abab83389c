// `pgfleet up`: create a cluster (initdb, replication role, basebackups, agents) or start an
// existing one, then wait until every replica streams and print how to connect.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <set>
#include <thread>

#include "cli/commands.hpp"
#include "cli/planned_pause.hpp"
#include "cluster/binaries.hpp"
#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "cluster/topology.hpp"
#include "dcs/member.hpp"
#include "postgres/instance.hpp"
#include "postgres/pgconn.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"
#include "util/log.hpp"
#include "util/ports.hpp"
#include "util/process.hpp"
#include "util/tls.hpp"

namespace pgfleet::cli {
namespace {

using namespace std::chrono_literals;
constexpr int kMaxReplicas = 32;

void check_replica_count(int replicas) {
  if (replicas < 0 || replicas > kMaxReplicas) {
    throw UserError(fmt::format("--replicas must be between 0 and {}, got {}", kMaxReplicas, replicas));
  }
}

// The configuration of a new cluster: the --config file or defaults, then the flags.
cluster::ClusterConfig new_cluster_config(const UpOptions& o) {
  cluster::ClusterConfig config;
  if (!o.config_file.empty()) config = cluster::load_config(o.config_file);
  if (o.base_port) {
    int p = *o.base_port;
    if (p < 1024 || p > 65535 - 100) throw UserError(fmt::format("--base-port must be between 1024 and 65435, got {}", p));
    config.ports = cluster::Ports{p, p + 1, p + 2, p + 3, p + 10, p + 50};
  }
  if (o.sync) {
    auto mode = cluster::parse_sync_mode(*o.sync);
    if (!mode) throw UserError("--sync must be off, on or quorum, got '" + *o.sync + "'");
    config.sync = *mode;
  }
  if (o.sync_count) config.sync_count = *o.sync_count;
  if (o.ttl) config.dcs_ttl_seconds = *o.ttl;
  if (o.loop_wait) config.loop_wait_seconds = *o.loop_wait;
  // The lease arithmetic needs ttl >= 5 s, loop_wait >= 1 s and ttl > 2 x loop_wait (a primary
  // fences at ttl - 2 x loop_wait): say which flag is wrong before the config check does.
  if (o.ttl && *o.ttl < 5) throw UserError(fmt::format("--ttl must be at least 5 seconds, got {}", *o.ttl));
  if (o.loop_wait && *o.loop_wait < 1)
    throw UserError(fmt::format("--loop-wait must be at least 1 second, got {}", *o.loop_wait));
  if ((o.ttl || o.loop_wait) && 2LL * config.loop_wait_seconds >= config.dcs_ttl_seconds)
    throw UserError(fmt::format("--loop-wait ({} s) must be less than half of --ttl ({} s)", config.loop_wait_seconds,
                                config.dcs_ttl_seconds),
                    "a primary fences itself at ttl - 2 x loop_wait; e.g. --ttl 10 --loop-wait 1");
  if (o.cascade) config.cascade = true;
  if (!o.pg_bindir.empty()) config.bindir = o.pg_bindir;
  if (o.run_as) config.run_as = *o.run_as;
  for (const auto& kv : o.pg_params) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw UserError("--set expects name=value, got '" + kv + "'");
    config.postgresql[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (config.nodes.empty() || o.replicas) {
    int replicas = o.replicas.value_or(2);
    check_replica_count(replicas);
    config.nodes.clear();
    for (int i = 0; i <= replicas; ++i) config.nodes.push_back(cluster::next_node(config));
  }
  cluster::validate_config(config, o.config_file.empty() ? "command line" : o.config_file);
  return config;
}

void check_ports_free(const cluster::ClusterConfig& config, const cluster::Layout& layout) {
  for (int port : {config.ports.proxy, config.ports.proxy_primary, config.ports.proxy_replicas}) {
    if (config.proxy.enabled && cluster::agent_pid(layout, "proxy") == 0 &&
        !ports::is_free(cluster::connect_host(config), port)) {
      std::string who = ports::holder(port);
      throw UserError(fmt::format("port {} for the proxy is already in use{}", port, who.empty() ? "" : " by " + who),
                      "stop what holds it, or create the cluster on other ports with --base-port");
    }
  }
  // HTTP ports: an agent or proxy would run on without its API, so refuse them taken up front.
  std::vector<std::pair<std::string, int>> http_ports;
  if (config.proxy.enabled && cluster::agent_pid(layout, "proxy") == 0) http_ports.emplace_back("the proxy's HTTP", config.ports.http);
  for (const auto& n : config.nodes) {
    if (cluster::agent_pid(layout, n.name) == 0) http_ports.emplace_back("node " + n.name + "'s API", n.api_port);
  }
  for (const auto& [what, port] : http_ports) {
    if (!ports::is_free(cluster::connect_host(config), port)) {
      std::string who = ports::holder(port);
      throw UserError(fmt::format("port {} for {} is already in use{}", port, what, who.empty() ? "" : " by " + who),
                      "stop what holds it, or create the cluster on other ports with --base-port");
    }
  }
  for (const auto& n : config.nodes) {
    if (postgres::running_postmaster(layout, n.name) != 0) continue;
    if (!ports::is_free(cluster::connect_host(config), n.port)) {
      std::string who = ports::holder(n.port);
      throw UserError(fmt::format("port {} for node {} is already in use{}", n.port, n.name,
                                  who.empty() ? "" : " by " + who),
                      "stop what holds it, or create the cluster on other ports with --base-port");
    }
  }
}

void create_replication_role(const cluster::Cluster& c, const std::string& primary) {
  auto conn = postgres::PgConn::connect(postgres::local_conninfo(c.layout, c.config, *c.config.find_node(primary)));
  if (!conn) throw UserError("cannot connect to the primary " + primary + ": " + conn.error());
  auto exists = conn->query("SELECT 1 FROM pg_roles WHERE rolname = $1", {c.config.replication_user});
  if (!exists) throw UserError("cannot query roles on " + primary + ": " + exists.error());
  if (!exists->empty()) return;
  auto verifier = conn->scram_verifier(c.config.replication_user, c.secrets.replication_password);
  if (!verifier) throw UserError("cannot compute a SCRAM verifier: " + verifier.error());
  auto created = conn->exec("CREATE ROLE " + postgres::quote_ident(c.config.replication_user) +
                            " WITH REPLICATION LOGIN PASSWORD " + postgres::quote_literal(*verifier));
  if (!created) throw UserError("cannot create the replication role: " + created.error());
}

// True once the running agent of `node` has published its own status: until then the DCS may
// hold the status of a killed predecessor (its member key lives on for a TTL). The pid is read
// from the pidfile each time: right after the new agent locks it, it may still hold the old pid.
bool published_by_its_agent(const cluster::Cluster& c, const std::string& node) {
  pid_t pid = cluster::agent_pid(c.layout, node);
  if (pid <= 1) return false;
  auto m = c.dcs->get(dcs::keys::member(node));
  if (!m || !m.value()) return false;
  try {
    return dcs::member_from_json(nlohmann::json::parse(m.value()->value)).agent_pid == pid;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

// Where `up` spends its time, printed at the end (bench/up.sh reads it).
struct Timings {
  using Clock = std::chrono::steady_clock;
  Clock::time_point start = Clock::now();
  double initdb = 0, basebackup = 0;
  static double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
};

// Brings every node of an opened cluster up: initdb or basebackup where data is missing,
// agents where none runs. Returns the final status.
cluster::ClusterStatus bring_up(const cluster::Cluster& c, const cluster::PgBinaries& bins, int timeout_seconds,
                                Timings& timings) {
  // A running cluster's leader first; else the data directory on the newest timeline.
  std::string primary = cluster::discover_primary(c.config, c.layout, *c.dcs);
  if (primary.empty() || cluster::agent_pid(c.layout, primary) == 0) primary = cluster::primary_from_data(c.config, c.layout);
  if (primary.empty()) {
    for (const auto& n : c.config.nodes) {
      if (postgres::has_data(c.layout, n.name)) {
        throw UserError("no primary data directory in " + c.layout.root() + " (only replicas)",
                        "restore the primary's data, or promote a replica by removing its standby.signal");
      }
    }
    // The first node, unless it is tagged nofailover (never a primary): then the first untagged one.
    for (const auto& n : c.config.nodes) {
      if (n.nofailover) continue;
      primary = n.name;
      break;
    }
    std::cout << "initializing primary " << primary << " ..." << std::endl;
    fs::remove_all(c.layout.data_dir(primary));
    fs::make_directories(c.layout.log_dir(primary), 0700);
    auto t = Timings::Clock::now();
    auto initialized = postgres::initdb(bins, c.layout, c.config, primary, c.secrets.superuser_password);
    timings.initdb = Timings::since(t);
    if (!initialized) {
      fs::remove_all(c.layout.data_dir(primary));
      throw UserError(initialized.error());
    }
  }
  std::set<std::string> started;  // nodes whose agent `up` started: it waits for their own status
  if (cluster::agent_pid(c.layout, primary) == 0) {
    cluster::start_agent(c.layout, primary);
    started.insert(primary);
  }
  // The primary's agent may hand over instead of restarting a crashed postmaster: then the new
  // leader is the primary to wait for.
  auto ready = cluster::wait_until(
      c,
      [&](const cluster::ClusterStatus& s) {
        const auto* n = s.find(primary);
        if (n && n->state == "running" && n->role == "primary")
          return (!started.contains(primary) || published_by_its_agent(c, primary)) && accepts_writes(c, primary);
        const auto* l = s.leader != primary ? s.find(s.leader) : nullptr;
        return l && l->state == "running" && l->role == "primary" && l->agent_pid != 0 && accepts_writes(c, l->name);
      },
      std::chrono::seconds(timeout_seconds), "primary " + primary + " to accept connections");
  if (const auto* n = ready.find(primary); !(n && n->state == "running" && n->role == "primary")) {
    std::cout << primary << " handed over: " << ready.leader << " is the primary now" << std::endl;
    primary = ready.leader;
  }
  create_replication_role(c, primary);

  for (const auto& n : c.config.nodes) {
    if (n.name == primary) continue;
    if (!postgres::has_data(c.layout, n.name)) {
      std::cout << "creating replica " << n.name << " ..." << std::endl;
      auto t = Timings::Clock::now();
      cluster::build_replica(c, bins, n.name);
      timings.basebackup += Timings::since(t);
    }
    if (cluster::agent_pid(c.layout, n.name) == 0) {
      cluster::start_agent(c.layout, n.name);
      started.insert(n.name);
    }
    bool is_upstream = false;
    for (const auto& other : c.config.nodes) {
      is_upstream = is_upstream || cluster::upstream_of(c.config, other.name, primary) == n.name;
    }
    if (is_upstream) {
      // Cascading replicas get their slot on this node, so it must be serving first.
      cluster::wait_until(
          c,
          [&](const cluster::ClusterStatus& s) {
            const auto* st = s.find(n.name);
            return st && st->state == "streaming";
          },
          std::chrono::seconds(timeout_seconds), n.name + " to stream");
    }
  }
  auto status = cluster::wait_until(
      c,
      [&](const cluster::ClusterStatus& s) {
        for (const auto& node : started)
          if (!published_by_its_agent(c, node)) return false;
        return cluster::all_streaming(c.config, s);
      },
      std::chrono::seconds(timeout_seconds), "every replica to stream");
  if (c.config.proxy.enabled && status.proxy.pid == 0) {
    cluster::start_proxy(c.layout, c.config);
    status = c.status();
  }
  return status;
}

void print_summary(const cluster::Cluster& c, const cluster::ClusterStatus& s) {
  std::cout << "\n" << cluster::render_table(s) << "\n";
  std::cout << "connect:\n";
  if (!s.connection.proxy.empty()) {
    std::cout << "  proxy     psql \"" << s.connection.proxy << "\"  (reads to replicas, writes to the primary)\n";
    std::cout << "            psql \"" << s.connection.proxy_primary << "\"  (primary only)\n";
    std::cout << "            psql \"" << s.connection.proxy_replicas << "\"  (replicas only)\n";
    if (!s.connection.proxy_socket.empty()) {
      std::cout << "            psql \"" << s.connection.proxy_socket << "\"  (rw-split, Unix socket: on this host)\n";
    }
  }
  std::cout << "  primary   psql \"" << s.connection.primary << "\"\n";
  if (!s.connection.replicas.empty()) std::cout << "  replicas  psql \"" << s.connection.replicas << "\"\n";
  std::cout << "  (or: psql \"$(pgfleet url --dir " << c.layout.root() << ")\")\n";
  std::cout << "monitor:\n  dashboard " << s.dashboard_url << "\n  metrics   " << s.metrics_url
            << "\n  node APIs " << (s.nodes.empty() ? "" : s.nodes.front().api_url)
            << (s.nodes.size() > 1 ? " ..." : "") << " (/health /primary /replica /metrics; see pgfleet status --json)\n\n";
  std::cout << "status: pgfleet status --dir " << c.layout.root() << "    check: pgfleet check --dir "
            << c.layout.root() << "    stop: pgfleet down --dir " << c.layout.root() << "\n";
}

void wait_for_ctrl_c() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  ::sigwait(&set, &sig);
}

pid_t g_worker = 0;

int wait_for_worker(pid_t child, const cluster::Layout& layout, bool created_dir) {
  // Signals to this parent (kill, a supervisor, Ctrl-C) go on to the worker, which decides.
  g_worker = child;
  struct sigaction sa {};
  sa.sa_handler = [](int sig) { ::kill(g_worker, sig); };
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  if (code != 0 && created_dir && fs::is_empty_directory(layout.root())) ::rmdir(layout.root().c_str());
  return code;
}

}  // namespace

int run_up(const UpOptions& o) {
  log::set_component("up");
  Timings timings;
  cluster::Layout layout(o.dir);
  bool existing = fs::exists(layout.config_file());
  if (!existing && !fs::is_empty_directory(layout.root())) {
    throw UserError(layout.root() + " is not empty and holds no pgfleet cluster",
                    "choose another directory with --dir, or empty this one");
  }
  if (existing && fs::exists(layout.root()) && !fs::is_directory(layout.root())) {
    throw UserError(layout.root() + " is not a directory");
  }
  if (existing && (o.replicas || o.base_port || o.sync || o.ttl || o.loop_wait || !o.config_file.empty() || o.cascade || !o.pg_params.empty())) {
    std::cerr << "note: " << layout.root() << " already holds a cluster; its pgfleet.yaml is used and the creation "
              << "flags are ignored (use `pgfleet scale` to change the replica count)\n";
  }
  if (o.replicas) check_replica_count(*o.replicas);

  cluster::ClusterConfig config;
  if (existing) {
    become_cluster_owner(layout.root());
    config = cluster::Cluster::open(layout.root()).config;
  } else {
    config = new_cluster_config(o);
  }
  auto bins = cluster::find_binaries(o.pg_bindir.empty() ? config.bindir : o.pg_bindir);

  if (existing) {
    auto all_running = [&] {
      bool all = true;
      for (const auto& n : config.nodes) all = all && cluster::agent_pid(layout, n.name) != 0;
      if (config.proxy.enabled) all = all && cluster::agent_pid(layout, "proxy") != 0;
      return all;
    };
    // An agent killed a moment ago holds its pidfile lock until the kernel has torn it down:
    // look again before saying that everything runs (`up` right after a crash must start it).
    if (all_running()) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    if (all_running()) {
      throw UserError("the cluster in " + layout.root() + " is already running",
                      "see it with `pgfleet status --dir " + layout.root() + "`, stop it with `pgfleet down`");
    }
  }
  check_ports_free(config, layout);

  bool created_dir = false;
  if (!existing) {
    created_dir = !fs::exists(layout.root());
    fs::make_directories(layout.root(), 0700);
    if (::geteuid() == 0) {
      // PostgreSQL refuses to run as root: the cluster belongs to an unprivileged user.
      auto user = process::lookup_user(config.run_as);
      if (!user || user->uid == 0) {
        if (created_dir) fs::remove_all(layout.root());
        throw UserError("running as root, and the user '" + config.run_as + "' to run PostgreSQL as " +
                            (user ? "is root" : "does not exist"),
                        "install postgresql (it creates the postgres user) or pass --run-as USER");
      }
      fs::chown_recursive(layout.root(), user->uid, user->gid);
      if (!process::user_can_access(*user, layout.root())) {
        if (created_dir) fs::remove_all(layout.root());
        throw UserError("user " + user->name + " cannot reach " + layout.root() +
                            " (a parent directory is not searchable for it)",
                        "choose a --dir that user can reach (e.g. under /var/lib or /srv), or chmod o+x the parents");
      }
      // The work runs as that user in a child; this root parent only removes the directory it
      // created if the child fails (the child may not remove it from a root-owned parent).
      pid_t child = ::fork();
      if (child < 0) throw UserError(std::string("fork: ") + std::strerror(errno));
      if (child > 0) return wait_for_worker(child, layout, created_dir);
      process::become(*user);
    }
  }

  cluster::CommandLock lock(layout);
  try {
    if (!existing) {
      fs::make_directories(layout.dcs_dir(), 0700);
      fs::make_directories(layout.nodes_dir(), 0700);
      config.bindir = bins.bindir;
      fs::write_file_atomic(layout.config_file(), cluster::render_config(config), 0600);
      cluster::save_secrets(layout, config, cluster::generate_secrets());
      // TLS on every listener from the start: a self-signed pair for the proxy and the nodes.
      fs::make_directories(layout.tls_dir(), 0700);
      std::vector<std::string> hosts = {"localhost", "127.0.0.1"};
      if (cluster::connect_host(config) != "127.0.0.1") hosts.push_back(cluster::connect_host(config));
      tls::generate_self_signed(layout.tls_cert(), layout.tls_key(), hosts);
      std::cout << "creating cluster " << config.cluster << " in " << layout.root() << " (1 primary, "
                << config.nodes.size() - 1 << " replicas, sync " << cluster::to_string(config.sync) << ")"
                << std::endl;
    } else {
      std::cout << "starting cluster " << config.cluster << " in " << layout.root() << std::endl;
    }
    auto c = cluster::Cluster::open(layout.root());
    auto status = bring_up(c, bins, o.timeout_seconds, timings);
    print_summary(c, status);
    double total = Timings::since(timings.start);
    std::cout << fmt::format("ready in {:.2f} s (initdb {:.2f} s, basebackup {:.2f} s, start and streaming {:.2f} s)\n",
                             total, timings.initdb, timings.basebackup, total - timings.initdb - timings.basebackup);
    if (o.foreground) {
      std::cout << "running in the foreground; Ctrl-C stops the cluster" << std::endl;
      wait_for_ctrl_c();
      cluster::stop_proxy(c.layout, 10s);
      for (const auto& n : c.config.nodes) cluster::stop_agent(c, n.name, 90s);
      std::cout << "cluster stopped" << std::endl;
    }
    return 0;
  } catch (...) {
    if (!existing) {
      // Leave nothing half-built behind: stop what started and remove what was created.
      try {
        auto c = cluster::Cluster::open(layout.root());
        cluster::stop_proxy(c.layout, 10s);
        for (const auto& n : c.config.nodes) cluster::stop_agent(c, n.name, 60s);
      } catch (...) {
      }
      std::error_code ec;
      for (const auto& entry : std::filesystem::directory_iterator(layout.root(), ec)) {
        std::filesystem::remove_all(entry.path(), ec);
      }
      if (created_dir) std::filesystem::remove(layout.root(), ec);
      std::cerr << "pgfleet: the new cluster was not created; " << layout.root() << " was cleaned up\n";
    }
    throw;
  }
}

}  // namespace pgfleet::cli
