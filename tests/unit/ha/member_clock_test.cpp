// member_updated_at(): status from another host is dated by its wall clock, minus the skew bound.
#include <gtest/gtest.h>

#include "ha/member_clock.hpp"

namespace pgfleet::ha {
namespace {

TEST(MemberClock, SameHostUsesTheSharedMonotonicClock) {
  EXPECT_EQ(member_updated_at({5000, 1'700'000'000'000}, true, 9000, 1'700'000'004'000), 5000);
}

TEST(MemberClock, AnotherHostIsDatedByItsWallClockAgeMinusTheSkewBound) {
  // Published 400 ms ago by its wall clock; its monotonic clock (booted elsewhere) is ignored.
  EXPECT_EQ(member_updated_at({123'456'789, 1'700'000'000'000}, false, 10'000, 1'700'000'000'400),
            10'000 - 400 - kMaxClockSkewMs);
}

TEST(MemberClock, AHostClockAheadByLessThanTheBoundNeverLooksFresherThanItIs) {
  // Read at local time 10'000 (wall 1'700'000'000'000) by a host whose clock is 200 ms ahead.
  const TimeMs read_at = 10'000;
  const int64_t wall_then = 1'700'000'000'000;
  const TimeMs now = 10'500;
  const int64_t wall_now = wall_then + 500;
  EXPECT_LE(member_updated_at({0, wall_then + 200}, false, now, wall_now), read_at);
  // Behind by 200 ms: older than it is, which only delays its election.
  EXPECT_LE(member_updated_at({0, wall_then - 200}, false, now, wall_now), read_at);
}

}  // namespace
}  // namespace pgfleet::ha
