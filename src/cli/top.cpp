// `pgfleet top`: a terminal dashboard refreshed every second, raw keys, restored terminal on exit.
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

#include "cli/commands.hpp"
#include "cluster/control.hpp"
#include "top/collector.hpp"
#include "util/errors.hpp"

namespace pgfleet::cli {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_resized{false};

// Raw keys, alternate screen, hidden cursor for its lifetime; everything put back by the
// destructor, which also runs when a signal ends the loop (the handlers only set a flag).
class Terminal {
 public:
  Terminal() {
    if (::tcgetattr(STDIN_FILENO, &saved_) != 0) throw UserError("pgfleet top: cannot read the terminal settings");
    termios raw = saved_;
    // No line buffering, no echo, and Ctrl-C / Ctrl-Z arrive as keys, so no signal can leave
    // the terminal raw behind a stopped process.
    raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO | ISIG | IEXTEN);
    raw.c_iflag &= ~static_cast<tcflag_t>(IXON | ICRNL);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
    write_all("\033[?1049h\033[?25l\033[H\033[2J");
  }
  ~Terminal() {
    write_all("\033[0m\033[?25h\033[?1049l");
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_);
  }
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;

  static void write_all(const std::string& text) {
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = ::write(STDOUT_FILENO, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }
  static std::pair<int, int> size() {
    winsize ws{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) return {ws.ws_col, ws.ws_row};
    return {100, 30};
  }

 private:
  termios saved_{};
};

void install_handlers() {
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = true; };
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) ::sigaction(sig, &sa, nullptr);
  struct sigaction resize {};
  resize.sa_handler = [](int) { g_resized = true; };
  sigemptyset(&resize.sa_mask);
  ::sigaction(SIGWINCH, &resize, nullptr);
}

void draw(const top::Snapshot& snap, const top::ViewState& state) {
  auto [width, height] = Terminal::size();
  std::string frame = "\033[H";
  auto lines = top::render(snap, state, width, height, true);
  for (size_t i = 0; i < lines.size(); ++i) frame += lines[i] + "\033[0m\033[K" + (i + 1 < lines.size() ? "\r\n" : "");
  frame += "\033[J";
  Terminal::write_all(frame);
}

}  // namespace

int run_top(const TopOptions& o) {
  become_cluster_owner(o.dir);
  auto c = cluster::Cluster::open(o.dir);
  top::Collector collector(c);
  auto period = std::chrono::milliseconds(static_cast<int>(std::max(0.2, o.interval_seconds) * 1000));
  if (o.once) {
    // Two samples, so TPS has an interval to be measured over.
    (void)collector.collect();
    std::this_thread::sleep_for(period);
    bool color = ::isatty(STDOUT_FILENO) != 0;
    auto lines = top::render(collector.collect(), {}, 120, 60, color);
    // No screen to fill: drop the padding between the last section and the key footer.
    while (lines.size() > 1 && lines[lines.size() - 2].empty()) lines.erase(lines.end() - 2);
    for (const auto& line : lines) std::cout << line << "\n";
    return 0;
  }
  if (::isatty(STDIN_FILENO) == 0 || ::isatty(STDOUT_FILENO) == 0) {
    throw UserError("pgfleet top needs a terminal on stdin and stdout",
                    "use `pgfleet top --once` for one screen as text, or `pgfleet status --json` in scripts");
  }
  install_handlers();
  Terminal term;
  top::ViewState state;
  auto snap = collector.collect();
  draw(snap, state);
  auto next = std::chrono::steady_clock::now() + period;
  while (!g_stop) {
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - std::chrono::steady_clock::now());
    pollfd pfd{STDIN_FILENO, POLLIN, 0};
    int ready = ::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(0, wait.count())));
    bool redraw = false;
    if (ready > 0 && (pfd.revents & (POLLHUP | POLLERR)) != 0) break;  // the terminal went away
    if (ready > 0) {
      char keys[64];
      ssize_t n = ::read(STDIN_FILENO, keys, sizeof keys);
      for (ssize_t i = 0; i < n; ++i) {
        if (!top::handle_key(state, static_cast<unsigned char>(keys[i]))) g_stop = true;
      }
      redraw = n > 0;
    }
    if (g_resized.exchange(false)) redraw = true;
    if (std::chrono::steady_clock::now() >= next) {
      snap = collector.collect();
      next = std::chrono::steady_clock::now() + period;
      redraw = true;
    }
    if (redraw && !g_stop) draw(snap, state);
  }
  return 0;
}

}  // namespace pgfleet::cli
