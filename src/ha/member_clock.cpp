// Mapping of a member's publication time onto the local monotonic clock.
#include "ha/member_clock.hpp"

namespace pgfleet::ha {

TimeMs member_updated_at(const PublishedTimes& published, bool same_clock, TimeMs now_mono, int64_t now_unix) {
  if (same_clock) return published.mono_ms;
  return now_mono - (now_unix - published.unix_ms) - kMaxClockSkewMs;
}

}  // namespace pgfleet::ha
