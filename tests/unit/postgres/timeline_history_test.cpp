// The divergence check a standby's agent makes against the leader's timeline history file.
#include "postgres/timeline_history.hpp"

#include <gtest/gtest.h>

namespace {

using namespace pgfleet::postgres;

// The history of timeline 84 as PostgreSQL writes it (one line per ancestor).
const char* kHistory84 =
    "1\t0/3000148\tno recovery target specified\n"
    "\n"
    "82\t0/58CDA68\tno recovery target specified\n"
    "83\t0/592E7B8\tno recovery target specified\n";

TEST(TimelineHistory, ParsesEveryAncestorAndSkipsJunk) {
  auto h = parse_timeline_history(std::string(kHistory84) + "# comment\nnot a line\n0\t0/1\tx\n");
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].parent, 1);
  EXPECT_EQ(h[0].switchpoint, 0x3000148u);
  EXPECT_EQ(h[2].parent, 83);
  EXPECT_EQ(h[2].switchpoint, 0x592E7B8u);
  EXPECT_TRUE(parse_timeline_history("").empty());
}

TEST(TimelineHistory, FileNameIsTheTimelineInEightHexDigits) {
  EXPECT_EQ(timeline_history_file(84), "00000054.history");
  EXPECT_EQ(timeline_history_file(2), "00000002.history");
}

TEST(TimelineHistory, AStandbyThatReplayedPastTheForkHasDiverged) {
  const auto h = parse_timeline_history(kHistory84);
  // The case the chaos benchmark found: replayed 0/592E868 on 83, the leader forked 84 at 0/592E7B8.
  EXPECT_TRUE(diverged_from_history(h, 83, 0x592E868, 84));
  EXPECT_FALSE(diverged_from_history(h, 83, 0x592E7B8, 84));  // exactly at the fork: follows
  EXPECT_FALSE(diverged_from_history(h, 83, 0x5000000, 84));
  EXPECT_FALSE(diverged_from_history(h, 84, 0x9000000, 84));  // same timeline
  EXPECT_TRUE(diverged_from_history(h, 85, 0x1000000, 84));   // ahead of the leader
  EXPECT_TRUE(diverged_from_history(h, 80, 0x1000000, 84));   // not an ancestor of 84
}

}  // namespace
