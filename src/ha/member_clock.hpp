// When a member read the status it published, on this agent's clock (decide()'s MemberView::updated_at).
#pragma once

#include <cstdint>

#include "ha/decide.hpp"

namespace pgfleet::ha {

// Hosts' clocks are assumed to agree within this bound (docs/multihost.md: chrony/timesyncd).
inline constexpr int64_t kMaxClockSkewMs = 250;

struct PublishedTimes {
  TimeMs mono_ms = 0;      // the publisher's CLOCK_MONOTONIC when it read its status
  int64_t unix_ms = 0;     // its wall clock at the same moment
};

// decide() needs a time no later than the moment the member read its LSNs, on this agent's clock.
// Same host (or this agent itself): the monotonic clocks are one clock. Another host: its
// monotonic clock means nothing here, so its wall-clock age is subtracted from this agent's now,
// plus the skew bound, so that a clock running ahead never makes old status look fresh.
TimeMs member_updated_at(const PublishedTimes& published, bool same_clock, TimeMs now_mono, int64_t now_unix);

}  // namespace pgfleet::ha
