// `pgfleet logs <node>`: the tail of a node's PostgreSQL (or agent) log, optionally followed.
#include <signal.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli/commands.hpp"
#include "cluster/control.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"

namespace pgfleet::cli {
namespace {
std::atomic<bool> g_interrupted{false};
}

int run_logs(const LogsOptions& o) {
  become_cluster_owner(o.dir);
  auto c = cluster::Cluster::open(o.dir);
  if (!c.config.find_node(o.node)) throw UserError("no node named '" + o.node + "' in " + c.layout.root());
  std::string path = o.agent ? c.layout.agent_log(o.node) : c.layout.postgres_log(o.node);
  if (!fs::exists(path)) throw UserError("no log yet at " + path, "the node has not been started");
  std::cout << fs::tail(path, o.lines) << std::flush;
  if (!o.follow) return 0;
  ::signal(SIGINT, [](int) { g_interrupted = true; });
  std::ifstream in(path);
  in.seekg(0, std::ios::end);
  std::string line;
  while (!g_interrupted) {
    if (std::getline(in, line)) {
      std::cout << line << "\n" << std::flush;
    } else {
      in.clear();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  return 0;
}

}  // namespace pgfleet::cli
