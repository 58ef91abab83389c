// `pgfleet down`: stop every agent (each stops its postmaster with a fast shutdown); --purge deletes the data.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "cli/commands.hpp"
#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "postgres/instance.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"

namespace pgfleet::cli {

int run_down(const std::string& dir, bool purge) {
  // As root, --purge stays root so it can also remove the directory itself; signals and
  // deletion need no other identity.
  if (!(purge && ::geteuid() == 0)) become_cluster_owner(dir);
  auto c = cluster::Cluster::open(dir);
  cluster::CommandLock lock(c.layout);
  // The proxy first: its clients get a clean goodbye instead of server errors.
  int running = cluster::agent_pid(c.layout, "proxy") != 0 ? 1 : 0;
  cluster::stop_proxy(c.layout, std::chrono::seconds(c.config.proxy.shutdown_timeout_s + 5));
  // Signal every agent first so the nodes stop in parallel, then wait for each.
  for (const auto& n : c.config.nodes) {
    if (pid_t pid = cluster::agent_pid(c.layout, n.name); pid > 1) {
      ::kill(pid, SIGTERM);
      ++running;
    } else if (postgres::running_postmaster(c.layout, n.name) != 0) {
      ++running;
    }
  }
  std::vector<std::string> stuck;
  for (const auto& n : c.config.nodes) {
    if (!cluster::stop_agent(c, n.name, std::chrono::seconds(90))) stuck.push_back(n.name);
  }
  if (!stuck.empty()) {
    std::string list;
    for (const auto& s : stuck) list += " " + s;
    throw UserError("these nodes did not stop within 90 s:" + list,
                    "look at `pgfleet logs <node> --agent`; run `pgfleet down` again to retry");
  }
  std::cout << (running ? "cluster stopped" : "cluster was not running") << " (" << c.layout.root() << ")\n";
  if (purge) {
    std::string socket_dir = c.layout.socket_dir();
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(c.layout.root(), ec)) {
      std::filesystem::remove_all(entry.path(), ec);
      if (ec) throw UserError("cannot remove " + entry.path().string() + ": " + ec.message());
    }
    std::filesystem::remove(c.layout.root(), ec);  // may be refused when its parent is not ours
    if (socket_dir != c.layout.run_dir()) std::filesystem::remove_all(socket_dir, ec);
    std::cout << "all data deleted\n";
  } else {
    std::cout << "data kept; `pgfleet up --dir " << c.layout.root() << "` starts it again\n";
  }
  return 0;
}

}  // namespace pgfleet::cli
