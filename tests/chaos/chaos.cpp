// pgfleet_chaos: a workload through the proxy, faults injected in a loop, and a checker.
//
// It creates a real cluster with the pgfleet binary, runs writers (unique ids, every acknowledged
// commit logged with the server that acknowledged it) and readers through the proxy, and for each
// cycle injects one fault into the current topology:
//   postmaster  kill -9 of the primary's postmaster (its agent lives)
//   host        kill -9 of the primary's agent, postmaster and backends together (host crash)
//   hang        SIGSTOP of the primary's agent, postmaster and backends; SIGCONT once another
//               node acknowledges writes (or after a deadline)
//   replica     kill -9 of a replica's agent, postmaster and backends (the synchronous one if any)
//   switchover  `pgfleet switchover` under load
// Dead agents are restarted with `pgfleet up`. After each cycle it checks:
//   1. every acknowledged insert is on the primary and on every replica once they have replayed
//      the primary's position (sync/quorum: a missing one fails the run; async: counted as lost);
//   2. no two servers acknowledged writes in overlapping time: writes are attributed to a term
//      (server port + timeline, from the INSERT's RETURNING); server-side timestamps (one host,
//      one clock) of an older term must all precede those of every newer term;
//   3. the cluster converges to one primary and every other node streaming from it;
//   4. a switchover gives no client error.
// It prints one line per cycle (unavailability window = the longest gap between acknowledged
// writes from the last one before the fault until the cluster converged) and a summary table
// per fault; --summary appends the table rows (markdown) to a file for bench/failover.sh.
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "support/port_reservation.hpp"
#include "util/process.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using Json = nlohmann::json;

const Clock::time_point g_start = Clock::now();
int64_t now_ms() { return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - g_start).count(); }

struct Options {
  std::string pgfleet;
  std::string sync = "on";
  int cycles = 1;  // per fault
  std::vector<std::string> faults = {"postmaster", "host", "hang", "replica", "switchover"};
  int writers = 4;
  int readers = 2;
  int write_interval_ms = 20;
  int statement_timeout_ms = 5000;  // a writer gives up on a statement after this (as a client would)
  std::optional<int> ttl;
  std::optional<int> loop_wait;
  std::string summary;  // append markdown rows here
  std::string dir;
  bool keep = false;
  bool verbose = false;
};

// ---------------------------------------------------------------------------------------------
// The pgfleet binary.

struct Cmd {
  int code = -1;
  std::string output;
  bool ok() const { return code == 0; }
};

Options g_opt;

Cmd run_pgfleet(std::vector<std::string> args, std::chrono::seconds timeout = 300s) {
  std::vector<std::string> argv{g_opt.pgfleet};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--dir");
  argv.push_back(g_opt.dir);
  pgfleet::process::RunOptions ro;
  ro.timeout = timeout;
  auto r = pgfleet::process::run(argv, ro);
  return Cmd{r.exit_code, r.output};
}

std::optional<Json> status() {
  auto r = run_pgfleet({"status", "--json"}, 60s);
  if (!r.ok()) return std::nullopt;
  try {
    return Json::parse(r.output);
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

std::string str(const Json& j, const char* key) { return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : ""; }
int64_t num(const Json& j, const char* key) { return j.contains(key) && j[key].is_number() ? j[key].get<int64_t>() : 0; }

Json node_of(const Json& s, const std::string& name) {
  for (const auto& n : s["nodes"])
    if (str(n, "name") == name) return n;
  return Json();
}

// ---------------------------------------------------------------------------------------------
// libpq with deadlines.

struct Conn {
  PGconn* c = nullptr;
  Conn() = default;
  explicit Conn(const std::string& uri) : c(PQconnectdb(uri.c_str())) {}
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() { reset(); }
  void reset() {
    if (c) PQfinish(c);
    c = nullptr;
  }
  bool ok() const { return c && PQstatus(c) == CONNECTION_OK; }
  std::string error() const { return c ? PQerrorMessage(c) : "no connection"; }
};

using Rows = std::vector<std::vector<std::string>>;

// One statement; false with `error` on failure or after `timeout` (the connection is then unusable).
bool run_sql(Conn& conn, const std::string& sql, Rows& rows, std::string& error, std::chrono::milliseconds timeout) {
  rows.clear();
  if (!conn.ok()) {
    error = conn.error();
    return false;
  }
  PGconn* c = conn.c;
  if (PQsendQuery(c, sql.c_str()) == 0) {
    error = PQerrorMessage(c);
    return false;
  }
  auto deadline = Clock::now() + timeout;
  while (PQisBusy(c) != 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      error = "timed out after " + std::to_string(timeout.count()) + " ms";
      return false;
    }
    pollfd pfd{PQsocket(c), POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left, 100)));
    if (PQconsumeInput(c) == 0) {
      error = PQerrorMessage(c);
      return false;
    }
  }
  bool good = true;
  while (PGresult* res = PQgetResult(c)) {
    auto st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK) {
      for (int i = 0; i < PQntuples(res); ++i) {
        std::vector<std::string> row;
        for (int j = 0; j < PQnfields(res); ++j) row.emplace_back(PQgetvalue(res, i, j));
        rows.push_back(std::move(row));
      }
    } else if (st != PGRES_COMMAND_OK && good) {
      good = false;
      error = PQresultErrorMessage(res);
    }
    PQclear(res);
  }
  while (!error.empty() && (error.back() == '\n' || error.back() == ' ')) error.pop_back();
  return good;
}

bool sql_once(const std::string& uri, const std::string& sql, Rows& rows, std::string& error,
              std::chrono::milliseconds timeout = 15s) {
  Conn conn(uri);
  return run_sql(conn, sql, rows, error, timeout);
}

// ---------------------------------------------------------------------------------------------
// The workload and its log.

struct Write {
  int64_t id = 0;
  int64_t send_ms = 0;
  int64_t ack_ms = 0;
  int port = 0;         // inet_server_port() of the server that acknowledged it
  int timeline = 0;     // its timeline at the time
  double server_ts = 0; // clock_timestamp() on that server (epoch seconds; one host, one clock)
};

struct ClientError {
  int64_t at_ms = 0;
  bool writer = true;
  std::string message;
};

struct Log {
  std::mutex mu;
  std::vector<Write> acked;
  std::vector<ClientError> errors;
  std::atomic<int64_t> next_id{1};
};

Log g_log;
std::atomic<bool> g_stop_workload{false};

void writer_loop(const std::string& uri, int writer) {
  Conn conn;
  while (!g_stop_workload) {
    if (!conn.ok()) {
      conn.reset();
      conn.c = PQconnectdb(uri.c_str());
      if (!conn.ok()) {
        std::lock_guard lock(g_log.mu);
        g_log.errors.push_back({now_ms(), true, "connect: " + conn.error()});
        conn.reset();
        std::this_thread::sleep_for(std::chrono::milliseconds(g_opt.write_interval_ms));
        continue;
      }
    }
    int64_t id = g_log.next_id++;
    std::string sql = fmt::format(
        "INSERT INTO chaos_log (id, writer) VALUES ({}, {}) RETURNING inet_server_port(), "
        "substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), extract(epoch from clock_timestamp())",
        id, writer);
    Rows rows;
    std::string error;
    int64_t sent = now_ms();
    bool ok = run_sql(conn, sql, rows, error, std::chrono::milliseconds(g_opt.statement_timeout_ms));
    int64_t acked = now_ms();
    if (ok && rows.size() == 1 && rows[0].size() == 3) {
      Write w{id, sent, acked, std::atoi(rows[0][0].c_str()),
              static_cast<int>(std::strtol(rows[0][1].c_str(), nullptr, 16)), std::atof(rows[0][2].c_str())};
      std::lock_guard lock(g_log.mu);
      g_log.acked.push_back(w);
    } else {
      std::lock_guard lock(g_log.mu);
      g_log.errors.push_back({acked, true, ok ? "unexpected result" : error});
      conn.reset();  // mid-statement or broken: never reuse
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(g_opt.write_interval_ms));
  }
}

void reader_loop(const std::string& uri) {
  Conn conn;
  while (!g_stop_workload) {
    if (!conn.ok()) {
      conn.reset();
      conn.c = PQconnectdb(uri.c_str());
    }
    Rows rows;
    std::string error;
    if (!run_sql(conn, "SELECT count(*) FROM chaos_log", rows, error, std::chrono::milliseconds(g_opt.statement_timeout_ms))) {
      std::lock_guard lock(g_log.mu);
      g_log.errors.push_back({now_ms(), false, error});
      conn.reset();
    }
    std::this_thread::sleep_for(50ms);
  }
}

// ---------------------------------------------------------------------------------------------
// Faults.

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state = 0;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

// The node's agent, postmaster and the postmaster's children (backends, walsenders, ...).
std::vector<pid_t> host_processes(const Json& node) {
  std::vector<pid_t> out;
  if (pid_t agent = static_cast<pid_t>(num(node, "agent_pid")); agent > 0) out.push_back(agent);
  if (pid_t pm = static_cast<pid_t>(num(node, "pid")); pm > 0) {
    out.push_back(pm);
    for (pid_t child : children_of(pm)) out.push_back(child);
  }
  return out;
}

void signal_all(const std::vector<pid_t>& pids, int sig) {
  for (pid_t p : pids) ::kill(p, sig);
}

// Processes a hang cycle has stopped: woken up again if this program is interrupted meanwhile,
// so that `pgfleet down` (or anything else) can still stop them.
constexpr int kMaxStopped = 256;
pid_t g_stopped[kMaxStopped];
std::atomic<int> g_stopped_count{0};

void on_interrupt(int sig) {
  for (int i = 0; i < g_stopped_count.load(); ++i) ::kill(g_stopped[i], SIGCONT);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// ---------------------------------------------------------------------------------------------
// Checks.

struct Term {
  int port = 0;
  int timeline = 0;
  bool operator<(const Term& o) const { return std::tie(timeline, port) < std::tie(o.timeline, o.port); }
};

// Check 2 over the whole log: order terms by their first server timestamp; every write of an
// earlier term must have a server timestamp before the first write of every later term, and a
// timeline must belong to one server only.
std::vector<std::string> overlap_problems(const std::vector<Write>& writes) {
  struct Span {
    double first = 1e300, last = 0;
    int64_t count = 0;
  };
  std::map<Term, Span> spans;
  std::map<int, std::set<int>> ports_of_timeline;
  for (const auto& w : writes) {
    auto& s = spans[Term{w.port, w.timeline}];
    s.first = std::min(s.first, w.server_ts);
    s.last = std::max(s.last, w.server_ts);
    ++s.count;
    ports_of_timeline[w.timeline].insert(w.port);
  }
  std::vector<std::string> problems;
  for (const auto& [tl, ports] : ports_of_timeline)
    if (ports.size() > 1)
      problems.push_back(fmt::format("timeline {} acknowledged writes on {} servers", tl, ports.size()));
  for (const auto& [a, sa] : spans)
    for (const auto& [b, sb] : spans) {
      if (&sa == &sb || sa.first >= sb.first) continue;  // a started first
      if (sa.last > sb.first)
        problems.push_back(fmt::format(
            "port {} (timeline {}) acknowledged a write {:.3f} s after port {} (timeline {}) had acknowledged one",
            a.port, a.timeline, sa.last - sb.first, b.port, b.timeline));
      if (b.timeline <= a.timeline)
        problems.push_back(fmt::format("port {} wrote on timeline {} after port {} on timeline {}", b.port,
                                       b.timeline, a.port, a.timeline));
    }
  return problems;
}

// Check 3: one primary holding the key, every other node streaming from it on its timeline.
bool converged(const Json& s, std::string& why) {
  std::string leader = str(s, "leader");
  if (leader.empty()) return why = "no leader", false;
  Json l = node_of(s, leader);
  if (str(l, "role") != "primary" || str(l, "state") != "running") return why = leader + " is not a running primary", false;
  for (const auto& n : s["nodes"]) {
    if (str(n, "name") == leader) continue;
    if (str(n, "role") != "replica" || str(n, "state") != "streaming" || str(n, "upstream") != leader ||
        num(n, "timeline") != num(l, "timeline"))
      return why = fmt::format("{} is {} {} from '{}' on timeline {}", str(n, "name"), str(n, "role"), str(n, "state"),
                               str(n, "upstream"), num(n, "timeline")),
             false;
  }
  if (g_opt.sync == "off") return true;
  // Sync modes: the leader publishes a single constraint over standbys again (while it lists
  // itself, nobody else could take over after the next fault).
  const Json& sync = s["synchronous"];
  if (!sync.is_object() || str(sync, "leader") != leader || !sync["constraints"].is_array() ||
      sync["constraints"].size() != 1)
    return why = "synchronous constraints not settled: " + sync.dump(), false;
  for (const auto& m : sync["constraints"][0]["members"])
    if (m == leader) return why = "the leader acknowledges writes alone: " + sync.dump(), false;
  return true;
}

template <class Pred>
bool poll_until(Pred pred, std::chrono::milliseconds timeout, std::chrono::milliseconds every = 200ms) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(every);
  }
  return pred();
}

// ---------------------------------------------------------------------------------------------
// One cycle.

struct CycleResult {
  int number = 0;
  std::string fault;
  std::string target;        // the node the fault hit
  std::string leader_after;
  double window_s = -1;      // -1: writes never came back
  double converge_s = -1;
  int64_t lost = 0;          // acknowledged inserts missing after convergence
  int64_t writer_errors = 0;
  int64_t reader_errors = 0;
  std::vector<std::string> problems;
};

struct Cluster {
  std::string proxy;
  std::map<std::string, std::string> node_urls;  // name -> URI
  int64_t lowest_unchecked_id = 1;               // ids below it are verified on every node
  std::set<int64_t> lost_ids;
};

std::string with_timeout(const std::string& uri) {
  return uri + (uri.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=3";
}

// Check 1: everything acknowledged up to now is on the primary and, once they replayed the
// primary's position, on every replica. Returns the newly missing ids.
std::vector<int64_t> check_data(Cluster& cl, const Json& s, std::vector<std::string>& problems) {
  std::vector<Write> snapshot;
  {
    std::lock_guard lock(g_log.mu);
    snapshot = g_log.acked;
  }
  std::set<int64_t> expected;
  for (const auto& w : snapshot)
    if (w.id >= cl.lowest_unchecked_id && !cl.lost_ids.count(w.id)) expected.insert(w.id);
  const std::string leader = str(s, "leader");
  Rows rows;
  std::string error;
  if (!sql_once(cl.node_urls[leader], "SELECT pg_current_wal_lsn()", rows, error)) {
    problems.push_back("cannot read the primary's position: " + error);
    return {};
  }
  const std::string target_lsn = rows[0][0];
  std::vector<int64_t> missing;
  std::optional<std::set<int64_t>> on_primary;
  // The primary first: the replicas are compared with it.
  std::vector<std::string> order{leader};
  for (const auto& n : s["nodes"])
    if (str(n, "name") != leader) order.push_back(str(n, "name"));
  for (const auto& name : order) {
    const std::string uri = cl.node_urls[name];
    if (name != leader) {
      bool caught_up = poll_until(
          [&] {
            Rows r;
            std::string e;
            return sql_once(uri, "SELECT pg_last_wal_replay_lsn() >= '" + target_lsn + "'::pg_lsn", r, e, 5s) &&
                   !r.empty() && r[0][0] == "t";
          },
          60s);
      if (!caught_up) {
        problems.push_back(name + " did not replay " + target_lsn + " within 60 s");
        continue;
      }
    }
    if (!sql_once(uri, fmt::format("SELECT id FROM chaos_log WHERE id >= {}", cl.lowest_unchecked_id), rows, error,
                  60s)) {
      problems.push_back("cannot read chaos_log on " + name + ": " + error);
      continue;
    }
    std::set<int64_t> present;
    for (const auto& r : rows) present.insert(std::stoll(r[0]));
    std::vector<int64_t> absent;
    for (int64_t id : expected)
      if (!present.count(id)) absent.push_back(id);
    if (name == leader) {
      missing = absent;
      on_primary = present;
    } else {
      // A replica must hold what the primary holds (up to the primary's position we waited for).
      std::vector<int64_t> not_replicated;
      for (int64_t id : expected)
        if (on_primary && on_primary->count(id) && !present.count(id)) not_replicated.push_back(id);
      if (!not_replicated.empty())
        problems.push_back(fmt::format("{} lacks {} acknowledged inserts the primary has (first id {})", name,
                                       not_replicated.size(), not_replicated.front()));
    }
  }
  if (!on_primary) problems.push_back("the primary's rows could not be read");
  for (int64_t id : missing) cl.lost_ids.insert(id);
  // Next time only newer ids need checking (the older ones are on every node now).
  if (!expected.empty()) cl.lowest_unchecked_id = *expected.rbegin() + 1;
  return missing;
}

// Longest gap between acknowledgements from the last one before `fault_ms` until `end_ms`.
double unavailability(int64_t fault_ms, int64_t end_ms) {
  std::vector<int64_t> acks;
  {
    std::lock_guard lock(g_log.mu);
    for (const auto& w : g_log.acked) acks.push_back(w.ack_ms);
  }
  std::sort(acks.begin(), acks.end());
  auto first_after = std::upper_bound(acks.begin(), acks.end(), fault_ms);
  if (first_after == acks.end() || *first_after > end_ms) return -1;
  int64_t prev = first_after == acks.begin() ? fault_ms : *(first_after - 1);
  int64_t gap = 0;
  for (auto it = first_after; it != acks.end() && *it <= end_ms; ++it) {
    gap = std::max(gap, *it - prev);
    prev = *it;
  }
  return static_cast<double>(gap) / 1000.0;
}

// A write sent after t_ms was acknowledged (one already inside a dying server does not count).
bool acked_since(int64_t t_ms) {
  std::lock_guard lock(g_log.mu);
  for (auto it = g_log.acked.rbegin(); it != g_log.acked.rend() && it->ack_ms > t_ms; ++it)
    if (it->send_ms > t_ms) return true;
  return false;
}

CycleResult run_cycle(Cluster& cl, int number, const std::string& fault) {
  CycleResult res;
  res.number = number;
  res.fault = fault;
  auto s = status();
  if (!s) {
    res.problems.push_back("status failed before the fault");
    return res;
  }
  const std::string leader = str(*s, "leader");
  Json target_node = node_of(*s, leader);
  if (fault == "replica") {
    // The synchronous standby if there is one (its loss must not stall writes), else the first replica.
    Json pick;
    for (const auto& n : (*s)["nodes"]) {
      if (str(n, "name") == leader) continue;
      if (pick.is_null() || str(n, "sync_state") == "sync" || str(n, "sync_state") == "quorum") pick = n;
    }
    target_node = pick;
  }
  res.target = str(target_node, "name");
  const int64_t target_pid = num(target_node, "pid");
  std::this_thread::sleep_for(1s);  // steady load before the fault
  const int64_t fault_ms = now_ms();
  size_t errors_before = 0;
  {
    std::lock_guard lock(g_log.mu);
    errors_before = g_log.errors.size();
  }
  bool need_up = false;
  std::vector<pid_t> killed;
  if (fault == "postmaster") {
    ::kill(static_cast<pid_t>(num(target_node, "pid")), SIGKILL);
  } else if (fault == "host" || fault == "replica") {
    killed = host_processes(target_node);
    signal_all(killed, SIGKILL);
    need_up = true;
  } else if (fault == "hang") {
    auto pids = host_processes(target_node);
    g_stopped_count = 0;
    for (pid_t p : pids)
      if (g_stopped_count < kMaxStopped) g_stopped[g_stopped_count++] = p;
    signal_all(pids, SIGSTOP);
    // Another node takes over once the leader key expires (ttl); a second later the old one wakes
    // up (as a paused VM would) and must step down without acknowledging anything.
    bool moved = poll_until(
        [&] {
          auto st = status();
          if (!st) return false;
          const std::string now_leader = str(*st, "leader");
          return !now_leader.empty() && now_leader != leader && str(node_of(*st, now_leader), "role") == "primary" &&
                 str(node_of(*st, now_leader), "state") == "running";
        },
        120s, 200ms);
    if (!moved) res.problems.push_back("no other node ran as primary within 120 s of the hang");
    std::this_thread::sleep_for(1s);
    signal_all(pids, SIGCONT);
    g_stopped_count = 0;
  } else if (fault == "switchover") {
    auto r = run_pgfleet({"switchover", "--timeout", "60"}, 120s);
    if (!r.ok()) res.problems.push_back("switchover failed: " + r.output);
    else if (g_opt.verbose) std::cout << "  " << r.output;
  }
  if (!poll_until([&] { return acked_since(fault_ms); }, 120s, 50ms))
    res.problems.push_back("no write acknowledged within 120 s of the fault");
  if (need_up) {
    // The "host" comes back once its processes are gone (killed children of a killed agent stay
    // zombies until init reaps them, and PostgreSQL refuses to start while its old pid exists).
    for (pid_t p : killed)
      if (!poll_until([p] { return ::kill(p, 0) != 0 && errno == ESRCH; }, 30s, 20ms))
        res.problems.push_back(fmt::format("pid {} still exists 30 s after kill -9", p));
    auto r = run_pgfleet({"up", "--timeout", "120"}, 180s);
    if (!r.ok()) res.problems.push_back("pgfleet up after the fault failed: " + r.output);
  }
  std::string why;
  std::optional<Json> after;
  bool ok = poll_until(
      [&] {
        after = status();
        if (!after || !converged(*after, why)) return false;
        // The published status may predate the fault: the node it hit must run a new postmaster.
        if (num(node_of(*after, res.target), "pid") == target_pid)
          return why = res.target + " still reports its old postmaster", false;
        return true;
      },
      120s, 250ms);
  const int64_t converged_ms = now_ms();
  res.converge_s = static_cast<double>(converged_ms - fault_ms) / 1000.0;
  if (!ok) {
    res.problems.push_back("the cluster did not converge within 120 s: " + why);
    return res;
  }
  res.leader_after = str(*after, "leader");
  res.window_s = unavailability(fault_ms, converged_ms);
  auto missing = check_data(cl, *after, res.problems);
  res.lost = static_cast<int64_t>(missing.size());
  {
    std::lock_guard lock(g_log.mu);
    for (size_t i = errors_before; i < g_log.errors.size(); ++i) {
      (g_log.errors[i].writer ? res.writer_errors : res.reader_errors)++;
      if (g_opt.verbose) std::cout << "    client error: " << g_log.errors[i].message << "\n";
    }
  }
  if (res.lost > 0 && g_opt.sync != "off")
    res.problems.push_back(fmt::format("{} acknowledged inserts lost in {} mode (first id {})", res.lost, g_opt.sync,
                                       missing.front()));
  if (fault == "switchover" && res.writer_errors + res.reader_errors > 0)
    res.problems.push_back(fmt::format("switchover gave {} writer and {} reader errors", res.writer_errors,
                                       res.reader_errors));
  return res;
}

// ---------------------------------------------------------------------------------------------

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())) - 1);
  return v[std::min(i, v.size() - 1)];
}

void usage() {
  std::cerr << "usage: pgfleet_chaos [--pgfleet BIN] [--sync off|on|quorum] [--cycles N] [--faults a,b,...]\n"
               "                     [--writers N] [--readers N] [--ttl S] [--loop-wait S] [--summary FILE]\n"
               "                     [--dir DIR] [--keep] [--verbose]\n"
               "faults: postmaster, host, hang, replica, switchover (default: all; --cycles of each)\n";
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty()) out.push_back(part);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
#ifdef PGFLEET_BINARY
  g_opt.pgfleet = PGFLEET_BINARY;
#endif
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--pgfleet") g_opt.pgfleet = value();
    else if (a == "--sync") g_opt.sync = value();
    else if (a == "--cycles") g_opt.cycles = std::stoi(value());
    else if (a == "--faults") g_opt.faults = split(value());
    else if (a == "--writers") g_opt.writers = std::stoi(value());
    else if (a == "--readers") g_opt.readers = std::stoi(value());
    else if (a == "--ttl") g_opt.ttl = std::stoi(value());
    else if (a == "--loop-wait") g_opt.loop_wait = std::stoi(value());
    else if (a == "--summary") g_opt.summary = value();
    else if (a == "--dir") g_opt.dir = value();
    else if (a == "--keep") g_opt.keep = true;
    else if (a == "--verbose") g_opt.verbose = true;
    else {
      usage();
      return 2;
    }
  }
  static const std::set<std::string> known = {"postmaster", "host", "hang", "replica", "switchover"};
  for (const auto& f : g_opt.faults)
    if (!known.count(f)) {
      std::cerr << "unknown fault '" << f << "'\n";
      usage();
      return 2;
    }
  if (g_opt.pgfleet.empty()) {
    std::cerr << "--pgfleet is required\n";
    return 2;
  }
  std::string tmp;
  if (g_opt.dir.empty()) {
    char templ[] = "/tmp/pgfleet-chaos-XXXXXX";
    if (!::mkdtemp(templ)) return perror("mkdtemp"), 2;
    tmp = templ;
    ::chmod(tmp.c_str(), 0755);  // the postgres user must reach the cluster directory
    g_opt.dir = tmp + "/cluster";
  }
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGINT, on_interrupt);
  ::signal(SIGTERM, on_interrupt);

  std::vector<std::string> up_args = {"up", "--base-port", std::to_string(pgfleet::testing::reserve_port_block()), "--sync", g_opt.sync};
  if (g_opt.ttl) up_args.insert(up_args.end(), {"--ttl", std::to_string(*g_opt.ttl)});
  if (g_opt.loop_wait) up_args.insert(up_args.end(), {"--loop-wait", std::to_string(*g_opt.loop_wait)});
  std::cout << fmt::format("chaos: {} mode, {} cycle(s) of each fault, {} writers, {} readers, cluster in {}\n",
                           g_opt.sync, g_opt.cycles, g_opt.writers, g_opt.readers, g_opt.dir)
            << std::flush;
  int exit_code = 0;
  std::vector<CycleResult> results;
  std::vector<std::thread> threads;
  auto finish = [&] {
    g_stop_workload = true;
    for (auto& t : threads) t.join();
    threads.clear();
    if (!g_opt.keep) {
      run_pgfleet({"down", "--purge"}, 300s);
      if (!tmp.empty()) std::filesystem::remove_all(tmp);
    }
  };
  try {
    auto up = run_pgfleet(up_args, 300s);
    if (!up.ok()) throw std::runtime_error("pgfleet up failed:\n" + up.output);
    Cluster cl;
    auto url = [&](std::vector<std::string> args) {
      auto r = run_pgfleet(std::move(args), 60s);
      if (!r.ok()) throw std::runtime_error("pgfleet url failed: " + r.output);
      std::string u = r.output;
      while (!u.empty() && (u.back() == '\n' || u.back() == ' ')) u.pop_back();
      return with_timeout(u);
    };
    cl.proxy = url({"url", "--proxy"});
    auto s = status();
    if (!s) throw std::runtime_error("status failed");
    for (const auto& n : (*s)["nodes"]) cl.node_urls[str(n, "name")] = url({"url", "--node", str(n, "name")});
    Rows rows;
    std::string error;
    if (!sql_once(cl.proxy, "CREATE TABLE chaos_log (id bigint PRIMARY KEY, writer int NOT NULL)", rows, error))
      throw std::runtime_error("cannot create the table: " + error);
    for (int w = 0; w < g_opt.writers; ++w) threads.emplace_back(writer_loop, cl.proxy, w);
    for (int r = 0; r < g_opt.readers; ++r) threads.emplace_back(reader_loop, cl.proxy);

    int number = 0;
    for (int c = 0; c < g_opt.cycles; ++c)
      for (const auto& fault : g_opt.faults) {
        auto res = run_cycle(cl, ++number, fault);
        std::cout << fmt::format(
                         "cycle {:3} {:10} on {:6} -> leader {:6}  window {:6.2f} s  converged {:6.2f} s  lost {:4}  "
                         "errors w{}/r{}  {}\n",
                         res.number, res.fault, res.target, res.leader_after, res.window_s, res.converge_s, res.lost,
                         res.writer_errors, res.reader_errors, res.problems.empty() ? "OK" : "FAIL")
                  << std::flush;
        for (const auto& p : res.problems) std::cout << "    problem: " << p << "\n";
        if (!res.problems.empty()) exit_code = 1;
        results.push_back(res);
        if (!res.problems.empty() && res.leader_after.empty()) break;  // not converged: stop here
      }
      // A broken cluster makes later cycles meaningless.
  } catch (const std::exception& e) {
    std::cout << "chaos: " << e.what() << "\n";
    exit_code = 1;
  }
  g_stop_workload = true;
  for (auto& t : threads) t.join();
  threads.clear();

  // Check 2 over the whole run.
  std::vector<Write> all;
  size_t errors = 0;
  {
    std::lock_guard lock(g_log.mu);
    all = g_log.acked;
    errors = g_log.errors.size();
  }
  auto overlaps = overlap_problems(all);
  std::set<Term> terms;
  for (const auto& w : all) terms.insert(Term{w.port, w.timeline});
  std::cout << fmt::format("acknowledged inserts: {}; client errors: {}; write terms (server, timeline): {}\n",
                           all.size(), errors, terms.size());
  for (const auto& p : overlaps) std::cout << "overlap: " << p << "\n";
  if (!overlaps.empty()) exit_code = 1;

  // Summary per fault.
  std::ostringstream table;
  for (const auto& fault : g_opt.faults) {
    std::vector<double> windows;
    int64_t lost = 0, werr = 0, rerr = 0, failed = 0, n = 0;
    for (const auto& r : results) {
      if (r.fault != fault) continue;
      ++n;
      if (r.window_s >= 0) windows.push_back(r.window_s);
      lost += r.lost;
      werr += r.writer_errors;
      rerr += r.reader_errors;
      failed += r.problems.empty() ? 0 : 1;
    }
    if (n == 0) continue;
    table << fmt::format("| {} | {} | {} | {:.2f} | {:.2f} | {:.2f} | {} | {} | {} | {} |\n", g_opt.sync, fault, n,
                         percentile(windows, 0.5), percentile(windows, 0.9), percentile(windows, 1.0), lost, werr,
                         rerr, failed);
  }
  std::cout << "\n| mode | fault | cycles | median s | p90 s | max s | lost writes | writer errors | reader errors | "
               "failed checks |\n|---|---|---|---|---|---|---|---|---|---|\n"
            << table.str();
  if (!overlaps.empty()) std::cout << "| " << g_opt.sync << " | (all) | overlapping writes: " << overlaps.size() << " |\n";
  if (!g_opt.summary.empty()) {
    std::ofstream out(g_opt.summary, std::ios::app);
    out << table.str();
    if (!overlaps.empty())
      out << "| " << g_opt.sync << " | overlap check | " << overlaps.size() << " problems: " << overlaps.front()
          << " | | | | | | | |\n";
  }
  finish();
  std::cout << (exit_code == 0 ? "chaos: all checks passed\n" : "chaos: FAILED\n");
  return exit_code;
}
