// Timeline history files (pg_wal/<timeline>.history): where each ancestor of a timeline ended.
// A standby that replayed WAL of its own timeline past the point where the leader's history left
// that timeline has diverged and needs pg_rewind (PostgreSQL then logs "new timeline N forked off
// current database system timeline M before current recovery point" and waits forever).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pgfleet::postgres {

struct TimelineSwitch {
  int parent = 0;            // the timeline that ended
  uint64_t switchpoint = 0;  // where it ended (the next timeline starts there)
};

// Lines "parentTLI<TAB>switchpoint<TAB>reason"; comments and malformed lines are skipped.
std::vector<TimelineSwitch> parse_timeline_history(const std::string& text);

// "00000054.history" for timeline 84.
std::string timeline_history_file(int timeline);

// Whether a standby on `timeline` that replayed up to `replayed` cannot follow `leader_timeline`,
// whose history file says `history`: its timeline is not an ancestor of the leader's, or the
// leader's timeline forked from it before `replayed`.
bool diverged_from_history(const std::vector<TimelineSwitch>& history, int timeline, uint64_t replayed,
                           int leader_timeline);

}  // namespace pgfleet::postgres
