// The agent's loop: observe the node and the cluster, ask decide() what to do, do it, publish.
// Everything that can lose data is decided in decide.cpp; this file only executes and reports.
#include "ha/agent.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backup/catalog.hpp"
#include "cluster/binaries.hpp"
#include "cluster/cluster_parameters.hpp"
#include "cluster/config.hpp"
#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "cluster/layout.hpp"
#include "cluster/secrets.hpp"
#include "cluster/topology.hpp"
#include "dcs/local_dcs.hpp"
#include "dcs/member.hpp"
#include "dcs/tracked_dcs.hpp"
#include "ha/callbacks.hpp"
#include "ha/decide.hpp"
#include "ha/failsafe.hpp"
#include "ha/member_clock.hpp"
#include "ha/node_stats.hpp"
#include "ha/slot_keeper.hpp"
#include "ha/sync_names.hpp"
#include "http/node_api.hpp"
#include "postgres/instance.hpp"
#include "postgres/lsn.hpp"
#include "postgres/pgconn.hpp"
#include "postgres/probe.hpp"
#include "postgres/timeline_history.hpp"
#include "util/clock.hpp"
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
std::atomic<bool> g_reinit{false};  // POST /reinit
std::atomic<int64_t> g_reinit_asked_ms{0};  // steady ms of the last POST /reinit

void on_signal(int sig) {
  if (sig == SIGHUP) g_reload = true;
  else if (sig == SIGUSR1) g_restart = true;
  else g_stop = true;
}

int64_t steady_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// CLOCK_MONOTONIC in ms: the clock of decide() and of the local DCS TTLs, shared by every process of the host.
TimeMs mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<TimeMs>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

uint64_t lsn_of(const std::string& text) { return postgres::parse_lsn(text).value_or(0); }

SyncMode to_ha(cluster::SyncMode m) {
  switch (m) {
    case cluster::SyncMode::On: return SyncMode::On;
    case cluster::SyncMode::Quorum: return SyncMode::Quorum;
    default: return SyncMode::Off;
  }
}

nlohmann::json to_json(const std::vector<SyncConstraint>& sync) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : sync) out.push_back({{"members", c.members}, {"quorum", c.quorum}});
  return out;
}

std::vector<SyncConstraint> sync_from_json(const std::string& text) {
  std::vector<SyncConstraint> out;
  try {
    for (const auto& c : nlohmann::json::parse(text)) {
      out.push_back(SyncConstraint{c.at("members").get<std::vector<std::string>>(), c.at("quorum").get<int>()});
    }
  } catch (const nlohmann::json::exception&) {
  }
  return out;
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
    auto tracked = std::make_unique<dcs::TrackedDcs>(cluster::open_dcs(layout_, config_));
    dcs_calls_ = tracked.get();
    dcs_ = std::move(tracked);
    member_.name = name_;
    member_.agent_pid = ::getpid();
    following_ = postgres::is_standby(layout_, name_) ? cluster::discover_primary(config_, layout_, *dcs_) : "";
    if (following_ == name_) following_.clear();
    log::info("agent started for node {} (port {})", name_, node().port);
    adopt_running_postmaster();
    start_api();
    publish();
    std::thread watchdog([this] { watchdog_loop(); });
    std::string token;
    try {
      token = cluster::load_secrets(layout_).api_token;
    } catch (const std::exception& e) {
      log::warn("no API token ({}): failsafe rounds cannot ask the other members", e.what());
    }
    std::thread failsafe_rounds([this, token, ca_file = config_.http_tls ? layout_.tls_trust() : std::string()] {
      failsafe_loop(token, ca_file);
    });
    while (!g_stop) {
      if (watchdog_fired_.exchange(false)) fenced_ = true;
      if (g_reload.exchange(false)) load_config();
      if (g_restart.exchange(false)) {
        log::info("restart requested");
        stop_postmaster(false);
        restart_at_ = Clock::now();
        restart_requested_ = true;
      }
      if (g_reinit.exchange(false) && last_leader_ && last_leader_->holder != name_) {
        // A rebuild this agent finished after the request (it started one on its own) answers it.
        if (rebuilt_ms_ < g_reinit_asked_ms.load()) reinit(last_leader_->holder);
        else log::info("reinit requested: already rebuilt since the request");
      }
      // Steps of this loop and how long each took: logged when the loop overran loop_wait (a
      // primary that cannot renew its lease in time fences, so slow steps must be visible).
      std::vector<std::pair<std::string, TimeMs>> steps;
      TimeMs step_start = mono_ms();
      const TimeMs loop_start = step_start;
      auto step_done = [&](std::string what) {
        const TimeMs t = mono_ms();
        steps.emplace_back(std::move(what), t - step_start);
        step_start = t;
      };
      reap();
      observe();
      step_done("observe");
      ClusterView view = read_cluster();
      step_done("read the DCS");
      // The leader key just vanished and our last status was read before: an election counts only
      // status read after that, so read and publish ours now instead of a loop later.
      if (view.dcs_reachable && !view.leader && leader_expired_at_ != 0 && sampled_mono_ms_ < leader_expired_at_) {
        observe();
        publish();
        view = read_cluster();
      }
      failsafe_.observed(view.failsafe, view.dcs_reachable, view.leader ? view.leader->holder : "",
                         postmaster_ != 0 && !fenced_ && !postgres::is_standby(layout_, name_), failsafe_peers_);
      if (view.leader && view.leader->holder != name_) promotion_requested_ = false;  // someone else leads
      if (promotion_requested_ && accepting_ && member_.role == "primary") finish_promotion();
      NodeView self = node_view(view);
      leading_clock_ = next_leading_clock(leading_clock_, view, self, mono_ms());
      self.leading_down_since = leading_clock_.down_since;
      auto actions = decide(view, self, settings(), mono_ms());
      for (const auto& action : actions) {
        const bool ok = execute(action, view);
        step_done(to_string(action.kind));
        if (!ok) break;  // decide() planned the rest assuming this one worked
      }
      apply_config();
      keep_permanent_slots();
      schedule_backup(view);
      notice_role_change(view, actions);
      arm_watchdog();
      step_done("apply the configuration");
      if (dcs_reachable_) publish();  // unreachable: another timeout would only delay the next loop
      step_done("publish the status");
      if (mono_ms() - loop_start > settings().loop_wait) {
        std::string text;
        for (const auto& [what, ms] : steps)
          if (ms >= 50) text += fmt::format("{}{} {} ms", text.empty() ? "" : ", ", what, ms);
        log::warn("agent loop took {} ms, more than loop_wait ({} ms): {}", mono_ms() - loop_start,
                  settings().loop_wait, text.empty() ? "no single slow step" : text);
      }
      bool busy = member_.state != "running" && member_.state != "streaming";
      // Electing (no leader key, within a TTL of its vanishing): the members publish status read
      // after the key vanished each loop, and the election waits for everyone's.
      busy = busy || (leader_absent_ && leader_expired_at_ != 0 && mono_ms() < leader_expired_at_ + settings().ttl);
      // A change in progress (election, switchover, an action just taken): loop again soon, so
      // each of its steps waits ~100 ms for the next rather than loop_wait (the switchover pause).
      bool changing = (!view.leader && !view.paused) || view.switchover || view.failover_to ||
                      std::any_of(actions.begin(), actions.end(), [](const Action& a) {
                        return a.kind != ActionKind::Wait && a.kind != ActionKind::RenewLease;
                      });
      const auto nap = changing ? 100ms : busy ? 200ms : std::chrono::milliseconds(settings().loop_wait);
      const TimeMs nap_start = mono_ms();
      sleep_interruptibly(nap);
      if (mono_ms() - nap_start > nap.count() + settings().loop_wait)
        log::warn("the agent's sleep between loops took {} ms instead of at most {} ms", mono_ms() - nap_start, nap.count());
    }
    watchdog_pid_ = 0;
    watchdog_stop_ = true;
    watchdog.join();
    failsafe_rounds.join();
    shutdown();
    return 0;
  }

 private:
  const cluster::NodeConfig& node() const { return *config_.find_node(name_); }
  // Several hosts (etcd): other nodes' pidfiles and data directories are not on this host.
  bool multi_host() const { return !config_.etcd.endpoints.empty(); }

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

  Settings settings() const {
    Settings s;
    for (const auto& n : config_.nodes) s.nodes.push_back(n.name);
    s.mode = to_ha(config_.sync);
    s.sync_count = config_.sync_count;
    s.strict = config_.sync_strict;
    s.maximum_lag_on_failover = static_cast<uint64_t>(config_.maximum_lag_on_failover);
    s.ttl = static_cast<TimeMs>(config_.dcs_ttl_seconds) * 1000;
    s.loop_wait = static_cast<TimeMs>(config_.loop_wait_seconds) * 1000;
    s.primary_start_timeout = static_cast<TimeMs>(config_.primary_start_timeout_seconds) * 1000;
    return s;
  }

  // ---- observing ----

  void observe() {
    // decide() needs each member's status dated no later than its LSNs were read.
    sampled_mono_ms_ = mono_ms();
    sampled_unix_ms_ = unix_ms();
    if (postmaster_ == 0) {
      if (member_.state != "crashed" && member_.state != "stopped") set_state("stopped");
      member_.role = !postgres::has_data(layout_, name_) ? "unknown"
                     : postgres::is_standby(layout_, name_) ? "replica"
                                                             : "primary";
      accepting_ = false;
      return;
    }
    if (!conn_) {
      auto c = postgres::PgConn::connect(postgres::local_conninfo(layout_, config_, node()));
      if (!c) {
        accepting_ = false;
        if (member_.state != "crashed") set_state("starting");
        if (Clock::now() - started_at_ > 60s) note_error(c.error());
        return;
      }
      conn_.emplace(std::move(c.value()));
    }
    int known_timeline = member_.timeline;
    if (auto s = postgres::probe(*conn_, member_); !s) {
      note_error("status query failed: " + s.error());
      conn_.reset();
      accepting_ = false;
      return;
    }
    accepting_ = true;
    // Behind, but no commit replayed since this server started (so no timestamp to subtract):
    // the lag is at least how long it has been behind as seen by this agent.
    if (member_.replay_delay_seconds < 0) {
      if (behind_since_ == Clock::time_point{}) behind_since_ = Clock::now();
      member_.replay_delay_seconds = std::chrono::duration<double>(Clock::now() - behind_since_).count();
    } else {
      behind_since_ = {};
    }
    // The WAL position when the synchronous setting in force took effect (first seen as primary,
    // or changed): commits before it were acknowledged under the previous setting.
    std::string sync_key = member_.role + "|" + member_.sync_standby_names + "|" + std::to_string(postmaster_);
    if (member_.role == "primary" && sync_key != last_sync_names_) {
      sync_in_force_lsn_ = lsn_of(member_.current_lsn);
      last_sync_names_ = sync_key;
    }
    // A standby whose WAL receiver is down reports its last checkpoint's timeline, which lags
    // behind a timeline switch it already replayed; the receiver's last value stays right.
    if (member_.role == "replica" && !member_.wal_receiver_streaming && known_timeline > member_.timeline) {
      member_.timeline = known_timeline;
    }
    member_.postmaster_pid = postmaster_;
    if (postmaster_ != pending_checked_for_ || Clock::now() >= pending_check_due_) {
      if (auto pending = postgres::pending_restart(*conn_)) member_.pending_restart = *pending;
      pending_checked_for_ = postmaster_;
      pending_check_due_ = Clock::now() + 30s;
    }
    member_.last_error.clear();
    if (member_.role == "primary") report_lost_slots();
    report_archive_failure();
    if (Clock::now() - started_at_ > 10s) backoff_ = 0s;  // healthy for a while: crash restarts are immediate again
    set_state(member_.role == "replica" && member_.wal_receiver_streaming ? "streaming" : "running");
  }

  // A slot that fell further behind than max_slot_wal_keep_size lost its WAL: its replica cannot
  // stream again until it is rebuilt. Say so where the operator looks (status, the agent's log).
  void report_lost_slots() {
    auto r = conn_->query_prepared("SELECT slot_name FROM pg_replication_slots WHERE wal_status = 'lost' ORDER BY 1");
    if (!r || r->empty()) return;
    std::string names;
    for (const auto& row : *r) names += (names.empty() ? "" : ", ") + row[0].value_or("?");
    note_error("replication slot " + names + " lost the WAL its replica needs (it fell more than "
               "max_slot_wal_keep_size behind): rebuild that replica with `pgfleet reinit <node>`");
  }

  // backup.interval: the primary's agent starts `pgfleet backup --keep K` in the background.
  void schedule_backup(const ClusterView& view) {
    if (config_.backup.interval_seconds <= 0 || multi_host() || !view.leader || view.leader->holder != name_ ||
        !accepting_ || !conn_ || member_.role != "primary" || fenced_)
      return;
    const auto backups = backup::list_backups(layout_);
    const int64_t now = unix_ms();
    std::optional<int64_t> newest;
    if (!backups.empty()) newest = backups.back().finished_ms;
    if (!backup::backup_due(now, newest, backup_started_ms_, config_.backup.interval_seconds,
                            backup::backup_running(layout_)))
      return;
    // A new cluster: `up` creates the role pg_basebackup logs in as once the primary runs.
    auto role = conn_->query("SELECT 1 FROM pg_roles WHERE rolname = $1 AND rolcanlogin", {config_.replication_user});
    if (!role || role->empty()) return;
    backup_started_ms_ = now;
    const bool incremental = backup::next_backup_incremental(backups, now, config_.backup.full_interval_seconds);
    log::info("starting {} backup (backup.interval {} s; newest backup {})", incremental ? "an incremental" : "a",
              config_.backup.interval_seconds, newest ? backups.back().id : std::string("none"));
    std::vector<std::string> args{process::self_exe(), "backup", "--dir", layout_.root(), "--keep",
                                  std::to_string(config_.backup.keep)};
    if (incremental) args.push_back("--incremental");
    process::spawn_daemon(args, layout_.agent_log(name_));
  }

  // A failing archive_command makes PostgreSQL keep every WAL file from then on (docs/backup.md).
  void report_archive_failure() {
    auto r = conn_->query_prepared(
        "SELECT last_failed_wal FROM pg_stat_archiver WHERE last_failed_time > "
        "coalesce(last_archived_time, '-infinity') AND last_failed_time > now() - interval '10 minutes'");
    if (!r || r->empty()) return;
    note_error("archiving WAL fails (" + r->front()[0].value_or("?") +
               "; archive_command's error is in postgresql.log): PostgreSQL keeps every WAL file until it works");
  }

  NodeView node_view(const ClusterView& view) const {
    NodeView v;
    v.name = name_;
    v.data_exists = postgres::has_data(layout_, name_);
    v.postmaster_running = postmaster_ != 0;
    v.accepting = accepting_;
    v.in_recovery = accepting_ ? member_.role == "replica" : postgres::is_standby(layout_, name_);
    v.timeline = accepting_ ? member_.timeline : stopped_timeline();
    v.lsn = lsn_of(member_.role == "primary" ? member_.current_lsn : member_.received_lsn);
    if (v.lsn == 0) v.lsn = lsn_of(member_.replayed_lsn);
    v.replayed_lsn = lsn_of(member_.replayed_lsn);
    v.following = following_;
    v.rewind_failed = rewind_failed_;
    v.lease_renewed_at = lease_renewed_at_;
    v.fenced = fenced_;
    v.failsafe_confirmed_at = failsafe_.confirmed_at();
    v.failsafe_leader = failsafe_.promised_to(mono_ms(), settings().ttl, &v.failsafe_heard_at, true);
    v.timeline_diverged = diverged_from_leader(view);
    v.stepped_down_at = stepped_down_at_;
    if (accepting_ && member_.role == "primary") {
      v.sync_in_force = parse_sync_names(member_.sync_standby_names);
      v.sync_in_force_lsn = sync_in_force_lsn_;
    }
    return v;
  }

  // A running standby whose leader is on a later timeline: did it replay past the point where the
  // leader's history left our timeline? The WAL receiver fetched that history file into pg_wal
  // when it connected; without it nothing is known yet.
  bool diverged_from_leader(const ClusterView& view) const {
    if (!accepting_ || member_.role != "replica" || !view.leader || view.leader->holder == name_) return false;
    const MemberView* leader = nullptr;
    for (const auto& m : view.members)
      if (m.name == view.leader->holder) leader = &m;
    if (leader == nullptr || leader->timeline <= member_.timeline) return false;
    auto text = fs::read_file(layout_.data_dir(name_) + "/pg_wal/" + postgres::timeline_history_file(leader->timeline));
    if (!text) return false;
    auto history = postgres::parse_timeline_history(*text);
    return !history.empty() &&
           postgres::diverged_from_history(history, member_.timeline, lsn_of(member_.replayed_lsn), leader->timeline);
  }

  int stopped_timeline() const { return postgres::data_timeline(bins_.bindir, layout_, name_); }

  ClusterView read_cluster() {
    ClusterView v;
    TimeMs now = mono_ms();
    const int64_t unix_now = unix_ms();
    auto leader = dcs_->get(dcs::keys::kLeader);  // with its remaining TTL, which a list lacks
    // Every other key in one consistent read, as Patroni reads its cluster prefix: a request per
    // key (about ten) cost a timeout each when etcd went away in the middle of a loop.
    auto all = dcs_->list("");
    dcs_reachable_ = leader && all;
    leader_absent_ = leader && !leader.value();
    if (!leader || !all) {
      v.dcs_reachable = false;
      if (!dcs_error_logged_) log::warn("DCS unreachable: {}", !leader ? leader.error() : all.error());
      dcs_error_logged_ = true;
      v.leader = last_leader_;
      v.leader_expired_at = leader_expired_at_;
      v.failsafe = failsafe_mode_;
      return v;
    }
    dcs_error_logged_ = false;
    const dcs::ClusterKeys keys(*all);
    if (leader.value()) {
      const auto& kv = *leader.value();
      // One host: a leader whose agent and postmaster are both gone cannot come back to renew.
      if (!multi_host() && kv.value != name_ && config_.find_node(kv.value) && cluster::agent_pid(layout_, kv.value) == 0 &&
          postgres::running_postmaster(layout_, kv.value) == 0) {
        if (auto gone = dcs_->compare_and_delete(dcs::keys::kLeader, kv.mod_revision); gone && *gone) {
          log::warn("leader {} is gone (its agent and postmaster on this host are not running): leader key released",
                    kv.value);
        }
      } else {
        v.leader = LeaderKey{kv.value, kv.mod_revision, now + (kv.ttl_remaining ? kv.ttl_remaining->count() : 0)};
      }
    }
    if (v.leader) {
      leader_expired_at_ = 0;
      last_leader_expiry_ = v.leader->expires_at;
    } else if (leader_expired_at_ == 0) {
      // The key may have been deleted before its TTL: count from its expiry as last read, unless
      // its holder is verifiably gone on this host or handed over in a switchover.
      bool holder_gone = !multi_host() && !previous_leader_.empty() && cluster::agent_pid(layout_, previous_leader_) == 0 &&
                         postgres::running_postmaster(layout_, previous_leader_) == 0;
      bool handed_over = keys.switchover != nullptr;
      leader_expired_at_ = holder_gone || handed_over ? now : std::max(now, last_leader_expiry_);
    }
    if (!v.leader && !multi_host()) fence_orphaned_primaries();
    if (multi_host()) {
      forget_removed_nodes(keys.removed);
      learn_nodes(keys.members);
    }
    read_cluster_parameters(keys.parameters);
    take_requests(keys);
    if (auto why = slots_.read_specs(keys.slots); !why.empty()) note_error(why);
    primary_slot_positions_.clear();
    restarting_peers_.clear();
    v.leader_expired_at = leader_expired_at_;
    last_leader_ = v.leader;
    if (v.leader && v.leader->holder != name_) previous_leader_ = v.leader->holder;
    for (const auto& kv : keys.members) {
      try {
        auto m = dcs::member_from_json(nlohmann::json::parse(kv.value));
        if (v.leader && m.name == v.leader->holder && m.role == "primary")
          for (const auto& [slot, lsn] : m.slots) primary_slot_positions_[slot] = lsn_of(lsn);
        if (m.name != name_ && (m.state == "starting" || m.state == "stopping")) restarting_peers_.push_back(m.name);
        MemberView mv;
        mv.name = m.name;
        mv.role = m.role;
        mv.running = dcs::is_running(m);
        mv.streaming = m.wal_receiver_streaming;
        mv.timeline = m.timeline;
        mv.received_lsn = lsn_of(m.role == "primary" ? m.current_lsn : m.received_lsn);
        if (mv.received_lsn == 0) mv.received_lsn = lsn_of(m.replayed_lsn);
        mv.replayed_lsn = lsn_of(m.replayed_lsn);
        mv.failsafe_for = m.failsafe_for;
        mv.stepped_down = m.stepped_down;
        mv.checkpoint_pending = m.checkpoint_pending;
        mv.nofailover = m.nofailover;
        mv.updated_at = member_updated_at({m.updated_mono_ms, m.updated_at_ms}, !multi_host() || m.name == name_,
                                          now, unix_now);
        // An agent that died or stopped leaves its key (until the TTL, or for good when it stopped
        // cleanly); on one host its pidfile lock says at once that it takes no part.
        if (!multi_host() && m.name != name_ && cluster::agent_pid(layout_, m.name) == 0) continue;
        v.members.push_back(mv);
      } catch (const nlohmann::json::exception&) {
      }
    }
    if (keys.sync != nullptr) {
      try {
        auto doc = nlohmann::json::parse(keys.sync->value);
        v.sync_leader = doc.value("leader", "");
        v.sync = sync_from_json(doc.at("constraints").dump());
      } catch (const nlohmann::json::exception&) {
      }
    }
    // One host: when no leader holds the key and this node's data is the primary on the newest
    // timeline of all data directories, it holds every acknowledged commit (a commit is written on
    // the primary before anyone acknowledges it): it may take the key back without the quorum.
    if (!multi_host() && !v.leader && !postgres::is_standby(layout_, name_) &&
        cluster::primary_from_data(config_, layout_) == name_) {
      v.sync = {SyncConstraint{{name_}, 1}};
    }
    // Failsafe rounds ask every node of the cluster, not only the members whose keys are present
    // now: one whose key expired (down, or cut off) could otherwise take the key after the outage.
    failsafe_peers_.clear();
    for (const auto& n : config_.nodes)
      if (n.name != name_)
        failsafe_peers_.push_back({n.name, fmt::format("{}://{}:{}", config_.http_tls ? "https" : "http",
                                                       n.host.empty() ? cluster::connect_host(config_) : n.host,
                                                       n.api_port)});
    v.paused = keys.pause != nullptr;
    failsafe_mode_ = keys.failsafe != nullptr;
    v.failsafe = failsafe_mode_;
    if (keys.switchover != nullptr) {
      try {
        auto j = nlohmann::json::parse(keys.switchover->value);
        // Wall-clock times from the writer, possibly another host, on this agent's monotonic clock.
        auto local = [&](int64_t unix) { return unix == 0 ? TimeMs{0} : now + (unix - unix_ms()); };
        v.switchover = SwitchoverRequest{j.value("from", ""), j.value("to", ""),
                                         local(j.value("not_before_ms", int64_t{0})),
                                         std::min(now, local(j.value("requested_ms", int64_t{0})))};
      } catch (const nlohmann::json::exception&) {
      }
    }
    if (keys.failover != nullptr) {
      try {
        v.failover_to = nlohmann::json::parse(keys.failover->value).value("to", "");
      } catch (const nlohmann::json::exception&) {
      }
    }
    return v;
  }

  // Several hosts: the nodes are the members that published themselves; they are added to this
  // host's pgfleet.yaml (which replica building and upstream addresses read) as they appear.
  void learn_nodes(const std::vector<dcs::KeyValue>& members) {
    bool changed = false;
    for (const auto& kv : members) {
      try {
        auto m = dcs::member_from_json(nlohmann::json::parse(kv.value));
        if (m.name.empty() || m.name == name_ || m.host.empty() || m.port == 0) continue;
        if (removed_.contains(m.name)) continue;  // until it clears its mark itself
        cluster::NodeConfig n;
        n.name = m.name;
        n.host = m.host;
        n.port = m.port;
        n.api_port = m.api_port;
        auto* known = config_.find_node(m.name);
        if (known && known->host == n.host && known->port == n.port) continue;
        if (known) *known = n;
        else config_.nodes.push_back(n);
        changed = true;
        log::info("node {} at {}:{} learned from the DCS", n.name, n.host, n.port);
      } catch (const nlohmann::json::exception&) {
      }
    }
    if (!changed) return;
    save_nodes("learned");
    if (conn_ && member_.role == "primary") ensure_slots();  // a node that came back after its removal
  }

  void save_nodes(const char* what) {
    try {
      cluster::validate_config(config_, layout_.config_file());
      fs::write_file_atomic(layout_.config_file(), cluster::render_config(config_), 0600);
    } catch (const std::exception& e) {
      note_error(std::string("cannot record the ") + what + " nodes: " + e.what());
    }
  }

  // Several hosts: nodes removed for good (`pgfleet remove-node`) leave this host's pgfleet.yaml,
  // so failsafe rounds stop asking them and a new primary makes them no slot; a primary drops
  // their replication slots, which would otherwise keep WAL for them forever. A removed node
  // whose agent starts again clears its own mark and is learned again.
  void forget_removed_nodes(const std::vector<std::string>& marks) {
    removed_ = {marks.begin(), marks.end()};
    std::erase_if(dropped_slots_, [&](const std::string& n) { return !removed_.contains(n); });
    if (removed_.contains(name_)) {
      log::info("this node was removed from the cluster (pgfleet remove-node); it is back and rejoins");
      if (auto r = dcs_->remove(std::string(dcs::keys::kRemovedPrefix) + name_); r) removed_.erase(name_);
    }
    bool changed = false;
    for (auto it = config_.nodes.begin(); it != config_.nodes.end();) {
      if (it->name != name_ && removed_.contains(it->name)) {
        log::info("node {} was removed from the cluster: forgotten", it->name);
        it = config_.nodes.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
    if (changed) save_nodes("remaining");
    if (conn_ && member_.role == "primary") {
      for (const auto& gone : removed_) {
        if (gone == name_ || dropped_slots_.contains(gone)) continue;
        // Dropped once no row is left (an active slot, of a node not quite stopped: next loop).
        auto r = conn_->query(
            "SELECT active, CASE WHEN NOT active THEN pg_drop_replication_slot(slot_name) IS NULL END "
            "FROM pg_replication_slots WHERE slot_name = $1",
            {gone});
        if (!r) note_error("cannot drop the replication slot of removed node " + gone + ": " + r.error());
        else if (r->empty() || r->front()[0] == std::optional<std::string>("f")) dropped_slots_.insert(gone);
      }
    }
  }

  // One host: a primary whose agent died keeps accepting writes from direct clients. Once the
  // leader key has expired (nobody vouches for it), any agent stops it before an election.
  void fence_orphaned_primaries() {
    for (const auto& n : config_.nodes) {
      if (n.name == name_ || cluster::agent_pid(layout_, n.name) != 0 || postgres::is_standby(layout_, n.name)) continue;
      if (pid_t orphan = postgres::running_postmaster(layout_, n.name); orphan != 0) {
        log::warn("fencing {}: its postmaster (pid {}) runs as a primary without an agent or a leader key", n.name,
                  orphan);
        ::kill(orphan, SIGINT);
        if (!process::wait_gone(orphan, 5s)) ::kill(orphan, SIGKILL);
      }
    }
  }

  // ---- acting ----

  // Returns false when the action failed; the rest of the list is then skipped.
  bool execute(const Action& a, const ClusterView& view) {
    log_once(a);
    auto ttl = std::chrono::seconds(config_.dcs_ttl_seconds);
    switch (a.kind) {
      case ActionKind::AcquireLease: {
        TimeMs started = mono_ms();
        if (std::string why; !failsafe_.begin_claim(started, settings().ttl, why)) {
          log::info("not taking the leader key: {}", why);
          return false;
        }
        auto won = dcs_->compare_and_set(dcs::keys::kLeader, name_, 0, ttl);
        if (!won || !*won) return false;  // another node was faster: never promote after losing
        lease_renewed_at_ = started;
        log::info("acquired the leader key");
        break;
      }
      case ActionKind::RenewLease: {
        TimeMs started = mono_ms();
        auto renewed = dcs_->compare_and_set(dcs::keys::kLeader, name_, a.revision, ttl);
        if (!renewed || !*renewed) {
          note_error("cannot renew the leader key" + (renewed ? std::string() : ": " + renewed.error()));
          return false;
        }
        lease_renewed_at_ = started;
        break;
      }
      case ActionKind::ReleaseLease:
        if (auto l = dcs_->get(dcs::keys::kLeader); l && l.value() && l.value()->value == name_) {
          (void)dcs_->compare_and_delete(dcs::keys::kLeader, l.value()->mod_revision);
        }
        lease_renewed_at_ = 0;
        break;
      case ActionKind::Promote: return promote();
      case ActionKind::Fence:
        if (!fenced_) {
          fenced_ = true;
          stop_postmaster(!accepting_);
        }
        break;
      case ActionKind::Follow:
        following_ = a.target;
        if (!postgres::is_standby(layout_, name_) && postgres::has_data(layout_, name_)) {
          fs::write_file_atomic(layout_.data_dir(name_) + "/standby.signal", "", 0600);
        }
        if (postmaster_ == 0) start_postmaster();
        break;
      case ActionKind::Rewind: rewind(a.target); break;
      case ActionKind::Reinit: reinit(a.target); break;
      case ActionKind::StartPostgres:
        if (postmaster_ == 0 && (Clock::now() >= restart_at_ || restart_requested_)) {
          // decide() starts primary data only on the holder of a valid lease: that lifts a fence.
          if (!postgres::is_standby(layout_, name_)) fenced_ = false;
          start_postmaster();
        }
        break;
      case ActionKind::PublishSync: {
        // Only the holder of the leader key publishes, together with its name (sync_leader).
        if (!view.leader || view.leader->holder != name_) return false;
        nlohmann::json doc = {{"leader", name_}, {"constraints", to_json(a.sync)}};
        if (auto r = dcs_->put(dcs::keys::kSync, doc.dump()); !r) return false;
        break;
      }
      case ActionKind::SetSyncStandbys:
        if (!a.sync.empty()) desired_sync_names_ = render_sync_names(a.sync.back(), to_ha(config_.sync));
        break;
      case ActionKind::ClearSwitchover:
        (void)dcs_->remove(dcs::keys::kSwitchover);
        (void)dcs_->remove(dcs::keys::kFailover);
        break;
      case ActionKind::RecordHistory: {
        // started_ms: when the old primary was lost (failover) or released (switchover); the new
        // primary adds promoted_ms, so the change's duration can be reported.
        int64_t started = view.leader || leader_expired_at_ == 0 ? unix_ms() : unix_ms() - (mono_ms() - leader_expired_at_);
        nlohmann::json entry = {{"time_ms", unix_ms()}, {"from", view.leader ? view.leader->holder : previous_leader_},
                                {"to", a.target}, {"reason", a.reason},
                                {"lsn", a.lsn != 0 ? postgres::format_lsn(a.lsn) : member_.received_lsn},
                                {"started_ms", started}};
        (void)dcs_->put(std::string(dcs::keys::kHistoryPrefix) + std::to_string(unix_ms()), entry.dump());
        // Once per change, by the agent recording it: the new primary after a failover, the old one
        // after a switchover.
        callback("on_failover", config_.callbacks.on_failover, a.target == name_ ? "primary" : "replica",
                 entry["from"].get<std::string>(), a.target, a.reason);
        break;
      }
      case ActionKind::StepDown:
        // decide() stops promoting and starting a primary here; elections take this node last.
        member_.last_error = "stepped down: " + a.reason;  // for `pgfleet status`; log_once logged it
        stepped_down_at_ = mono_ms();
        leading_clock_ = {};
        promotion_requested_ = false;
        break;
      case ActionKind::Wait: break;
    }
    return true;
  }

  // Callbacks run in the background (never block this loop); see ha/callbacks.hpp.
  void callback(const std::string& event, const std::string& command, const std::string& role,
                const std::string& old_primary, const std::string& new_primary, const std::string& reason) {
    CallbackEvent e{event, name_, role, reported_role_, old_primary, new_primary, reason, config_.cluster};
    run_callback_async(command, e, layout_.agent_log(name_), std::chrono::seconds(config_.callbacks.timeout_seconds));
  }

  // on_role_change once PostgreSQL runs in a role other than the last one it ran in.
  void notice_role_change(const ClusterView& view, const std::vector<Action>& actions) {
    if (!accepting_ || (member_.role != "primary" && member_.role != "replica")) return;
    if (member_.role == reported_role_) return;
    if (!reported_role_.empty()) {
      std::string reason;
      for (const auto& a : actions)
        if (a.kind != ActionKind::Wait && a.kind != ActionKind::RenewLease) reason = a.reason;
      // Promoted in this loop: the view was read before it took the key.
      const std::string leader = member_.role == "primary" ? name_ : view.leader ? view.leader->holder : "";
      callback("on_role_change", config_.callbacks.on_role_change, member_.role,
               reported_role_ == "primary" ? name_ : previous_leader_, leader,
               reason.empty() ? reported_role_ + " -> " + member_.role : reason);
    }
    reported_role_ = member_.role;
  }

  // Logs an action's reason once per change (every loop renews the lease; nobody wants that logged).
  // Only the words count: a wait whose times and positions move on each loop is the same decision.
  void log_once(const Action& a) {
    std::string words = a.reason;
    std::erase_if(words, [](char c) { return c >= '0' && c <= '9'; });
    auto& last = last_reason_[a.kind];
    if (last == words) return;
    last = words;
    if (a.kind == ActionKind::RenewLease && a.reason.empty()) return;
    log::info("{}: {}", to_string(a.kind), a.reason);
  }

  bool promote() {
    if (!postgres::is_standby(layout_, name_) && postgres::has_data(layout_, name_)) {
      // Already a primary (a fenced one that holds the key again): lifting the fence is all.
      fenced_ = false;
      if (postmaster_ == 0) start_postmaster();
      return true;
    }
    if (!conn_) {
      note_error("cannot promote: not connected to the local server");
      return false;
    }
    auto r = conn_->query("SELECT pg_promote(true, 60)");
    if (!r || r->empty() || r->front()[0] != std::optional<std::string>("t")) {
      // "false" is a promotion still replaying after 60 s: it may yet finish, and then the rest
      // of this must run (without the slots the replicas could not stream from it).
      promotion_requested_ = true;
      note_error("pg_promote failed: " + (r ? std::string("not promoted within 60 s") : r.error()));
      return false;
    }
    finish_promotion();
    return true;
  }

  // After pg_promote: at once, or once a promotion that outlasted pg_promote's wait is done.
  void finish_promotion() {
    promotion_requested_ = false;
    log::info("promoted to primary");
    following_.clear();
    fenced_ = false;
    rewind_failed_ = false;
    ensure_slots();
    // Published at once, so that proxies send writes here now rather than a loop later (the
    // checkpoint below takes a while)...
    member_.checkpoint_pending = true;
    observe();
    if (dcs_reachable_) publish();
    // ...but a checkpoint puts the new timeline in pg_control: pg_rewind on the old primary reads
    // it from there ("no rewind required" otherwise), so it waits for checkpoint_pending to clear.
    if (!conn_) note_error("checkpoint after promotion: not connected to the local server");
    else if (auto c = conn_->exec("CHECKPOINT"); !c) note_error("checkpoint after promotion failed: " + c.error());
    member_.checkpoint_pending = false;
    (void)dcs_->remove(dcs::keys::kFailover);
    mark_history_promoted();
  }

  // Every other member needs its slot here before it follows.
  void ensure_slots() {
    for (const auto& n : config_.nodes) {
      if (n.name == name_) continue;
      (void)conn_->query(
          "SELECT pg_create_physical_replication_slot($1, true) "
          "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
          {n.name});
    }
  }

  void mark_history_promoted() {
    auto entries = dcs_->list(dcs::keys::kHistoryPrefix);
    if (!entries || entries->empty()) return;
    const auto& last = entries->back();
    try {
      auto j = nlohmann::json::parse(last.value);
      if (j.value("to", "") != name_ || j.contains("promoted_ms")) return;
      j["promoted_ms"] = unix_ms();
      (void)dcs_->compare_and_set(last.key, j.dump(), last.mod_revision);
    } catch (const nlohmann::json::exception&) {
    }
  }

  // The node's HTTP API on its own thread; the agent runs on without it when the port is taken.
  void start_api() {
    auto answer_failsafe = [this](const std::string& leader) {
      const TimeMs now = mono_ms();
      const bool new_promise = failsafe_.promised_to(now, ttl_ms_) != leader;
      std::string why = failsafe_.answer(name_, leader, now);
      if (!why.empty()) log::warn("failsafe: not confirming {} as primary: {}", leader, why);
      else if (new_promise) log::info("failsafe: confirmed that {} is the primary; not taking the leader key for a TTL", leader);
      return why;
    };
    api_ = std::make_unique<http::NodeApi>(layout_, config_, name_,
                                           http::NodeApiHooks{[] { g_restart = true; },
                                                              [] {
                                                                g_reinit_asked_ms = steady_now_ms();
                                                                g_reinit = true;
                                                              },
                                                              answer_failsafe});
    try {
      api_->start();
      log::info("HTTP API on {}:{}", config_.listen_address, api_->port());
    } catch (const std::exception& e) {
      log::error("HTTP API not started: {}", e.what());
      api_.reset();
    }
  }

  postgres::UpstreamInfo upstream_info(const std::string& target) const {
    const auto* n = config_.find_node(target);
    return postgres::UpstreamInfo{target, n && !n->host.empty() ? n->host : cluster::connect_host(config_),
                                  n ? n->port : 0};
  }

  void rewind(const std::string& target) {
    stop_postmaster(false);
    // After a crash (kill -9) its old server may not be gone yet: pg_rewind's crash recovery in
    // single-user mode would find its lock file and fail, and a full rebuild would follow.
    if (std::string why = postgres::previous_server_lingers(layout_, name_); !why.empty()) {
      if (why != lingering_) log::info("not rewinding yet: {}", why);
      lingering_ = why;
      return;
    }
    lingering_.clear();
    auto up = upstream_info(target);
    log::info("rewinding {} from {} ({}:{})", name_, target, up.host, up.port);
    auto r = process::run({bins_.path("pg_rewind"), "--target-pgdata", layout_.data_dir(name_), "--source-server",
                           fmt::format("host={} port={} user={} dbname={} passfile={}", up.host, up.port,
                                       config_.superuser, config_.database, layout_.passfile())});
    fs::append_file(layout_.agent_log(name_), r.output);
    if (r.exit_code != 0) {
      rewind_failed_ = true;
      return note_error("pg_rewind from " + target + " failed; the node will be rebuilt from it");
    }
    rewind_failed_ = false;
    fenced_ = false;
    fs::write_file_atomic(layout_.data_dir(name_) + "/standby.signal", "", 0600);
    following_ = target;
    start_postmaster();
  }

  void reinit(const std::string& target) {
    stop_postmaster(false);
    log::info("rebuilding {} from {} with pg_basebackup", name_, target);
    try {
      auto cluster = cluster::Cluster::open(layout_.root());
      cluster::build_replica(cluster, bins_, name_);
      rewind_failed_ = false;
      fenced_ = false;
      following_ = target;
      start_postmaster();
      rebuilt_ms_ = steady_now_ms();
      member_.rebuilt_at_ms = unix_ms();  // `pgfleet reinit` waits for this, not for a new postmaster pid
    } catch (const std::exception& e) {
      note_error(std::string("rebuild failed: ") + e.what());
      restart_at_ = Clock::now() + 10s;
    }
  }

  // What the primary ran with, as this standby's control file recorded it: recovery refuses
  // lower values, so a rolling restart that lowers max_connections (replicas first) would stop it.
  postgres::ParameterFloors read_standby_floors() {
    auto r = process::run({bins_.path("pg_controldata"), layout_.data_dir(name_)});
    if (r.exit_code != 0) return {};
    return postgres::standby_parameter_floors(r.output);
  }

  // `pgfleet restart|reinit --dcs` ask from another machine through the DCS (this agent's HTTP API
  // may be out of their reach): the same as POST /restart or /reinit, at the start of the next loop.
  void take_requests(const dcs::ClusterKeys& keys) {
    // Deleted first, so that a request is taken once (the command waits for its effect).
    auto take = [&](const std::vector<dcs::KeyValue>& requests, const std::string& mine) {
      for (const auto& kv : requests) {
        if (kv.key != mine) continue;
        auto taken = dcs_->compare_and_delete(mine, kv.mod_revision);
        return taken && *taken;
      }
      return false;
    };
    if (take(keys.restarts, dcs::keys::restart(name_))) {
      log::info("restart requested through the DCS");
      g_restart = true;
    }
    if (take(keys.reinits, dcs::keys::reinit(name_))) {
      log::info("reinit requested through the DCS");
      g_reinit_asked_ms = steady_now_ms();
      g_reinit = true;
    }
  }

  // `pgfleet config set`'s parameters, written into the conf files by apply_config() this loop.
  void read_cluster_parameters(const dcs::KeyValue* kv) {
    const int64_t revision = kv != nullptr ? kv->mod_revision : 0;
    if (revision == parameters_seen_revision_) return;
    parameters_seen_revision_ = revision;
    if (kv == nullptr) {
      cluster_parameters_.clear();
      parameters_revision_ = 0;
      return;
    }
    auto parsed = cluster::parameters_from_json(kv->value);
    if (!parsed) {
      note_error("the DCS key 'parameters' is not valid (" + parsed.error() + "): the parameters in force stay");
      return;
    }
    cluster_parameters_ = std::move(*parsed);
    parameters_revision_ = revision;
  }

  // The conf files this node should have now; rewriting them is cheap, reloading only on change.
  void apply_config() {
    if (!postgres::has_data(layout_, name_)) return;
    std::optional<postgres::UpstreamInfo> upstream;
    bool standby = postgres::is_standby(layout_, name_);
    if (standby && !following_.empty()) {
      // Cascading: a replica may stream from another replica instead of the leader.
      std::string via = cluster::upstream_of(config_, name_, following_);
      upstream = upstream_info(via.empty() || via == name_ ? following_ : via);
      member_.upstream = upstream->name;
    } else {
      member_.upstream.clear();
    }
    try {
      config_.cluster_parameters = cluster_parameters_;
      bool changed = postgres::write_managed_files(layout_, config_, node(), upstream ? &*upstream : nullptr,
                                                   standby ? std::string() : desired_sync_names_,
                                                   standby ? standby_floors_ : postgres::ParameterFloors{});
      member_.parameters_revision = parameters_revision_;  // `pgfleet config set` waits for this
      if (changed && postmaster_ != 0) {
        log::info("configuration changed (upstream '{}', synchronous_standby_names '{}'): reloading",
                  member_.upstream, standby ? "" : desired_sync_names_);
        ::kill(postmaster_, SIGHUP);
        pending_check_due_ = Clock::now() + 200ms;  // what the reload left waiting for a restart
      }
    } catch (const std::exception& e) {
      note_error(std::string("cannot write configuration: ") + e.what());
    }
  }

  // Permanent replication slots (`pgfleet slot`; slot_sync.hpp): create, follow the primary's,
  // drop the removed ones. A replica that lacks a logical slot gets the primary's copy, which
  // PostgreSQL reads only at start: the server restarts for it (at most every 30 s).
  void keep_permanent_slots() {
    if (slots_.idle() || !conn_ || !accepting_) {
      member_.slots.clear();
      return;
    }
    const bool primary = member_.role == "primary";
    auto pass = slots_.sync(*conn_, postgres::local_conninfo(layout_, config_, node()), primary,
                            primary ? std::map<std::string, uint64_t>{} : primary_slot_positions_,
                            lsn_of(member_.replayed_lsn));
    member_.slots = std::move(pass.positions);
    if (pass.to_copy.empty() || primary || !last_leader_) {
      slot_copy_wanted_since_ = {};
      slot_copy_waiting_.clear();
    }
    // Logged when it changes (a slot that cannot be made fails again every loop), shown each loop.
    if (!slot_copy_waiting_.empty()) pass.problems.push_back(slot_copy_waiting_);
    std::string problems;
    for (const auto& p : pass.problems) problems += (problems.empty() ? "" : "; ") + p;
    if (problems != slot_problems_ && !problems.empty()) log::warn("{}", problems);
    slot_problems_ = problems;
    if (!problems.empty()) member_.last_error = problems;
    // Only a replica streaming from a primary that is not itself (not one being promoted).
    if (pass.to_copy.empty() || primary || !last_leader_ || last_leader_->holder == name_ ||
        member_.state != "streaming")
      return;
    // One replica at a time (the others go on serving reads and stay candidates): the n-th node
    // waits n * 5 s, and none restarts while another node is restarting.
    if (slot_copy_wanted_since_ == Clock::time_point{}) slot_copy_wanted_since_ = Clock::now();
    const auto rank = std::find_if(config_.nodes.begin(), config_.nodes.end(),
                                   [&](const cluster::NodeConfig& n) { return n.name == name_; }) - config_.nodes.begin();
    if (Clock::now() < std::max(slot_copy_due_, slot_copy_wanted_since_ + rank * 5s) || !restarting_peers_.empty()) return;
    slot_copy_due_ = Clock::now() + 5s;
    const auto* leader = config_.find_node(last_leader_->holder);
    if (leader == nullptr) return;
    auto oldest = SlotKeeper::oldest_wal(*conn_);
    if (!oldest) return note_error("permanent slots: " + oldest.error());
    std::vector<std::string> waiting;
    auto states = SlotKeeper::fetch_states(
        postgres::tcp_conninfo(layout_, config_, *leader, config_.superuser, config_.database), pass.to_copy, *oldest,
        waiting);
    if (!states) return note_error("permanent slots: " + states.error());
    // A replica just rebuilt (pg_basebackup) lacks the WAL from before its backup: a copy now
    // would fail at once. The primary's slot moves on as its consumer confirms changes.
    slot_copy_waiting_ = waiting.empty() ? "" : fmt::format("not copying the logical slot(s) {} from {} yet",
                                                            fmt::join(waiting, ", "), last_leader_->holder);
    if (states->empty()) return;
    slot_copy_due_ = Clock::now() + 30s;  // a copy restarts the server: not more often than this
    std::string names;
    for (const auto& [name, state] : *states) names += (names.empty() ? "" : ", ") + name;
    log::info("copying the logical replication slot(s) {} from {}: restarting this replica's server to load them",
              names, last_leader_->holder);
    stop_postmaster(false);
    if (auto installed = SlotKeeper::install_states(layout_.data_dir(name_), *states); !installed)
      note_error(installed.error());
    start_postmaster();  // at once: `pgfleet slot add` waits for a node starting, not for one stopped
  }

  void adopt_running_postmaster() {
    if (pid_t existing = postgres::running_postmaster(layout_, name_); existing != 0) {
      log::info("adopting running postmaster pid {}", existing);
      postmaster_ = existing;
      own_child_ = false;
      started_at_ = Clock::now();
      set_state("starting");
    }
  }

  void start_postmaster() {
    restart_requested_ = false;
    adopt_running_postmaster();
    if (postmaster_ != 0) return;
    if (!postgres::has_data(layout_, name_)) {
      note_error("no data directory at " + layout_.data_dir(name_));
      return;
    }
    // Right after a kill -9 the new server would refuse to start (and count as another crash,
    // with back-off); the old one is gone within moments.
    if (std::string why = postgres::previous_server_lingers(layout_, name_); !why.empty()) {
      if (why != lingering_) log::info("not starting PostgreSQL yet: {}", why);
      lingering_ = why;
      restart_at_ = Clock::now() + 50ms;
      return;
    }
    lingering_.clear();
    standby_floors_ = postgres::is_standby(layout_, name_) ? read_standby_floors() : postgres::ParameterFloors{};
    apply_config();
    fs::make_directories(layout_.socket_dir(), 0700);
    pid_t pid = process::spawn({bins_.path("postgres"), "-D", layout_.data_dir(name_)}, layout_.postgres_log(name_));
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
    slots_.disconnect();
    set_state("starting");
  }

  // Notices a postmaster that exited without being asked to; decide() restarts it (after back-off).
  void reap() {
    if (postmaster_ == 0) return;
    int status = 0;
    bool gone = own_child_ ? ::waitpid(postmaster_, &status, WNOHANG) == postmaster_ : !process::alive(postmaster_);
    if (!gone) return;
    watchdog_pid_ = 0;
    std::string how = !own_child_           ? "exited"
                      : WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                                            : "exited with code " + std::to_string(WEXITSTATUS(status));
    log::error("postmaster pid {} {}; restart in {} s. Last lines of {}:\n{}", postmaster_, how, backoff_.count(),
               layout_.postgres_log(name_), fs::tail(layout_.postgres_log(name_), 10));
    postmaster_ = 0;
    conn_.reset();
    slots_.disconnect();
    accepting_ = false;
    member_.restarts++;
    member_.postmaster_pid = 0;
    set_state("crashed");
    // The first crash restarts at once (crash recovery is the fastest way back); repeated ones back off.
    restart_at_ = Clock::now() + backoff_;
    backoff_ = std::clamp(backoff_ * 2, std::chrono::seconds(1), std::chrono::seconds(30));
  }

  void publish(std::optional<dcs::Millis> ttl = std::nullopt) {
    const auto& n = node();
    member_.host = n.host.empty() ? cluster::connect_host(config_) : n.host;
    member_.port = n.port;
    member_.api_port = n.api_port;
    member_.nofailover = n.nofailover;  // the tags go with the member: every agent and proxy sees them
    member_.noloadbalance = n.noloadbalance;
    if (!stats_) stats_.emplace(layout_.data_dir(name_));
    member_.stats = stats_->sample(accepting_ && conn_ ? &*conn_ : nullptr);  // for the dashboards
    member_.updated_at_ms = sampled_unix_ms_ != 0 ? sampled_unix_ms_ : unix_ms();
    member_.updated_mono_ms = sampled_mono_ms_ != 0 ? sampled_mono_ms_ : mono_ms();
    member_.failsafe_for = failsafe_.promised_to(mono_ms(), settings().ttl);
    member_.stepped_down = sits_out(stepped_down_at_, settings(), mono_ms());
    if (!ttl && member_.state != "stopped") ttl = std::chrono::seconds(config_.dcs_ttl_seconds);
    auto r = dcs_->put(dcs::keys::member(name_), dcs::to_json(member_).dump(), ttl);
    if (!r) note_error("dcs: cannot publish member state: " + r.error());
    if (api_) api_->publish(member_, fenced_);
  }

  // Fast shutdown; `immediate` when the server is hung (fencing must not wait for it).
  void stop_postmaster(bool immediate) {
    if (postmaster_ == 0) return;
    watchdog_pid_ = 0;
    set_state("stopping");
    if (dcs_reachable_) publish();  // fencing must not wait for an unreachable DCS
    conn_.reset();
    slots_.disconnect();
    accepting_ = false;
    ::kill(postmaster_, immediate ? SIGQUIT : SIGINT);
    auto deadline = Clock::now() + (immediate ? 10s : 60s);
    while (Clock::now() < deadline) {
      if (own_child_ ? ::waitpid(postmaster_, nullptr, WNOHANG) == postmaster_ : !process::alive(postmaster_)) break;
      std::this_thread::sleep_for(20ms);
    }
    if (process::alive(postmaster_)) {
      log::warn("postmaster did not stop in time; killing it");
      ::kill(postmaster_, SIGKILL);
      process::wait_gone(postmaster_, 10s);
    }
    log::info("postmaster pid {} stopped", postmaster_);
    postmaster_ = 0;
    member_.postmaster_pid = 0;
    set_state("stopped");
  }

  // A timer independent of the loop (which may be stuck in DCS calls that time out): a writable
  // primary is stopped at lease_renewed_at + ttl - loop_wait, one loop after decide() would have
  // fenced it and before the leader key can expire in the DCS (decide.cpp's contract).
  void arm_watchdog() {
    const bool writable_primary = postmaster_ != 0 && !fenced_ && !postgres::is_standby(layout_, name_);
    watchdog_pid_ = writable_primary && lease_renewed_at_ != 0 ? postmaster_ : 0;
    watchdog_fence_at_ = lease_renewed_at_ + settings().ttl - settings().loop_wait;
    ttl_ms_ = settings().ttl;
    loop_wait_ms_ = settings().loop_wait;
  }

  // Failsafe mode, primary cut off from the DCS: a round of POST /failsafe to every member every
  // half loop, on a thread of its own (the loop may be stuck in DCS timeouts). A round every member
  // confirmed keeps the primary writable (decide() rule 8) and moves the watchdog's deadline.
  void failsafe_loop(const std::string& token, const std::string& ca_file) {
    std::string last_outcome;
    while (!watchdog_stop_) {
      std::this_thread::sleep_for(100ms);
      const bool stuck = loop_stuck_in_dcs();
      if (!failsafe_.should_ask(name_, stuck)) {
        last_outcome.clear();
        continue;
      }
      const TimeMs started = mono_ms();
      const auto peers = failsafe_.peers();
      const auto timeout = std::chrono::milliseconds(std::clamp<TimeMs>(loop_wait_ms_ / 2, 100, 1000));
      std::string outcome = ask_peers(peers, name_, token, ca_file, timeout);
      if (outcome.empty()) {
        failsafe_.confirmed(started);
        failsafe_fence_at_ = started + ttl_ms_ - loop_wait_ms_;
        outcome = fmt::format("every member ({}) confirmed it follows {}: writes go on", peers.size(), name_);
      } else {
        outcome = "not every member confirmed (" + outcome + "): the primary stops writes when its lease ends";
      }
      if (outcome != last_outcome) {
        log::warn("failsafe: {}; {}",
                  stuck ? "the agent loop is stuck in a DCS call near the end of the lease" : "the DCS is unreachable",
                  outcome);
      }
      last_outcome = outcome;
      while (!watchdog_stop_ && mono_ms() < started + loop_wait_ms_ / 2) std::this_thread::sleep_for(20ms);
    }
  }

  // The loop has waited on one DCS call for half a loop (etcd cut off: each request waits out its
  // timeout) and the watchdog fences within two loops: the failsafe thread asks the members now.
  bool loop_stuck_in_dcs() const {
    const TimeMs wait = loop_wait_ms_;
    return dcs_calls_->in_flight_for().count() >= std::max<TimeMs>(wait / 2, 500) &&
           mono_ms() + 2 * wait >= watchdog_fence_at_;
  }

  void watchdog_loop() {
    while (!watchdog_stop_) {
      std::this_thread::sleep_for(50ms);
      pid_t pid = watchdog_pid_;
      // In failsafe mode every member's confirmation extends the deadline as a renewal would.
      const TimeMs fence_at = failsafe_.mode() ? std::max<TimeMs>(watchdog_fence_at_, failsafe_fence_at_)
                                               : watchdog_fence_at_.load();
      if (pid != 0 && mono_ms() >= fence_at) {
        log::warn("watchdog: the lease is about to expire and the agent loop has not fenced: stopping postmaster {}",
                  pid);
        ::kill(pid, SIGINT);  // fast shutdown: backends end at once, no commit acknowledged after
        watchdog_pid_ = 0;
        watchdog_fired_ = true;
      }
    }
  }

  void shutdown() {
    log::info("stopping");
    stop_postmaster(false);
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

  // Sleeps until the next loop, waking early when a control key changes (leader, switchover,
  // failover, pause), so a switchover or an election does not wait for loop_wait, or when the
  // postmaster died.
  void sleep_interruptibly(std::chrono::milliseconds total) {
    auto until = Clock::now() + total;
    if (!dcs_reachable_) {  // no watch to wait on: retry the DCS after the loop's sleep
      while (!g_stop && !g_reload && !g_restart && Clock::now() < until) std::this_thread::sleep_for(50ms);
      return;
    }
    const auto started = Clock::now();
    // The leader key may have changed since read_cluster() (a watch from now would not see it):
    // then loop again at once instead of after loop_wait.
    if (auto l = dcs_->get(dcs::keys::kLeader); l) {
      const std::string holder_now = l.value() ? l.value()->value : "";
      if (holder_now != (last_leader_ ? last_leader_->holder : "")) return;
    }
    auto signature = control_signature();
    // after_revision beyond the store's: returns the current revision at once.
    auto head = dcs_->wait_for_change("", std::numeric_limits<int64_t>::max(), std::chrono::milliseconds(0));
    if (!head) return;
    int64_t revision = *head;
    if (multi_host()) {
      // A watch instead of polling etcd: wakes on any change, and sleeps on unless a control key moved.
      while (!g_stop && !g_reload && !g_restart && Clock::now() < until) {
        // Rounded up: truncated, less than 1 ms left became a timeout of 0.
        auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now());
        auto woke = dcs_->wait_for_change("", revision, std::min<std::chrono::milliseconds>(left, 500ms));
        if (!woke) return;  // etcd unreachable: the next loop notices and decides
        // No leader: an election waits for the members' fresh status, so during its first TTL each
        // publication wakes the loop (at most every 100 ms); otherwise only a control key does.
        const bool electing = leader_absent_ && mono_ms() < leader_expired_at_ + settings().ttl;
        if (*woke != revision && electing) {
          std::this_thread::sleep_until(started + 100ms);
          return;
        }
        if (*woke != revision && control_signature() != signature) return;
        revision = *woke;
      }
      return;
    }
    // One host: the local DCS's wait reads the store only after a commit or at a TTL deadline, so
    // looking every 50 ms whether the postmaster died costs a few syscalls, not a read of the store.
    while (!g_stop && !g_reload && !g_restart && Clock::now() < until) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now());
      auto woke = dcs_->wait_for_change("", revision, std::min<std::chrono::milliseconds>(left, 50ms));
      if (!woke) return;  // the next loop reports the DCS's error
      if (*woke != revision && control_signature() != signature) break;
      revision = *woke;
      if (postmaster_ != 0 && !process::alive(postmaster_)) break;  // crashed: restart it now, not next loop
    }
  }

  std::string control_signature() {
    // One read of the cluster (after each change of the store): a failed read counts as no keys.
    auto all = dcs_->list("");
    const std::vector<dcs::KeyValue> none;
    const dcs::ClusterKeys keys(all ? *all : none);
    std::string sig;
    for (const dcs::KeyValue* kv : {keys.leader, keys.switchover, keys.failover, keys.pause})
      sig += kv != nullptr ? std::to_string(kv->mod_revision) + "," : "-,";
    // A restart or rebuild asked of this node from another machine (`--dcs`) is taken at once,
    // not a loop_wait later (a restart of the primary holds the proxies' clients meanwhile).
    for (const auto* requests : {&keys.restarts, &keys.reinits})
      for (const auto& kv : *requests)
        if (kv.key == dcs::keys::restart(name_) || kv.key == dcs::keys::reinit(name_)) sig += kv.key + ",";
    return sig;
  }

  cluster::Layout layout_;
  std::string name_;
  cluster::ClusterConfig config_;
  cluster::PgBinaries bins_;
  std::unique_ptr<dcs::Dcs> dcs_;
  const dcs::TrackedDcs* dcs_calls_ = nullptr;  // dcs_ itself, for the failsafe thread's stuck check
  FailsafeState failsafe_{mono_ms()};  // before api_: the API thread answers from it until api_ is gone
  std::vector<FailsafePeer> failsafe_peers_;  // the members last read, for failsafe rounds
  bool failsafe_mode_ = false;                // the DCS's failsafe key, as last read
  std::unique_ptr<http::NodeApi> api_;
  std::optional<NodeStatsSampler> stats_;
  dcs::Member member_;
  std::optional<postgres::PgConn> conn_;
  std::set<std::string> removed_;        // nodes marked removed in the DCS (several hosts)
  std::set<std::string> dropped_slots_;  // removed nodes whose slot this primary has dropped
  pid_t postmaster_ = 0;
  bool own_child_ = false;
  bool accepting_ = false;
  int pidfile_fd_ = -1;
  bool dcs_error_logged_ = false;
  bool restart_requested_ = false;
  bool fenced_ = false;
  bool rewind_failed_ = false;
  std::string following_;
  std::string desired_sync_names_;
  SlotKeeper slots_;  // the DCS key `slots` (`pgfleet slot`)
  std::map<std::string, uint64_t> primary_slot_positions_;  // ... as the primary's member key has them
  Clock::time_point slot_copy_due_{};  // the next copy of a logical slot from the primary, not before
  Clock::time_point slot_copy_wanted_since_{};  // since when this replica lacks a logical slot
  std::vector<std::string> restarting_peers_;   // other members starting or stopping, as last read
  std::string slot_problems_;  // what the last pass over the permanent slots could not do
  std::string slot_copy_waiting_;  // logical slots the last copy attempt left for later, and why
  cluster::PgParameters cluster_parameters_;  // the DCS key `parameters` (`pgfleet config set`)
  int64_t parameters_revision_ = 0;           // its mod_revision that cluster_parameters_ holds
  int64_t parameters_seen_revision_ = 0;      // the last one read (maybe invalid)
  postgres::ParameterFloors standby_floors_;  // read when the standby last started
  TimeMs lease_renewed_at_ = 0;
  LeadingClock leading_clock_;   // primary_start_timeout: since when leading without running as primary
  TimeMs stepped_down_at_ = 0;   // when this agent last gave the leadership up (0 = never)
  bool promotion_requested_ = false;  // pg_promote ran out of time; finish_promotion() once it is a primary
  int64_t backup_started_ms_ = 0;     // unix ms of this agent's last automatic backup (backup.interval)
  TimeMs leader_expired_at_ = 0;
  TimeMs last_leader_expiry_ = 0;
  std::string last_sync_names_;
  uint64_t sync_in_force_lsn_ = 0;
  std::optional<LeaderKey> last_leader_;
  std::string reported_role_;    // the role PostgreSQL last ran in (on_role_change)
  std::string previous_leader_;  // the last other node seen holding the key (history "from")
  std::map<ActionKind, std::string> last_reason_;
  bool dcs_reachable_ = true;  // the last read_cluster() reached the DCS
  bool leader_absent_ = false; // ... and found no leader key
  TimeMs sampled_mono_ms_ = 0; // when observe() read the local server's status
  int64_t sampled_unix_ms_ = 0;
  std::atomic<pid_t> watchdog_pid_{0};  // a writable primary's postmaster, 0 = nothing to guard
  std::atomic<TimeMs> watchdog_fence_at_{0};
  std::atomic<bool> watchdog_fired_{false};
  std::atomic<bool> watchdog_stop_{false};
  std::atomic<TimeMs> failsafe_fence_at_{0};
  std::atomic<TimeMs> ttl_ms_{30000};
  std::atomic<TimeMs> loop_wait_ms_{1000};
  Clock::time_point restart_at_{};
  Clock::time_point started_at_{};
  Clock::time_point behind_since_{};  // replica behind without a replayed commit to date it from
  pid_t pending_checked_for_ = 0;           // the postmaster whose pending restarts member_ holds
  Clock::time_point pending_check_due_{};
  int64_t rebuilt_ms_ = 0;  // steady ms when the last rebuild finished
  std::chrono::seconds backoff_{0};
  std::string lingering_;  // why the last start waited for the previous server to go (logged once)
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
