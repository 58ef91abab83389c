#include "cluster/permanent_slots.hpp"

#include <gtest/gtest.h>

namespace pgfleet::cluster {
namespace {

TEST(PermanentSlots, NamesFollowPostgresRulesAndAvoidNodeNames) {
  EXPECT_EQ(slot_name_problem("cdc_1", {"node1", "node2"}), "");
  EXPECT_NE(slot_name_problem("", {}), "");
  EXPECT_NE(slot_name_problem(std::string(64, 'a'), {}), "");
  EXPECT_EQ(slot_name_problem(std::string(63, 'a'), {}), "");
  EXPECT_NE(slot_name_problem("Cdc", {}).find("lower-case letters"), std::string::npos);
  EXPECT_NE(slot_name_problem("cdc-1", {}), "");
  EXPECT_NE(slot_name_problem("node2", {"node1", "node2"}).find("is the name of a node"), std::string::npos);
}

TEST(PermanentSlots, JsonRoundTripKeepsRemovedMarks) {
  SlotSpecs slots;
  slots["cdc"] = SlotSpec{"logical", "app", "pgoutput", false};
  slots["dr"] = SlotSpec{"physical", "", "", false};
  slots["old"] = SlotSpec{"logical", "app", "wal2json", true};
  auto back = slots_from_json(slots_to_json(slots));
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(*back, slots);
  auto live = live_slots(*back);
  EXPECT_EQ(live.size(), 2u);
  EXPECT_FALSE(live.contains("old"));
}

TEST(PermanentSlots, PhysicalSlotsStoreNoDatabaseOrPlugin) {
  SlotSpecs slots;
  slots["dr"] = SlotSpec{"physical", "ignored", "ignored", false};
  EXPECT_EQ(slots_to_json(slots), R"({"dr":{"type":"physical"}})");
}

TEST(PermanentSlots, InvalidKeysAreRefusedWithTheReason) {
  EXPECT_FALSE(slots_from_json("[]"));
  EXPECT_FALSE(slots_from_json("not json"));
  EXPECT_FALSE(slots_from_json(R"({"cdc": 1})"));
  auto wrong_type = slots_from_json(R"({"cdc": {"type": "snapshot"}})");
  ASSERT_FALSE(wrong_type);
  EXPECT_NE(wrong_type.error().find("snapshot"), std::string::npos);
  auto no_plugin = slots_from_json(R"({"cdc": {"type": "logical", "database": "app"}})");
  ASSERT_FALSE(no_plugin);
  EXPECT_NE(no_plugin.error().find("needs a database and a plugin"), std::string::npos);
  EXPECT_FALSE(slots_from_json(R"({"Bad Name": {"type": "physical"}})"));
  auto defaults = slots_from_json(R"({"dr": {}})");
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->at("dr").type, "physical");
}

}  // namespace
}  // namespace pgfleet::cluster
