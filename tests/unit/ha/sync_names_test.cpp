// synchronous_standby_names rendering and parsing.
#include "ha/sync_names.hpp"

#include <gtest/gtest.h>

namespace pgfleet::ha {
namespace {

TEST(SyncNames, RenderByMode) {
  EXPECT_EQ(render_sync_names({{"node2"}, 1}, SyncMode::On), R"(FIRST 1 ("node2"))");
  EXPECT_EQ(render_sync_names({{"node2", "node3"}, 1}, SyncMode::Quorum), R"(ANY 1 ("node2", "node3"))");
  EXPECT_EQ(render_sync_names({{}, 0}, SyncMode::Quorum), "");
  EXPECT_EQ(render_sync_names({{"node2"}, 0}, SyncMode::On), "");
}

TEST(SyncNames, ParsesEveryFormPostgresAccepts) {
  EXPECT_EQ(parse_sync_names(""), (SyncConstraint{{}, 0}));
  EXPECT_EQ(parse_sync_names("node2"), (SyncConstraint{{"node2"}, 1}));
  EXPECT_EQ(parse_sync_names("node2, node3"), (SyncConstraint{{"node2", "node3"}, 1}));
  EXPECT_EQ(parse_sync_names("2 (node2, node3)"), (SyncConstraint{{"node2", "node3"}, 2}));
  EXPECT_EQ(parse_sync_names(R"(FIRST 1 ("node2"))"), (SyncConstraint{{"node2"}, 1}));
  EXPECT_EQ(parse_sync_names(R"(ANY 2 ("node2", node3, "No""de"))"), (SyncConstraint{{"node2", "node3", "No\"de"}, 2}));
  EXPECT_EQ(parse_sync_names("first"), (SyncConstraint{{"first"}, 1}));
}

TEST(SyncNames, RoundTrips) {
  SyncConstraint c{{"a", "b", "c"}, 2};
  EXPECT_EQ(parse_sync_names(render_sync_names(c, SyncMode::Quorum)), c);
  EXPECT_EQ(parse_sync_names(render_sync_names(c, SyncMode::On)), c);
}

TEST(SyncNames, RejectsGarbage) {
  EXPECT_FALSE(parse_sync_names("ANY 2 (a, b").has_value());
  EXPECT_FALSE(parse_sync_names("a b").has_value());
  EXPECT_FALSE(parse_sync_names("(a)").has_value());
}

}  // namespace
}  // namespace pgfleet::ha
