// `pgfleet bench`, the pure part: which pgbench command line a workload is, and what pgbench's
// summary and per-transaction logs say. The running (servers, processes) is in cli/bench.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgfleet::bench {

// read = pgbench's select-only, write = tpcb-like, mixed = both by weight (the read/write split's
// case), custom = the user's own pgbench scripts (--file).
enum class Workload { Read, Write, Mixed, Custom };
std::optional<Workload> parse_workload(std::string_view name);
std::string workload_name(Workload workload);

struct Plan {
  Workload workload = Workload::Mixed;
  int read_percent = 80;  // mixed: the share of select-only transactions
  int clients = 8;
  int jobs = 2;           // pgbench threads
  int seconds = 10;       // per run
  int rounds = 1;         // every target once per round, the order rotated each round
  std::string protocol = "simple";   // pgbench -M: simple, extended, prepared
  std::vector<std::string> scripts;  // custom: pgbench -f arguments (path[@weight])
};

// Why a plan cannot run ("" when it can).
std::string plan_error(const Plan& plan);

// What the workload runs, for the report's first line.
std::string workload_text(const Plan& plan);

// pgbench's arguments for one run (argv[0] included). -n: no vacuum before the run, which a
// replica or the proxy's replicas port would refuse; the tables were vacuumed when created.
// Latencies go to per-transaction logs under `log_prefix`; runs longer than a minute log a sample
// of about a minute's worth, so the files stay small.
std::vector<std::string> pgbench_args(const Plan& plan, const std::string& pgbench, const std::string& conninfo,
                                      const std::string& log_prefix);

// One pgbench run, as its summary and logs tell.
struct RunFigures {
  bool ok = false;
  std::string error;  // pgbench's first error line when it failed or aborted clients
  double tps = 0;
  double latency_avg_ms = 0;
  int64_t transactions = 0;
  int64_t failed = 0;  // "number of failed transactions" (serialization or deadlock failures)
  std::optional<double> p50_ms, p99_ms;
};
// `exit_code` is pgbench's: 0 fine, 1 bad arguments or no connection, 2 clients aborted.
RunFigures parse_summary(const std::string& output, int exit_code);

// Appends the latency (µs) of every completed transaction in a `pgbench -l` log: lines of
// "client_id transaction_no time script_no time_epoch time_us ..."; failed or skipped
// transactions ("failed", "skipped" in the time field) are left out.
void read_log_latencies(std::string_view log, std::vector<int64_t>& latencies_us);

// The p-th percentile (0..100) by nearest rank; reorders `values`. nullopt when empty.
std::optional<double> percentile(std::vector<int64_t>& values, double p);
double median(std::vector<double> values);

// A libpq URI with its database replaced ("postgresql://u:pw@h:1/app?x=y" -> ".../bench?x=y").
std::string with_database(const std::string& uri, const std::string& database);
// The URI without its password, and the password: pgbench gets it through PGPASSWORD, since a
// command line is visible to every user of the host.
std::pair<std::string, std::string> split_password(const std::string& uri);
// host:port of a URI, for the report ("" when it has none, e.g. a Unix socket URI).
std::string address_of(const std::string& uri);

}  // namespace pgfleet::bench
