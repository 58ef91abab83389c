// Integration-test harness: every test drives the real pgfleet binary against a real PostgreSQL
// cluster in its own temporary directory, on ports picked at run time.
//
//   PgfleetTest       fixture: temp dir (0755, reachable by the postgres user) + free port base;
//                     TearDown prints the nodes' logs on failure and always runs `down --purge`.
//   pgfleet(args)     runs the binary with `--dir <cluster dir>` appended; exit code + output.
//   status_json()     `pgfleet status --json`, parsed.
//   sql(uri, query)   rows through libpq (PgConn), with a deadline on every statement.
//   eventually(p, t)  polls p until it holds or t passes; never a fixed sleep.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
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

// Runs the pgfleet binary under test with exactly `args`.
CmdResult run_pgfleet(const std::vector<std::string>& args, std::chrono::seconds timeout = 300s,
                      const std::map<std::string, std::string>& env = {});

// Polls `predicate` every `interval` until it returns true (-> true) or `timeout` passes (-> false).
// Exceptions thrown by the predicate count as "not yet".
bool eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = 100ms);

// mkdtemp under /tmp, chmod 0755 so the postgres OS user can traverse it.
std::string make_temp_dir(const std::string& prefix);
// A random P in [20000, 60000) such that P..P+99 are all free on 127.0.0.1.
int pick_base_port();
// True when nothing listens on 127.0.0.1:port (a bind + listen succeeds).
bool port_is_free(int port);

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

class PgfleetTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // `pgfleet <args...> --dir <cluster dir>`.
  CmdResult pgfleet(std::vector<std::string> args, std::chrono::seconds timeout = 300s,
                    const std::map<std::string, std::string>& env = {});
  // `pgfleet up --base-port P <extra...> --dir <cluster dir>`.
  CmdResult up(const std::vector<std::string>& extra = {}, std::chrono::seconds timeout = 300s);
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
