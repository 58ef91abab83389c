#include "proxy/auth_cache.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace pgfleet::proxy {
namespace {

using Clock = std::chrono::steady_clock;

CachedSecret entry(bool role, int age_s) {
  auto secret = std::make_shared<UserSecret>();
  secret->exists = role;
  return {secret, Clock::now() - std::chrono::seconds(age_s)};
}

TEST(AuthCacheEvictions, NothingWhileWithinTheCap) {
  std::map<std::string, CachedSecret> cache{{"a", entry(true, 1)}, {"b", entry(false, 2)}};
  EXPECT_TRUE(auth_cache_evictions(cache, 2).empty());
}

// A client trying made-up user names must not push real roles' verifiers out (logins use them,
// however old, while no server can be asked), nor grow the cache without bound.
TEST(AuthCacheEvictions, UnknownNamesGoFirstOldestFirstThenTheOldestRoles) {
  std::map<std::string, CachedSecret> cache;
  for (int i = 0; i < 8; ++i) cache["role" + std::to_string(i)] = entry(true, 100 + i);  // old
  cache["guess_new"] = entry(false, 1);
  cache["guess_old"] = entry(false, 50);
  cache["guess_mid"] = entry(false, 20);
  // 11 entries, cap 10: down to 9, so two go — the two oldest unknown names.
  auto gone = auth_cache_evictions(cache, 10);
  std::sort(gone.begin(), gone.end());
  EXPECT_EQ(gone, (std::vector<std::string>{"guess_mid", "guess_old"}));
  // Cap 5: down to 4, so seven go: every unknown name, then the four oldest roles.
  gone = auth_cache_evictions(cache, 5);
  std::sort(gone.begin(), gone.end());
  EXPECT_EQ(gone, (std::vector<std::string>{"guess_mid", "guess_new", "guess_old", "role4", "role5", "role6", "role7"}));
}

TEST(AuthCacheEvictions, AFailedLookupCountsAsUnknown) {
  std::map<std::string, CachedSecret> cache{{"none", {nullptr, Clock::now()}}};
  for (int i = 0; i < 10; ++i) cache["role" + std::to_string(i)] = entry(true, 100 + i);
  auto gone = auth_cache_evictions(cache, 10);  // 11 entries, down to 9
  std::sort(gone.begin(), gone.end());
  EXPECT_EQ(gone, (std::vector<std::string>{"none", "role9"}));
}

}  // namespace
}  // namespace pgfleet::proxy
