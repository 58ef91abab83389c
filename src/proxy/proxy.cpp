// The proxy process: one Worker per thread on the same port, shared snapshots, signal handling.
#include "proxy/proxy.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <filesystem>
#include <map>
#include <thread>

#include "cluster/discovery.hpp"
#include "cluster/layout.hpp"
#include "proxy/http_api.hpp"
#include "proxy/local_socket.hpp"
#include "proxy/server_conn.hpp"
#include "proxy/takeover.hpp"
#include "proxy/worker.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"
#include "util/log.hpp"
#include "util/ports.hpp"

namespace pgfleet::proxy {

using namespace std::chrono_literals;

namespace {

std::optional<cluster::Layout> cluster_of(const std::string& config_path) {
  std::string dir = fs::parent(fs::absolute(config_path));
  if (fs::is_directory(dir + "/dcs")) return cluster::Layout(dir);
  return std::nullopt;
}

// As many descriptors as the system allows: every client and server connection holds one.
void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// TLS for clients: the configured pair, else the cluster's generated one; null when disabled or
// there is no certificate. UserError when the files do not load.
std::shared_ptr<const tls::ServerContext> client_tls(const cluster::ClusterConfig& config,
                                                     const std::optional<cluster::Layout>& layout) {
  if (config.proxy.tls_mode == "disable") return nullptr;
  std::string cert = config.proxy.tls_cert, key = config.proxy.tls_key;
  if (cert.empty() && layout && fs::exists(layout->tls_cert())) {
    cert = layout->tls_cert();
    key = layout->tls_key();
  }
  if (cert.empty()) {
    if (config.proxy.tls_mode == "require") {
      throw UserError("proxy.tls_mode is require but no certificate is configured", "set proxy.tls_cert and proxy.tls_key");
    }
    return nullptr;
  }
  try {
    auto context = std::make_shared<tls::ServerContext>(tls::load_server_context(cert, key));
    // No session resumption, as PostgreSQL itself: libpq never resumes, so a session cache
    // entry or a TLS 1.3 ticket per connection would only cost memory and CPU.
    SSL_CTX_set_session_cache_mode(context->ctx.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(context->ctx.get(), 0);
    return context;
  } catch (const std::exception& e) {
    throw UserError(std::string("TLS: ") + e.what(), "fix proxy.tls_cert / proxy.tls_key, or set proxy.tls_mode: disable");
  }
}

}  // namespace

int run_proxy(const ProxyOptions& options) {
  log::set_component("proxy");
  auto config = std::make_shared<const cluster::ClusterConfig>(cluster::load_config(options.config_path));
  auto layout = cluster_of(options.config_path);
  raise_fd_limit();

  std::atomic<int> pidfile_fd{-1};
  std::vector<int> inherited;  // listening sockets from the previous proxy (takeover)
  std::string takeover_path = layout ? layout->socket_dir() + "/.pgfleet-proxy" : "";
  if (layout) {
    pid_t holder = 0;
    pidfile_fd = cluster::lock_agent_pidfile(*layout, "proxy", holder);
    if (pidfile_fd < 0 && !options.takeover) {
      throw UserError(fmt::format("a proxy (pid {}) already runs for {}", holder, layout->root()),
                      "`pgfleet restart proxy` replaces it without refusing connections");
    }
    if (pidfile_fd < 0) {
      std::string error;
      inherited = receive_listeners(takeover_path, error);
      if (inherited.empty()) throw UserError("takeover failed: " + error);
      log::info("took over {} listening socket(s) from proxy pid {}", inherited.size(), holder);
    }
  }

  ProxyShared shared;
  shared.store_config(config);
  shared.config_path = options.config_path;
  shared.mock_secret = protocol::random_bytes(32).value_or(protocol::Bytes(32, 7));

  shared.tls = client_tls(*config, layout);
  shared.tls_required = config->proxy.tls_mode == "require";

  if (config->proxy.server_sslmode != "disable") {
    shared.server_tls.reset(SSL_CTX_new(TLS_client_method()));
    if (shared.server_tls) {
      SSL_CTX_set_min_proto_version(shared.server_tls.get(), TLS1_2_VERSION);
      SSL_CTX_set_mode(shared.server_tls.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    if (verifies_server(config->proxy.server_sslmode)) {
      const std::string ca = server_ca_file(*config, layout);
      if (ca.empty()) {
        throw UserError("proxy.server_sslmode is " + config->proxy.server_sslmode + " but no CA is known to verify servers",
                        "set proxy.server_tls_ca to the CA file that issued the servers' certificates");
      }
      if (!shared.server_tls || SSL_CTX_load_verify_locations(shared.server_tls.get(), ca.c_str(), nullptr) != 1) {
        throw UserError("proxy.server_tls_ca: cannot load " + ca + ": " + tls::last_error(),
                        "point proxy.server_tls_ca at a PEM file of CA certificates");
      }
      SSL_CTX_set_verify(shared.server_tls.get(), SSL_VERIFY_PEER, nullptr);
    }
  }

  TopologyWatcher topology(*config, layout);
  topology.start();
  shared.topology = &topology;
  HealthPoller health(*config, layout, topology);
  health.start();
  shared.health = &health;
  if (!topology.wait_for_primary(10s)) log::warn("no primary known yet; clients wait until one appears");

  auto conninfo = [&shared, &topology, layout]() -> std::vector<std::string> {
    auto t = topology.current();
    auto c = shared.settings();
    std::string user = c->proxy.auth_user.empty() ? c->superuser : c->proxy.auth_user;
    auto info = [&](const Backend& b) {
      std::string s = fmt::format("host={} port={} user={} dbname={} connect_timeout=2 tcp_user_timeout=3000 "
                                  "application_name=pgfleet-proxy {}",
                                  b.host, b.port, user, c->database,
                                  libpq_tls_options(c->proxy.server_sslmode, b.host, server_ca_file(*c, layout)));
      if (layout) s += " passfile=" + layout->passfile();
      return s;
    };
    std::vector<std::string> out;
    if (t->primary) out.push_back(info(*t->primary));
    for (const auto& r : t->replicas) out.push_back(info(r));
    return out;
  };
  AuthCache auth(conninfo, config->proxy.auth_file, [&shared] { return shared.settings()->proxy.auth_query; });
  shared.auth = &auth;

  int threads = config->proxy.threads > 0 ? config->proxy.threads : cluster::default_proxy_threads();
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < threads; ++i) {
    workers.push_back(std::make_unique<Worker>(i, shared));
    shared.workers.push_back(workers.back().get());
  }
  const std::string listen_address = config->listen_address;
  const int port = config->ports.proxy;
  // One listener per kind and worker: rw-split, primary, replicas.
  const std::array<std::pair<ListenerKind, int>, 3> kinds = {{{ListenerKind::kRwSplit, config->ports.proxy},
                                                              {ListenerKind::kPrimary, config->ports.proxy_primary},
                                                              {ListenerKind::kReplicas, config->ports.proxy_replicas}}};
  // Sockets handed over by the previous process, by the port they listen on.
  std::map<int, std::vector<int>> inherited_by_port;
  std::map<std::string, int> inherited_local;  // Unix sockets by path
  for (int fd : inherited) {
    if (std::string path = bound_local_path(fd); !path.empty()) {
      inherited_local.emplace(path, fd);
      continue;
    }
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    int bound = ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 ? ntohs(addr.sin_port) : 0;
    inherited_by_port[bound].push_back(fd);
  }
  for (const auto& [kind, kind_port] : kinds) {
    try {
      auto it = inherited_by_port.find(kind_port);
      if (it != inherited_by_port.end()) {
        for (size_t i = 0; i < workers.size(); ++i) workers[i]->adopt_listener(::dup(it->second[i % it->second.size()]), kind);
      } else {
        for (auto& w : workers) w->listen(listen_address, kind_port, kind);
      }
    } catch (const std::exception& e) {
      std::string who = ports::holder(kind_port);
      throw UserError(std::string(e.what()) + (who.empty() ? "" : " (held by " + who + ")"),
                      "stop what holds the port or set ports.proxy, ports.proxy_primary and ports.proxy_replicas "
                      "in the configuration");
    }
  }
  // Unix sockets, one per port, shared by the workers (as PgBouncer's unix_socket_dir).
  const std::string socket_dir = cluster::proxy_socket_dir(config->proxy.unix_socket_dir, layout ? &*layout : nullptr);
  std::vector<std::string> local_paths;
  if (!socket_dir.empty()) {
    for (const auto& [kind, kind_port] : kinds) {
      std::string path = local_socket_path(socket_dir, kind_port);
      auto it = inherited_local.find(path);
      int fd = -1;
      if (it != inherited_local.end()) {
        fd = ::dup(it->second);
      } else {
        try {
          fd = listen_local(path);
        } catch (const std::exception& e) {
          throw UserError(e.what(), "stop what listens there, or set proxy.unix_socket_dir (off: no Unix sockets)");
        }
      }
      for (auto& w : workers) w->adopt_listener(::dup(fd), kind, true);
      ::close(fd);
      local_paths.push_back(path);
    }
  }
  for (int fd : inherited) ::close(fd);

  // Signals go to this thread only; workers never see them.
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR2}) sigaddset(&set, sig);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  pthread_t main_thread = ::pthread_self();
  shared.request_shutdown = [main_thread] { ::pthread_kill(main_thread, SIGTERM); };
  shared.reload = [&shared, layout]() -> ProxyShared::ReloadOutcome {
    try {
      auto fresh = std::make_shared<cluster::ClusterConfig>(cluster::load_config(shared.config_path));
      auto current = shared.settings();
      if (fresh->ports.proxy != current->ports.proxy || fresh->ports.proxy_primary != current->ports.proxy_primary ||
          fresh->ports.proxy_replicas != current->ports.proxy_replicas ||
          fresh->listen_address != current->listen_address) {
        return {"the listen address and port cannot change on RELOAD; restart the proxy for that", ""};
      }
      // Built once at start (threads, TLS contexts, the auth_file reader, the Unix sockets): kept
      // as they are, so that SHOW CONFIG says what is in force, and named.
      std::string restart_only;
      auto keep = [&](auto& fresh_value, const auto& current_value, const char* name) {
        if (fresh_value == current_value) return;
        fresh_value = current_value;
        restart_only += std::string(restart_only.empty() ? "" : ", ") + "proxy." + name;
      };
      keep(fresh->proxy.threads, current->proxy.threads, "threads");
      keep(fresh->proxy.server_sslmode, current->proxy.server_sslmode, "server_sslmode");
      keep(fresh->proxy.server_tls_ca, current->proxy.server_tls_ca, "server_tls_ca");
      keep(fresh->proxy.auth_file, current->proxy.auth_file, "auth_file");
      keep(fresh->proxy.unix_socket_dir, current->proxy.unix_socket_dir, "unix_socket_dir");
      // The certificate files are read again even when their paths did not change (a renewal);
      // a pair that does not load refuses the whole RELOAD, and the one in force stays.
      auto tls = client_tls(*fresh, layout);
      shared.tls = tls;
      shared.tls_required = fresh->proxy.tls_mode == "require";
      shared.store_config(std::move(fresh));
      log::info("configuration reloaded from {}", shared.config_path);
      std::string warning;
      if (!restart_only.empty()) {
        warning = "changed, but applied only by a restart (`pgfleet restart proxy` hands the connections over): " +
                  restart_only;
        log::warn("RELOAD: {}", warning);
      }
      return {"", warning};
    } catch (const std::exception& e) {
      return {std::string("configuration not reloaded: ") + e.what(), ""};
    }
  };

  for (auto& w : workers) w->start();
  auto http_server = start_http_api(shared, layout);
  std::unique_ptr<TakeoverServer> takeover_server;
  std::thread lock_waiter;
  if (layout) {
    std::vector<int> listeners;
    for (auto& w : workers) {
      for (int fd : w->listener_fds()) listeners.push_back(fd);
    }
    // One SCM_RIGHTS message carries at most kMaxTakeoverFds; every listener kind is among the
    // first worker's, so a takeover with more threads than that still serves every port.
    if (listeners.size() > kMaxTakeoverFds) listeners.resize(kMaxTakeoverFds);
    takeover_server = std::make_unique<TakeoverServer>(takeover_path, listeners, [&shared] {
      shared.handed_over = true;
      shared.request_shutdown();
    });
    if (pidfile_fd < 0) {
      // The old proxy holds the pidfile until it has drained; take it as soon as it is free.
      lock_waiter = std::thread([&pidfile_fd, &shared, layout] {
        while (pidfile_fd < 0 && !shared.shutting_down) {
          pid_t holder = 0;
          pidfile_fd = cluster::lock_agent_pidfile(*layout, "proxy", holder);
          if (pidfile_fd < 0) std::this_thread::sleep_for(100ms);
        }
      });
    }
  }
  log::info("listening on {}:{} (rw-split), {} (primary), {} (replicas){} with {} threads, pool mode {}, TLS {}",
            listen_address, port, config->ports.proxy_primary, config->ports.proxy_replicas,
            socket_dir.empty() ? "" : ", and Unix sockets in " + socket_dir, threads,
            cluster::to_string(config->proxy.pool_mode),
            shared.tls.load() ? (shared.tls_required ? "required" : "available") : "off");

  while (true) {
    int sig = 0;
    ::sigwait(&set, &sig);
    if (sig == SIGHUP) {
      if (auto outcome = shared.reload(); !outcome.error.empty()) log::error("{}", outcome.error);
      continue;
    }
    if (sig == SIGTERM) {
      log::info("shutting down: no new connections, waiting up to {} s for transactions to finish",
                shared.settings()->proxy.shutdown_timeout_s);
      shared.shutting_down = true;
      for (auto& w : workers) w->begin_shutdown();
    } else {
      log::info("stopping now");
      for (auto& w : workers) w->loop().stop();
    }
    break;
  }
  for (auto& w : workers) w->join();
  http_server.reset();
  shared.shutting_down = true;
  if (lock_waiter.joinable()) lock_waiter.join();
  takeover_server.reset();
  auth.stop();
  health.stop();
  topology.stop();
  // The socket files go with the proxy, unless a new proxy process listens on them now.
  if (!shared.handed_over) {
    for (const auto& path : local_paths) ::unlink(path.c_str());
  }
  if (pidfile_fd >= 0) ::close(pidfile_fd);
  log::info("proxy stopped");
  return 0;
}

}  // namespace pgfleet::proxy
