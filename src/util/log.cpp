// Logging to stderr: agents have stderr redirected to their log file, CLI commands to the terminal.
#include "util/log.hpp"

#include <sys/time.h>

#include <cstdio>
#include <ctime>
#include <mutex>

namespace pgfleet::log {
namespace {
Level g_level = Level::Info;
std::string g_component = "pgfleet";
std::mutex g_mutex;

const char* name(Level level) {
  switch (level) {
    case Level::Debug: return "DEBUG";
    case Level::Info: return "INFO";
    case Level::Warn: return "WARN";
    case Level::Error: return "ERROR";
  }
  return "?";
}
}  // namespace

void set_level(Level level) { g_level = level; }

bool enabled(Level level) { return level >= g_level; }
void set_component(std::string component) { g_component = std::move(component); }

void write(Level level, std::string_view message) {
  if (level < g_level) return;
  timeval tv{};
  gettimeofday(&tv, nullptr);
  tm local{};
  localtime_r(&tv.tv_sec, &local);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
  std::lock_guard lock(g_mutex);
  fmt::print(stderr, "{}.{:03d} {} [{}] {}\n", stamp, static_cast<int>(tv.tv_usec / 1000), name(level),
             g_component, message);
  std::fflush(stderr);
}

}  // namespace pgfleet::log
