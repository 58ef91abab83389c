// The wall clock in Unix milliseconds: what the history, backups and metrics record.
#pragma once

#include <chrono>
#include <cstdint>

namespace pgfleet {

inline int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace pgfleet
