// plan_slot_sync(): what an agent does with the permanent slots on its node, for each role and
// each state of its local slots.
#include "ha/slot_sync.hpp"

#include <gtest/gtest.h>

namespace pgfleet::ha {
namespace {

using cluster::SlotSpec;
using cluster::SlotSpecs;

SlotSpecs specs() {
  SlotSpecs s;
  s["cdc"] = SlotSpec{"logical", "app", "pgoutput", false};
  s["dr"] = SlotSpec{"physical", "", "", false};
  return s;
}

LocalSlot logical(uint64_t position, bool active = false) { return {"cdc", "logical", "app", "pgoutput", active, position}; }
LocalSlot physical(uint64_t position, bool active = false) { return {"dr", "physical", "", "", active, position}; }

TEST(SlotSync, ThePrimaryCreatesWhatIsMissingAndLeavesTheRestToConsumers) {
  auto steps = plan_slot_sync(specs(), {}, true, {}, 0);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0], (SlotStep{SlotStepKind::CreateLogical, "cdc", "app", "pgoutput", 0}));
  EXPECT_EQ(steps[1], (SlotStep{SlotStepKind::CreatePhysical, "dr", "", "", 0}));
  // Present: nothing to do, even when the primary's position is behind anything else.
  EXPECT_TRUE(plan_slot_sync(specs(), {logical(100), physical(50)}, true, {{"cdc", 900}}, 0).empty());
}

TEST(SlotSync, AReplicaCopiesALogicalSlotOnlyOnceThePrimaryHasIt) {
  auto before = plan_slot_sync(specs(), {physical(10)}, false, {}, 500);
  EXPECT_TRUE(before.empty());
  auto after = plan_slot_sync(specs(), {physical(10)}, false, {{"cdc", 300}}, 500);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].kind, SlotStepKind::CopyFromPrimary);
  EXPECT_EQ(after[0].name, "cdc");
  // A physical slot needs no copy: a replica creates it itself.
  auto created = plan_slot_sync(specs(), {logical(300)}, false, {}, 500);
  ASSERT_EQ(created.size(), 1u);
  EXPECT_EQ(created[0].kind, SlotStepKind::CreatePhysical);
}

TEST(SlotSync, AReplicaAdvancesItsCopiesToThePrimaryButNeverPastItsReplay) {
  auto steps = plan_slot_sync(specs(), {logical(100), physical(100)}, false, {{"cdc", 300}, {"dr", 200}}, 250);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0], (SlotStep{SlotStepKind::Advance, "cdc", "app", "", 250}));  // replay caps it
  EXPECT_EQ(steps[1], (SlotStep{SlotStepKind::Advance, "dr", "", "", 200}));
  // Never backwards: a copy ahead of the primary's (an old primary's own slot) waits.
  EXPECT_TRUE(plan_slot_sync(specs(), {logical(400), physical(300)}, false, {{"cdc", 300}, {"dr", 200}}, 900).empty());
  // No primary position known: left where it is.
  EXPECT_TRUE(plan_slot_sync(specs(), {logical(100), physical(100)}, false, {}, 900).empty());
  // A copy in use (a consumer streams from the replica) is moved by that consumer.
  EXPECT_TRUE(plan_slot_sync(specs(), {logical(100, true), physical(100, true)}, false, {{"cdc", 300}, {"dr", 200}}, 900)
                  .empty());
  // A physical slot without a reserved position cannot be advanced.
  auto unreserved = plan_slot_sync(specs(), {logical(300), physical(0)}, false, {{"cdc", 300}, {"dr", 200}}, 900);
  EXPECT_TRUE(unreserved.empty());
}

TEST(SlotSync, RemovedSlotsAreDroppedWhereverTheyAreNotInUse) {
  SlotSpecs s = specs();
  s["cdc"].dropped = true;
  s["dr"].dropped = true;
  for (bool primary : {true, false}) {
    auto steps = plan_slot_sync(s, {logical(100), physical(100, true)}, primary, {{"cdc", 300}}, 900);
    ASSERT_EQ(steps.size(), 1u);
    EXPECT_EQ(steps[0], (SlotStep{SlotStepKind::Drop, "cdc", "app", "", 0}));
  }
  EXPECT_TRUE(plan_slot_sync(s, {}, true, {}, 0).empty());  // gone already: nothing to drop, nothing created
}

TEST(SlotSync, ASlotOfTheSameNameButAnotherKindIsLeftAloneAndReported) {
  std::vector<LocalSlot> local = {{"cdc", "logical", "other_db", "pgoutput", false, 100},
                                  {"dr", "logical", "app", "test_decoding", false, 100}};
  for (bool primary : {true, false}) {
    auto steps = plan_slot_sync(specs(), local, primary, {{"cdc", 300}, {"dr", 300}}, 900);
    ASSERT_EQ(steps.size(), 2u);
    EXPECT_EQ(steps[0].kind, SlotStepKind::Conflict);
    EXPECT_EQ(steps[1].kind, SlotStepKind::Conflict);
  }
}

TEST(SlotSync, PositionsArePublishedForKeptAndForRemovedSlotsStillPresent) {
  SlotSpecs s = specs();
  s["gone"] = SlotSpec{"physical", "", "", true};
  std::vector<LocalSlot> local = {logical(100), {"gone", "physical", "", "", false, 70},
                                  {"node2", "physical", "", "", true, 90}};
  auto positions = permanent_slot_positions(s, local);
  EXPECT_EQ(positions, (std::map<std::string, uint64_t>{{"cdc", 100}, {"gone", 70}}));
  // A same-named slot of another kind is not the permanent slot.
  EXPECT_TRUE(permanent_slot_positions(specs(), {{"cdc", "physical", "", "", false, 5}}).empty());
}

}  // namespace
}  // namespace pgfleet::ha
