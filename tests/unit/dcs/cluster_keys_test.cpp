// ClusterKeys: one read of the whole cluster namespace sorted into the keys the agent acts on.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dcs/member.hpp"

namespace pgfleet::dcs {
namespace {

KeyValue kv(std::string key, std::string value = "{}") { return KeyValue{std::move(key), std::move(value), 7, 3, {}}; }

TEST(ClusterKeys, SortsEveryKnownKeyAndIgnoresTheRest) {
  const std::vector<KeyValue> all = {
      kv("failover", R"({"to":"node3"})"),
      kv("failsafe", "on"),
      kv("history/1733400000000", R"({"reason":"switchover"})"),
      kv("leader", "node1"),
      kv("members/node1"),
      kv("members/node2"),
      kv("pause", "1"),
      kv("removed/node4"),
      kv("removed/node5"),
      kv("reinit/node3", R"({"requested_ms":1})"),
      kv("restart/node2", R"({"requested_ms":1})"),
      kv("switchover", R"({"from":"node1","to":"node2"})"),
      kv("sync", R"({"leader":"node1"})"),
      kv("something-newer", "x"),  // a key of a later version: not an error
  };
  ClusterKeys keys(all);
  ASSERT_EQ(keys.members.size(), 2u);
  EXPECT_EQ(keys.members[0].key, "members/node1");
  EXPECT_EQ(keys.members[1].key, "members/node2");
  EXPECT_EQ(keys.removed, (std::vector<std::string>{"node4", "node5"}));
  ASSERT_EQ(keys.restarts.size(), 1u);
  EXPECT_EQ(keys.restarts[0].key, keys::restart("node2"));
  ASSERT_EQ(keys.reinits.size(), 1u);
  EXPECT_EQ(keys.reinits[0].key, keys::reinit("node3"));
  ASSERT_NE(keys.leader, nullptr);
  EXPECT_EQ(keys.leader->value, "node1");
  ASSERT_NE(keys.sync, nullptr);
  EXPECT_EQ(keys.sync->value, R"({"leader":"node1"})");
  ASSERT_NE(keys.pause, nullptr);
  ASSERT_NE(keys.failsafe, nullptr);
  ASSERT_NE(keys.switchover, nullptr);
  EXPECT_EQ(keys.switchover->value, R"({"from":"node1","to":"node2"})");
  ASSERT_NE(keys.failover, nullptr);
  EXPECT_EQ(keys.failover->value, R"({"to":"node3"})");
}

TEST(ClusterKeys, AbsentKeysAreNull) {
  const std::vector<KeyValue> all = {kv("members/node1"), kv("history/1")};
  ClusterKeys keys(all);
  EXPECT_EQ(keys.members.size(), 1u);
  EXPECT_TRUE(keys.removed.empty());
  EXPECT_TRUE(keys.restarts.empty());
  EXPECT_TRUE(keys.reinits.empty());
  EXPECT_EQ(keys.leader, nullptr);
  EXPECT_EQ(keys.sync, nullptr);
  EXPECT_EQ(keys.pause, nullptr);
  EXPECT_EQ(keys.failsafe, nullptr);
  EXPECT_EQ(keys.switchover, nullptr);
  EXPECT_EQ(keys.failover, nullptr);
}

TEST(ClusterKeys, APrefixAloneIsNotAKey) {
  // "members/" itself or "leaders" must not pass for a member or the leader.
  const std::vector<KeyValue> all = {kv("leaders", "node9"), kv("syncs"), kv("removed/")};
  ClusterKeys keys(all);
  EXPECT_EQ(keys.leader, nullptr);
  EXPECT_EQ(keys.sync, nullptr);
  EXPECT_TRUE(keys.removed.empty());
}

}  // namespace
}  // namespace pgfleet::dcs
