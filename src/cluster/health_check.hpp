// `pgfleet check`: the cluster judged as OK, WARNING or CRITICAL, check by check, with the exit
// codes monitoring systems expect (Nagios/Icinga: 0, 1, 2, 3 = unknown).
//
// The judgement is a pure function of the status and of facts the command measured (a commit's
// round trip to every replica, the proxy's routes, the WAL archivers), so its rules are unit-tested
// without servers; the measuring lives in cli/check.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster/config.hpp"
#include "cluster/status.hpp"

namespace pgfleet::cluster {

enum class CheckLevel { Ok = 0, Warning = 1, Critical = 2, Unknown = 3 };  // = the exit code
std::string to_string(CheckLevel level);

struct CheckResult {
  std::string name;    // leader, node2, replication, proxy, ...
  CheckLevel level = CheckLevel::Ok;
  std::string detail;  // what was seen and, when not OK, what to do
};

// One replica's answer to "has the commit made on the leader been replayed here?".
struct ReplayFact {
  std::string node;
  std::optional<int64_t> replayed_after_ms;  // set when it replayed the commit within the timeout
  std::string error;                         // connection or query failure ("" when none)
  std::string apply_delay;                   // recovery_min_apply_delay when set: then received, not replayed
};

// One proxy port, asked which server answers it.
struct ProxyRouteFact {
  std::string port_name;  // "proxy" (read/write split), "proxy_primary", "proxy_replicas"
  int port = 0;
  bool answered = false;
  bool in_recovery = false;  // the server that answered is a replica
  std::string node;          // which node it was ("" when unknown, e.g. over a Unix socket)
  std::string error;
};

// pg_stat_archiver of one running node (archive_mode = always archives on replicas too).
struct ArchiverFact {
  std::string node;
  bool archiving = false;  // archive_mode is not off
  std::string last_archived_wal;
  int64_t last_archived_ms = 0;  // 0 = never
  std::string last_failed_wal;
  int64_t last_failed_ms = 0;
  int64_t ready_files = -1;  // WAL files waiting for archive_command (-1 = unknown)
  std::string error;
};

struct CheckFacts {
  int64_t now_ms = 0;
  std::string leader_error;            // the leader could not be asked ("" when it answered)
  std::optional<bool> leader_in_recovery;
  std::string write_error;             // the test commit on the leader failed ("" when it worked)
  std::string write_lsn;               // its WAL position
  std::vector<ReplayFact> replays;     // one per replica asked
  std::vector<ProxyRouteFact> proxy_routes;
  std::vector<ArchiverFact> archivers;
};

struct CheckLimits {
  int64_t lag_warning_bytes = 1 << 20;  // default: replication.maximum_lag_on_failover
  int timeout_ms = 5000;                // how long a replica had to replay the test commit
  int64_t archive_ready_warning = 16;   // WAL files waiting for archiving before it is "behind"
};

// Replicas that could be promoted now, judged by the status alone: streaming, not tagged
// nofailover, not stepped down, and within maximum_lag_on_failover (async) or synchronous (sync
// modes): the election's conditions in outline. Also the metric pgfleet_cluster_failover_candidates.
std::vector<std::string> failover_candidates(const ClusterConfig& config, const ClusterStatus& status);

std::vector<CheckResult> evaluate_checks(const ClusterConfig& config, const ClusterStatus& status,
                                         const CheckFacts& facts, const CheckLimits& limits);
CheckLevel overall_level(const std::vector<CheckResult>& checks);

std::string render_checks(const std::vector<CheckResult>& checks);
nlohmann::json checks_to_json(const std::vector<CheckResult>& checks);
// One line in the plugin format: "PGFLEET CRITICAL - node3: ...; node2: ... | perfdata".
std::string nagios_line(const std::vector<CheckResult>& checks, const ClusterStatus& status, const CheckFacts& facts);

}  // namespace pgfleet::cluster
