// The member document agents publish: fields survive the round trip, old documents read with defaults.
#include "dcs/member.hpp"

#include <gtest/gtest.h>

namespace pgfleet::dcs {
namespace {

TEST(MemberJson, TagsRoundTripAndDefaultToOff) {
  Member m;
  m.name = "node2";
  m.nofailover = true;
  m.noloadbalance = true;
  Member back = member_from_json(to_json(m));
  EXPECT_TRUE(back.nofailover);
  EXPECT_TRUE(back.noloadbalance);
  // A member written by an agent before tags existed.
  Member old = member_from_json(nlohmann::json{{"name", "node3"}, {"role", "replica"}});
  EXPECT_FALSE(old.nofailover);
  EXPECT_FALSE(old.noloadbalance);
}

TEST(MemberJson, ParametersRevisionRoundTrips) {
  Member m;
  m.parameters_revision = 7868;
  EXPECT_EQ(member_from_json(to_json(m)).parameters_revision, 7868);
  EXPECT_EQ(member_from_json(nlohmann::json{{"name", "node3"}}).parameters_revision, 0);
}

TEST(MemberJson, CheckpointPendingRoundTripsAndDefaultsToDone) {
  Member m;
  m.checkpoint_pending = true;
  EXPECT_TRUE(member_from_json(to_json(m)).checkpoint_pending);
  // A member written before the flag existed: its promotion's checkpoint ran before it published.
  EXPECT_FALSE(member_from_json(nlohmann::json{{"name", "node3"}, {"role", "primary"}}).checkpoint_pending);
}

TEST(MemberJson, PermanentSlotPositionsRoundTrip) {
  Member m;
  m.slots = {{"cdc", "0/3018538"}, {"dr", "0/3000028"}};
  EXPECT_EQ(member_from_json(to_json(m)).slots, m.slots);
  EXPECT_TRUE(member_from_json(nlohmann::json{{"name", "node3"}}).slots.empty());
  EXPECT_TRUE(member_from_json(nlohmann::json{{"slots", {{"cdc", 5}}}}).slots.empty());  // not an LSN text
}

}  // namespace
}  // namespace pgfleet::dcs
