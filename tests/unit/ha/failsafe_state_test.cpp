// FailsafeState: when the primary's round thread asks its members to confirm it.
#include "ha/failsafe.hpp"

#include <gtest/gtest.h>

namespace pgfleet::ha {
namespace {

const std::vector<FailsafePeer> kPeers{{"n2", "http://127.0.0.1:1"}, {"n3", "http://127.0.0.1:2"}};

TEST(FailsafeState, APrimaryAsksOnceItsLoopReadTheDcsAsUnreachable) {
  FailsafeState s(0);
  s.observed(true, true, "n1", true, kPeers);
  EXPECT_FALSE(s.should_ask("n1"));
  s.observed(true, false, "n1", true, kPeers);
  EXPECT_TRUE(s.should_ask("n1"));
  EXPECT_EQ(s.peers().size(), 2u);
}

TEST(FailsafeState, APrimaryAsksWhileItsLoopIsStuckInADcsCallBeforeReadingIt) {
  FailsafeState s(0);
  s.observed(true, true, "n1", true, kPeers);  // the last read succeeded; the next one hangs
  EXPECT_TRUE(s.should_ask("n1", true));
}

TEST(FailsafeState, NobodyAsksWithFailsafeOffOrWhenNotTheWritablePrimary) {
  FailsafeState off(0);
  off.observed(false, false, "n1", true, kPeers);
  EXPECT_FALSE(off.should_ask("n1"));
  EXPECT_FALSE(off.should_ask("n1", true));

  FailsafeState replica(0);
  replica.observed(true, false, "n1", false, kPeers);
  EXPECT_FALSE(replica.should_ask("n2", true));

  FailsafeState other_leader(0);  // the key is another node's: this one is a primary by mistake
  other_leader.observed(true, false, "n2", true, kPeers);
  EXPECT_FALSE(other_leader.should_ask("n1", true));
}

TEST(FailsafeState, AnUnreachableReadKeepsTheMembersLastRead) {
  FailsafeState s(0);
  s.observed(true, true, "n1", true, kPeers);
  s.observed(true, false, "n1", true, {});
  EXPECT_EQ(s.peers().size(), 2u);
}

}  // namespace
}  // namespace pgfleet::ha
