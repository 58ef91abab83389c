// Child processes: run-and-wait with captured output, detached daemons, identity and privileges.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pgfleet::process {

struct RunOptions {
  std::map<std::string, std::string> env;  // added to (or replacing in) the inherited environment
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  std::string working_directory;           // empty = inherit
};

struct RunResult {
  int exit_code = -1;      // -1 when it could not start or was killed at the timeout
  std::string output;      // stdout and stderr interleaved
  bool timed_out = false;
};

// Runs argv[0] (looked up in PATH when it has no slash) and waits for it.
RunResult run(const std::vector<std::string>& argv, const RunOptions& options = {});

// Starts argv as a child with stdin from /dev/null and stdout+stderr appended to `log_path`,
// in its own process group. Returns its pid (or -1 with errno set).
pid_t spawn(const std::vector<std::string>& argv, const std::string& log_path,
            const std::map<std::string, std::string>& env = {});

// Like spawn, but detached from this process (double fork + setsid): it survives our exit and
// is reparented to init. Returns the daemon's pid, or -1.
pid_t spawn_daemon(const std::vector<std::string>& argv, const std::string& log_path);

bool alive(pid_t pid);
// Polls until `pid` is gone (works for non-children). Returns false at the timeout.
bool wait_gone(pid_t pid, std::chrono::milliseconds timeout);
// Name of a running process (from /proc/<pid>/comm), or "".
std::string name_of(pid_t pid);
std::string self_exe();

struct User {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
};
std::optional<User> lookup_user(const std::string& name);
std::optional<User> user_of_uid(uid_t uid);
// setgroups/setgid/setuid to `user`, for good; throws std::runtime_error.
void become(const User& user);
// True if `user` could open `path` for reading and traverse into it (checked in a child process
// that takes the user's identity, so every parent directory's permissions count).
bool user_can_access(const User& user, const std::string& path);

}  // namespace pgfleet::process
