// `pgfleet bench`: pgbench against the running cluster, through the proxy and directly, in
// alternating rounds, so one table says what the proxy costs or gains and where it sent the work.
// It works in its own database (pgfleet_bench), created and filled by `pgbench -i` on first use.
#include <fmt/format.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <dirent.h>
#include <iostream>
#include <set>
#include <thread>

#include "bench/pgbench.hpp"
#include "bench/report.hpp"
#include "cli/commands.hpp"
#include "cluster/binaries.hpp"
#include "cluster/control.hpp"
#include "postgres/pgconn.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"

namespace pgfleet::cli {
namespace {

using bench::Plan;
using bench::TargetResult;
using cluster::ClusterStatus;

const std::set<std::string> kProxyTargets{"proxy", "proxy-primary", "proxy-replicas"};
constexpr std::chrono::milliseconds kCounterInterval{1100};  // proxy/worker.cpp publishes SHOW's figures each 1000 ms

// A target resolved to the URI pgbench connects to.
struct Target {
  std::string name;
  std::string uri;        // with the benchmark's database
  std::string node;       // a node reached directly ("" for the proxy's ports)
};

std::vector<Target> resolve_targets(const std::vector<std::string>& names, const ClusterStatus& status,
                                    const std::string& database) {
  std::vector<Target> out;
  std::set<std::string> seen;
  for (const auto& name : names) {
    if (!seen.insert(name).second) throw UserError("--target names '" + name + "' twice");
    Target t{name, "", ""};
    if (kProxyTargets.count(name) != 0) {
      if (status.connection.proxy.empty() || status.proxy.state != "running") {
        throw UserError("target '" + name + "': " +
                            (status.connection.proxy.empty() ? "this cluster has no proxy here"
                                                             : "the proxy is " + status.proxy.state),
                        status.connection.proxy.empty() ? "benchmark the nodes: --target primary,node2"
                                                        : "start it with `pgfleet up`, or leave the proxy out of --target");
      }
      t.uri = name == "proxy"           ? status.connection.proxy
              : name == "proxy-primary" ? status.connection.proxy_primary
                                        : status.connection.proxy_replicas;
    } else {
      t.node = name == "primary" ? status.leader : name;
      auto it = status.connection.nodes.find(t.node);
      if (it == status.connection.nodes.end()) {
        std::string valid = "primary, proxy, proxy-primary, proxy-replicas";
        for (const auto& n : status.nodes) valid += ", " + n.name;
        throw UserError("unknown --target '" + name + "'", "one or more of: " + valid);
      }
      t.uri = it->second;
    }
    t.uri = bench::with_database(t.uri, database);
    out.push_back(std::move(t));
  }
  return out;
}

// pgbench with the password in its environment, not on its command line.
process::RunResult run_pgbench(std::vector<std::string> args, std::chrono::seconds limit) {
  auto [uri, password] = bench::split_password(args.back());
  args.back() = uri;
  process::RunOptions options;
  options.env["PGPASSWORD"] = password;
  options.env["PGCONNECT_TIMEOUT"] = "10";
  options.timeout = limit;
  return process::run(args, options);
}

Result<postgres::PgConn> connect(const std::string& uri) { return postgres::PgConn::connect_uri(uri, "pgfleet-bench", 5); }

// The scale of the pgbench tables in `database` (0 when there are none), creating the database
// when it does not exist.
int existing_scale(const std::string& primary_uri, const std::string& database) {
  auto admin = connect(primary_uri);
  if (!admin) throw UserError("cannot connect to the primary: " + admin.error(), "see `pgfleet status`");
  auto found = admin->query("SELECT 1 FROM pg_database WHERE datname = $1", {database});
  if (!found) throw UserError("cannot read pg_database on the primary: " + found.error());
  if (found->empty()) {
    std::cerr << "creating database " << database << " for the benchmark\n";
    if (auto made = admin->exec("CREATE DATABASE " + postgres::quote_ident(database)); !made)
      throw UserError("cannot create database " + database + ": " + made.error());
    return 0;
  }
  auto conn = connect(bench::with_database(primary_uri, database));
  if (!conn) throw UserError("cannot connect to database " + database + ": " + conn.error());
  auto branches = conn->query("SELECT count(*) FROM pgbench_branches");
  if (!branches || branches->empty() || !branches->front()[0]) return 0;
  return std::atoi(branches->front()[0]->c_str());
}

// Replicas must have the new tables before reads are sent to them.
void wait_for_replicas(const ClusterStatus& status, const std::string& primary_uri) {
  auto primary = connect(primary_uri);
  if (!primary) return;
  auto lsn = primary->scalar("SELECT pg_current_wal_lsn()");
  if (!lsn || !*lsn) return;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (const auto& n : status.nodes) {
    if (n.name == status.leader || n.state != "streaming") continue;
    auto replica = connect(status.connection.nodes.at(n.name));
    if (!replica) continue;
    while (std::chrono::steady_clock::now() < deadline) {
      auto done = replica->query("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", {**lsn});
      if (!done || done->empty() || done->front()[0] == std::optional<std::string>("t")) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

void initialize(const cluster::PgBinaries& bins, const std::string& uri, int scale, const std::string& database,
                const std::string& leader) {
  std::cerr << fmt::format("filling database {} with pgbench's tables at scale {} on {} (the primary)...\n", database,
                           scale, leader);
  auto r = run_pgbench({bins.path("pgbench"), "-i", "-q", "-s", std::to_string(scale), uri}, std::chrono::hours(2));
  if (r.exit_code != 0) {
    throw UserError(fmt::format("pgbench -i failed in database {}: {}", database,
                                bench::parse_summary(r.output, r.exit_code).error));
  }
}

// The proxy's routing counters by node (SHOW NODES in its admin console); empty when unreadable.
std::map<std::string, int64_t> routed_statements(const std::string& admin_uri) {
  std::map<std::string, int64_t> out;
  auto conn = connect(admin_uri);
  if (!conn) return out;
  PGresult* res = PQexec(conn->raw(), "SHOW NODES");
  if (PQresultStatus(res) == PGRES_TUPLES_OK) {
    int name = PQfnumber(res, "name"), statements = PQfnumber(res, "statements");
    for (int row = 0; name >= 0 && statements >= 0 && row < PQntuples(res); ++row)
      out[PQgetvalue(res, row, name)] = std::atoll(PQgetvalue(res, row, statements));
  }
  PQclear(res);
  return out;
}

// Every latency in the run's per-transaction logs (pgbench writes one file per thread).
std::vector<int64_t> latencies_in(const std::string& dir, const std::string& prefix) {
  std::vector<int64_t> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (auto* entry = ::readdir(d)) {
    std::string file = entry->d_name;
    if (file.rfind(prefix + ".", 0) != 0) continue;
    if (auto text = fs::read_file(dir + "/" + file)) bench::read_log_latencies(*text, out);
    ::unlink((dir + "/" + file).c_str());
  }
  ::closedir(d);
  return out;
}

// "name.sql@5" -> the file's text and "@5"; read before the command takes the cluster owner's
// identity, which may not be able to read the caller's files.
std::pair<std::string, std::string> read_script(const std::string& arg) {
  std::string path = arg, weight;
  size_t at = arg.rfind('@');
  if (at != std::string::npos && at + 1 < arg.size() &&
      arg.find_first_not_of("0123456789", at + 1) == std::string::npos) {
    path = arg.substr(0, at);
    weight = arg.substr(at);
  }
  auto text = fs::read_file(path);
  if (!text) throw UserError("cannot read --file " + path, "give a pgbench script (see `man pgbench`, Custom Scripts)");
  return {*text, weight};
}

std::string utc_now() {
  std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return buf;
}


}  // namespace

int run_bench(const BenchOptions& o) {
  Plan plan;
  if (!o.workload.empty()) {
    auto w = bench::parse_workload(o.workload);
    if (!w) throw UserError("unknown --workload '" + o.workload + "'", "read, write, mixed or custom");
    plan.workload = *w;
  } else if (!o.files.empty()) {
    plan.workload = bench::Workload::Custom;
  }
  if (o.read_percent && plan.workload != bench::Workload::Mixed)
    throw UserError("--read-percent applies to the mixed workload only");
  plan.read_percent = o.read_percent.value_or(80);
  plan.clients = o.clients;
  plan.jobs = o.jobs;
  plan.seconds = o.seconds;
  plan.rounds = o.rounds;
  plan.protocol = o.protocol;
  plan.scripts = o.files;
  if (auto why = bench::plan_error(plan); !why.empty()) throw UserError(why);
  if (o.scale && *o.scale < 1) throw UserError("--scale must be at least 1");
  if (o.database.empty() || o.database == "pgfleet") throw UserError("--database needs a database name other than pgfleet (the proxy's admin console)");
  std::vector<std::pair<std::string, std::string>> scripts;
  for (const auto& f : o.files) scripts.push_back(read_script(f));

  become_cluster_owner(o.dir);
  auto c = cluster::Cluster::open(o.dir);
  auto status = c.status();
  if (status.leader.empty() || status.connection.nodes.count(status.leader) == 0)
    throw UserError("the cluster has no primary now", "see `pgfleet status`");
  auto targets = resolve_targets(o.targets.empty() ? std::vector<std::string>{"primary", "proxy"} : o.targets, status,
                                 o.database);
  auto bins = cluster::find_binaries(c.config.bindir);
  const std::string primary_uri = status.connection.nodes.at(status.leader);

  bench::Report report;
  report.plan = plan;
  report.database = o.database;
  const int scale = existing_scale(primary_uri, o.database);
  const bool fill = o.init || (plan.workload != bench::Workload::Custom && scale == 0) || (o.scale && *o.scale != scale);
  report.scale = fill ? o.scale.value_or(10) : scale;
  if (fill) {
    initialize(bins, bench::with_database(primary_uri, o.database), report.scale, o.database, status.leader);
    wait_for_replicas(status, primary_uri);
  }

  fs::TempDir tmp("pgfleet-bench");
  if (!scripts.empty()) {
    plan.scripts.clear();
    for (size_t i = 0; i < scripts.size(); ++i) {
      std::string path = fmt::format("{}/script{}.sql", tmp.path(), i + 1);
      fs::write_file_atomic(path, scripts[i].first, 0600);
      plan.scripts.push_back(path + scripts[i].second);
    }
  }
  const std::string admin_uri = status.connection.proxy.empty() ? "" : bench::with_database(status.connection.proxy, "pgfleet");
  report.started = utc_now();
  for (const auto& t : targets) report.targets.push_back(TargetResult{t.name, bench::address_of(t.uri), {}, {}});
  for (int round = 0; round < plan.rounds; ++round) {
    for (size_t k = 0; k < targets.size(); ++k) {
      // Rotated each round, so no target always runs first (on a cold cache) or last.
      size_t index = (k + static_cast<size_t>(round)) % targets.size();
      const Target& t = targets[index];
      TargetResult& result = report.targets[index];
      const bool via_proxy = t.node.empty();
      auto before = via_proxy ? routed_statements(admin_uri) : std::map<std::string, int64_t>{};
      std::string prefix = fmt::format("round{}-{}", round + 1, t.name);
      auto run = run_pgbench(bench::pgbench_args(plan, bins.path("pgbench"), t.uri, tmp.path() + "/" + prefix),
                             std::chrono::seconds(plan.seconds + 120));
      auto figures = bench::parse_summary(run.output, run.exit_code);
      auto latencies = latencies_in(tmp.path(), prefix);
      if (auto p50 = bench::percentile(latencies, 50)) figures.p50_ms = *p50 / 1000.0;
      if (auto p99 = bench::percentile(latencies, 99)) figures.p99_ms = *p99 / 1000.0;
      if (via_proxy) {
        // All of the proxy's traffic in that time, other clients' too. Its threads publish their
        // counters every second, so the last second of the run is waited for.
        std::this_thread::sleep_for(kCounterInterval);
        for (const auto& [node, n] : routed_statements(admin_uri)) {
          auto was = before.find(node);
          result.served_by[node] += n - (was == before.end() ? 0 : was->second);
        }
      } else {
        result.served_by[t.node] += figures.transactions;
      }
      if (!o.json) {
        std::cerr << fmt::format("round {}/{}: {:<14} {}\n", round + 1, plan.rounds, t.name,
                                 figures.ok ? fmt::format("{:.0f} tps", figures.tps) : "failed: " + figures.error);
      }
      result.runs.push_back(std::move(figures));
    }
  }
  if (o.json) std::cout << bench::report_to_json(report).dump(2) << std::endl;
  else std::cout << "\n" << bench::render_report(report) << std::flush;
  return bench::report_ok(report) ? 0 : 1;
}

}  // namespace pgfleet::cli
