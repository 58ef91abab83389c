// Integration-test harness implementation (see harness.hpp).
#include "harness.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "support/port_reservation.hpp"
#include "util/process.hpp"

#ifndef PGFLEET_BINARY
#error "PGFLEET_BINARY must name the pgfleet binary under test"
#endif

namespace pgfleet::itest {

using Clock = std::chrono::steady_clock;

namespace {
std::string g_snapshot_dir;

void remove_snapshot() {
  std::error_code ec;
  if (!g_snapshot_dir.empty()) std::filesystem::remove_all(g_snapshot_dir, ec);
}

// The binary under test, copied once per test run to a private 0755 directory: the build tree
// is shared, and a concurrent `ninja` replacing build/pgfleet mid-test would otherwise break the
// agents `up` starts (they exec /proc/self/exe's target). Falls back to PGFLEET_BINARY.
const std::string& binary() {
  static const std::string path = [] {
    try {
      std::string dir = make_temp_dir("pgfleet-it-bin");
      std::string copy = dir + "/pgfleet";
      std::filesystem::copy_file(PGFLEET_BINARY, copy);
      std::filesystem::permissions(copy, std::filesystem::perms(0755));
      g_snapshot_dir = dir;
      std::atexit(remove_snapshot);
      return copy;
    } catch (const std::exception& e) {
      std::cerr << "harness: cannot snapshot " << PGFLEET_BINARY << " (" << e.what() << "); using it directly\n";
      return std::string(PGFLEET_BINARY);
    }
  }();
  return path;
}
}  // namespace

CmdResult run_pgfleet(const std::vector<std::string>& args, std::chrono::seconds timeout,
                      const std::map<std::string, std::string>& env) {
  std::vector<std::string> argv{binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  process::RunOptions options;
  options.timeout = timeout;
  options.env = env;
  auto started = Clock::now();
  auto r = process::run(argv, options);
  CmdResult out{r.exit_code, r.output};
  if (const char* trace = std::getenv("PGFLEET_IT_TRACE"); trace && *trace) {
    std::string line;
    for (const auto& a : args) line += " " + a;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    std::cerr << "[harness] pgfleet" << line << " -> exit " << r.exit_code << " in " << ms << " ms\n";
  }
  if (r.timed_out) out.output += "\n[harness: pgfleet killed after " + std::to_string(timeout.count()) + " s]\n";
  return out;
}

int64_t spawn_pgfleet(const std::vector<std::string>& args, const std::string& log_path,
                      const std::map<std::string, std::string>& env) {
  std::vector<std::string> argv{binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_t pid = process::spawn(argv, log_path, env);
  if (pid <= 0) throw std::runtime_error("cannot start pgfleet: " + std::string(std::strerror(errno)));
  return pid;
}

bool eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    try {
      if (predicate()) return true;
    } catch (const std::exception&) {
      // not yet
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

std::string make_temp_dir(const std::string& prefix) {
  std::string templ = "/tmp/" + prefix + ".XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  std::string dir(buf.data());
  if (::chmod(dir.c_str(), 0755) != 0) throw std::runtime_error(std::string("chmod: ") + std::strerror(errno));
  return dir;
}

int pick_base_port() { return pgfleet::testing::reserve_port_block(); }

namespace {
// The reserved block was free when picked, but `up` binds the proxy seconds later, after initdb:
// on a shared machine something outside the tests can take a port in between. Both of `up`'s
// messages for that ("port N for X is already in use", "cannot listen on H:N: Address already in
// use") end so.
bool port_was_taken(const std::string& up_output) { return up_output.find("already in use") != std::string::npos; }
constexpr int kPortRetries = 2;
}  // namespace

std::string with_param(const std::string& uri, const std::string& param) {
  return uri + (uri.find('?') == std::string::npos ? "?" : "&") + param;
}

namespace {
std::string trimmed(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}
}  // namespace

std::vector<std::string> receive_notifications(postgres::PgConn& conn, size_t at_most, std::chrono::milliseconds within,
                                               const std::function<void()>& each_wait) {
  std::vector<std::string> got;
  const auto until = std::chrono::steady_clock::now() + within;
  while (got.size() < at_most && std::chrono::steady_clock::now() < until) {
    pollfd pfd{PQsocket(conn.raw()), POLLIN, 0};
    ::poll(&pfd, 1, 100);
    if (PQconsumeInput(conn.raw()) != 1) break;
    while (PGnotify* n = PQnotifies(conn.raw())) {
      got.push_back(std::string(n->relname) + ":" + n->extra);
      PQfreemem(n);
    }
    if (each_wait) each_wait();
  }
  return got;
}

Result<Rows> query_with_deadline(postgres::PgConn& conn, const std::string& query,
                                 std::chrono::milliseconds timeout) {
  PGconn* c = conn.raw();
  if (PQsendQuery(c, query.c_str()) == 0) return Error{trimmed(PQerrorMessage(c))};
  auto deadline = Clock::now() + timeout;
  while (PQisBusy(c) != 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      if (PGcancel* cancel = PQgetCancel(c)) {
        char err[256];
        PQcancel(cancel, err, sizeof err);
        PQfreeCancel(cancel);
      }
      // The connection is left mid-query: the caller must not reuse it.
      return Error{"timed out after " + std::to_string(timeout.count()) + " ms (cancelled): " + query};
    }
    pollfd pfd{PQsocket(c), POLLIN, 0};
    if (pfd.fd < 0) return Error{"connection lost: " + trimmed(PQerrorMessage(c))};
    int rc = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 200)));
    if (rc < 0 && errno != EINTR) return Error{std::string("poll: ") + std::strerror(errno)};
    if (PQconsumeInput(c) == 0) return Error{trimmed(PQerrorMessage(c))};
  }
  Rows rows;
  std::string error;
  while (PGresult* res = PQgetResult(c)) {
    auto status = PQresultStatus(res);
    if (status == PGRES_TUPLES_OK) {
      rows.clear();
      int n = PQntuples(res), cols = PQnfields(res);
      for (int i = 0; i < n; ++i) {
        postgres::Row row;
        for (int j = 0; j < cols; ++j) {
          if (PQgetisnull(res, i, j) != 0) row.emplace_back(std::nullopt);
          else row.emplace_back(std::string(PQgetvalue(res, i, j), static_cast<size_t>(PQgetlength(res, i, j))));
        }
        rows.push_back(std::move(row));
      }
    } else if (status != PGRES_COMMAND_OK && error.empty()) {
      error = trimmed(PQresultErrorMessage(res));
      if (error.empty()) error = PQresStatus(status);
    }
    PQclear(res);
  }
  if (!error.empty()) return Error{error};
  return rows;
}

Result<Rows> try_sql(const std::string& uri, const std::string& query, std::chrono::milliseconds timeout) {
  auto conn = postgres::PgConn::connect(with_param(uri, "connect_timeout=5"));
  if (!conn) return Error{"cannot connect: " + conn.error()};
  return query_with_deadline(*conn, query, timeout);
}

Rows sql(const std::string& uri, const std::string& query, std::chrono::milliseconds timeout) {
  auto r = try_sql(uri, query, timeout);
  if (!r) throw std::runtime_error("SQL failed on " + uri + "\n  query: " + query + "\n  error: " + r.error());
  return std::move(r).value();
}

std::string sql_value(const std::string& uri, const std::string& query) {
  auto rows = sql(uri, query);
  if (rows.empty() || rows.front().empty()) throw std::runtime_error("no row from: " + query);
  return rows.front().front().value_or("");
}

int file_mode(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 07777);
}

bool path_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::symlink_status(path, ec));
}

bool absent_or_empty(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return true;
  return std::filesystem::is_directory(path, ec) && std::filesystem::is_empty(path, ec);
}

std::set<std::string> list_dir(const std::string& path) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(path, ec)) out.insert(e.path().filename().string());
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string process_name(int64_t pid) {
  if (pid <= 0) return "";
  return process::name_of(static_cast<pid_t>(pid));
}

bool process_alive(int64_t pid) { return pid > 0 && process::alive(static_cast<pid_t>(pid)); }

nlohmann::json node_of(const nlohmann::json& status, const std::string& name) {
  if (status.contains("nodes") && status["nodes"].is_array()) {
    for (const auto& n : status["nodes"]) {
      if (n.contains("name") && n["name"] == name) return n;
    }
  }
  return nullptr;
}

std::string str(const nlohmann::json& object, const std::string& key) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_string()) return "";
  return object[key].get<std::string>();
}

int64_t num(const nlohmann::json& object, const std::string& key) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_number()) return 0;
  return object[key].get<int64_t>();
}

// ---- fixture -------------------------------------------------------------------------------

void PgfleetTest::SetUp() {
  tmp_ = make_temp_dir("pgfleet-it");
  dir_ = tmp_ + "/cluster";
  base_port_ = pick_base_port();
}

CmdResult PgfleetTest::pgfleet(std::vector<std::string> args, std::chrono::seconds timeout,
                               const std::map<std::string, std::string>& env) {
  args.push_back("--dir");
  args.push_back(dir_);
  return run_pgfleet(args, timeout, env);
}

CmdResult PgfleetTest::up(const std::vector<std::string>& extra, std::chrono::seconds timeout) {
  std::vector<std::string> args{"up", "--base-port", std::to_string(base_port_)};
  args.insert(args.end(), extra.begin(), extra.end());
  return pgfleet(args, timeout);
}

void PgfleetTest::add_postgresql_parameters(const std::string& lines) {
  const std::string file = dir_ + "/pgfleet.yaml";
  std::string yaml = read_text(file);
  if (auto empty = yaml.find("\npostgresql: {}\n"); empty != std::string::npos) {
    yaml.replace(empty, std::string("\npostgresql: {}\n").size(), "\npostgresql:\n" + lines);
  } else {
    const auto at = yaml.find("\npostgresql:\n");
    ASSERT_NE(at, std::string::npos) << yaml;
    yaml.insert(at + std::string("\npostgresql:\n").size(), lines);
  }
  write_text(file, yaml);
}

void PgfleetTest::add_node_settings(const std::string& node, const std::string& lines) {
  const std::string file = dir_ + "/pgfleet.yaml";
  std::string yaml = read_text(file);
  const std::string entry = "  - name: " + node + "\n";
  const auto at = yaml.find(entry);
  ASSERT_NE(at, std::string::npos) << yaml;
  yaml.insert(at + entry.size(), lines);
  write_text(file, yaml);
}

std::string PgfleetTest::three_nodes_yaml(const std::map<int, std::string>& extra) const {
  std::string yaml = "nodes:\n";
  for (int k = 1; k <= 3; ++k) {
    auto it = extra.find(k);
    yaml += "  - {name: node" + std::to_string(k) + ", port: " + std::to_string(node_port(k)) +
            ", api_port: " + std::to_string(base_port_ + 50 + k - 1) + (it == extra.end() ? "" : it->second) + "}\n";
  }
  return yaml;
}

void PgfleetTest::start_cluster(const std::vector<std::string>& extra) {
  auto r = up(extra);
  for (int retry = 0; retry < kPortRetries && !r.ok() && port_was_taken(r.output); ++retry) {
    std::cerr << "pgfleet up lost a port of block " << base_port_ << " to another process; starting over on a new block:\n"
              << r.output;
    (void)pgfleet({"down", "--purge"}, 180s);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);  // what `up` left before it had a pgfleet.yaml
    base_port_ = pick_base_port();
    r = up(extra);
  }
  ASSERT_EQ(r.exit_code, 0) << "pgfleet up failed:\n" << r.output;
}

std::optional<nlohmann::json> PgfleetTest::try_status_json() {
  auto r = pgfleet({"status", "--json"}, 60s);
  if (!r.ok()) return std::nullopt;
  try {
    return nlohmann::json::parse(r.output);
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

nlohmann::json PgfleetTest::status_json() {
  auto r = pgfleet({"status", "--json"}, 60s);
  if (!r.ok()) throw std::runtime_error("pgfleet status --json failed (exit " + std::to_string(r.exit_code) + "):\n" + r.output);
  try {
    return nlohmann::json::parse(r.output);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string("status --json is not JSON: ") + e.what() + "\n" + r.output);
  }
}

nlohmann::json PgfleetTest::node_status(const std::string& name) {
  auto n = node_of(status_json(), name);
  if (n.is_null()) throw std::runtime_error("no node " + name + " in status --json");
  return n;
}

std::string PgfleetTest::url(const std::vector<std::string>& args) {
  std::vector<std::string> full{"url"};
  full.insert(full.end(), args.begin(), args.end());
  auto r = pgfleet(full, 60s);
  if (!r.ok()) throw std::runtime_error("pgfleet url failed:\n" + r.output);
  std::istringstream lines(r.output);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("postgresql://", 0) == 0) return line;
  }
  throw std::runtime_error("pgfleet url printed no postgresql:// URI:\n" + r.output);
}

bool PgfleetTest::wait_state(const std::string& node, const std::string& state, std::chrono::milliseconds timeout) {
  return eventually([&] { return str(node_status(node), "state") == state; }, timeout, 200ms);
}

bool PgfleetTest::wait_all_streaming(std::chrono::milliseconds timeout) {
  return eventually(
      [&] {
        auto s = status_json();
        std::string leader = str(s, "leader");
        if (leader.empty()) return false;
        for (const auto& n : s["nodes"]) {
          if (str(n, "name") == leader) {
            if (str(n, "state") != "running" || str(n, "role") != "primary") return false;
          } else if (str(n, "state") != "streaming") {
            return false;
          }
        }
        return true;
      },
      timeout, 200ms);
}

void PgfleetTest::dump_logs() {
  std::cerr << "\n======== test failed: cluster in " << dir_ << " (base port " << base_port_ << ") ========\n";
  if (!path_exists(dir_ + "/pgfleet.yaml")) {
    std::cerr << "(no cluster in " << dir_ << ")\n";
    return;
  }
  auto status = pgfleet({"status"}, 30s);
  std::cerr << "---- pgfleet status (exit " << status.exit_code << ")\n" << status.output;
  std::set<std::string> nodes = list_dir(dir_ + "/nodes");
  if (auto s = try_status_json()) {
    for (const auto& n : (*s)["nodes"]) nodes.insert(str(n, "name"));
  }
  for (const auto& node : nodes) {
    auto pg = pgfleet({"logs", node, "-n", "40"}, 30s);
    std::cerr << "---- pgfleet logs " << node << " -n 40 (exit " << pg.exit_code << ")\n" << pg.output;
    auto agent = pgfleet({"logs", node, "--agent", "-n", "40"}, 30s);
    std::cerr << "---- pgfleet logs " << node << " --agent -n 40 (exit " << agent.exit_code << ")\n" << agent.output;
  }
  if (path_exists(dir_ + "/proxy.log")) {
    std::cerr << "---- proxy.log (last lines)\n" << tail_lines(read_text(dir_ + "/proxy.log"), 40);
  }
  std::cerr << "======== end of logs ========\n" << std::flush;
}

namespace {
// Processes whose command line mentions `needle` (our unique temp dir): agents (--dir ...) and
// postmasters (-D ...) of this test's cluster only.
std::vector<pid_t> processes_mentioning(const std::string& needle) {
  std::vector<pid_t> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = ::readdir(proc)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0 || pid == ::getpid()) continue;
    std::string cmdline = read_text("/proc/" + std::string(e->d_name) + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(needle + "/") != std::string::npos && process::alive(pid)) out.push_back(pid);
  }
  ::closedir(proc);
  return out;
}
}  // namespace

std::string stop_leftover_processes(const std::string& tmp) {
  // Agents first so nothing restarts a postmaster; SIGQUIT = immediate shutdown; SIGKILL when
  // that does not do.
  auto leftovers = processes_mentioning(tmp);
  std::string list;
  for (pid_t pid : leftovers) list += " " + std::to_string(pid) + "(" + process::name_of(pid) + ")";
  for (pid_t pid : leftovers) {
    if (process::name_of(pid) != "postgres") ::kill(pid, SIGKILL);
  }
  for (pid_t pid : leftovers) {
    if (process::name_of(pid) == "postgres") ::kill(pid, SIGQUIT);
  }
  for (pid_t pid : leftovers) {
    if (!process::wait_gone(pid, 5s)) ::kill(pid, SIGKILL);
  }
  return list;
}

void PgfleetTest::TearDown() {
  if (tmp_.empty()) return;
  if (HasFailure()) dump_logs();
  bool had_cluster = path_exists(dir_ + "/pgfleet.yaml");
  auto down = pgfleet({"down", "--purge"}, 180s);
  if (had_cluster && !down.ok()) {
    ADD_FAILURE() << "teardown: pgfleet down --purge failed (exit " << down.exit_code << "):\n" << down.output;
  }
  // Anything of this cluster still running is a leak: report it, then stop it.
  std::string leftovers = stop_leftover_processes(tmp_);
  if (!leftovers.empty()) {
    ADD_FAILURE() << "teardown: processes of this test's cluster still running after down --purge:" << leftovers;
  }
  for (auto it = cleanups_.rbegin(); it != cleanups_.rend(); ++it) {
    try {
      (*it)();
    } catch (const std::exception& e) {
      std::cerr << "teardown cleanup failed: " << e.what() << "\n";
    }
  }
  cleanups_.clear();
  std::error_code ec;
  std::filesystem::remove_all(tmp_, ec);
  if (ec) std::cerr << "teardown: cannot remove " << tmp_ << ": " << ec.message() << "\n";
}

// ---- PostgreSQL clients, for the proxy tests -----------------------------------------------

std::string pg_tool(const std::string& name) {
  std::string bundled = "/usr/lib/postgresql/15/bin/" + name;
  return ::access(bundled.c_str(), X_OK) == 0 ? bundled : name;
}

CmdResult run_program(const std::vector<std::string>& argv, std::chrono::seconds timeout,
                      const std::map<std::string, std::string>& env) {
  process::RunOptions options;
  options.timeout = timeout;
  options.env = env;
  auto r = process::run(argv, options);
  CmdResult out{r.exit_code, r.output};
  if (r.timed_out) out.output += "\n[harness: " + argv.front() + " killed after " + std::to_string(timeout.count()) + " s]\n";
  return out;
}

CmdResult psql(const std::string& uri, const std::vector<std::string>& args, std::chrono::seconds timeout) {
  std::vector<std::string> argv{pg_tool("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-d", uri};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_program(argv, timeout, {{"PGCONNECT_TIMEOUT", "5"}});
}

postgres::PgConn connect_or_throw(const std::string& uri) {
  auto conn = postgres::PgConn::connect(with_param(uri, "connect_timeout=5"));
  if (!conn) throw std::runtime_error("cannot connect to " + uri + ": " + conn.error());
  return std::move(conn).value();
}

std::string connect_error(const std::string& uri) {
  auto conn = postgres::PgConn::connect(with_param(uri, "connect_timeout=5"));
  return conn ? std::string() : conn.error();
}

int Table::column(const std::string& name) const {
  auto it = std::find(columns.begin(), columns.end(), name);
  return it == columns.end() ? -1 : static_cast<int>(it - columns.begin());
}

std::string Table::at(size_t row, const std::string& name) const {
  int c = column(name);
  if (c < 0) throw std::runtime_error("no column " + name + " in\n" + dump());
  if (row >= rows.size()) throw std::runtime_error("no row " + std::to_string(row) + " in\n" + dump());
  return rows[row][static_cast<size_t>(c)].value_or("");
}

std::string Table::dump() const {
  std::string out;
  for (const auto& c : columns) out += (out.empty() ? "" : " | ") + c;
  out += "\n";
  for (const auto& row : rows) {
    std::string line;
    for (const auto& v : row) line += (line.empty() ? "" : " | ") + v.value_or("NULL");
    out += line + "\n";
  }
  return out;
}

Table query_table(const std::string& uri, const std::string& query, std::chrono::milliseconds timeout) {
  auto conn = connect_or_throw(uri);
  PGconn* c = conn.raw();
  if (PQsendQuery(c, query.c_str()) == 0) throw std::runtime_error(trimmed(PQerrorMessage(c)));
  auto deadline = Clock::now() + timeout;
  while (PQisBusy(c) != 0) {
    if (Clock::now() >= deadline) throw std::runtime_error("timed out: " + query);
    pollfd pfd{PQsocket(c), POLLIN, 0};
    ::poll(&pfd, 1, 100);
    if (PQconsumeInput(c) == 0) throw std::runtime_error(trimmed(PQerrorMessage(c)));
  }
  Table table;
  std::string error;
  while (PGresult* res = PQgetResult(c)) {
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
      table = Table{};
      for (int j = 0; j < PQnfields(res); ++j) table.columns.emplace_back(PQfname(res, j));
      for (int i = 0; i < PQntuples(res); ++i) {
        postgres::Row row;
        for (int j = 0; j < PQnfields(res); ++j) {
          if (PQgetisnull(res, i, j) != 0) row.emplace_back(std::nullopt);
          else row.emplace_back(std::string(PQgetvalue(res, i, j), static_cast<size_t>(PQgetlength(res, i, j))));
        }
        table.rows.push_back(std::move(row));
      }
    } else if (PQresultStatus(res) != PGRES_COMMAND_OK && error.empty()) {
      error = trimmed(PQresultErrorMessage(res));
    }
    PQclear(res);
  }
  if (!error.empty()) throw std::runtime_error(query + ": " + error);
  return table;
}

struct ConnectionWatchdog::State {
  std::mutex mutex;
  std::condition_variable wake;
  bool disarmed = false;
  std::thread thread;
};

ConnectionWatchdog::ConnectionWatchdog(PGconn* conn, std::chrono::milliseconds timeout)
    : state_(std::make_shared<State>()), fired_(std::make_shared<std::atomic<bool>>(false)) {
  int fd = PQsocket(conn);
  state_->thread = std::thread([state = state_, fired = fired_, fd, timeout] {
    std::unique_lock lock(state->mutex);
    if (state->wake.wait_for(lock, timeout, [&] { return state->disarmed; })) return;
    fired->store(true);
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    std::cerr << "[harness] watchdog: connection still busy after " << timeout.count()
              << " ms; its socket was shut down\n";
  });
}

ConnectionWatchdog::~ConnectionWatchdog() {
  {
    std::lock_guard lock(state_->mutex);
    state_->disarmed = true;
  }
  state_->wake.notify_all();
  if (state_->thread.joinable()) state_->thread.join();
}

int64_t rss_kb(int64_t pid) {
  std::istringstream in(read_text("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

std::string tail_lines(const std::string& text, size_t n) {
  size_t at = text.size();
  if (at > 0 && text[at - 1] == '\n') --at;
  while (n > 0 && at > 0) {
    size_t nl = text.rfind('\n', at - 1);
    if (nl == std::string::npos) return text;
    at = nl;
    --n;
  }
  return n == 0 ? text.substr(at + 1) : text;
}

// ---- SharedCluster ---------------------------------------------------------------------------

std::string SharedCluster::start(const std::string& config_yaml, int replicas) {
  try {
    tmp_ = make_temp_dir("pgfleet-it-proxy");
    dir_ = tmp_ + "/cluster";
    base_port_ = pick_base_port();
    std::vector<std::string> args{"up", "--base-port", std::to_string(base_port_), "--replicas", std::to_string(replicas)};
    if (!config_yaml.empty()) {
      std::string file = tmp_ + "/config.yaml";
      write_text(file, config_yaml);
      args.insert(args.end(), {"--config", file});
    }
    auto r = pgfleet(args, 180s);
    for (int retry = 0; retry < kPortRetries && !r.ok() && port_was_taken(r.output); ++retry) {
      std::cerr << "pgfleet up lost a port of block " << base_port_ << " to another process; starting over on a new block:\n"
                << r.output;
      (void)pgfleet({"down", "--purge"}, 180s);
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      base_port_ = pick_base_port();
      args[2] = std::to_string(base_port_);
      r = pgfleet(args, 180s);
    }
    if (!r.ok()) {
      return "pgfleet up failed (exit " + std::to_string(r.exit_code) + "):\n" + r.output + "\n---- proxy.log\n" +
             tail_lines(read_text(proxy_log()), 40);
    }
    std::string uri;
    {
      auto u = pgfleet({"url", "--proxy"}, 60s);
      std::istringstream lines(u.output);
      std::string line;
      while (std::getline(lines, line)) {
        if (line.rfind("postgresql://", 0) == 0) uri = line;
      }
      if (!u.ok() || uri.empty()) return "pgfleet url --proxy failed:\n" + u.output;
    }
    // postgresql://USER:PASSWORD@host:port/db
    auto colon = uri.find(':', std::string("postgresql://").size());
    auto at = uri.find('@');
    if (colon == std::string::npos || at == std::string::npos || at < colon) return "unexpected proxy URI " + uri;
    password_ = uri.substr(colon + 1, at - colon - 1);
    if (uri != proxy_uri()) return "the proxy URI is " + uri + ", expected " + proxy_uri();
    // The proxy answers as soon as `up` returns.
    if (!eventually([&] { return try_sql(proxy_uri(), "SELECT 1").ok(); }, 20s, 100ms)) {
      return "the proxy does not answer SELECT 1:\n" + try_sql(proxy_uri(), "SELECT 1").error() + "\n---- proxy.log\n" +
             tail_lines(read_text(proxy_log()), 40);
    }
    return "";
  } catch (const std::exception& e) {
    return std::string("cannot start the cluster: ") + e.what();
  }
}

std::string SharedCluster::destroy() {
  if (tmp_.empty()) return "";
  std::string problems;
  bool had_cluster = path_exists(dir_ + "/pgfleet.yaml");
  auto down = pgfleet({"down", "--purge"}, 180s);
  if (had_cluster && !down.ok()) {
    problems += "teardown: pgfleet down --purge failed (exit " + std::to_string(down.exit_code) + "):\n" + down.output;
  }
  std::string leftovers = stop_leftover_processes(tmp_);
  if (!leftovers.empty()) problems += "teardown: processes of the suite's cluster still running after down --purge:" + leftovers;
  std::error_code ec;
  std::filesystem::remove_all(tmp_, ec);
  tmp_.clear();
  return problems;
}

CmdResult SharedCluster::pgfleet(std::vector<std::string> args, std::chrono::seconds timeout) {
  args.push_back("--dir");
  args.push_back(dir_);
  return run_pgfleet(args, timeout);
}

nlohmann::json SharedCluster::status_json() {
  auto r = pgfleet({"status", "--json"}, 60s);
  if (!r.ok()) throw std::runtime_error("pgfleet status --json failed:\n" + r.output);
  return nlohmann::json::parse(r.output);
}

int64_t SharedCluster::proxy_pid() {
  auto s = status_json();
  if (!s.contains("proxy") || !s["proxy"].is_object()) return 0;
  return num(s["proxy"], "pid");
}

std::string SharedCluster::proxy_uri(const std::string& user, const std::string& password,
                                     const std::string& database) const {
  std::string u = user.empty() ? "postgres" : user;
  std::string p = user.empty() ? password_ : password;
  return "postgresql://" + u + (p.empty() ? "" : ":" + p) + "@127.0.0.1:" + std::to_string(base_port_) + "/" + database;
}

std::string SharedCluster::primary_uri(const std::string& database) const { return node_uri(1, database); }

std::string SharedCluster::node_uri(int k, const std::string& database) const {
  return "postgresql://postgres:" + password_ + "@127.0.0.1:" + std::to_string(node_port(k)) + "/" + database;
}

void SharedCluster::dump_logs() {
  std::cerr << "\n======== test failed: shared cluster in " << dir_ << " (base port " << base_port_ << ") ========\n";
  auto status = pgfleet({"status"}, 30s);
  std::cerr << "---- pgfleet status (exit " << status.exit_code << ")\n" << status.output;
  std::cerr << "---- proxy.log (last 80 lines)\n" << tail_lines(read_text(proxy_log()), 80) << "\n";
  auto pg = pgfleet({"logs", "node1", "-n", "30"}, 30s);
  std::cerr << "---- pgfleet logs node1 -n 30\n" << pg.output;
  std::cerr << "======== end of logs ========\n" << std::flush;
}

}  // namespace pgfleet::itest
