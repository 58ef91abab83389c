// `pgfleet bench`'s results: per target the median over its rounds, where the proxy sent the
// work, as a table for people and JSON for scripts (the format is in docs/operations.md).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/pgbench.hpp"

namespace pgfleet::bench {

struct TargetResult {
  std::string name;     // proxy, proxy-primary, proxy-replicas, primary, or a node's name
  std::string address;  // host:port it was reached at
  std::vector<RunFigures> runs;                // one per round
  std::map<std::string, int64_t> served_by;    // node -> statements the proxy routed there (proxy
                                               // targets) or transactions (a node reached directly)
};

// The medians over a target's successful rounds; `error` is the first failed round's.
struct TargetSummary {
  int rounds_ok = 0;
  std::string error;
  double tps = 0;
  double latency_avg_ms = 0;
  std::optional<double> p50_ms, p99_ms;
  int64_t transactions = 0;  // all rounds together
  int64_t failed = 0;
};
TargetSummary summarize(const TargetResult& target);

struct Report {
  Plan plan;
  std::string database;
  int scale = 0;
  std::string started;  // ISO 8601, UTC
  std::vector<TargetResult> targets;
};

// Every round of every target ran to its end without aborted clients.
bool report_ok(const Report& report);
std::string render_report(const Report& report);
nlohmann::json report_to_json(const Report& report);

}  // namespace pgfleet::bench
