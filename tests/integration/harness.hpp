// Integration-test harness: every test drives the real pgfleet binary against a real PostgreSQL
// cluster in its own temporary directory, on ports picked at run time.
//
//   PgfleetTest       fixture: temp dir (0755, reachable by the postgres user) + free port base;
//                     TearDown prints the nodes' logs on failure and always runs `down --purge`.
//   pgfleet(args)     runs the binary with `--dir <cluster dir>` appended; exit code + output.
//   status_json()     `pgfleet status --json`, parsed.
//   sql(uri, query)   rows through libpq (PgConn), with a deadline on every statement.
//   eventually(p, t)  polls p until it holds or t passes; never a fixed sleep.
//
//   SharedCluster     one cluster for a whole test suite (the proxy tests): ClusterSuite<Derived>
//                     starts it in SetUpTestSuite and destroys it in TearDownTestSuite.
//   psql(), pg_tool() the PostgreSQL client programs; query_table() rows with column names.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "postgres/pgconn.hpp"
#include "util/result.hpp"

namespace pgfleet::itest {

using namespace std::chrono_literals;
using Rows = std::vector<postgres::Row>;

struct CmdResult {
  int exit_code = -1;  // -1: could not run or timed out
  std::string output;  // stdout and stderr interleaved
  [[nodiscard]] bool ok() const { return exit_code == 0; }
};

// ASSERT_TRUE(succeeded(pgfleet({...}))): a failure shows what the command printed.
inline ::testing::AssertionResult succeeded(const CmdResult& r) {
  if (r.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "exit code " << r.exit_code << ", output:\n" << r.output;
}

// Runs the pgfleet binary under test with exactly `args`.
CmdResult run_pgfleet(const std::vector<std::string>& args, std::chrono::seconds timeout = 300s,
                      const std::map<std::string, std::string>& env = {});

// Starts the pgfleet binary under test with `args` in the background (output appended to
// `log_path`); its pid. The caller stops it (by this pid).
int64_t spawn_pgfleet(const std::vector<std::string>& args, const std::string& log_path,
                      const std::map<std::string, std::string>& env = {});

// Polls `predicate` every `interval` until it returns true (-> true) or `timeout` passes (-> false).
// Exceptions thrown by the predicate count as "not yet".
bool eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = 100ms);

// mkdtemp under /tmp, chmod 0755 so the postgres OS user can traverse it.
std::string make_temp_dir(const std::string& prefix);
// A P in [20000, 60000) such that P..P+99 are free on 127.0.0.1 and reserved for this test
// process (tests/support/port_reservation.hpp): tests running in parallel never share ports.
int pick_base_port();

// Appends a query parameter to a postgresql:// URI ("connect_timeout=5").
std::string with_param(const std::string& uri, const std::string& param);

// One statement on an open connection; gives up (and cancels it) after `timeout`.
Result<Rows> query_with_deadline(postgres::PgConn& conn, const std::string& query,
                                 std::chrono::milliseconds timeout = 15s);
// Connects to `uri` (connect_timeout added), runs `query`, returns the rows or libpq's error.
Result<Rows> try_sql(const std::string& uri, const std::string& query, std::chrono::milliseconds timeout = 15s);
// As try_sql, but throws std::runtime_error (naming the query and the error) on failure.
Rows sql(const std::string& uri, const std::string& query, std::chrono::milliseconds timeout = 15s);
// First column of the first row ("" for NULL); throws when there is no row.
std::string sql_value(const std::string& uri, const std::string& query);
// The notifications `conn` receives, as "channel:payload", until `at_most` have come or `within`
// has passed (or the connection fails). `each_wait` runs between waits (e.g. to sample memory).
std::vector<std::string> receive_notifications(postgres::PgConn& conn, size_t at_most, std::chrono::milliseconds within,
                                               const std::function<void()>& each_wait = {});

// File mode bits (e.g. 0600), or -1 when the file cannot be stat'ed.
int file_mode(const std::string& path);
bool path_exists(const std::string& path);
// True when `path` does not exist or is an empty directory.
bool absent_or_empty(const std::string& path);
// Names of the entries of a directory (empty when it does not exist).
std::set<std::string> list_dir(const std::string& path);
std::string read_text(const std::string& path);
void write_text(const std::string& path, const std::string& text);
// /proc/<pid>/comm, or "" when the process does not exist.
std::string process_name(int64_t pid);
bool process_alive(int64_t pid);

// The node object named `name` in a status --json document (null when absent).
nlohmann::json node_of(const nlohmann::json& status, const std::string& name);
// Text of a JSON string field, "" for null or missing.
std::string str(const nlohmann::json& object, const std::string& key);
// Integer field, 0 for null or missing.
int64_t num(const nlohmann::json& object, const std::string& key);

// Stops whatever still runs of the cluster in `tmp` (agents, then postmasters: SIGQUIT, then
// SIGKILL) and returns the list of what it found ("" when nothing): down --purge should leave nothing.
std::string stop_leftover_processes(const std::string& tmp);

// ---- PostgreSQL clients, for the proxy tests -----------------------------------------------

// A PostgreSQL client program: /usr/lib/postgresql/15/bin/<name> when it exists, else <name> (PATH).
std::string pg_tool(const std::string& name);
// Runs a program with a deadline; stdout and stderr interleaved.
CmdResult run_program(const std::vector<std::string>& argv, std::chrono::seconds timeout = 120s,
                      const std::map<std::string, std::string>& env = {});
// psql -X -v ON_ERROR_STOP=1 -d <uri> <args...> (PGCONNECT_TIMEOUT=5).
CmdResult psql(const std::string& uri, const std::vector<std::string>& args, std::chrono::seconds timeout = 60s);

// An open connection; throws std::runtime_error with libpq's message when it cannot connect.
postgres::PgConn connect_or_throw(const std::string& uri);
// libpq's message for a failed connection attempt ("" when it connects).
std::string connect_error(const std::string& uri);

// The result of one simple query with its column names.
struct Table {
  std::vector<std::string> columns;
  Rows rows;
  [[nodiscard]] int column(const std::string& name) const;  // -1 when absent
  // The value in row `row` of column `name` ("" for NULL); throws when the column is absent.
  [[nodiscard]] std::string at(size_t row, const std::string& name) const;
  [[nodiscard]] std::string dump() const;  // for failure messages
};
// Runs `query` (one statement) on a new connection; throws std::runtime_error on failure.
Table query_table(const std::string& uri, const std::string& query, std::chrono::milliseconds timeout = 15s);

// Shuts a connection's socket down if the watchdog is still armed after `timeout`, so that a
// blocking libpq call stuck on a proxy that stopped forwarding (PQexec, PQgetResult,
// PQputCopyData) fails instead of hanging the whole run. Disarmed by the destructor.
class ConnectionWatchdog {
 public:
  ConnectionWatchdog(PGconn* conn, std::chrono::milliseconds timeout);
  ~ConnectionWatchdog();
  ConnectionWatchdog(const ConnectionWatchdog&) = delete;
  ConnectionWatchdog& operator=(const ConnectionWatchdog&) = delete;
  [[nodiscard]] bool fired() const { return fired_->load(); }

 private:
  struct State;
  std::shared_ptr<State> state_;
  std::shared_ptr<std::atomic<bool>> fired_;
};

// Resident set size of a process in kB (VmRSS), -1 when unknown.
int64_t rss_kb(int64_t pid);
// The last `n` lines of `text`.
std::string tail_lines(const std::string& text, size_t n);

// A cluster shared by every test of a suite. Tests must leave it usable for the next test.
class SharedCluster {
 public:
  // `pgfleet up --base-port P --replicas N [--config FILE]`, FILE holding `config_yaml` when it is not
  // empty. Returns "" or what went wrong (with up's output).
  std::string start(const std::string& config_yaml, int replicas);
  // down --purge, then stops leftovers and removes the temp dir; returns the problems ("" when none).
  std::string destroy();

  CmdResult pgfleet(std::vector<std::string> args, std::chrono::seconds timeout = 120s);
  nlohmann::json status_json();
  // The proxy's pid from status --json (0 when it does not run).
  int64_t proxy_pid();
  // postgresql:// URIs. Through the proxy as `user` (default: the superuser with its password).
  [[nodiscard]] std::string proxy_uri(const std::string& user = "", const std::string& password = "",
                                      const std::string& database = "postgres") const;
  [[nodiscard]] std::string admin_uri() const { return proxy_uri("", "", "pgfleet"); }
  // node1 (the primary) directly, as the superuser.
  [[nodiscard]] std::string primary_uri(const std::string& database = "postgres") const;
  // node k directly (1 = the first primary), as the superuser.
  [[nodiscard]] std::string node_uri(int k, const std::string& database = "postgres") const;
  [[nodiscard]] int proxy_port() const { return base_port_; }
  [[nodiscard]] int node_port(int k) const { return base_port_ + 10 + k - 1; }
  [[nodiscard]] const std::string& dir() const { return dir_; }
  [[nodiscard]] std::string config_path() const { return dir_ + "/pgfleet.yaml"; }
  [[nodiscard]] std::string proxy_log() const { return dir_ + "/proxy.log"; }
  [[nodiscard]] const std::string& superuser_password() const { return password_; }
  // Status, the tail of proxy.log and of node1's log on stderr.
  void dump_logs();

 private:
  std::string tmp_, dir_, password_;
  int base_port_ = 0;
};

// Fixture of a suite that shares one cluster. Derived defines, public and static,
// `std::string cluster_config()` (a pgfleet.yaml fragment, "" = defaults) and may define
// `int cluster_replicas()` (default 0). A cluster that fails to start fails every test.
template <typename Derived>
class ClusterSuite : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    cluster_ = new SharedCluster();
    start_error_ = cluster_->start(Derived::cluster_config(), Derived::cluster_replicas());
  }
  static void TearDownTestSuite() {
    if (cluster_ == nullptr) return;
    std::string problems = cluster_->destroy();
    delete cluster_;
    cluster_ = nullptr;
    if (!problems.empty()) ADD_FAILURE() << problems;
  }
  static std::string cluster_config() { return ""; }
  static int cluster_replicas() { return 0; }

 protected:
  void SetUp() override { ASSERT_TRUE(start_error_.empty()) << "the suite's cluster did not start:\n" << start_error_; }
  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr && start_error_.empty()) cluster_->dump_logs();
  }
  static SharedCluster& cluster() { return *cluster_; }

 private:
  inline static SharedCluster* cluster_ = nullptr;
  inline static std::string start_error_;
};

class PgfleetTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // `pgfleet <args...> --dir <cluster dir>`.
  CmdResult pgfleet(std::vector<std::string> args, std::chrono::seconds timeout = 300s,
                    const std::map<std::string, std::string>& env = {});
  // `pgfleet up --base-port P <extra...> --dir <cluster dir>`.
  CmdResult up(const std::vector<std::string>& extra = {}, std::chrono::seconds timeout = 300s);
  // Adds `lines` ("  name: value\n" each) to the cluster-wide `postgresql:` map of pgfleet.yaml,
  // as an operator edits it before `pgfleet reload`. Use as ASSERT_NO_FATAL_FAILURE(...).
  void add_postgresql_parameters(const std::string& lines);
  // Adds `lines` ("    key: value\n" each) to `node`'s entry of pgfleet.yaml (a tag, say), as an
  // operator edits it before `pgfleet reload`. Use as ASSERT_NO_FATAL_FAILURE(...).
  void add_node_settings(const std::string& node, const std::string& lines);
  // A `nodes:` list for `up --config`: three nodes on this test's ports, `extra[k]` (", key: value")
  // added to node k's entry.
  std::string three_nodes_yaml(const std::map<int, std::string>& extra) const;
  // up that must succeed: use as ASSERT_NO_FATAL_FAILURE(start_cluster(...)).
  void start_cluster(const std::vector<std::string>& extra = {});

  // Parsed `pgfleet status --json`; throws std::runtime_error when the command fails.
  nlohmann::json status_json();
  std::optional<nlohmann::json> try_status_json();
  // A node's status object (throws when the status cannot be read or the node is absent).
  nlohmann::json node_status(const std::string& name);
  // `pgfleet url <args...>`: the printed URI; throws when the command fails.
  std::string url(const std::vector<std::string>& args = {});
  std::string node_url(const std::string& node) { return url({"--node", node}); }

  // Waits until `node` reports `state` ("running", "streaming"); false at the timeout.
  bool wait_state(const std::string& node, const std::string& state, std::chrono::milliseconds timeout = 60s);
  // Waits until the primary (leader) runs and every other node streams.
  bool wait_all_streaming(std::chrono::milliseconds timeout = 60s);

  int node_port(int k) const { return base_port_ + 10 + k - 1; }
  std::string node_dir(const std::string& node) const { return dir_ + "/nodes/" + node; }
  // Points the fixture at another cluster directory (e.g. on a small tmpfs); call before `up`.
  void set_cluster_dir(const std::string& dir) { dir_ = dir; }
  // Extra teardown work, run after `down --purge` (in reverse order of registration).
  void add_cleanup(std::function<void()> fn) { cleanups_.push_back(std::move(fn)); }

  std::string tmp_;  // the test's own 0755 temp directory
  std::string dir_;  // the cluster directory (tmp_/cluster unless set_cluster_dir)
  int base_port_ = 0;

 private:
  void dump_logs();
  std::vector<std::function<void()>> cleanups_;
};

}  // namespace pgfleet::itest
