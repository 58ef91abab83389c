// `pgfleet top` in a real terminal: tmux runs it detached, send-keys presses keys, capture-pane
// reads the screen a person would see.
#include <signal.h>
#include <unistd.h>

#include <regex>

#include "harness.hpp"
#include "util/process.hpp"

namespace pgfleet::itest {
namespace {

// A private tmux server (its own socket), so nothing else running tmux on the machine is touched.
class Tmux {
 public:
  explicit Tmux(const std::string& socket_dir) : socket_(socket_dir + "/tmux.sock") {}
  ~Tmux() { (void)run({"kill-server"}); }
  Tmux(const Tmux&) = delete;
  Tmux& operator=(const Tmux&) = delete;

  process::RunResult run(std::vector<std::string> args) const {
    std::vector<std::string> argv{"tmux", "-S", socket_};
    argv.insert(argv.end(), args.begin(), args.end());
    process::RunOptions o;
    o.timeout = std::chrono::seconds(20);
    return process::run(argv, o);
  }
  // A detached 140x40 session running `command` through sh.
  void start(const std::string& session, const std::string& command) const {
    auto r = run({"new-session", "-d", "-s", session, "-x", "140", "-y", "40", command});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::string screen(const std::string& session) const { return run({"capture-pane", "-p", "-t", session}).output; }
  void keys(const std::string& session, const std::string& keys) const {
    auto r = run({"send-keys", "-t", session, "-l", keys});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

 private:
  std::string socket_;
};

// The line of the node table that starts with `node`, "" when absent.
std::string node_line(const std::string& screen, const std::string& node) {
  std::smatch m;
  std::regex re("(^|\\n)(" + node + " [^\\n]*)");
  return std::regex_search(screen, m, re) ? m[2].str() : "";
}

class TopTest : public PgfleetTest {
 protected:
  std::string top_command(const std::string& pid_file = "") {
    std::string exec = std::string(PGFLEET_BINARY) + " top --dir " + dir_;
    std::string prefix = pid_file.empty() ? "" : "echo $$ > " + pid_file + "; exec ";
    // After top: its exit code and whether the terminal is back in canonical, echoing mode.
    return "sh -c '" + prefix + exec + "'; echo TOP-EXITED rc=$? tty: $(stty -a | tr ' ' '\\n' | grep -x -e icanon "
           "-e echo | tr '\\n' ' ')TOP-END; sleep 120";
  }
};

TEST_F(TopTest, ShowsNodesAndRolesSwitchesViewsFollowsASwitchoverAndQuitsCleanly) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  Tmux tmux(tmp_);
  ASSERT_NO_FATAL_FAILURE(tmux.start("top", top_command()));
  std::string screen;
  ASSERT_TRUE(eventually(
      [&] {
        screen = tmux.screen("top");
        return node_line(screen, "node1").find("PRIMARY") != std::string::npos &&
               node_line(screen, "node2").find("replica") != std::string::npos &&
               node_line(screen, "node3").find("streaming") != std::string::npos;
      },
      15s))
      << screen;
  EXPECT_NE(screen.find("primary node1"), std::string::npos) << screen;
  // Host figures from the agents: CPU, memory and disk columns hold numbers (TEMP only with a
  // thermal zone), within a few refreshes.
  ASSERT_TRUE(eventually([&] {
    screen = tmux.screen("top");
    return std::regex_search(node_line(screen, "node1"), std::regex(R"( \d+ +\d+ +\d+ +(-|\d+C)$)"));
  }, 10s)) << screen;
  EXPECT_NE(screen.find("PROXY running"), std::string::npos) << screen;
  EXPECT_NE(screen.find("q quit"), std::string::npos) << screen;

  // Views: 3 = events only, 2 = proxy pools, 1 = back to the overview.
  tmux.keys("top", "3");
  ASSERT_TRUE(eventually([&] {
    screen = tmux.screen("top");
    return screen.find("view:events") != std::string::npos && screen.find("NODES") == std::string::npos;
  }, 5s)) << screen;
  tmux.keys("top", "2");
  ASSERT_TRUE(eventually([&] {
    screen = tmux.screen("top");
    return screen.find("view:pools") != std::string::npos && screen.find("CL_ACTIVE") != std::string::npos;
  }, 5s)) << screen;
  tmux.keys("top", "1");
  // Sorting: s moves to "role" (primary first), r reverses it (primary last).
  tmux.keys("top", "s");
  ASSERT_TRUE(eventually([&] { return tmux.screen("top").find("sorted by role)") != std::string::npos; }, 5s))
      << tmux.screen("top");
  tmux.keys("top", "r");
  ASSERT_TRUE(eventually([&] {
    screen = tmux.screen("top");
    auto p = screen.find("\nnode1 "), r2 = screen.find("\nnode2 "), r3 = screen.find("\nnode3 ");
    return screen.find("sorted by role, desc)") != std::string::npos && p != std::string::npos &&
           r2 != std::string::npos && r3 != std::string::npos && p > r2 && p > r3;
  }, 5s)) << screen;

  // A switchover shows up within a few seconds: new primary in the table, the change in events.
  auto sw = pgfleet({"switchover", "--to", "node2"}, 120s);
  ASSERT_TRUE(sw.ok()) << sw.output;
  auto switched = std::chrono::steady_clock::now();
  ASSERT_TRUE(eventually([&] {
    screen = tmux.screen("top");
    return node_line(screen, "node2").find("PRIMARY") != std::string::npos &&
           screen.find("primary node2") != std::string::npos &&
           screen.find("switchover from node1 to node2") != std::string::npos;
  }, 5s)) << screen;
  std::cout << "top showed the new primary "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - switched).count()
            << " ms after `pgfleet switchover` returned\n";

  // q quits with status 0 and leaves the terminal as it found it.
  tmux.keys("top", "q");
  ASSERT_TRUE(eventually([&] { return (screen = tmux.screen("top")).find("TOP-END") != std::string::npos; }, 5s))
      << screen;
  EXPECT_NE(screen.find("TOP-EXITED rc=0 tty: icanon echo TOP-END"), std::string::npos) << screen;
  EXPECT_EQ(screen.find("NODES"), std::string::npos) << "the alternate screen was not left:\n" << screen;
}

TEST_F(TopTest, ASignalRestoresTheTerminalAndNoTerminalIsAClearError) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  Tmux tmux(tmp_);
  std::string pid_file = tmp_ + "/top.pid";
  ASSERT_NO_FATAL_FAILURE(tmux.start("top", top_command(pid_file)));
  std::string screen;
  ASSERT_TRUE(eventually([&] { return node_line(screen = tmux.screen("top"), "node1").find("PRIMARY") != std::string::npos; },
                         15s))
      << screen;
  pid_t pid = static_cast<pid_t>(std::stol(read_text(pid_file)));
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  ASSERT_TRUE(eventually([&] { return (screen = tmux.screen("top")).find("TOP-END") != std::string::npos; }, 5s))
      << screen;
  EXPECT_NE(screen.find("TOP-EXITED rc=0 tty: icanon echo TOP-END"), std::string::npos) << screen;

  // Without a terminal: a message saying what to use instead; --once prints one screen.
  auto r = pgfleet({"top"}, 30s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("needs a terminal"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--once"), std::string::npos) << r.output;
  auto once = pgfleet({"top", "--once"}, 30s);
  ASSERT_TRUE(once.ok()) << once.output;
  EXPECT_NE(node_line(once.output, "node1").find("PRIMARY"), std::string::npos) << once.output;
  EXPECT_EQ(once.output.find("\033["), std::string::npos) << "no colour codes when not on a terminal";
}

}  // namespace
}  // namespace pgfleet::itest
