// The wall clock in Unix milliseconds: what the history, backups and metrics record.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace pgfleet {

inline int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A span for people, in its largest sensible unit: 45s, 12m, 5h, 3d ("-" when not positive).
inline std::string human_duration(int64_t seconds) {
  if (seconds <= 0) return "-";
  if (seconds < 120) return std::to_string(seconds) + "s";
  if (seconds < 7200) return std::to_string(seconds / 60) + "m";
  if (seconds < 172800) return std::to_string(seconds / 3600) + "h";
  return std::to_string(seconds / 86400) + "d";
}

}  // namespace pgfleet
