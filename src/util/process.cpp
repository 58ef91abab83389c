// Process helpers on fork/exec; no shell is involved, so arguments are never re-parsed.
#include "util/process.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace pgfleet::process {
namespace {

using Clock = std::chrono::steady_clock;

// Everything exec needs, built before fork: the child of a multithreaded process may only make
// async-signal-safe calls until exec (another thread may hold malloc's or setenv's lock).
class ExecPlan {
 public:
  ExecPlan(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) : args_(argv) {
    for (char** e = environ; *e != nullptr; ++e) {
      std::string_view entry(*e);
      auto name = entry.substr(0, entry.find('='));
      if (!env.contains(std::string(name))) env_.emplace_back(entry);
    }
    for (const auto& [k, v] : env) env_.push_back(k + "=" + v);
    for (auto& a : args_) argv_.push_back(a.data());
    argv_.push_back(nullptr);
    for (auto& e : env_) envp_.push_back(e.data());
    envp_.push_back(nullptr);
    failure_ = "cannot execute " + (args_.empty() ? std::string() : args_[0]) + ": ";
  }

  // In the child: exec, or report the failure on stderr (the log or the pipe) and exit 127.
  [[noreturn]] void exec() const {
    if (!args_.empty()) ::execvpe(argv_[0], argv_.data(), envp_.data());
    const char* reason = ::strerror(errno);  // glibc's table: no allocation for known errors
    (void)!::write(STDERR_FILENO, failure_.data(), failure_.size());
    (void)!::write(STDERR_FILENO, reason, std::strlen(reason));
    (void)!::write(STDERR_FILENO, "\n", 1);
    ::_exit(127);
  }

 private:
  std::vector<std::string> args_, env_;
  std::vector<char*> argv_, envp_;
  std::string failure_;
};

void redirect_to_log(const std::string& log_path) {
  int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull >= 0) {
    ::dup2(devnull, STDIN_FILENO);
    ::close(devnull);
  }
  int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (log >= 0) {
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    ::close(log);
  }
}

void close_inherited_fds() {
  for (int fd = 3; fd < 1024; ++fd) ::close(fd);
}

}  // namespace

RunResult run(const std::vector<std::string>& argv, const RunOptions& options) {
  RunResult result;
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    result.output = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  const ExecPlan plan(argv, options.env);
  pid_t pid = ::fork();
  if (pid < 0) {
    result.output = std::string("fork: ") + std::strerror(errno);
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    return result;
  }
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, STDIN_FILENO);
    ::dup2(pipefd[1], STDOUT_FILENO);
    ::dup2(pipefd[1], STDERR_FILENO);
    if (!options.working_directory.empty() && ::chdir(options.working_directory.c_str()) != 0) {
      ::_exit(126);
    }
    ::setpgid(0, 0);  // a timeout kills the whole group (pg_basebackup starts helpers)
    plan.exec();
  }
  ::close(pipefd[1]);
  auto deadline = Clock::now() + options.timeout;
  char buf[8192];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      ::kill(-pid, SIGKILL);
      result.timed_out = true;
      break;
    }
    pollfd pfd{pipefd[0], POLLIN, 0};
    int rc = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (rc < 0 && errno != EINTR) break;
    if (rc <= 0) continue;
    ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buf, static_cast<size_t>(n));
  }
  ::close(pipefd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!result.timed_out) {
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return result;
}

pid_t spawn(const std::vector<std::string>& argv, const std::string& log_path,
            const std::map<std::string, std::string>& env) {
  const ExecPlan plan(argv, env);
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::setpgid(0, 0);
  redirect_to_log(log_path);
  close_inherited_fds();
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  plan.exec();
}

pid_t spawn_daemon(const std::vector<std::string>& argv, const std::string& log_path) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return -1;
  const ExecPlan plan(argv, {});
  pid_t first = ::fork();
  if (first < 0) return -1;
  if (first == 0) {
    ::setsid();
    pid_t second = ::fork();
    if (second != 0) {
      (void)!::write(pipefd[1], &second, sizeof second);
      ::_exit(second < 0 ? 1 : 0);
    }
    ::close(pipefd[0]);
    redirect_to_log(log_path);
    ::chdir("/");
    close_inherited_fds();
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    plan.exec();
  }
  ::close(pipefd[1]);
  pid_t daemon_pid = -1;
  if (::read(pipefd[0], &daemon_pid, sizeof daemon_pid) != sizeof daemon_pid) daemon_pid = -1;
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(first, &status, 0);
  return daemon_pid;
}

bool alive(pid_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  // A zombie child still answers kill(0); /proc tells the truth.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content;
  std::getline(stat, content);
  auto close = content.rfind(')');
  if (close != std::string::npos && close + 2 < content.size() && content[close + 2] == 'Z') return false;
  return true;
}

bool wait_gone(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (alive(pid)) {
    ::waitpid(pid, nullptr, WNOHANG);  // reap if it is our child
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

std::string name_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

std::string self_exe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "pgfleet";
  std::string path(buf, static_cast<size_t>(n));
  // After a rebuild or upgrade replaced the binary, the link reads "<path> (deleted)"; the new
  // file at <path> is the one to run.
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.size() > kDeleted.size() && path.ends_with(kDeleted)) path.resize(path.size() - kDeleted.size());
  return path;
}

namespace {
std::optional<User> from_passwd(const passwd* pw) {
  if (pw == nullptr) return std::nullopt;
  return User{pw->pw_name, pw->pw_uid, pw->pw_gid, pw->pw_dir ? pw->pw_dir : ""};
}
}  // namespace

std::optional<User> lookup_user(const std::string& name) { return from_passwd(::getpwnam(name.c_str())); }
std::optional<User> user_of_uid(uid_t uid) { return from_passwd(::getpwuid(uid)); }

void become(const User& user) {
  if (::getuid() == user.uid && ::geteuid() == user.uid) return;
  if (::initgroups(user.name.c_str(), user.gid) != 0 || ::setgid(user.gid) != 0 ||
      ::setuid(user.uid) != 0) {
    throw std::runtime_error("cannot switch to user " + user.name + ": " + std::strerror(errno));
  }
  ::setenv("HOME", user.home.c_str(), 1);
  ::setenv("USER", user.name.c_str(), 1);
}

bool user_can_access(const User& user, const std::string& path) {
  pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    try {
      become(user);
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(::access(path.c_str(), R_OK | X_OK) == 0 ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace pgfleet::process
