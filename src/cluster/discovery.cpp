// Discovery via the DCS, data directories and agent pidfile locks.
#include "cluster/discovery.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <string>

#include "dcs/member.hpp"
#include "postgres/instance.hpp"
#include "util/fs.hpp"

namespace pgfleet::cluster {

std::string primary_from_data(const ClusterConfig& config, const Layout& layout) {
  // After a failover an old primary's data may still say "primary" until it is rewound: the
  // newest timeline is the rightful one (ties: config order).
  std::string best;
  int best_timeline = -1;
  for (const auto& n : config.nodes) {
    if (!postgres::has_data(layout, n.name) || postgres::is_standby(layout, n.name)) continue;
    int timeline = postgres::data_timeline(config.bindir, layout, n.name);
    if (timeline > best_timeline) {
      best = n.name;
      best_timeline = timeline;
    }
  }
  return best;
}

std::string discover_primary(const ClusterConfig& config, const Layout& layout, dcs::Dcs& dcs) {
  auto leader = dcs.get(dcs::keys::kLeader);
  if (leader.ok() && leader.value() && config.find_node(leader.value()->value)) return leader.value()->value;
  return primary_from_data(config, layout);
}

pid_t agent_pid(const Layout& layout, const std::string& node) {
  int fd = ::open(layout.agent_pidfile(node).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  pid_t pid = 0;
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0) {
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) pid = static_cast<pid_t>(std::atol(buf));
    if (pid <= 0) pid = 1;  // locked but not yet written: running all the same
  }
  ::close(fd);
  return pid;
}

int lock_agent_pidfile(const Layout& layout, const std::string& node, pid_t& holder) {
  int fd = ::open(layout.agent_pidfile(node).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    if (::pread(fd, buf, sizeof buf - 1, 0) > 0) holder = static_cast<pid_t>(std::atol(buf));
    ::close(fd);
    return -1;
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string connect_host(const ClusterConfig& config) {
  const auto& a = config.listen_address;
  if (a == "*" || a == "0.0.0.0" || a.find(',') != std::string::npos) return "127.0.0.1";
  return a;
}

}  // namespace pgfleet::cluster
