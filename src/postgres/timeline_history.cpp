#include "postgres/timeline_history.hpp"

#include <cstdio>
#include <sstream>

#include "postgres/lsn.hpp"

namespace pgfleet::postgres {

std::vector<TimelineSwitch> parse_timeline_history(const std::string& text) {
  std::vector<TimelineSwitch> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    int parent = 0;
    std::string lsn;
    if (!(fields >> parent >> lsn) || parent <= 0) continue;
    if (auto at = parse_lsn(lsn)) out.push_back({parent, *at});
  }
  return out;
}

std::string timeline_history_file(int timeline) {
  char name[32];
  std::snprintf(name, sizeof name, "%08X.history", static_cast<unsigned>(timeline));
  return name;
}

bool diverged_from_history(const std::vector<TimelineSwitch>& history, int timeline, uint64_t replayed,
                           int leader_timeline) {
  if (timeline == leader_timeline) return false;
  if (timeline > leader_timeline) return true;
  for (const auto& s : history)
    if (s.parent == timeline) return replayed > s.switchpoint;
  return true;  // not an ancestor of the leader's timeline
}

}  // namespace pgfleet::postgres
