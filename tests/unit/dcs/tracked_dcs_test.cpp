// TrackedDcs: how long the caller has been waiting on the store, seen from another thread.
#include "dcs/tracked_dcs.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace pgfleet::dcs {
namespace {

using namespace std::chrono_literals;

// A store whose calls take `delay` (the stand-in for an etcd request waiting out its timeout).
class SlowDcs : public Dcs {
 public:
  Millis delay{0};
  Result<std::optional<KeyValue>> get(std::string_view) override {
    std::this_thread::sleep_for(delay);
    return std::optional<KeyValue>();
  }
  Result<std::vector<KeyValue>> list(std::string_view) override { return std::vector<KeyValue>(); }
  Result<int64_t> put(std::string_view, std::string_view, std::optional<Millis>) override { return 1; }
  Result<bool> compare_and_set(std::string_view, std::string_view, int64_t, std::optional<Millis>) override {
    return true;
  }
  Result<bool> compare_and_delete(std::string_view, int64_t) override { return true; }
  Result<bool> remove(std::string_view) override { return true; }
  Result<int64_t> wait_for_change(std::string_view, int64_t, Millis) override {
    std::this_thread::sleep_for(delay);
    return 1;
  }
};

// Runs `call` on a thread and returns the largest in_flight_for() seen while it ran.
template <typename Call>
Millis longest_seen(const TrackedDcs& tracked, Call call) {
  std::atomic<bool> done{false};
  std::thread caller([&] {
    call();
    done = true;
  });
  Millis longest{0};
  while (!done) {
    longest = std::max(longest, tracked.in_flight_for());
    std::this_thread::sleep_for(5ms);
  }
  caller.join();
  return longest;
}

TEST(TrackedDcs, ACallInFlightIsSeenFromAnotherThreadAndClearedWhenItReturns) {
  auto slow = std::make_unique<SlowDcs>();
  SlowDcs* inner = slow.get();
  TrackedDcs tracked(std::move(slow));
  EXPECT_EQ(tracked.in_flight_for(), Millis(0));

  inner->delay = 400ms;
  const Millis seen = longest_seen(tracked, [&] { EXPECT_TRUE(tracked.get("leader").ok()); });
  EXPECT_GE(seen, 250ms);
  EXPECT_LE(seen, 2000ms);
  EXPECT_EQ(tracked.in_flight_for(), Millis(0));
}

TEST(TrackedDcs, AWatchCountsOnlyTheTimePastItsOwnTimeout) {
  auto slow = std::make_unique<SlowDcs>();
  SlowDcs* inner = slow.get();
  TrackedDcs tracked(std::move(slow));

  inner->delay = 400ms;  // within its 1 s timeout: waiting, not stuck
  EXPECT_EQ(longest_seen(tracked, [&] { (void)tracked.wait_for_change("", 0, 1000ms); }), Millis(0));

  inner->delay = 600ms;  // 100 ms timeout, returned after 600 ms: ~500 ms overdue
  const Millis overdue = longest_seen(tracked, [&] { (void)tracked.wait_for_change("", 0, 100ms); });
  EXPECT_GE(overdue, 350ms);
  EXPECT_LT(overdue, 600ms);
}

}  // namespace
}  // namespace pgfleet::dcs
