#include "ha/callbacks.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <thread>

#include "util/log.hpp"
#include "util/process.hpp"

namespace pgfleet::ha {

std::map<std::string, std::string> callback_environment(const CallbackEvent& e) {
  return {{"PGFLEET_EVENT", e.name},           {"PGFLEET_NODE", e.node},
          {"PGFLEET_ROLE", e.role},            {"PGFLEET_OLD_ROLE", e.old_role},
          {"PGFLEET_OLD_PRIMARY", e.old_primary}, {"PGFLEET_NEW_PRIMARY", e.new_primary},
          {"PGFLEET_REASON", e.reason},        {"PGFLEET_CLUSTER", e.cluster}};
}

void run_callback_async(const std::string& command, const CallbackEvent& event, const std::string& log_path,
                        std::chrono::seconds timeout) {
  if (command.empty()) return;
  pid_t pid = process::spawn({"/bin/sh", "-c", command}, log_path, callback_environment(event));
  if (pid <= 0) {
    log::warn("callback {} could not start: {}", event.name, command);
    return;
  }
  log::info("callback {} started (pid {}): {}", event.name, pid, command);
  std::thread([pid, name = event.name, timeout] {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(-pid, SIGKILL);  // the whole group: sh and what it started
        ::waitpid(pid, &status, 0);
        log::warn("callback {} (pid {}) killed after {} s", name, pid, timeout.count());
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) log::info("callback {} (pid {}) done", name, pid);
    else log::warn("callback {} (pid {}) failed with status {}", name, pid, status);
  }).detach();
}

}  // namespace pgfleet::ha
