// `pgfleet reload`: every agent and the proxy of this host read pgfleet.yaml again, as Patroni's
// `reload` after `edit-config`. The agents rewrite pgfleet.conf and reload their servers; the
// command waits for that and names what PostgreSQL did not take: parameters that need a restart
// (pending_restart) and values it rejected (pg_file_settings errors).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <signal.h>

#include <chrono>
#include <iostream>
#include <thread>

#include "cli/commands.hpp"
#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "postgres/instance.hpp"
#include "postgres/pgconn.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"

namespace pgfleet::cli {

namespace {

using Clock = std::chrono::steady_clock;

// The server's configuration as loaded: when, which settings wait for a restart, which lines it
// refused.
struct Loaded {
  std::string load_time;
  std::vector<std::string> pending_restart;
  std::vector<std::string> errors;
};

Result<Loaded> loaded(const std::string& conninfo) {
  auto conn = postgres::PgConn::connect(conninfo);
  if (!conn) return make_error(conn.error());
  Loaded out;
  auto t = conn->query("SELECT pg_conf_load_time()::text");
  if (!t || t->empty()) return make_error(t ? std::string("no answer") : t.error());
  out.load_time = t->front()[0].value_or("");
  if (auto r = conn->query("SELECT name FROM pg_settings WHERE pending_restart ORDER BY name"); r) {
    for (const auto& row : *r) out.pending_restart.push_back(row[0].value_or(""));
  }
  // (A setting that waits for a restart is listed there too, as "could not be applied".)
  if (auto r = conn->query("SELECT coalesce(f.name, '') || ' (' || f.sourcefile || ':' || f.sourceline || '): ' || "
                           "f.error FROM pg_file_settings f WHERE f.error IS NOT NULL AND NOT EXISTS "
                           "(SELECT 1 FROM pg_settings s WHERE s.name = f.name AND s.pending_restart) "
                           "ORDER BY f.sourcefile, f.sourceline");
      r) {
    for (const auto& row : *r) out.errors.push_back(row[0].value_or(""));
  }
  return out;
}

// "; pending restart (`pgfleet restart node1`): shared_buffers", or "" when none waits.
std::string pending_restart(const std::string& node, const Loaded& l) {
  if (l.pending_restart.empty()) return "";
  return fmt::format("; pending restart (`pgfleet restart {}`): {}", node, fmt::join(l.pending_restart, ", "));
}

}  // namespace

int run_reload(const std::string& dir, int timeout_seconds) {
  become_cluster_owner(dir);
  // Opening the cluster reads pgfleet.yaml: a file that does not load stops here, with nothing
  // signaled (the agents would refuse it too, and keep their settings).
  auto c = cluster::Cluster::open(dir);
  if (!c.config.etcd.endpoints.empty()) {
    std::cout << "note: only this host's agents and proxy are told; run `pgfleet reload` on each host "
                 "after copying the file there\n";
  }
  int failed = 0;
  struct Waiting {
    const cluster::NodeConfig* node;
    std::string conninfo, data_dir, conf_before, load_before;
    // What the agent writes for the server: its settings, and its pg_hba.conf.
    std::string managed() const {
      return fs::read_file(data_dir + "/pgfleet.conf").value_or("") + fs::read_file(data_dir + "/pg_hba.conf").value_or("");
    }
  };
  std::vector<Waiting> waiting;
  for (const auto& node : c.config.nodes) {
    pid_t agent = cluster::agent_pid(c.layout, node.name);
    if (agent <= 1) continue;  // another host's node, or not running: it reads the file when it starts
    Waiting w{&node, postgres::local_conninfo(c.layout, c.config, node), c.layout.data_dir(node.name), "", ""};
    w.conf_before = w.managed();
    if (auto l = loaded(w.conninfo); l) w.load_before = l->load_time;
    if (::kill(agent, SIGHUP) != 0) {
      std::cout << node.name << ": cannot signal its agent (pid " << agent << ")\n";
      ++failed;
      continue;
    }
    waiting.push_back(std::move(w));
  }
  if (pid_t proxy = cluster::agent_pid(c.layout, "proxy"); proxy > 1 && ::kill(proxy, SIGHUP) == 0) {
    std::cout << "proxy: told to reload (its log names settings that need `pgfleet restart proxy`)\n";
  }
  if (waiting.empty() && failed == 0) {
    std::cout << "no agent runs on this host: the nodes read pgfleet.yaml when they start\n";
    return 0;
  }
  // An agent reloads at once (SIGHUP ends its sleep) and rewrites pgfleet.conf in the same loop;
  // its server then reloads when the file changed.
  const auto settle = Clock::now() + std::chrono::seconds(2 * c.config.loop_wait_seconds + 1);
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_seconds);
  int pending = 0;  // nodes with parameters waiting for a restart
  for (auto& w : waiting) {
    const std::string& name = w.node->name;
    while (true) {
      const bool conf_changed = w.managed() != w.conf_before;
      auto now_loaded = loaded(w.conninfo);
      if (now_loaded && conf_changed && now_loaded->load_time != w.load_before) {
        std::cout << name << ": reloaded" << pending_restart(name, *now_loaded) << "\n";
        pending += !now_loaded->pending_restart.empty();
        for (const auto& e : now_loaded->errors) std::cout << name << ": rejected " << e << "\n";
        if (!now_loaded->errors.empty()) {
          std::cout << name << ": the server log says why (`pgfleet logs " << name << "`); it keeps the values it had\n";
          ++failed;
        }
        break;
      }
      if (!now_loaded && Clock::now() > settle) {  // stopped, or starting: the file is read at start
        std::cout << name << ": its server does not answer (" << now_loaded.error()
                  << "); it reads the new settings when it starts\n";
        break;
      }
      if (!conf_changed && Clock::now() > settle) {
        std::cout << name << ": unchanged" << (now_loaded ? pending_restart(name, *now_loaded) : "") << "\n";
        pending += now_loaded && !now_loaded->pending_restart.empty();
        break;
      }
      if (Clock::now() > deadline) {
        std::cout << name << ": did not reload within " << timeout_seconds << " s"
                  << (now_loaded ? "" : " (" + now_loaded.error() + ")") << "; see `pgfleet logs " << name
                  << " --agent`\n";
        ++failed;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  if (pending > 1)
    std::cout << "restart them all with `pgfleet restart --pending` (replicas first, the primary last, behind a "
                 "proxy pause)\n";
  return failed == 0 ? 0 : 1;
}

}  // namespace pgfleet::cli
