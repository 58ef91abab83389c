// User callbacks (`callbacks:` in pgfleet.yaml): shell commands run on HA events, in the
// background with a timeout, so a slow or hanging hook never delays the HA loop.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace pgfleet::ha {

struct CallbackEvent {
  std::string name;         // "on_role_change" | "on_failover"
  std::string node;         // the node whose agent runs it
  std::string role;         // its role now: primary | replica
  std::string old_role;     // its role before ("" when unknown)
  std::string old_primary;  // "" when unknown
  std::string new_primary;
  std::string reason;       // why (the decision's reason)
  std::string cluster;
};

// The environment the command sees: PGFLEET_EVENT, PGFLEET_NODE, PGFLEET_ROLE, PGFLEET_OLD_ROLE,
// PGFLEET_OLD_PRIMARY, PGFLEET_NEW_PRIMARY, PGFLEET_REASON, PGFLEET_CLUSTER.
std::map<std::string, std::string> callback_environment(const CallbackEvent& event);

// Starts `command` with /bin/sh -c in its own process group, output appended to `log_path`, and
// returns at once; a detached thread waits for it, logs how it ended and kills the group after
// `timeout`. An empty command does nothing.
void run_callback_async(const std::string& command, const CallbackEvent& event, const std::string& log_path,
                        std::chrono::seconds timeout);

}  // namespace pgfleet::ha
