// `pgfleet status`: the node table, or the JSON interface, once or refreshed with --watch.
#include <signal.h>

#include <atomic>
#include <iostream>
#include <thread>

#include "cli/commands.hpp"
#include "cluster/control.hpp"

namespace pgfleet::cli {
namespace {
std::atomic<bool> g_interrupted{false};
}

int run_status(const StatusOptions& o) {
  become_cluster_owner(o.dir);
  auto c = cluster::Cluster::open(o.dir);
  auto print = [&] {
    auto status = c.status();
    if (o.json) std::cout << cluster::to_json(status).dump(2) << std::endl;
    else std::cout << cluster::render_table(status) << std::flush;
  };
  if (!o.watch) {
    print();
    return 0;
  }
  ::signal(SIGINT, [](int) { g_interrupted = true; });
  auto period = std::chrono::milliseconds(static_cast<int>(std::max(0.1, o.interval_seconds) * 1000));
  while (!g_interrupted) {
    if (!o.json) std::cout << "\033[H\033[2J";
    print();
    for (auto slept = std::chrono::milliseconds(0); slept < period && !g_interrupted;
         slept += std::chrono::milliseconds(50)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return 0;
}

}  // namespace pgfleet::cli
