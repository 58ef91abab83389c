// Agent: supervises one node's postmaster and publishes its state to the DCS, in a loop.
#pragma once

#include <string>

namespace pgfleet::ha {

struct AgentOptions {
  std::string directory;  // cluster directory
  std::string node;       // node name in pgfleet.yaml
};

// Runs until SIGTERM/SIGINT (then stops PostgreSQL with a fast shutdown and returns 0).
// SIGHUP re-reads pgfleet.yaml; SIGUSR1 restarts the postmaster. Returns non-zero when it
// cannot start at all (config unreadable, node unknown, another agent running the node).
int run_agent(const AgentOptions& options);

}  // namespace pgfleet::ha
