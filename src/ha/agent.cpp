// The agent's loop: keep the postmaster running, keep its config in line with the cluster,
// hold the leader key while primary, and publish the node's state every loop_wait seconds.
#include "ha/agent.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <thread>

#include "cluster/binaries.hpp"
#include "cluster/config.hpp"
#include "cluster/discovery.hpp"
#include "cluster/layout.hpp"
#include "cluster/topology.hpp"
#include "dcs/local_dcs.hpp"
#include "dcs/member.hpp"
#include "postgres/instance.hpp"
#include "postgres/pgconn.hpp"
#include "postgres/probe.hpp"
#include "util/fs.hpp"
#include "util/log.hpp"
#include "util/process.hpp"

namespace pgfleet::ha {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
std::atomic<bool> g_restart{false};

void on_signal(int sig) {
  if (sig == SIGHUP) g_reload = true;
  else if (sig == SIGUSR1) g_restart = true;
  else g_stop = true;
}

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class Agent {
 public:
  Agent(cluster::Layout layout, std::string name) : layout_(std::move(layout)), name_(std::move(name)) {}

  int run() {
    if (!load_config()) return 2;
    pid_t holder = 0;
    pidfile_fd_ = cluster::lock_agent_pidfile(layout_, name_, holder);
    if (pidfile_fd_ < 0) {
      log::error("another agent (pid {}) already runs node {}", holder, name_);
      return 3;
    }
    dcs_ = std::make_unique<dcs::LocalDcs>(layout_.dcs_dir());
    member_.name = name_;
    member_.agent_pid = ::getpid();
    log::info("agent started for node {} (port {})", name_, node().port);
    publish();
    while (!g_stop) {
      if (g_reload.exchange(false)) load_config();
      if (g_restart.exchange(false)) {
        log::info("restart requested");
        stop_postmaster();
        restart_at_ = Clock::now();
      }
      reap();
      if (postmaster_ == 0 && Clock::now() >= restart_at_) start_postmaster();
      if (postmaster_ != 0) {
        apply_config();
        observe();
        if (member_.role == "primary" && member_.state == "running") hold_leader_key();
      }
      publish();
      sleep_interruptibly(member_.state == "running" || member_.state == "streaming"
                              ? std::chrono::seconds(config_.loop_wait_seconds)
                              : std::chrono::milliseconds(200));
    }
    shutdown();
    return 0;
  }

 private:
  const cluster::NodeConfig& node() const { return *config_.find_node(name_); }

  bool load_config() {
    try {
      auto config = cluster::load_config(layout_.config_file());
      if (!config.find_node(name_)) {
        log::error("node {} is not in {}", name_, layout_.config_file());
        return false;
      }
      bins_ = cluster::find_binaries(config.bindir);
      config_ = std::move(config);
      return true;
    } catch (const std::exception& e) {
      log::error("cannot load configuration: {}", e.what());
      return false;
    }
  }

  // The conf files this node should have now; rewriting them is cheap, reloading only on change.
  void apply_config() {
    bool standby = postgres::is_standby(layout_, name_);
    std::optional<postgres::UpstreamInfo> upstream;
    std::string sync_names;
    if (standby) {
      std::string primary = cluster::discover_primary(config_, layout_, *dcs_);
      std::string up = primary.empty() ? "" : cluster::upstream_of(config_, name_, primary);
      if (const auto* u = config_.find_node(up); u != nullptr && up != name_) {
        upstream = postgres::UpstreamInfo{up, cluster::connect_host(config_), u->port};
      }
      member_.upstream = up;
    } else {
      std::vector<std::string> streaming;
      for (const auto& peer : member_.replication) {
        if (peer.state == "streaming") streaming.push_back(peer.application_name);
      }
      sync_names = cluster::synchronous_standby_names(config_, name_, streaming);
      member_.upstream.clear();
    }
    try {
      bool changed = postgres::write_managed_files(layout_, config_, node(), upstream ? &*upstream : nullptr,
                                                   sync_names);
      if (changed && postmaster_ != 0) {
        log::info("configuration changed (upstream '{}', synchronous_standby_names '{}'): reloading",
                  member_.upstream, sync_names);
        ::kill(postmaster_, SIGHUP);
      }
    } catch (const std::exception& e) {
      note_error(std::string("cannot write configuration: ") + e.what());
    }
  }

  void start_postmaster() {
    if (pid_t existing = postgres::running_postmaster(layout_, name_); existing != 0) {
      log::info("adopting running postmaster pid {}", existing);
      postmaster_ = existing;
      own_child_ = false;
      set_state("starting");
      return;
    }
    if (!postgres::has_data(layout_, name_)) {
      note_error("no data directory at " + layout_.data_dir(name_) + "; run `pgfleet reinit " + name_ + "`");
      restart_at_ = Clock::now() + 10s;
      return;
    }
    apply_config();
    fs::make_directories(layout_.socket_dir(), 0700);
    pid_t pid = process::spawn({bins_.path("postgres"), "-D", layout_.data_dir(name_)},
                               layout_.postgres_log(name_));
    if (pid <= 0) {
      note_error("cannot start postgres");
      restart_at_ = Clock::now() + 5s;
      return;
    }
    log::info("started postmaster pid {}", pid);
    postmaster_ = pid;
    own_child_ = true;
    started_at_ = Clock::now();
    conn_.reset();
    set_state("starting");
  }

  // Notices a postmaster that exited without being asked to, and schedules a restart.
  void reap() {
    if (postmaster_ == 0) return;
    int status = 0;
    bool gone = false;
    if (own_child_) {
      gone = ::waitpid(postmaster_, &status, WNOHANG) == postmaster_;
    } else {
      gone = !process::alive(postmaster_);
    }
    if (!gone) return;
    std::string how = !own_child_           ? "exited"
                      : WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                                            : "exited with code " + std::to_string(WEXITSTATUS(status));
    log::error("postmaster pid {} {}; restarting in {} s. Last lines of {}:\n{}", postmaster_, how, backoff_.count(),
               layout_.postgres_log(name_), fs::tail(layout_.postgres_log(name_), 10));
    postmaster_ = 0;
    conn_.reset();
    member_.restarts++;
    member_.postmaster_pid = 0;
    set_state("crashed");
    restart_at_ = Clock::now() + backoff_;
    backoff_ = std::min(backoff_ * 2, std::chrono::seconds(30));
  }

  void observe() {
    if (!conn_) {
      auto c = postgres::PgConn::connect(postgres::local_conninfo(layout_, config_, node()));
      if (!c) {
        if (member_.state != "crashed") set_state("starting");
        if (Clock::now() - started_at_ > 60s) note_error(c.error());
        return;
      }
      conn_.emplace(std::move(c.value()));
    }
    if (auto s = postgres::probe(*conn_, member_); !s) {
      note_error("status query failed: " + s.error());
      conn_.reset();
      return;
    }
    member_.postmaster_pid = postmaster_;
    member_.last_error.clear();
    backoff_ = 1s;
    set_state(member_.role == "replica" && member_.wal_receiver_streaming ? "streaming" : "running");
  }

  // While primary, keep the leader key (TTL) naming this node.
  void hold_leader_key() {
    auto ttl = std::chrono::seconds(config_.dcs_ttl_seconds);
    auto current = dcs_->get(dcs::keys::kLeader);
    if (!current) return note_error("dcs: " + current.error());
    if (!current.value()) {
      auto won = dcs_->compare_and_set(dcs::keys::kLeader, name_, 0, ttl);
      if (won && *won) log::info("acquired the leader key");
      return;
    }
    const auto& kv = *current.value();
    if (kv.value == name_) {
      auto renewed = dcs_->compare_and_set(dcs::keys::kLeader, name_, kv.mod_revision, ttl);
      if (!renewed) note_error("dcs: cannot renew leader key: " + renewed.error());
    } else if (!leader_conflict_logged_) {
      log::warn("leader key is held by {} while this node runs as a primary", kv.value);
      leader_conflict_logged_ = true;
    }
  }

  void publish(std::optional<dcs::Millis> ttl = std::nullopt) {
    const auto& n = node();
    member_.host = cluster::connect_host(config_);
    member_.port = n.port;
    member_.api_port = n.api_port;
    member_.updated_at_ms = unix_ms();
    if (!ttl && member_.state != "stopped") ttl = std::chrono::seconds(config_.dcs_ttl_seconds);
    auto r = dcs_->put(dcs::keys::member(name_), dcs::to_json(member_).dump(), ttl);
    if (!r) note_error("dcs: cannot publish member state: " + r.error());
  }

  void stop_postmaster() {
    if (postmaster_ == 0) return;
    set_state("stopping");
    publish();
    conn_.reset();
    ::kill(postmaster_, SIGINT);  // fast shutdown: roll back sessions, checkpoint, exit
    auto deadline = Clock::now() + 60s;
    while (Clock::now() < deadline) {
      if (own_child_ ? ::waitpid(postmaster_, nullptr, WNOHANG) == postmaster_ : !process::alive(postmaster_)) break;
      std::this_thread::sleep_for(50ms);
    }
    if (process::alive(postmaster_)) {
      log::warn("postmaster did not stop within 60 s; sending SIGQUIT");
      ::kill(postmaster_, SIGQUIT);
      process::wait_gone(postmaster_, 10s);
    }
    log::info("postmaster pid {} stopped", postmaster_);
    postmaster_ = 0;
    member_.postmaster_pid = 0;
  }

  void shutdown() {
    log::info("stopping");
    stop_postmaster();
    if (auto leader = dcs_->get(dcs::keys::kLeader); leader && leader.value() && leader.value()->value == name_) {
      (void)dcs_->compare_and_delete(dcs::keys::kLeader, leader.value()->mod_revision);
    }
    set_state("stopped");
    member_.replication.clear();
    publish();
    log::info("agent stopped");
  }

  void set_state(const std::string& state) {
    if (member_.state == state) return;
    log::info("state {} -> {}", member_.state, state);
    member_.state = state;
  }

  void note_error(const std::string& message) {
    if (member_.last_error != message) log::warn("{}", message);
    member_.last_error = message;
  }

  void sleep_interruptibly(std::chrono::milliseconds total) {
    auto until = Clock::now() + total;
    while (!g_stop && !g_reload && !g_restart && Clock::now() < until) std::this_thread::sleep_for(50ms);
  }

  cluster::Layout layout_;
  std::string name_;
  cluster::ClusterConfig config_;
  cluster::PgBinaries bins_;
  std::unique_ptr<dcs::Dcs> dcs_;
  dcs::Member member_;
  std::optional<postgres::PgConn> conn_;
  pid_t postmaster_ = 0;
  bool own_child_ = false;
  int pidfile_fd_ = -1;
  bool leader_conflict_logged_ = false;
  Clock::time_point restart_at_{};
  Clock::time_point started_at_{};
  std::chrono::seconds backoff_{1};
};

}  // namespace

int run_agent(const AgentOptions& options) {
  log::set_component("agent " + options.node);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) ::sigaction(sig, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  Agent agent(cluster::Layout(options.directory), options.node);
  return agent.run();
}

}  // namespace pgfleet::ha
