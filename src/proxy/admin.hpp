// The admin console: the virtual database `pgfleet` answers SHOW/PAUSE/RESUME/RELOAD/KILL/SHUTDOWN.
#pragma once

#include <string_view>

#include "protocol/buffer.hpp"

namespace pgfleet::proxy {

class Worker;

// The reply to one admin command (result set or CommandComplete, or an ErrorResponse), without
// the ReadyForQuery that follows it. Figures come from the workers' snapshots (≤ 1 s old).
protocol::Bytes run_admin_command(Worker& worker, std::string_view sql);

}  // namespace pgfleet::proxy
