#include "cluster/health_check.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "util/clock.hpp"

namespace pgfleet::cluster {
namespace {

constexpr int64_t kArchiveFailureWindowMs = 10 * 60 * 1000;  // the archiver retries a failing file every minute

std::string bytes_text(int64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  if (bytes < (int64_t{1} << 20)) return fmt::format("{:.1f} kB", static_cast<double>(bytes) / 1024);
  if (bytes < (int64_t{1} << 30)) return fmt::format("{:.1f} MB", static_cast<double>(bytes) / (1 << 20));
  return fmt::format("{:.1f} GB", static_cast<double>(bytes) / (1 << 30));
}

std::string age_text(int64_t now_ms, int64_t then_ms) {
  int64_t seconds = std::max<int64_t>(0, (now_ms - then_ms) / 1000);
  return seconds == 0 ? "just now" : human_duration(seconds) + " ago";
}

const ReplayFact* replay_of(const CheckFacts& facts, const std::string& node) {
  for (const auto& r : facts.replays)
    if (r.node == node) return &r;
  return nullptr;
}

bool replayed(const CheckFacts& facts, const std::string& node) {
  const auto* r = replay_of(facts, node);
  return r != nullptr && r->replayed_after_ms.has_value();
}

bool is_replica(const ClusterStatus& status, const NodeStatus& n) { return n.name != status.leader; }

// What starts a stopped node or agent: `pgfleet up` on one host; on several, each host's agent
// is its own service.
std::string starter(const ClusterConfig& config) {
  return config.etcd.endpoints.empty() ? "`pgfleet up` starts it" : "start its agent on its host";
}

CheckResult leader_check(const ClusterConfig& config, const ClusterStatus& status, const CheckFacts& facts) {
  if (status.leader.empty())
    return {"leader", CheckLevel::Critical,
            "no primary: no node holds the leader key (`pgfleet status` shows the nodes; `pgfleet failover --to "
            "NODE` when none can be elected)"};
  const auto* n = status.find(status.leader);
  if (n != nullptr && (n->state == "stopped" || n->state == "crashed" || n->state == "starting"))
    return {"leader", CheckLevel::Critical,
            fmt::format("the primary, {}, is {}: nothing takes writes{}", status.leader, n->state,
                        n->state == "stopped" ? " (" + starter(config) + ")" : "")};
  if (!facts.leader_error.empty())
    return {"leader", CheckLevel::Critical,
            fmt::format("{} leads but cannot be asked: {}", status.leader, facts.leader_error)};
  if (facts.leader_in_recovery.value_or(false))
    return {"leader", CheckLevel::Critical,
            fmt::format("{} leads but runs as a replica: a failover or switchover is under way, or its agent "
                        "cannot promote it (`pgfleet logs {} --agent`)",
                        status.leader, status.leader)};
  return {"leader", CheckLevel::Ok,
          fmt::format("{} accepts writes{}", status.leader,
                      n != nullptr && n->timeline > 0 ? fmt::format(" (timeline {})", n->timeline) : "")};
}

CheckResult node_check(const ClusterConfig& config, const ClusterStatus& status, const NodeStatus& n,
                       const CheckLimits& limits) {
  CheckResult r{n.name, CheckLevel::Ok, ""};
  const auto* leader = status.find(status.leader);
  if (!is_replica(status, n)) {
    if (n.state == "running") {
      r.detail = fmt::format("primary, running for {}", human_duration(n.uptime_seconds));
    } else if (n.state == "unsupervised") {
      r.level = CheckLevel::Warning;
      r.detail = "primary, but its agent does not run: no failover if it fails (" + starter(config) + ")";
    } else {
      r.level = CheckLevel::Critical;
      r.detail = fmt::format("primary, {}", n.state);
    }
  } else if (n.role == "primary" && (n.state == "running" || n.state == "unsupervised")) {
    r.level = CheckLevel::Critical;
    r.detail = fmt::format("runs as a primary while {} leads: its agent should stop it (`pgfleet logs {} --agent`)",
                           status.leader.empty() ? "no node" : status.leader, n.name);
  } else if (n.state == "streaming") {
    r.detail = fmt::format("replica of {}, streaming ({})", n.upstream.empty() ? "?" : n.upstream,
                           n.sync_state.empty() ? "async" : n.sync_state);
    if (n.lag_bytes) r.detail += fmt::format(", {} behind", bytes_text(*n.lag_bytes));
    // The lag limit is about who may be promoted: a nofailover replica (a delayed one) is never.
    if (n.lag_bytes && *n.lag_bytes > limits.lag_warning_bytes && !n.nofailover) {
      r.level = CheckLevel::Warning;
      r.detail += fmt::format(": more than {} (a failover would not promote it)", bytes_text(limits.lag_warning_bytes));
    }
    if (leader != nullptr && leader->timeline > 0 && n.timeline > 0 && n.timeline != leader->timeline) {
      r.level = CheckLevel::Warning;
      r.detail += fmt::format("; on timeline {}, the primary on {} (its agent rewinds it)", n.timeline, leader->timeline);
    }
  } else if (n.state == "unsupervised") {
    r.level = CheckLevel::Warning;
    r.detail = "replica, but its agent does not run (" + starter(config) + ")";
  } else {
    r.level = CheckLevel::Warning;
    r.detail = n.state == "running" ? fmt::format("replica, running but not streaming from {}", n.upstream.empty() ? "its upstream" : n.upstream)
                                    : fmt::format("replica, {}: not replicating{}", n.state,
                                                  n.state == "stopped" ? " (" + starter(config) + ")" : "");
  }
  // The agent clears its error once healthy: one still there is a current problem (a lost slot,
  // archiving that fails, a server that does not start).
  if (!n.last_error.empty()) {
    r.level = std::max(r.level, CheckLevel::Warning);
    r.detail += "; agent: " + n.last_error;
  }
  if (!n.pending_restart.empty())
    r.detail += fmt::format("; pending restart: {} (`pgfleet restart {}`)", fmt::join(n.pending_restart, ", "), n.name);
  return r;
}

// Could a failover happen now, and to whom? The candidates by the status, less any replica that
// did not replay the test commit.
CheckResult failover_check(const ClusterConfig& config, const ClusterStatus& status, const CheckFacts& facts) {
  if (status.leader.empty()) return {"failover", CheckLevel::Critical, "no primary to fail over from"};
  const bool committed = !facts.write_lsn.empty();  // else no replica could replay anything
  std::vector<std::string> candidates;
  for (const auto& name : failover_candidates(config, status))
    if (!committed || replayed(facts, name)) candidates.push_back(name);
  const bool replicas = std::any_of(status.nodes.begin(), status.nodes.end(),
                                    [&](const NodeStatus& n) { return is_replica(status, n); });
  if (!replicas) return {"failover", CheckLevel::Ok, "no replicas: nothing to fail over to (`pgfleet scale` adds some)"};
  if (candidates.empty())
    return {"failover", CheckLevel::Critical,
            fmt::format("no replica could take over if {} failed: none streams{}{}", status.leader,
                        config.sync == SyncMode::Off ? " close enough" : " synchronously",
                        committed ? " and replayed the test commit" : "")};
  CheckResult r{"failover", CheckLevel::Ok, fmt::format("candidates: {}", fmt::join(candidates, ", "))};
  if (status.paused) {
    r.level = CheckLevel::Warning;
    r.detail = "maintenance mode: no automatic failover until `pgfleet resume`; " + r.detail;
  }
  return r;
}

CheckResult sync_check(const ClusterConfig& config, const ClusterStatus& status) {
  int replicas = 0, in_sync = 0;
  for (const auto& n : status.nodes) {
    if (!is_replica(status, n)) continue;
    ++replicas;
    if (n.state == "streaming" && (n.sync_state == "sync" || n.sync_state == "quorum")) ++in_sync;
  }
  int wanted = config.sync == SyncMode::On ? 1 : std::min(config.sync_count, replicas);
  std::string mode = to_string(config.sync);
  if (in_sync >= wanted)
    return {"sync", CheckLevel::Ok, fmt::format("{} synchronous standby(s), {} wanted (sync {})", in_sync, wanted, mode)};
  if (config.sync_strict)
    return {"sync", CheckLevel::Critical,
            fmt::format("{} synchronous standby(s) of {} wanted: with replication.strict, commits wait until one is back",
                        in_sync, wanted)};
  return {"sync", CheckLevel::Warning,
          fmt::format("{} synchronous standby(s) of {} wanted: commits are acknowledged without them meanwhile", in_sync,
                      wanted)};
}

std::optional<CheckResult> replication_check(const ClusterStatus& status, const CheckFacts& facts,
                                             const CheckLimits& limits) {
  if (status.leader.empty() || !facts.leader_error.empty() || facts.leader_in_recovery.value_or(false)) return std::nullopt;
  if (!facts.write_error.empty())
    return CheckResult{"replication", CheckLevel::Critical,
                       fmt::format("a test commit on {} failed: {}", status.leader, facts.write_error)};
  CheckResult r{"replication", CheckLevel::Ok, ""};
  std::vector<std::string> seen, problems;
  for (const auto& n : status.nodes) {
    if (!is_replica(status, n)) continue;
    const auto* fact = replay_of(facts, n.name);
    if (fact == nullptr) {
      problems.push_back(fmt::format("{} not asked ({})", n.name, n.state));
    } else if (fact->replayed_after_ms && !fact->apply_delay.empty()) {
      // A delayed replica replays an hour later by design: having received the commit is its pass.
      seen.push_back(fmt::format("{} received after {} ms (replay delayed by recovery_min_apply_delay {})", n.name,
                                 *fact->replayed_after_ms, fact->apply_delay));
    } else if (fact->replayed_after_ms) {
      seen.push_back(fmt::format("{} after {} ms", n.name, *fact->replayed_after_ms));
    } else if (!fact->error.empty()) {
      r.level = CheckLevel::Warning;
      problems.push_back(fmt::format("{} cannot be asked: {}", n.name, fact->error));
    } else {
      r.level = CheckLevel::Warning;
      problems.push_back(fmt::format("{} had not replayed it after {} ms (replay paused, or blocked by a conflict?)",
                                     n.name, limits.timeout_ms));
    }
  }
  if (seen.empty() && problems.empty()) {
    r.detail = fmt::format("a test commit on {} worked; no replicas to replay it", status.leader);
    return r;
  }
  r.detail = fmt::format("a test commit on {} ({})", status.leader, facts.write_lsn);
  if (!seen.empty()) r.detail += fmt::format(" was replayed on {}", fmt::join(seen, ", "));
  if (!problems.empty()) r.detail += fmt::format("{}{}", seen.empty() ? ": " : "; ", fmt::join(problems, "; "));
  return r;
}

std::optional<CheckResult> proxy_check(const ClusterStatus& status, const CheckFacts& facts) {
  if (!status.proxy.enabled) return std::nullopt;
  if (status.proxy.state != "running")
    return CheckResult{"proxy", CheckLevel::Critical,
                       fmt::format("the proxy does not run: clients of port {} get no answer (`pgfleet up` starts it)",
                                   status.proxy.port)};
  bool replicas_stream = std::any_of(status.nodes.begin(), status.nodes.end(), [&](const NodeStatus& n) {
    return is_replica(status, n) && n.state == "streaming";
  });
  CheckResult r{"proxy", CheckLevel::Ok, ""};
  std::vector<std::string> parts;
  for (const auto& route : facts.proxy_routes) {
    std::string where = route.node.empty() ? (route.in_recovery ? "a replica" : "the primary")
                                           : fmt::format("{} ({})", route.node, route.in_recovery ? "replica" : "primary");
    if (!route.answered) {
      // Reads have no replica to go to when none streams: the replicas-only port may refuse then.
      bool excused = route.port_name == "proxy_replicas" && !replicas_stream;
      r.level = std::max(r.level, excused ? CheckLevel::Ok : route.port_name == "proxy_replicas" ? CheckLevel::Warning
                                                                                                 : CheckLevel::Critical);
      parts.push_back(fmt::format("{} fails: {}", route.port, route.error));
    } else if (route.port_name == "proxy_primary" && route.in_recovery) {
      r.level = CheckLevel::Critical;
      parts.push_back(fmt::format("{} reaches {}, not the primary", route.port, where));
    } else if (route.port_name == "proxy_replicas" && !route.in_recovery && replicas_stream) {
      r.level = std::max(r.level, CheckLevel::Warning);
      parts.push_back(fmt::format("{} sends reads to {} although replicas stream", route.port, where));
    } else {
      parts.push_back(route.port_name == "proxy" ? fmt::format("{} answers", route.port)
                                                 : fmt::format("{} reaches {}", route.port, where));
    }
  }
  r.detail = fmt::format("{}", fmt::join(parts, "; "));
  return r;
}

std::optional<CheckResult> archive_check(const ClusterConfig& config, const ClusterStatus& status, const CheckFacts& facts,
                                         const CheckLimits& limits) {
  const ArchiverFact* leader = nullptr;
  const ArchiverFact* newest_failure = nullptr;
  CheckResult r{"wal archive", CheckLevel::Ok, ""};
  std::vector<std::string> failing, behind;
  bool any = false;
  for (const auto& a : facts.archivers) {
    if (!a.error.empty() || !a.archiving) continue;
    any = true;
    if (a.node == status.leader) leader = &a;
    if (a.last_failed_ms > a.last_archived_ms && facts.now_ms - a.last_failed_ms < kArchiveFailureWindowMs) {
      // On the primary the WAL piles up until it works; a replica's copy is a spare.
      r.level = std::max(r.level, a.node == status.leader ? CheckLevel::Critical : CheckLevel::Warning);
      failing.push_back(a.node);
      if (newest_failure == nullptr || a.last_failed_ms > newest_failure->last_failed_ms) newest_failure = &a;
    }
    if (a.ready_files > limits.archive_ready_warning) {
      r.level = std::max(r.level, CheckLevel::Warning);
      behind.push_back(fmt::format("{} WAL files wait to be archived on {}", a.ready_files, a.node));
    }
  }
  if (!any) return std::nullopt;
  std::vector<std::string> problems;
  if (newest_failure != nullptr)
    problems.push_back(fmt::format("archiving fails on {} (last {}, {}): PostgreSQL keeps every WAL file until it "
                                   "works; archive_command's error is in `pgfleet logs {}`",
                                   fmt::join(failing, ", "), newest_failure->last_failed_wal,
                                   age_text(facts.now_ms, newest_failure->last_failed_ms), newest_failure->node));
  problems.insert(problems.end(), behind.begin(), behind.end());
  if (!problems.empty()) {
    r.detail = fmt::format("{}", fmt::join(problems, "; "));
  } else if (leader != nullptr && leader->last_archived_ms > 0) {
    r.detail = fmt::format("{} archived {} {}", leader->node, leader->last_archived_wal,
                           age_text(facts.now_ms, leader->last_archived_ms));
  } else {
    r.detail = "no WAL file archived yet, no failure";
  }
  // One host: archive-wal stores nothing before the first base backup (nothing could use it).
  if (r.level == CheckLevel::Ok && status.backups == 0 && config.etcd.endpoints.empty())
    r.detail += " (WAL is kept from the first `pgfleet backup` on)";
  return r;
}

// Permanent slots (`pgfleet slot`): the primary's is what its consumer reads now; a running
// replica without its copy would lose the consumer's place if it were promoted.
std::optional<CheckResult> slots_check(const ClusterStatus& status) {
  if (status.slots.empty()) return std::nullopt;
  CheckResult r{"slots", CheckLevel::Ok, ""};
  std::vector<std::string> names, problems;
  for (const auto& [name, spec] : status.slots) names.push_back(name);
  for (const auto& n : status.nodes) {
    if (n.state != "running" && n.state != "streaming") continue;
    std::vector<std::string> lacking;
    for (const auto& name : names)
      if (!n.slots.contains(name)) lacking.push_back(name);
    if (lacking.empty()) continue;
    if (n.name == status.leader) {
      r.level = CheckLevel::Critical;
      problems.push_back(fmt::format("the primary {} has no slot {}: its consumer cannot connect", n.name,
                                     fmt::join(lacking, ", ")));
    } else {
      r.level = std::max(r.level, CheckLevel::Warning);
      problems.push_back(fmt::format("{} has no copy of {}: promoted, it would lose the consumer's place", n.name,
                                     fmt::join(lacking, ", ")));
    }
  }
  r.detail = problems.empty() ? fmt::format("{} on every running node", fmt::join(names, ", "))
                              : fmt::format("{} (`pgfleet slot list`; the node's last_error says why)",
                                            fmt::join(problems, "; "));
  return r;
}

CheckResult backup_check(const ClusterConfig& config, const ClusterStatus& status, int64_t now_ms) {
  const int64_t interval_ms = int64_t{config.backup.interval_seconds} * 1000;
  if (status.backups == 0) {
    if (interval_ms == 0)
      return {"backups", CheckLevel::Ok, "none (`pgfleet backup` takes one; backup.interval schedules them)"};
    return {"backups", CheckLevel::Warning,
            fmt::format("none yet although backup.interval is {}: the primary's agent log says why "
                        "(`pgfleet logs {} --agent`)",
                        human_duration(config.backup.interval_seconds), status.leader.empty() ? "NODE" : status.leader)};
  }
  std::string newest = fmt::format("{} backup(s), the newest finished {}", status.backups,
                                   age_text(now_ms, status.newest_backup_ms));
  // Twice the interval: one scheduled backup may be running or may just have failed once.
  if (interval_ms > 0 && now_ms - status.newest_backup_ms > 2 * interval_ms)
    return {"backups", CheckLevel::Warning,
            fmt::format("{}; backup.interval is {}: scheduled backups are not being taken (`pgfleet logs {} --agent`)",
                        newest, human_duration(config.backup.interval_seconds),
                        status.leader.empty() ? "NODE" : status.leader)};
  return {"backups", CheckLevel::Ok, newest};
}

}  // namespace

std::string to_string(CheckLevel level) {
  switch (level) {
    case CheckLevel::Ok: return "OK";
    case CheckLevel::Warning: return "WARNING";
    case CheckLevel::Critical: return "CRITICAL";
    case CheckLevel::Unknown: return "UNKNOWN";
  }
  return "UNKNOWN";
}

std::vector<std::string> failover_candidates(const ClusterConfig& config, const ClusterStatus& status) {
  std::vector<std::string> out;
  if (status.leader.empty()) return out;
  for (const auto& n : status.nodes) {
    if (!is_replica(status, n) || n.state != "streaming" || n.nofailover || n.stepped_down) continue;
    const bool in_sync = n.sync_state == "sync" || n.sync_state == "quorum";
    const bool close = !n.lag_bytes || *n.lag_bytes <= config.maximum_lag_on_failover;
    if (config.sync == SyncMode::Off ? close : in_sync) out.push_back(n.name);
  }
  return out;
}

std::vector<CheckResult> evaluate_checks(const ClusterConfig& config, const ClusterStatus& status,
                                         const CheckFacts& facts, const CheckLimits& limits) {
  std::vector<CheckResult> checks;
  checks.push_back(leader_check(config, status, facts));
  for (const auto& n : status.nodes) checks.push_back(node_check(config, status, n, limits));
  if (auto r = replication_check(status, facts, limits)) checks.push_back(*r);
  checks.push_back(failover_check(config, status, facts));
  if (config.sync != SyncMode::Off) checks.push_back(sync_check(config, status));
  if (auto r = proxy_check(status, facts)) checks.push_back(*r);
  if (auto r = archive_check(config, status, facts, limits)) checks.push_back(*r);
  if (auto r = slots_check(status)) checks.push_back(*r);
  // Backups live in a cluster directory, which a cluster on several hosts does not have.
  if (config.etcd.endpoints.empty()) checks.push_back(backup_check(config, status, facts.now_ms));
  return checks;
}

// Worst first, as plugins report: CRITICAL, WARNING, then UNKNOWN (a check that could not be made
// is less than a known failure, more than a pass).
CheckLevel overall_level(const std::vector<CheckResult>& checks) {
  auto has = [&](CheckLevel level) {
    return std::any_of(checks.begin(), checks.end(), [&](const CheckResult& c) { return c.level == level; });
  };
  for (auto level : {CheckLevel::Critical, CheckLevel::Warning, CheckLevel::Unknown})
    if (has(level)) return level;
  return CheckLevel::Ok;
}

std::string render_checks(const std::vector<CheckResult>& checks) {
  size_t width = 5;
  for (const auto& c : checks) width = std::max(width, c.name.size());
  std::string out = fmt::format("{:<{}}  {:<8}  {}\n", "CHECK", width, "STATUS", "DETAIL");
  for (const auto& c : checks) out += fmt::format("{:<{}}  {:<8}  {}\n", c.name, width, to_string(c.level), c.detail);
  const CheckLevel overall = overall_level(checks);
  std::vector<std::string> bad;
  for (const auto& c : checks)
    if (c.level != CheckLevel::Ok) bad.push_back(c.name);
  out += overall == CheckLevel::Ok ? fmt::format("OK: {} checks passed\n", checks.size())
                                   : fmt::format("{}: {}\n", to_string(overall), fmt::join(bad, ", "));
  return out;
}

nlohmann::json checks_to_json(const std::vector<CheckResult>& checks) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : checks) list.push_back({{"name", c.name}, {"status", to_string(c.level)}, {"detail", c.detail}});
  const CheckLevel overall = overall_level(checks);
  return {{"status", to_string(overall)}, {"exit_code", static_cast<int>(overall)}, {"checks", list}};
}

std::string nagios_line(const std::vector<CheckResult>& checks, const ClusterStatus& status, const CheckFacts& facts) {
  const CheckLevel overall = overall_level(checks);
  std::vector<std::string> bad;
  for (const auto& c : checks)
    if (c.level != CheckLevel::Ok) bad.push_back(c.name + ": " + c.detail);
  std::string text = bad.empty() ? fmt::format("{} checks passed, primary {}", checks.size(), status.leader)
                                 : fmt::format("{}", fmt::join(bad, "; "));
  // Performance data: each replica's lag and the test commit's replay time.
  std::vector<std::string> perf;
  for (const auto& n : status.nodes)
    if (n.lag_bytes && n.name != status.leader) perf.push_back(fmt::format("'{}_lag'={}B", n.name, *n.lag_bytes));
  for (const auto& r : facts.replays)
    if (r.replayed_after_ms) perf.push_back(fmt::format("'{}_replay'={}ms", r.node, *r.replayed_after_ms));
  // '|' separates the performance data in the plugin format: keep it out of the text.
  std::replace(text.begin(), text.end(), '|', '/');
  return fmt::format("PGFLEET {} - {}{}{}", to_string(overall), text, perf.empty() ? "" : " | ",
                     fmt::format("{}", fmt::join(perf, " ")));
}

}  // namespace pgfleet::cluster
