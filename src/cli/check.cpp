// `pgfleet check`: measures what `status` cannot show (does a commit reach every replica? does
// each proxy port reach the right server? does WAL archiving work?) and prints the verdict of
// cluster/health_check as a table, JSON or one Nagios line; the exit code is the verdict.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <thread>

#include "cli/commands.hpp"
#include "cluster/control.hpp"
#include "cluster/health_check.hpp"
#include "postgres/pgconn.hpp"
#include "util/clock.hpp"
#include "util/errors.hpp"

namespace pgfleet::cli {
namespace {

using Clock = std::chrono::steady_clock;
using cluster::CheckFacts;
using cluster::ClusterStatus;
using postgres::Row;

// Every query has a deadline: a hung server or a paused proxy must not hang a monitoring check.
constexpr std::chrono::milliseconds kQueryLimit{2000};
constexpr std::chrono::milliseconds kPollLimit{1000};  // one replica's answer while polling for the replay

// The status's URIs carry the generated password, so this works from any host (--dcs) too.
Result<postgres::PgConn> connect_uri(const std::string& uri) {
  return postgres::PgConn::connect_uri(uri, "pgfleet-check", 3);
}

Result<postgres::PgConn> connect_node(const ClusterStatus& status, const std::string& node) {
  auto it = status.connection.nodes.find(node);
  if (it == status.connection.nodes.end()) return Error{"no address for " + node};
  return connect_uri(it->second);
}

// libpq's messages span lines ("FATAL:  ...\nserver closed the connection"): one line per check.
std::string one_line(const std::string& message) {
  std::string out;
  for (char ch : message) {
    bool space = ch == '\n' || ch == '\t' || ch == ' ';
    if (space && (out.empty() || out.back() == ' ')) continue;
    out += space ? ' ' : ch;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

int64_t to_ms(const std::optional<std::string>& epoch_ms) {
  return epoch_ms ? std::atoll(epoch_ms->c_str()) : 0;
}

// A commit on the leader, then every streaming replica is polled until it has replayed past it:
// the seeds' "insert on the primary, see it on every node", without touching user tables.
void measure_replication(const ClusterStatus& status, int timeout_ms, CheckFacts& facts) {
  auto leader = connect_node(status, status.leader);
  if (!leader) {
    facts.leader_error = one_line(leader.error());
    return;
  }
  auto recovery = leader->query_within(kQueryLimit, "SELECT pg_is_in_recovery()");
  if (!recovery || recovery->empty()) {
    facts.leader_error = recovery ? "no answer" : one_line(recovery.error());
    return;
  }
  facts.leader_in_recovery = recovery->front()[0] == std::optional<std::string>("t");
  if (*facts.leader_in_recovery) return;
  // Connected first, so the time measured is replication's, not the connections'.
  struct Waiting {
    std::string node;
    postgres::PgConn conn;
  };
  std::vector<Waiting> waiting;
  for (const auto& n : status.nodes) {
    if (n.name == status.leader || n.state != "streaming") continue;
    auto conn = connect_node(status, n.name);
    facts.replays.push_back({n.name, std::nullopt, conn ? "" : one_line(conn.error()), ""});
    if (conn) waiting.push_back({n.name, std::move(conn.value())});
  }
  // A transactional message is WAL the commit must flush before it returns (an xid alone would
  // commit asynchronously). Only locally: in sync modes the replicas' replay is what is measured,
  // and a strict cluster without its standby must not hang the check.
  const auto write_limit = std::chrono::milliseconds(timeout_ms) + kQueryLimit;
  auto written = leader->query_within(
      write_limit, fmt::format("SET synchronous_commit = local; SET statement_timeout = {}", timeout_ms));
  if (written) written = leader->query_within(write_limit, "SELECT pg_logical_emit_message(true, 'pgfleet-check', '')");
  if (!written) {
    facts.write_error = one_line(written.error());
    return;
  }
  const auto committed = Clock::now();
  auto lsn = leader->query_within(kQueryLimit, "SELECT pg_current_wal_flush_lsn()");
  if (!lsn || lsn->empty() || !lsn->front()[0]) {
    facts.write_error = lsn ? "no WAL position" : one_line(lsn.error());
    return;
  }
  facts.write_lsn = *lsn->front()[0];
  const auto deadline = committed + std::chrono::milliseconds(timeout_ms);
  while (!waiting.empty()) {
    for (auto it = waiting.begin(); it != waiting.end();) {
      // A delayed replica (recovery_min_apply_delay) is asked whether it received the commit.
      auto done = it->conn.query_within(
          kPollLimit,
          "SELECT CASE WHEN d.delay <> '0' THEN pg_last_wal_receive_lsn() ELSE pg_last_wal_replay_lsn() END "
          ">= $1::pg_lsn, d.delay FROM (SELECT current_setting('recovery_min_apply_delay') AS delay) d",
          {facts.write_lsn});
      auto& fact = *std::find_if(facts.replays.begin(), facts.replays.end(),
                                 [&](const cluster::ReplayFact& r) { return r.node == it->node; });
      if (!done) {
        fact.error = one_line(done.error());
        it = waiting.erase(it);
      } else if (!done->empty() && done->front()[0] == std::optional<std::string>("t")) {
        if (done->front()[1].value_or("0") != "0") fact.apply_delay = *done->front()[1];
        fact.replayed_after_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - committed).count();
        it = waiting.erase(it);
      } else {
        ++it;
      }
    }
    if (waiting.empty() || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string node_at(const ClusterStatus& status, const std::optional<std::string>& addr, const std::optional<std::string>& port) {
  if (!port) return "";  // a Unix socket: inet_server_port() is NULL
  std::vector<const cluster::NodeStatus*> same_port;
  for (const auto& n : status.nodes)
    if (std::to_string(n.port) == *port) same_port.push_back(&n);
  if (same_port.size() == 1) return same_port.front()->name;
  for (const auto* n : same_port)
    if (addr && n->host == *addr) return n->name;
  return "";
}

void measure_proxy(const ClusterStatus& status, const cluster::ClusterConfig& config, CheckFacts& facts) {
  if (!status.proxy.enabled || status.proxy.state != "running") return;
  const std::pair<std::string, std::pair<const std::string*, int>> ports[] = {
      {"proxy", {&status.connection.proxy, config.ports.proxy}},
      {"proxy_primary", {&status.connection.proxy_primary, config.ports.proxy_primary}},
      {"proxy_replicas", {&status.connection.proxy_replicas, config.ports.proxy_replicas}},
  };
  for (const auto& [name, where] : ports) {
    if (where.first->empty()) continue;
    cluster::ProxyRouteFact route;
    route.port_name = name;
    route.port = where.second;
    auto conn = connect_uri(*where.first);
    if (!conn) {
      route.error = one_line(conn.error());
    } else if (auto rows = conn->query_within(kQueryLimit,
                                              "SELECT pg_is_in_recovery(), host(inet_server_addr()), inet_server_port()");
               !rows || rows->empty()) {
      route.error = rows ? "no row" : one_line(rows.error());
    } else {
      const auto& row = rows->front();
      route.answered = true;
      route.in_recovery = row[0] == std::optional<std::string>("t");
      route.node = node_at(status, row[1], row[2]);
    }
    facts.proxy_routes.push_back(route);
  }
}

void measure_archivers(const ClusterStatus& status, CheckFacts& facts) {
  for (const auto& n : status.nodes) {
    if (n.state != "running" && n.state != "streaming" && n.state != "unsupervised") continue;
    cluster::ArchiverFact a;
    a.node = n.name;
    auto conn = connect_node(status, n.name);
    auto rows = conn ? conn->query_within(kQueryLimit,
                           "SELECT current_setting('archive_mode') <> 'off', last_archived_wal, "
                           "(extract(epoch FROM last_archived_time) * 1000)::bigint, last_failed_wal, "
                           "(extract(epoch FROM last_failed_time) * 1000)::bigint, "
                           "(SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') "
                           "FROM pg_stat_archiver")
                     : Result<std::vector<Row>>(Error{conn.error()});
    if (!rows || rows->empty()) {
      a.error = rows ? "no row" : one_line(rows.error());
    } else {
      const auto& row = rows->front();
      a.archiving = row[0] == std::optional<std::string>("t");
      a.last_archived_wal = row[1].value_or("");
      a.last_archived_ms = to_ms(row[2]);
      a.last_failed_wal = row[3].value_or("");
      a.last_failed_ms = to_ms(row[4]);
      a.ready_files = row[5] ? std::atoll(row[5]->c_str()) : -1;
    }
    facts.archivers.push_back(a);
  }
}

void print(const CheckOptions& o, const std::vector<cluster::CheckResult>& checks, const ClusterStatus& status,
           const CheckFacts& facts) {
  if (o.json) std::cout << cluster::checks_to_json(checks).dump(2) << std::endl;
  else if (o.nagios) std::cout << cluster::nagios_line(checks, status, facts) << std::endl;
  else std::cout << cluster::render_checks(checks) << std::flush;
}

}  // namespace

int run_check(const CheckOptions& o) {
  ClusterStatus status;
  std::optional<cluster::Cluster> c;
  std::string doing;  // what failed, for the message
  try {
    if (o.timeout_seconds <= 0) throw UserError("--timeout must be positive (seconds)");
    if (o.lag_warning_bytes && *o.lag_warning_bytes < 0) throw UserError("--lag-warning must be 0 or more (bytes)");
    doing = "cannot read the cluster: ";
    become_cluster_owner(o.dir);
    c.emplace(cluster::Cluster::open(o.dir));
    status = c->status();
  } catch (const std::exception& e) {
    // Monitoring systems read exit code 3 as "could not check", not as a failed cluster.
    std::string why = e.what();
    const auto* user_error = dynamic_cast<const UserError*>(&e);
    if (o.json) std::cout << nlohmann::json{{"status", "UNKNOWN"}, {"exit_code", 3}, {"error", why}}.dump(2) << std::endl;
    else if (o.nagios) std::cout << "PGFLEET UNKNOWN - " << why << std::endl;
    else std::cerr << "pgfleet: error: " << doing << why << "\n"
                   << (user_error != nullptr && !user_error->hint.empty() ? "hint: " + user_error->hint + "\n" : "");
    return static_cast<int>(cluster::CheckLevel::Unknown);
  }
  cluster::CheckLimits limits;
  limits.lag_warning_bytes = o.lag_warning_bytes.value_or(c->config.maximum_lag_on_failover);
  limits.timeout_ms = o.timeout_seconds * 1000;

  CheckFacts facts;
  if (!status.leader.empty()) measure_replication(status, limits.timeout_ms, facts);
  measure_proxy(status, c->config, facts);
  measure_archivers(status, facts);
  facts.now_ms = unix_ms();

  auto checks = cluster::evaluate_checks(c->config, status, facts, limits);
  print(o, checks, status, facts);
  return static_cast<int>(cluster::overall_level(checks));
}

}  // namespace pgfleet::cli
