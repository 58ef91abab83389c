// The admin console: the virtual database `pgfleet` answers SHOW/PAUSE/RESUME/RELOAD/KILL/SHUTDOWN.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "protocol/buffer.hpp"
#include "proxy/stats.hpp"

namespace pgfleet::proxy {

class Worker;
struct ProxyShared;

// The reply to one admin command (result set or CommandComplete, or an ErrorResponse), without
// the ReadyForQuery that follows it. Figures come from the workers' snapshots (≤ 1 s old).
protocol::Bytes run_admin_command(Worker& worker, std::string_view sql);

// Pool rows of every worker's last snapshot summed per (database, user): SHOW POOLS/STATS and
// the proxy's /metrics.
std::map<std::pair<std::string, std::string>, PoolRow> merged_pools(ProxyShared& shared);

}  // namespace pgfleet::proxy
