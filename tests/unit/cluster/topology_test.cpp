// Topology rules: upstreams, cascading, synchronous_standby_names, port allocation.
#include "cluster/topology.hpp"

#include <gtest/gtest.h>

namespace pgfleet::cluster {
namespace {

ClusterConfig three_nodes() {
  ClusterConfig c;
  for (int i = 0; i < 3; ++i) c.nodes.push_back(next_node(c));
  return c;
}

TEST(Topology, NewNodesGetSequentialNamesAndPorts) {
  auto c = three_nodes();
  EXPECT_EQ(c.nodes[0].name, "node1");
  EXPECT_EQ(c.nodes[2].name, "node3");
  EXPECT_EQ(c.nodes[0].port, 5433);
  EXPECT_EQ(c.nodes[2].port, 5435);
  EXPECT_EQ(c.nodes[1].api_port, 8010);
}

TEST(Topology, NextNodeFillsTheGapLeftByARemovedNode) {
  auto c = three_nodes();
  c.nodes.erase(c.nodes.begin() + 1);
  auto n = next_node(c);
  EXPECT_EQ(n.name, "node2");
  EXPECT_EQ(n.port, 5434);
}

TEST(Topology, ReplicasStreamFromThePrimaryByDefault) {
  auto c = three_nodes();
  EXPECT_EQ(upstream_of(c, "node1", "node1"), "");
  EXPECT_EQ(upstream_of(c, "node2", "node1"), "node1");
  EXPECT_EQ(upstream_of(c, "node3", "node1"), "node1");
  EXPECT_EQ(direct_replicas(c, "node1"), (std::vector<std::string>{"node2", "node3"}));
}

TEST(Topology, CascadeChainsLaterReplicasBehindTheFirstReplica) {
  auto c = three_nodes();
  c.nodes.push_back(next_node(c));
  c.cascade = true;
  EXPECT_EQ(upstream_of(c, "node2", "node1"), "node1");
  EXPECT_EQ(upstream_of(c, "node3", "node1"), "node2");
  EXPECT_EQ(upstream_of(c, "node4", "node1"), "node2");
  EXPECT_EQ(direct_replicas(c, "node1"), (std::vector<std::string>{"node2"}));
  // After node2 became primary the first replica is node1.
  EXPECT_EQ(upstream_of(c, "node1", "node2"), "node2");
  EXPECT_EQ(upstream_of(c, "node3", "node2"), "node1");
}

TEST(Topology, ExplicitUpstreamWins) {
  auto c = three_nodes();
  c.nodes[2].upstream = "node2";
  EXPECT_EQ(upstream_of(c, "node3", "node1"), "node2");
  EXPECT_EQ(direct_replicas(c, "node1"), (std::vector<std::string>{"node2"}));
}

TEST(Topology, ExplicitUpstreamNamingAMissingNodeFallsBackToThePrimary) {
  auto c = three_nodes();
  c.nodes[2].upstream = "node9";
  EXPECT_EQ(upstream_of(c, "node3", "node1"), "node1");
}

TEST(SyncStandbyNames, EmptyWhenAsync) {
  auto c = three_nodes();
  EXPECT_EQ(synchronous_standby_names(c, "node1", {"node2", "node3"}), "");
}

TEST(SyncStandbyNames, OnNamesOneOfTheEligibleReplicas) {
  auto c = three_nodes();
  c.sync = SyncMode::On;
  EXPECT_EQ(synchronous_standby_names(c, "node1", {"node2", "node3"}), R"(FIRST 1 ("node2", "node3"))");
}

TEST(SyncStandbyNames, QuorumUsesAnyKClampedToTheReplicaCount) {
  auto c = three_nodes();
  c.sync = SyncMode::Quorum;
  c.sync_count = 5;
  EXPECT_EQ(synchronous_standby_names(c, "node1", {"node2", "node3"}), R"(ANY 2 ("node2", "node3"))");
  c.sync_count = 1;
  EXPECT_EQ(synchronous_standby_names(c, "node1", {"node3"}), R"(ANY 1 ("node3"))");
}

TEST(SyncStandbyNames, NeverNamesAReplicaThatCannotAcknowledge) {
  auto c = three_nodes();
  c.sync = SyncMode::On;
  EXPECT_EQ(synchronous_standby_names(c, "node1", {"node3"}), R"(FIRST 1 ("node3"))");
  EXPECT_EQ(synchronous_standby_names(c, "node1", {}), "");
  // Unknown names and the primary itself are ignored.
  EXPECT_EQ(synchronous_standby_names(c, "node1", {"node1", "ghost"}), "");
}

TEST(SyncStandbyNames, CascadedReplicasAreNeverSynchronous) {
  auto c = three_nodes();
  c.sync = SyncMode::Quorum;
  c.cascade = true;
  EXPECT_EQ(synchronous_standby_names(c, "node1", {"node2", "node3"}), R"(ANY 1 ("node2"))");
}

}  // namespace
}  // namespace pgfleet::cluster
