// Logging: one line per event, with a timestamp, a level and the component it comes from.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace pgfleet::log {

enum class Level { Debug, Info, Warn, Error };

void set_level(Level level);
// The component name printed on every line ("agent node2", "up"); set once per process.
void set_component(std::string component);
void write(Level level, std::string_view message);
[[nodiscard]] bool enabled(Level level);

template <class... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  // Not formatted unless printed: the proxy logs every client's close at this level.
  if (enabled(Level::Debug)) write(Level::Debug, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::Info, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::Warn, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::Error, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace pgfleet::log
