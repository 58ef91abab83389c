// Scenario tests for decide(): one test per rule and per failure story, Patroni-style names.
#include "ha/decide.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using namespace pgfleet::ha;
using K = ActionKind;

constexpr TimeMs kTtl = 30000;
constexpr TimeMs kLoop = 1000;

// ---- builders --------------------------------------------------------------------------------

Settings config(SyncMode mode = SyncMode::Off,
                std::vector<std::string> nodes = {"node1", "node2", "node3"}) {
  Settings s;
  s.nodes = std::move(nodes);
  s.mode = mode;
  s.ttl = kTtl;
  s.loop_wait = kLoop;
  return s;
}

MemberView primary_member(const std::string& name, uint64_t lsn, TimeMs at, int timeline = 1) {
  MemberView m;
  m.name = name;
  m.role = "primary";
  m.running = true;
  m.timeline = timeline;
  m.received_lsn = lsn;
  m.replayed_lsn = lsn;
  m.updated_at = at;
  return m;
}

MemberView replica_member(const std::string& name, uint64_t lsn, TimeMs at, int timeline = 1) {
  MemberView m = primary_member(name, lsn, at, timeline);
  m.role = "replica";
  m.streaming = true;
  return m;
}

NodeView primary_node(const std::string& name, uint64_t lsn, TimeMs renewed_at, int timeline = 1) {
  NodeView n;
  n.name = name;
  n.postmaster_running = true;
  n.accepting = true;
  n.in_recovery = false;
  n.timeline = timeline;
  n.lsn = lsn;
  n.replayed_lsn = lsn;
  n.lease_renewed_at = renewed_at;
  return n;
}

NodeView replica_node(const std::string& name, uint64_t lsn, const std::string& following, int timeline = 1) {
  NodeView n = primary_node(name, lsn, 0, timeline);
  n.in_recovery = true;
  n.following = following;
  return n;
}

ClusterView led_by(const std::string& holder, std::vector<MemberView> members, int64_t revision = 7) {
  ClusterView c;
  c.leader = LeaderKey{holder, revision, 0};
  c.members = std::move(members);
  return c;
}

ClusterView leaderless(TimeMs expired_at, std::vector<MemberView> members) {
  ClusterView c;
  c.leader_expired_at = expired_at;
  c.members = std::move(members);
  return c;
}

SyncConstraint sc(std::vector<std::string> members, int quorum) { return SyncConstraint{std::move(members), quorum}; }

// ---- inspection ------------------------------------------------------------------------------

std::string kinds(const std::vector<Action>& actions) {
  std::string out;
  for (const auto& a : actions) out += (out.empty() ? "" : " ") + to_string(a.kind);
  return out;
}

std::string describe(const std::vector<Action>& actions) {
  std::string out = "\n";
  for (const auto& a : actions)
    out += "  " + to_string(a.kind) + (a.target.empty() ? "" : "{" + a.target + "}") + ": " + a.reason + "\n";
  return out;
}

bool promotes(const std::vector<Action>& actions) {
  for (const auto& a : actions)
    if (a.kind == K::Promote) return true;
  return false;
}

bool mentions(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// =============================================================================================
// Rule 1: the leader lease.

TEST(Decide, test_renew_because_holding_the_leader_key) {
  const auto cluster = led_by("node1", {primary_member("node1", 100, 9900), replica_member("node2", 100, 9900)}, 41);
  const auto a = decide(cluster, primary_node("node1", 100, 9000), config(), 10000);
  ASSERT_EQ(kinds(a), "RenewLease") << describe(a);
  EXPECT_EQ(a[0].revision, 41);
}

TEST(Decide, test_acquire_because_whole_cluster_restarted_and_this_data_is_the_primary) {
  // Everything was stopped; the agents came back, the leader key is long gone (first seen absent at
  // 1000). node1's data is a primary, as advanced as node2; node3 is behind.
  auto cluster = leaderless(1000, {primary_member("node1", 0x5000000, 2000), replica_member("node2", 0x5000000, 2100),
                                   replica_member("node3", 0x4ffff00, 2200)});
  cluster.members[0].running = false;
  NodeView node1 = primary_node("node1", 0x5000000, 0);
  node1.postmaster_running = false;
  node1.accepting = false;
  auto a = decide(cluster, node1, config(), 2500);
  ASSERT_EQ(kinds(a), "AcquireLease") << describe(a);

  // node2 ties on position but the old primary wins ties (no promotion, no new timeline).
  a = decide(cluster, replica_node("node2", 0x5000000, ""), config(), 2500);
  EXPECT_EQ(kinds(a), "Wait") << describe(a);

  // Next loop: node1 holds the key with a fresh lease and starts as primary.
  cluster.leader = LeaderKey{"node1", 8, 32500};
  node1.lease_renewed_at = 2500;
  a = decide(cluster, node1, config(), 3500);
  EXPECT_EQ(kinds(a), "RenewLease StartPostgres") << describe(a);
}

TEST(Decide, test_fence_because_another_node_holds_the_key_then_rewind) {
  const auto cluster = led_by("node2", {primary_member("node2", 200, 9900, 2), primary_member("node1", 150, 9800)});
  NodeView node1 = primary_node("node1", 150, 9000);
  auto a = decide(cluster, node1, config(), 10000);
  ASSERT_EQ(kinds(a), "Fence Rewind") << describe(a);
  EXPECT_EQ(a[1].target, "node2");
  EXPECT_TRUE(mentions(a[0].reason, "node2 holds the leader key")) << a[0].reason;

  node1.fenced = true;
  a = decide(cluster, node1, config(), 11000);
  EXPECT_EQ(kinds(a), "Rewind") << describe(a);
}

TEST(Decide, test_fence_but_wait_to_rewind_until_the_holder_runs_as_primary) {
  // node2 just took the key and has not promoted yet: pg_rewind needs a primary to rewind from.
  const auto cluster = led_by("node2", {replica_member("node2", 200, 9900)});
  const auto a = decide(cluster, primary_node("node1", 150, 9000), config(), 10000);
  EXPECT_EQ(kinds(a), "Fence Wait") << describe(a);
}

TEST(Decide, test_wait_to_rewind_until_the_new_primary_checkpointed_after_its_promotion) {
  // node2 runs as primary (proxies use it), but its checkpoint after the promotion is running:
  // its pg_control still names the old timeline, so pg_rewind would find nothing to do.
  auto cluster = led_by("node2", {primary_member("node2", 200, 9900, 2), primary_member("node1", 150, 9800)});
  cluster.members[0].checkpoint_pending = true;
  NodeView node1 = primary_node("node1", 150, 9000);
  node1.fenced = true;
  auto a = decide(cluster, node1, config(), 10000);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "finish its checkpoint after the promotion")) << a[0].reason;
  // A replica that did not diverge follows it at once.
  EXPECT_EQ(kinds(decide(cluster, replica_node("node3", 0x100, "node1", 2), config(), 10000)), "Follow");

  cluster.members[0].checkpoint_pending = false;
  a = decide(cluster, node1, config(), 11000);
  EXPECT_EQ(kinds(a), "Rewind") << describe(a);
}

TEST(Decide, test_no_acquire_because_a_newer_primary_exists) {
  // node1 (timeline 1) and node2 (timeline 2, promoted later) both have primary data, no key:
  // the newer timeline wins; node1 never takes the key back.
  const auto cluster =
      leaderless(50000, {primary_member("node1", 900, 50500, 1), primary_member("node2", 500, 50600, 2)});
  NodeView node1 = primary_node("node1", 900, 0);
  node1.fenced = true;
  auto a = decide(cluster, node1, config(), 51000);
  EXPECT_EQ(kinds(a), "Wait") << describe(a);

  a = decide(cluster, primary_node("node2", 500, 0, 2), config(), 51000);
  EXPECT_EQ(kinds(a), "Fence AcquireLease") << describe(a);
}

// =============================================================================================
// Rule 2: fencing.

TEST(Decide, test_fence_because_lease_deadline_passed) {
  // Renewals have failed since 10000; others may take the key at 10000 + ttl = 40000.
  const auto cluster = led_by("node1", {primary_member("node1", 100, 9900)});
  const NodeView node1 = primary_node("node1", 100, 10000);
  auto a = decide(cluster, node1, config(), 37999);
  EXPECT_EQ(kinds(a), "RenewLease") << describe(a);
  a = decide(cluster, node1, config(), 38000);  // 10000 + 30000 - 2 x 1000
  EXPECT_EQ(kinds(a), "Fence RenewLease") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "38000 ms")) << a[0].reason;
}

TEST(Decide, test_no_fence_because_lease_still_valid_after_one_failed_renewal) {
  const auto cluster = led_by("node1", {primary_member("node1", 100, 9900)});
  const NodeView node1 = primary_node("node1", 100, 10000 - 2 * kLoop);  // last loop's renewal failed
  auto a = decide(cluster, node1, config(), 10000);
  EXPECT_EQ(kinds(a), "RenewLease") << describe(a);

  ClusterView blip = cluster;
  blip.dcs_reachable = false;
  a = decide(blip, node1, config(), 10000);
  EXPECT_EQ(kinds(a), "Wait") << describe(a);
}

TEST(Decide, test_fence_because_dcs_unreachable_and_deadline_passed) {
  ClusterView cluster = led_by("node1", {primary_member("node1", 100, 9900)});
  cluster.dcs_reachable = false;
  NodeView node1 = primary_node("node1", 100, 10000);
  auto a = decide(cluster, node1, config(), 38000);
  EXPECT_EQ(kinds(a), "Fence") << describe(a);

  node1.fenced = true;  // stays fenced, nothing else to do without the DCS
  a = decide(cluster, node1, config(), 39000);
  EXPECT_EQ(kinds(a), "Wait") << describe(a);
}

TEST(Decide, test_fence_because_leader_key_absent_then_take_it_back) {
  // The key vanished although this primary's lease looked valid (deleted, DCS restored...):
  // others may take it right away, so stop writes first, then try to take it back.
  const auto cluster = leaderless(19500, {primary_member("node1", 300, 19800), replica_member("node2", 290, 19800),
                                          replica_member("node3", 280, 19900)});
  const auto a = decide(cluster, primary_node("node1", 300, 19000), config(), 20000);
  EXPECT_EQ(kinds(a), "Fence AcquireLease") << describe(a);
}

TEST(Decide, test_lift_fence_because_key_renewed) {
  const auto cluster = led_by("node1", {primary_member("node1", 100, 9900)});
  NodeView node1 = primary_node("node1", 100, 9500);
  node1.fenced = true;
  const auto a = decide(cluster, node1, config(), 10000);
  ASSERT_EQ(kinds(a), "RenewLease Promote") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "lift the fence")) << a[1].reason;
}

TEST(Decide, test_fenced_ex_primary_reacquires_because_still_most_advanced) {
  // A DCS outage longer than the TTL: node1 fenced at its deadline, the key expired; nobody else
  // is more advanced, so node1 takes the key back (and lifts the fence on the next loop).
  auto cluster = leaderless(40000, {primary_member("node1", 500, 41000), replica_member("node2", 500, 41000),
                                    replica_member("node3", 450, 41000)});
  NodeView node1 = primary_node("node1", 500, 10000);
  node1.fenced = true;
  auto a = decide(cluster, node1, config(), 41500);
  EXPECT_EQ(kinds(a), "AcquireLease") << describe(a);
  a = decide(cluster, replica_node("node2", 500, "node1"), config(), 41500);
  EXPECT_EQ(kinds(a), "Wait") << describe(a);

  cluster.leader = LeaderKey{"node1", 9, 71500};
  node1.lease_renewed_at = 41500;
  a = decide(cluster, node1, config(), 42500);
  EXPECT_EQ(kinds(a), "RenewLease Promote") << describe(a);
}

TEST(Decide, test_hung_primary_fences_before_anyone_can_take_the_key) {
  // The agent's renewals stall (DCS slow); every loop it still decides. It must fence strictly
  // before the key can expire at renewed + ttl.
  const auto cluster = led_by("node1", {primary_member("node1", 100, 9900)});
  const NodeView node1 = primary_node("node1", 100, 10000);
  TimeMs fenced_at = -1;
  for (TimeMs now = 10000; now < 10000 + kTtl && fenced_at < 0; now += kLoop)
    if (kinds(decide(cluster, node1, config(), now)).starts_with("Fence")) fenced_at = now;
  ASSERT_GE(fenced_at, 0);
  EXPECT_LE(fenced_at + kLoop, 10000 + kTtl);
}

// =============================================================================================
// Rule 3: election.

TEST(Decide, test_promote_because_leader_expired_and_most_advanced) {
  const auto cluster = leaderless(12034, {replica_member("node2", 0x3000148, 12500), replica_member("node3", 0x3000100, 12600)});
  auto a = decide(cluster, replica_node("node2", 0x3000148, "node1"), config(), 13000);
  ASSERT_EQ(kinds(a), "AcquireLease Promote RecordHistory") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "promote node2")) << a[1].reason;
  EXPECT_TRUE(mentions(a[1].reason, "12034 ms")) << a[1].reason;
  EXPECT_TRUE(mentions(a[1].reason, "0/3000148")) << a[1].reason;
  EXPECT_TRUE(mentions(a[1].reason, "node2, node3")) << a[1].reason;
  EXPECT_EQ(a[2].target, "node2");

  a = decide(cluster, replica_node("node3", 0x3000100, "node1"), config(), 13000);
  EXPECT_EQ(kinds(a), "Wait") << describe(a);
}

TEST(Decide, test_history_names_the_primary_the_winner_followed_when_its_member_key_is_gone) {
  // node1 hung: its leader and member keys both expired; node2 still follows it.
  const auto cluster = leaderless(12034, {replica_member("node2", 0x3000148, 12500), replica_member("node3", 0x3000100, 12600)});
  auto a = decide(cluster, replica_node("node2", 0x3000148, "node1"), config(), 13000);
  ASSERT_EQ(kinds(a), "AcquireLease Promote RecordHistory") << describe(a);
  EXPECT_TRUE(a[2].reason.starts_with("failover from node1 to node2 at ")) << a[2].reason;
  // Following nobody (it lost its upstream before): nothing better to name.
  a = decide(cluster, replica_node("node2", 0x3000148, ""), config(), 13000);
  ASSERT_EQ(kinds(a), "AcquireLease Promote RecordHistory") << describe(a);
  EXPECT_TRUE(a[2].reason.starts_with("failover from the lost primary to node2")) << a[2].reason;
}

TEST(Decide, test_crash_of_primary_most_advanced_replica_promotes_other_follows) {
  // node1 (postmaster and agent) dies at 9800 after its last renewal at 9500.
  const Settings s = config();
  const NodeView node2 = replica_node("node2", 0x900, "node1");
  const NodeView node3 = replica_node("node3", 0x800, "node1");

  // While the key lives, replicas keep following node1.
  ClusterView view = led_by("node1", {primary_member("node1", 0x900, 9800), replica_member("node2", 0x900, 20000),
                                      replica_member("node3", 0x800, 20000)});
  EXPECT_EQ(kinds(decide(view, node2, s, 20000)), "");
  EXPECT_EQ(kinds(decide(view, node3, s, 20000)), "");

  // The key expired at 39500; the replicas' last status predates it: wait one loop.
  view = leaderless(39500, view.members);
  auto a = decide(view, node2, s, 39600);
  EXPECT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "node2, node3")) << a[0].reason;

  // Fresh status (node1's member key has expired meanwhile): node2 promotes, node3 waits.
  view.members = {replica_member("node2", 0x900, 40000), replica_member("node3", 0x800, 40050)};
  a = decide(view, node2, s, 40100);
  EXPECT_EQ(kinds(a), "AcquireLease Promote RecordHistory") << describe(a);
  EXPECT_EQ(kinds(decide(view, node3, s, 40100)), "Wait");

  // node2 leads on timeline 2: node3 follows it.
  view = led_by("node2", {primary_member("node2", 0x900, 41000, 2), replica_member("node3", 0x800, 41000)});
  a = decide(view, node3, s, 41100);
  ASSERT_EQ(kinds(a), "Follow") << describe(a);
  EXPECT_EQ(a[0].target, "node2");
}

TEST(Decide, test_wait_because_a_replica_has_not_published_since_the_key_vanished) {
  const auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000), replica_member("node3", 0x800, 39000)});
  auto a = decide(cluster, replica_node("node2", 0x900, "node1"), config(), 40100);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "node3")) << a[0].reason;

  // node3 stays stale for a whole TTL: it is ignored.
  a = decide(cluster, replica_node("node2", 0x900, "node1"), config(), 39500 + kTtl);
  EXPECT_EQ(kinds(a), "AcquireLease Promote RecordHistory") << describe(a);
}

TEST(Decide, test_two_replicas_racing_exactly_one_promotes) {
  // Identical views, identical positions: the tie goes to the lowest name, for both deciders.
  const auto cluster = leaderless(39500, {replica_member("node3", 0x900, 40000), replica_member("node2", 0x900, 40000)});
  const auto a2 = decide(cluster, replica_node("node2", 0x900, "node1"), config(), 40100);
  const auto a3 = decide(cluster, replica_node("node3", 0x900, "node1"), config(), 40100);
  EXPECT_TRUE(promotes(a2)) << describe(a2);
  EXPECT_FALSE(promotes(a3)) << describe(a3);
  EXPECT_EQ(kinds(a3), "Wait");
  EXPECT_TRUE(mentions(a3[0].reason, "node2")) << a3[0].reason;
}

TEST(Decide, test_two_replicas_racing_on_a_stale_own_view_still_agree) {
  // Each node's live LSN may be ahead of what it published; the election ranks published
  // positions only, so the two deciders agree even when node3's local LSN is higher.
  const auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000), replica_member("node3", 0x800, 40000)});
  const auto a2 = decide(cluster, replica_node("node2", 0x900, "node1"), config(), 40100);
  const auto a3 = decide(cluster, replica_node("node3", 0xA00, "node1"), config(), 40100);
  EXPECT_TRUE(promotes(a2));
  EXPECT_FALSE(promotes(a3));
}

TEST(Decide, test_lagging_replica_not_chosen_beyond_maximum_lag) {
  // node1's last status (still visible) says it wrote up to 0x10000000; node2 is 255 MiB behind.
  Settings s = config();
  s.maximum_lag_on_failover = 1 << 20;
  auto cluster = leaderless(39500, {primary_member("node1", 0x10000000, 9800), replica_member("node2", 0x1000, 40000),
                                    replica_member("node3", 0x800, 40000)});
  auto a = decide(cluster, replica_node("node2", 0x1000, "node1"), s, 40100);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "maximum_lag_on_failover")) << a[0].reason;
  EXPECT_FALSE(promotes(decide(cluster, replica_node("node3", 0x800, "node1"), s, 40100)));

  // node1's member key expired (it did not come back): the best candidate goes ahead.
  cluster.members.erase(cluster.members.begin());
  a = decide(cluster, replica_node("node2", 0x1000, "node1"), s, 41000);
  EXPECT_TRUE(promotes(a)) << describe(a);
}

TEST(Decide, test_nofailover_replica_never_promotes) {
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000), replica_member("node3", 0x800, 40000)});
  cluster.members[0].nofailover = true;
  EXPECT_FALSE(promotes(decide(cluster, replica_node("node2", 0x900, "node1"), config(), 40100)));
  EXPECT_TRUE(promotes(decide(cluster, replica_node("node3", 0x800, "node1"), config(), 40100)));
}

TEST(Decide, test_no_failover_because_paused) {
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000), replica_member("node3", 0x800, 40000)});
  cluster.paused = true;
  const auto a = decide(cluster, replica_node("node2", 0x900, "node1"), config(), 40100);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "paused")) << a[0].reason;
}

TEST(Decide, test_paused_primary_still_fences_on_lost_lease) {
  ClusterView cluster = led_by("node1", {primary_member("node1", 100, 9900)});
  cluster.paused = true;
  const auto a = decide(cluster, primary_node("node1", 100, 10000), config(), 38000);
  EXPECT_EQ(kinds(a), "Fence RenewLease") << describe(a);
}

TEST(Decide, test_no_election_while_time_of_expiry_unknown) {
  const auto cluster = leaderless(0, {replica_member("node2", 0x900, 40000)});
  EXPECT_EQ(kinds(decide(cluster, replica_node("node2", 0x900, "node1"), config(), 40100)), "Wait");
}

TEST(Decide, test_elected_but_not_accepting_waits) {
  const auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000)});
  NodeView node2 = replica_node("node2", 0x900, "node1");
  node2.accepting = false;
  EXPECT_EQ(kinds(decide(cluster, node2, config(), 40100)), "Wait");
}

// ---- Rule 3 in synchronous modes -------------------------------------------------------------

TEST(Decide, test_sync_replica_not_in_sync_set_never_promotes) {
  // On mode, node2 is the synchronous standby. node3 received more (asynchronously) but the
  // durability promise is about node2: node3 never promotes, node2 does.
  auto cluster = leaderless(39500, {replica_member("node2", 0x800, 40000), replica_member("node3", 0x900, 40000)});
  cluster.sync = {sc({"node2"}, 1)};
  auto a = decide(cluster, replica_node("node3", 0x900, "node1"), config(SyncMode::On), 40100);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "not in the synchronous set")) << a[0].reason;
  a = decide(cluster, replica_node("node2", 0x800, "node1"), config(SyncMode::On), 40100);
  // {node2} q=1 already covers what node2 will acknowledge alone: nothing to publish first.
  EXPECT_EQ(kinds(a), "AcquireLease Promote RecordHistory") << describe(a);
}

TEST(Decide, test_sync_nobody_promotes_because_sync_standby_is_missing) {
  auto cluster = leaderless(39500, {replica_member("node3", 0x900, 40000)});
  cluster.sync = {sc({"node2", "node3"}, 2)};  // ANY 2 (node2, node3): must see 2 - 2 + 1 = 1, itself
  auto a = decide(cluster, replica_node("node3", 0x900, "node1"), config(SyncMode::Quorum), 40100);
  EXPECT_TRUE(promotes(a)) << describe(a);  // every commit was on both: node3 has them all

  cluster.sync = {sc({"node2"}, 1)};  // On mode with node2 gone
  a = decide(cluster, replica_node("node3", 0x900, "node1"), config(SyncMode::On), 40100);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "node2")) << a[0].reason;
}

TEST(Decide, test_quorum_any1_of_two_with_one_dead_nobody_promotes) {
  // ANY 1 (node2, node3): a commit was acknowledged as soon as ONE of them had it. With node2
  // dead, node3 cannot know whether node2 held commits it lacks: it must see 2 - 1 + 1 = 2 of the
  // 2 members. So node3 alone cannot promote, whatever its LSN.
  auto cluster = leaderless(39500, {replica_member("node3", 0x900, 40000)});
  cluster.sync = {sc({"node2", "node3"}, 1)};
  const auto a = decide(cluster, replica_node("node3", 0x900, "node1"), config(SyncMode::Quorum), 40100);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "needs 2")) << a[0].reason;
  EXPECT_TRUE(mentions(a[0].reason, "missing: node2")) << a[0].reason;
}

TEST(Decide, test_quorum_any1_of_two_both_alive_most_advanced_promotes_after_publishing_itself) {
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000), replica_member("node3", 0x800, 40000)});
  cluster.sync = {sc({"node2", "node3"}, 1)};
  auto a = decide(cluster, replica_node("node2", 0x900, "node1"), config(SyncMode::Quorum), 40100);
  ASSERT_EQ(kinds(a), "AcquireLease PublishSync Promote RecordHistory") << describe(a);
  // Before node2 acknowledges anything on its own, {node2} q=1 is published alongside.
  EXPECT_EQ(a[1].sync, (std::vector<SyncConstraint>{sc({"node2", "node3"}, 1), sc({"node2"}, 1)}));
  EXPECT_TRUE(mentions(a[2].reason, "satisfies the sync constraints {node2,node3} q=1")) << a[2].reason;

  a = decide(cluster, replica_node("node3", 0x800, "node1"), config(SyncMode::Quorum), 40100);
  EXPECT_FALSE(promotes(a)) << describe(a);
}

TEST(Decide, test_quorum_any2_of_three_with_one_dead_the_most_advanced_seen_promotes) {
  const Settings s = config(SyncMode::Quorum, {"node1", "node2", "node3", "node4"});
  auto cluster = leaderless(39500, {replica_member("node2", 0x800, 40000), replica_member("node3", 0x900, 40000)});
  cluster.sync = {sc({"node2", "node3", "node4"}, 2)};  // must see 3 - 2 + 1 = 2
  EXPECT_TRUE(promotes(decide(cluster, replica_node("node3", 0x900, "node1"), s, 40100)));
  EXPECT_FALSE(promotes(decide(cluster, replica_node("node2", 0x800, "node1"), s, 40100)));
}

TEST(Decide, test_sync_new_leader_dies_before_its_first_loop_nobody_loses_its_commits) {
  // ANY 2 (node2, node3): node2 needed to see only itself and promoted. Had it not published
  // {node2} q=1 before promoting, the commits it acknowledged alone would be on node2 only and
  // node3 (which also needs to see only itself) could promote without them after node2 died.
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000), replica_member("node3", 0x900, 40000)});
  cluster.sync = {sc({"node2", "node3"}, 2)};
  auto a = decide(cluster, replica_node("node2", 0x900, "node1"), config(SyncMode::Quorum), 40100);
  ASSERT_EQ(kinds(a), "AcquireLease PublishSync Promote RecordHistory") << describe(a);

  ClusterView after = leaderless(52000, {replica_member("node3", 0x900, 52500)});
  after.sync = a[1].sync;
  after.sync_leader = "node2";
  a = decide(after, replica_node("node3", 0x900, "node2", 1), config(SyncMode::Quorum), 53000);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "missing: node2")) << a[0].reason;
}

TEST(Decide, test_sync_both_constraints_of_a_transition_must_hold) {
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000), replica_member("node3", 0x800, 40000)});
  cluster.sync = {sc({"node2"}, 1), sc({"node3"}, 1)};
  EXPECT_TRUE(promotes(decide(cluster, replica_node("node2", 0x900, "node1"), config(SyncMode::On), 40100)));

  cluster.members.pop_back();  // node3 (the new standby) is gone: it may hold commits node2 lacks
  const auto a = decide(cluster, replica_node("node2", 0x900, "node1"), config(SyncMode::On), 40100);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "missing: node3")) << a[0].reason;
}

TEST(Decide, test_sync_without_a_published_constraint_every_node_must_be_seen) {
  // Nothing published yet (the first leader died in its first loop): a commit may be on any one
  // node, as if {node1,node2,node3} q=1 were published. node1 and node3 are unknown: nobody.
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000)});
  auto a = decide(cluster, replica_node("node2", 0x900, "node1"), config(SyncMode::On), 40100);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "missing: node1, node3")) << a[0].reason;

  // Everybody is seen: the most advanced (here the old primary, running fenced) takes the key.
  cluster.members = {primary_member("node1", 0x950, 40000), replica_member("node2", 0x900, 40000),
                     replica_member("node3", 0x950, 40000)};
  EXPECT_FALSE(promotes(decide(cluster, replica_node("node3", 0x950, "node1"), config(SyncMode::On), 40100)));
  NodeView node1 = primary_node("node1", 0x950, 0);
  node1.fenced = true;
  a = decide(cluster, node1, config(SyncMode::On), 40100);
  EXPECT_EQ(kinds(a), "AcquireLease") << describe(a);
}

TEST(Decide, test_sync_leader_alone_blocks_failover_until_it_returns) {
  // Writes did not wait for any standby ({node1} q=1 published): only node1 has them all.
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000)});
  cluster.sync = {sc({"node1"}, 1)};
  auto a = decide(cluster, replica_node("node2", 0x900, "node1"), config(SyncMode::On), 40100);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "node1")) << a[0].reason;

  // node1 restarts (its data is a primary): it takes the key back.
  MemberView node1_status = primary_member("node1", 0xA00, 40500);
  node1_status.running = false;
  cluster.members.push_back(node1_status);
  NodeView node1 = primary_node("node1", 0xA00, 0);
  node1.postmaster_running = false;
  a = decide(cluster, node1, config(SyncMode::On), 41000);
  EXPECT_EQ(kinds(a), "AcquireLease") << describe(a);
}

TEST(Decide, test_sync_whole_cluster_restart_last_leader_takes_the_key_back) {
  // node1 published {node2} q=1 as leader; everything restarted. node1 is not in the synchronous
  // set, but it published it, and it has everything node2 has: it takes the key back.
  auto cluster = leaderless(1000, {primary_member("node1", 0x5000, 2000), replica_member("node2", 0x5000, 2100),
                                   replica_member("node3", 0x5000, 2100)});
  cluster.members[0].running = false;
  cluster.sync = {sc({"node2"}, 1)};
  cluster.sync_leader = "node1";
  NodeView node1 = primary_node("node1", 0x5000, 0);
  node1.postmaster_running = false;
  EXPECT_EQ(kinds(decide(cluster, node1, config(SyncMode::On), 2500)), "AcquireLease");
  EXPECT_EQ(kinds(decide(cluster, replica_node("node2", 0x5000, ""), config(SyncMode::On), 2500)), "Wait");

  // Had another leader published the constraint, node1 would not qualify (node2 does).
  cluster.sync_leader = "node3";
  EXPECT_EQ(kinds(decide(cluster, node1, config(SyncMode::On), 2500)), "Wait");
  EXPECT_TRUE(promotes(decide(cluster, replica_node("node2", 0x5000, ""), config(SyncMode::On), 2500)));
}

TEST(Decide, test_sync_ex_leader_running_as_standby_may_take_over) {
  auto cluster = leaderless(40000, {replica_member("node1", 0x6000, 40500), replica_member("node2", 0x5000, 40500)});
  cluster.sync = {sc({"node2"}, 1)};
  cluster.sync_leader = "node1";
  const auto a = decide(cluster, replica_node("node1", 0x6000, ""), config(SyncMode::On), 41000);
  ASSERT_EQ(kinds(a), "AcquireLease PublishSync Promote RecordHistory") << describe(a);
  EXPECT_EQ(a[1].sync, (std::vector<SyncConstraint>{sc({"node2"}, 1), sc({"node1"}, 1)}));
}

TEST(Decide, test_stopped_ex_primary_starts_as_standby_when_not_elected_within_a_ttl) {
  // node2 (timeline 2) is newer; node1's old primary data must not start as a primary, but it
  // must run so that its position is known (it may hold commits someone needs to see).
  const auto cluster = leaderless(40000, {primary_member("node2", 0x500, 40500, 2)});
  NodeView node1 = primary_node("node1", 0x900, 0, 1);
  node1.postmaster_running = false;
  EXPECT_EQ(kinds(decide(cluster, node1, config(), 41000)), "Wait");
  const auto a = decide(cluster, node1, config(), 40000 + kTtl);
  ASSERT_EQ(kinds(a), "Follow") << describe(a);
  EXPECT_EQ(a[0].target, "");

  ClusterView paused = cluster;  // maintenance: the agent does not touch PostgreSQL
  paused.paused = true;
  EXPECT_EQ(kinds(decide(paused, node1, config(), 40000 + kTtl)), "Wait");
}

// =============================================================================================
// Rule 4: following, rewind, reinit, start.

TEST(Decide, test_follow_because_leader_changed) {
  const auto cluster = led_by("node2", {primary_member("node2", 0x900, 41000, 2)});
  const auto a = decide(cluster, replica_node("node3", 0x800, "node1", 1), config(), 41100);
  ASSERT_EQ(kinds(a), "Follow") << describe(a);
  EXPECT_EQ(a[0].target, "node2");
}

TEST(Decide, test_nothing_to_do_when_following_the_leader) {
  const auto cluster = led_by("node2", {primary_member("node2", 0x900, 41000, 2)});
  EXPECT_EQ(kinds(decide(cluster, replica_node("node3", 0x900, "node2", 2), config(), 41100)), "");
}

TEST(Decide, test_rewind_because_timeline_ahead_of_leader) {
  const auto cluster = led_by("node2", {primary_member("node2", 0x900, 41000, 2)});
  const auto a = decide(cluster, replica_node("node3", 0x950, "node2", 3), config(), 41100);
  ASSERT_EQ(kinds(a), "Rewind") << describe(a);
  EXPECT_EQ(a[0].target, "node2");
}

TEST(Decide, test_rewind_because_wal_diverged_from_leader) {
  const auto cluster = led_by("node2", {primary_member("node2", 0x900, 41000, 2)});
  NodeView node3 = replica_node("node3", 0x950, "node2", 1);
  node3.timeline_diverged = true;
  EXPECT_EQ(kinds(decide(cluster, node3, config(), 41100)), "Rewind");
}

TEST(Decide, test_reinit_because_rewind_failed) {
  const auto cluster = led_by("node2", {primary_member("node2", 0x900, 41000, 2)});
  NodeView node3 = replica_node("node3", 0x950, "node2", 1);
  node3.rewind_failed = true;
  auto a = decide(cluster, node3, config(), 41100);
  ASSERT_EQ(kinds(a), "Reinit") << describe(a);
  EXPECT_EQ(a[0].target, "node2");

  node3.postmaster_running = false;  // a failed rewind leaves the postmaster stopped
  EXPECT_EQ(kinds(decide(cluster, node3, config(), 41100)), "Reinit");
}

TEST(Decide, test_reinit_because_no_data) {
  const auto cluster = led_by("node2", {primary_member("node2", 0x900, 41000, 2)});
  NodeView empty;
  empty.name = "node3";
  empty.data_exists = false;
  auto a = decide(cluster, empty, config(), 41100);
  ASSERT_EQ(kinds(a), "Reinit") << describe(a);
  EXPECT_EQ(a[0].target, "node2");
  EXPECT_EQ(kinds(decide(leaderless(40000, {}), empty, config(), 41100)), "Wait");
}

TEST(Decide, test_start_as_standby_because_postmaster_stopped) {
  const auto cluster = led_by("node2", {primary_member("node2", 0x900, 41000, 2)});
  NodeView node3 = replica_node("node3", 0x800, "node2", 2);
  node3.postmaster_running = false;
  EXPECT_EQ(kinds(decide(cluster, node3, config(), 41100)), "StartPostgres");
  ClusterView down = cluster;
  down.dcs_reachable = false;  // starting a standby is always safe
  EXPECT_EQ(kinds(decide(down, node3, config(), 41100)), "StartPostgres");
}

TEST(Decide, test_old_primary_coming_back_rewinds_instead_of_starting_as_primary) {
  const auto cluster = led_by("node2", {primary_member("node2", 0x900, 41000, 2)});
  NodeView node1 = primary_node("node1", 0x950, 0, 1);
  node1.postmaster_running = false;
  const auto a = decide(cluster, node1, config(), 41100);
  ASSERT_EQ(kinds(a), "Rewind") << describe(a);
  EXPECT_EQ(a[0].target, "node2");
}

TEST(Decide, test_crash_of_agent_only_old_primary_fences_then_rewinds) {
  // node1's agent died; its postmaster kept running; the key expired and node2 took over. The
  // restarted agent knows no lease (lease_renewed_at = 0) and sees node2 holding the key.
  const auto cluster = led_by("node2", {primary_member("node2", 0x900, 41000, 2), primary_member("node1", 0x950, 41000)});
  const auto a = decide(cluster, primary_node("node1", 0x950, 0), config(), 41100);
  ASSERT_EQ(kinds(a), "Fence Rewind") << describe(a);
  EXPECT_EQ(a[1].target, "node2");
}

TEST(Decide, test_stopped_primary_without_key_never_starts_unless_elected) {
  const auto cluster =
      leaderless(40000, {primary_member("node2", 0x900, 41000, 2), primary_member("node1", 0x950, 41000, 1)});
  NodeView node1 = primary_node("node1", 0x950, 0, 1);
  node1.postmaster_running = false;
  EXPECT_EQ(kinds(decide(cluster, node1, config(), 41100)), "Wait");
}

// =============================================================================================
// Rule 5: synchronous replication, by the leader.

struct SyncLeader {
  Settings settings = config(SyncMode::On);
  ClusterView cluster = led_by("node1", {primary_member("node1", 0x1000, 9900), replica_member("node2", 0x1000, 9900),
                                         replica_member("node3", 0x1000, 9900)});
  NodeView self = primary_node("node1", 0x1000, 9500);
  std::vector<Action> run() { return decide(cluster, self, settings, 10000); }
};

TEST(Decide, test_sync_on_picks_first_healthy_replica_in_config_order) {
  SyncLeader t;
  const auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease PublishSync SetSyncStandbys") << describe(a);
  // Nothing in force yet ("writes do not wait" = {node1} q=1) and the wanted {node2} q=1.
  EXPECT_EQ(a[1].sync, (std::vector<SyncConstraint>{sc({"node1"}, 1), sc({"node2"}, 1)}));
  EXPECT_EQ(a[2].sync, (std::vector<SyncConstraint>{sc({"node2"}, 1)}));
}

TEST(Decide, test_sync_published_alone_once_standby_caught_up) {
  SyncLeader t;
  t.cluster.sync = {sc({"node1"}, 1), sc({"node2"}, 1)};
  t.self.sync_in_force = sc({"node2"}, 1);
  t.self.sync_in_force_lsn = 0x1000;
  auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease PublishSync") << describe(a);
  EXPECT_EQ(a[1].sync, (std::vector<SyncConstraint>{sc({"node2"}, 1)}));

  t.cluster.members[1].received_lsn = 0xF00;  // not yet: commits acknowledged before may be missing
  a = t.run();
  EXPECT_EQ(kinds(a), "RenewLease Wait") << describe(a);

  t.cluster.sync = {sc({"node2"}, 1)};  // steady state
  t.cluster.members[1].received_lsn = 0x1000;
  EXPECT_EQ(kinds(t.run()), "RenewLease");
}

TEST(Decide, test_sync_on_keeps_current_standby_while_healthy) {
  SyncLeader t;
  t.cluster.sync = {sc({"node3"}, 1)};
  t.self.sync_in_force = sc({"node3"}, 1);
  EXPECT_EQ(kinds(t.run()), "RenewLease");
}

TEST(Decide, test_sync_standby_lost_two_step_transition) {
  SyncLeader t;
  t.cluster.sync = {sc({"node2"}, 1)};
  t.self.sync_in_force = sc({"node2"}, 1);
  t.cluster.members[1].streaming = false;
  // Step 1: publish both, then apply the new one in PostgreSQL.
  auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease PublishSync SetSyncStandbys") << describe(a);
  EXPECT_EQ(a[1].sync, (std::vector<SyncConstraint>{sc({"node2"}, 1), sc({"node3"}, 1)}));
  EXPECT_EQ(a[2].sync, (std::vector<SyncConstraint>{sc({"node3"}, 1)}));
  // Step 2: in force and caught up: the new one alone.
  t.cluster.sync = a[1].sync;
  t.self.sync_in_force = sc({"node3"}, 1);
  t.self.sync_in_force_lsn = 0x1000;
  a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease PublishSync") << describe(a);
  EXPECT_EQ(a[1].sync, (std::vector<SyncConstraint>{sc({"node3"}, 1)}));
}

TEST(Decide, test_sync_published_both_but_not_applied_yet) {
  SyncLeader t;
  t.cluster.sync = {sc({"node2"}, 1), sc({"node3"}, 1)};
  t.self.sync_in_force = sc({"node2"}, 1);
  t.cluster.members[1].streaming = false;
  const auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease SetSyncStandbys") << describe(a);
  EXPECT_EQ(a[1].sync, (std::vector<SyncConstraint>{sc({"node3"}, 1)}));
}

TEST(Decide, test_sync_on_prefers_a_standby_that_can_fail_over) {
  SyncLeader t;
  t.cluster.members[1].nofailover = true;  // node2 could never take over
  t.cluster.sync = {sc({"node2"}, 1)};
  t.self.sync_in_force = sc({"node2"}, 1);
  auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease PublishSync SetSyncStandbys") << describe(a);
  EXPECT_EQ(a[2].sync, (std::vector<SyncConstraint>{sc({"node3"}, 1)}));

  t.cluster.members.pop_back();  // only node2 left: better than nothing
  a = t.run();
  EXPECT_EQ(kinds(a), "RenewLease") << describe(a);
}

TEST(Decide, test_sync_quorum_any_k_over_all_healthy_replicas) {
  SyncLeader t;
  t.settings = config(SyncMode::Quorum, {"node1", "node2", "node3", "node4"});
  t.settings.sync_count = 2;
  t.cluster.members.push_back(replica_member("node4", 0x1000, 9900));
  t.cluster.members[2].nofailover = true;  // nofailover still acknowledges
  const auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease PublishSync SetSyncStandbys") << describe(a);
  EXPECT_EQ(a[2].sync, (std::vector<SyncConstraint>{sc({"node2", "node3", "node4"}, 2)}));
}

TEST(Decide, test_sync_non_strict_without_healthy_replicas_writes_do_not_wait) {
  SyncLeader t;
  t.cluster.sync = {sc({"node2"}, 1)};
  t.self.sync_in_force = sc({"node2"}, 1);
  t.cluster.members.resize(1);  // both replicas gone
  const auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease PublishSync SetSyncStandbys") << describe(a);
  EXPECT_EQ(a[1].sync, (std::vector<SyncConstraint>{sc({"node2"}, 1), sc({"node1"}, 1)}));
  EXPECT_EQ(a[2].sync, (std::vector<SyncConstraint>{sc({}, 0)}));
}

TEST(Decide, test_sync_strict_keeps_previous_members_without_healthy_replicas) {
  SyncLeader t;
  t.settings.strict = true;
  t.cluster.sync = {sc({"node2"}, 1)};
  t.self.sync_in_force = sc({"node2"}, 1);
  t.cluster.members.resize(1);
  EXPECT_EQ(kinds(t.run()), "RenewLease");  // writes wait for node2

  // Strict from the start, nothing in force: wait for any configured standby.
  t.cluster.sync = {};
  t.self.sync_in_force.reset();
  const auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease PublishSync SetSyncStandbys") << describe(a);
  EXPECT_EQ(a[2].sync, (std::vector<SyncConstraint>{sc({"node2", "node3"}, 1)}));
}

TEST(Decide, test_async_mode_clears_synchronous_replication) {
  SyncLeader t;
  t.settings.mode = SyncMode::Off;
  t.cluster.sync = {sc({"node2"}, 1)};
  t.self.sync_in_force = sc({"node2"}, 1);
  EXPECT_EQ(kinds(t.run()), "RenewLease SetSyncStandbys PublishSync");
}

TEST(Decide, test_sync_new_leader_keeps_old_constraints_until_its_own_are_in_force) {
  // node2 was promoted; the published constraints are node1's. node2 adds its own and only then
  // collapses to its wanted constraint.
  SyncLeader t;
  t.cluster = led_by("node2", {primary_member("node2", 0x2000, 9900, 2), replica_member("node3", 0x2000, 9900, 2)});
  t.cluster.sync = {sc({"node2"}, 1)};
  t.self = primary_node("node2", 0x2000, 9500, 2);
  const auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease PublishSync SetSyncStandbys") << describe(a);
  EXPECT_EQ(a[1].sync, (std::vector<SyncConstraint>{sc({"node2"}, 1), sc({"node3"}, 1)}));
}

TEST(Decide, test_sync_new_leader_with_a_leftover_setting_waits_for_its_standby_to_reach_the_promotion) {
  // node3 was promoted at 0x1506B; its synchronous_standby_names ({node2}) is left from an earlier
  // term. The agent reports sync_in_force_lsn as read when node3 first ran as primary with it, so
  // {node3} q=1 stays published until node2 has everything node3 had when promoted.
  SyncLeader t;
  t.cluster = led_by("node3", {primary_member("node3", 0x15100, 9900, 9), replica_member("node2", 0x149AA, 9900, 9)});
  t.cluster.members[1].streaming = false;  // slow: not healthy, but strict keeps it
  t.settings.strict = true;
  t.cluster.sync = {sc({"node3"}, 1), sc({"node2"}, 1)};
  t.self = primary_node("node3", 0x15100, 9500, 9);
  t.self.sync_in_force = sc({"node2"}, 1);
  t.self.sync_in_force_lsn = 0x1506B;
  auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease Wait") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "node2 at 0/149AA")) << a[1].reason;

  t.cluster.members[1].received_lsn = 0x1506B;
  a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease PublishSync") << describe(a);
  EXPECT_EQ(a[1].sync, (std::vector<SyncConstraint>{sc({"node2"}, 1)}));
}

// =============================================================================================
// Rule 6: planned switchover and manual failover.

struct Switchover {
  ClusterView cluster = led_by("node1", {primary_member("node1", 0x5000, 9900), replica_member("node2", 0x5000, 9900),
                                         replica_member("node3", 0x4000, 9900)});
  NodeView leader = primary_node("node1", 0x5000, 9500);
  Switchover() { cluster.switchover = SwitchoverRequest{"node1", "node2", 9000}; }
  std::vector<Action> run(const Settings& s = config()) { return decide(cluster, leader, s, 10000); }
  // Later, with the lease renewed half a second before (as a running leader's is).
  std::vector<Action> run_at(TimeMs now) {
    NodeView renewed = leader;
    renewed.lease_renewed_at = now - 500;
    return decide(cluster, renewed, config(), now);
  }
};

TEST(Decide, test_switchover_waits_until_not_before) {
  Switchover t;
  t.cluster.switchover->not_before = 15000;
  const auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease Wait") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "15000 ms")) << a[1].reason;
}

TEST(Decide, test_switchover_waits_for_target_to_catch_up) {
  Switchover t;
  t.cluster.members[1].received_lsn = 0x4F00;
  const auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease Wait") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "catch up")) << a[1].reason;
}

TEST(Decide, test_switchover_fences_then_releases_once_target_has_everything) {
  Switchover t;
  auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease Fence") << describe(a);

  t.leader.fenced = true;
  t.leader.lsn = 0x5010;  // written between the check and the fence: the target must get it too
  a = t.run();
  EXPECT_EQ(kinds(a), "RenewLease Wait") << describe(a);

  t.cluster.members[1].received_lsn = 0x5010;
  a = t.run();
  ASSERT_EQ(kinds(a), "ReleaseLease RecordHistory") << describe(a);
  EXPECT_EQ(a[0].revision, 7);
  EXPECT_EQ(a[1].target, "node2");

  t.leader.postmaster_running = false;  // fenced by a clean shutdown: the same
  EXPECT_EQ(kinds(t.run()), "ReleaseLease RecordHistory");
}

TEST(Decide, test_switchover_waits_for_a_crashed_leader_to_run_again) {
  Switchover t;
  t.leader.postmaster_running = false;  // crashed, not fenced: its final position is unknown
  const auto a = t.run();
  EXPECT_EQ(kinds(a), "RenewLease Wait StartPostgres") << describe(a);
}

TEST(Decide, test_switchover_target_promotes_without_waiting_for_others) {
  // node1 released the key at 20000 and published its final position; node3's status is stale.
  auto cluster = leaderless(20000, {primary_member("node1", 0x5010, 20500), replica_member("node2", 0x5010, 20600),
                                    replica_member("node3", 0x4000, 9900)});
  cluster.switchover = SwitchoverRequest{"node1", "node2", 9000};
  auto a = decide(cluster, replica_node("node2", 0x5010, "node1"), config(), 20700);
  EXPECT_EQ(kinds(a), "AcquireLease Promote ClearSwitchover") << describe(a);
  EXPECT_EQ(kinds(decide(cluster, replica_node("node3", 0x4000, "node1"), config(), 20700)), "Wait");
  NodeView node1 = primary_node("node1", 0x5010, 15000);
  node1.fenced = true;
  EXPECT_EQ(kinds(decide(cluster, node1, config(), 20700)), "Wait");

  // The target missing WAL the old leader wrote: no shortcut.
  cluster.members[1].received_lsn = 0x5000;
  a = decide(cluster, replica_node("node2", 0x5000, "node1"), config(), 20700);
  EXPECT_EQ(kinds(a), "Wait") << describe(a);

  // A switchover that did not complete within a TTL is ignored: the old primary takes back.
  a = decide(cluster, node1, config(), 20000 + kTtl);
  EXPECT_EQ(kinds(a), "AcquireLease ClearSwitchover") << describe(a);
}

TEST(Decide, test_switchover_to_a_nofailover_target_never_promotes_it) {
  // The leader would have cleared it; if its key vanishes anyway, the tag still holds.
  auto cluster = leaderless(20000, {primary_member("node1", 0x5010, 20500), replica_member("node2", 0x5010, 20600),
                                    replica_member("node3", 0x5010, 20600)});
  cluster.members[1].nofailover = true;
  cluster.switchover = SwitchoverRequest{"node1", "node2", 9000};
  EXPECT_FALSE(promotes(decide(cluster, replica_node("node2", 0x5010, "node1"), config(), 20700)));
}

TEST(Decide, test_switchover_cleared_because_target_unknown_or_unhealthy) {
  Switchover t;
  t.cluster.switchover->to = "node9";
  auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease ClearSwitchover") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "node9 is not a member")) << a[1].reason;

  // Down, or tagged nofailover: nothing to wait for.
  t.cluster.switchover->to = "node2";
  t.cluster.members[1].running = false;
  t.cluster.members[1].streaming = false;
  a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease ClearSwitchover") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "streaming")) << a[1].reason;
  t.cluster.members[1].running = true;
  t.cluster.members[1].streaming = true;
  t.cluster.members[1].nofailover = true;
  a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease ClearSwitchover") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "nofailover")) << a[1].reason;
}

TEST(Decide, test_switchover_waits_a_ttl_for_a_target_that_is_about_to_stream) {
  // node2 runs but its WAL receiver is reconnecting (or it streams on an older timeline: it began
  // following this leader a loop ago). The request was due at 9000: it waits until 9000 + TTL.
  for (bool older_timeline : {false, true}) {
    Switchover t;
    if (older_timeline) {
      t.leader.timeline = 2;
      for (auto& m : t.cluster.members) m.timeline = m.name == "node2" ? 1 : 2;
    } else {
      t.cluster.members[1].streaming = false;
    }
    auto a = t.run();
    ASSERT_EQ(kinds(a), "RenewLease Wait") << describe(a);
    EXPECT_TRUE(mentions(a[1].reason, older_timeline ? "timeline 1" : "streaming")) << a[1].reason;
    EXPECT_TRUE(mentions(a[1].reason, std::to_string(9000 + kTtl) + " ms")) << a[1].reason;
    a = t.run_at(9000 + kTtl - 1);
    EXPECT_EQ(kinds(a), "RenewLease Wait") << describe(a);
    a = t.run_at(9000 + kTtl);
    EXPECT_EQ(kinds(a), "RenewLease ClearSwitchover") << describe(a);

    // Once it streams on the leader's timeline, the switchover goes on.
    t.cluster.members[1].streaming = true;
    t.cluster.members[1].timeline = t.leader.timeline;
    EXPECT_EQ(kinds(t.run()), "RenewLease Fence");
  }
}

TEST(Decide, test_switchover_target_grace_counts_from_the_request_or_its_due_time) {
  Switchover t;
  t.cluster.members[1].streaming = false;
  // Requested at 12000 for "now" (not_before in the past: the later of the two counts).
  t.cluster.switchover->requested_at = 12000;
  EXPECT_EQ(kinds(t.run_at(12000 + kTtl - 1)), "RenewLease Wait");
  EXPECT_EQ(kinds(t.run_at(12000 + kTtl)), "RenewLease ClearSwitchover");
  // A request whose time is unknown (written by an older pgfleet, without --at) gets no grace.
  t.cluster.switchover->requested_at = 0;
  t.cluster.switchover->not_before = 0;
  EXPECT_EQ(kinds(t.run()), "RenewLease ClearSwitchover");
}

TEST(Decide, test_switchover_does_not_wait_for_a_target_once_writes_are_fenced) {
  // The leader fenced for the handover and then found the target unfit: waiting would keep
  // writes stopped. Dropping the request lifts the fence.
  Switchover t;
  t.leader.fenced = true;
  t.leader.timeline = 2;
  for (auto& m : t.cluster.members) m.timeline = m.name == "node2" ? 1 : 2;
  const auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease ClearSwitchover Promote") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "timeline 1")) << a[1].reason;
  EXPECT_TRUE(mentions(a[2].reason, "lift the fence")) << a[2].reason;
}

TEST(Decide, test_switchover_without_target_waits_for_a_replica_about_to_stream) {
  Switchover t;
  t.cluster.switchover->to = "";
  for (auto i : {1, 2}) t.cluster.members[i].streaming = false;
  auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease Wait") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "no healthy streaming replica")) << a[1].reason;
  EXPECT_EQ(kinds(t.run_at(9000 + kTtl)), "RenewLease ClearSwitchover");
  // Replicas that are down are not waited for.
  for (auto i : {1, 2}) t.cluster.members[i].running = false;
  EXPECT_EQ(kinds(t.run()), "RenewLease ClearSwitchover");
}

TEST(Decide, test_switchover_to_best_candidate_when_no_target_named) {
  Switchover t;
  t.cluster.switchover->to = "";
  t.cluster.members[2].received_lsn = 0x5000;  // tie: lowest name
  const auto a = t.run();
  ASSERT_EQ(kinds(a), "RenewLease Fence") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "to node2")) << a[1].reason;
}

TEST(Decide, test_switchover_without_target_is_recorded_once) {
  // The leader records the switchover when it releases the key...
  Switchover t;
  t.cluster.switchover->to = "";
  t.leader.fenced = true;
  auto a = t.run();
  ASSERT_EQ(kinds(a), "ReleaseLease RecordHistory") << describe(a);
  EXPECT_EQ(a[1].target, "node2");
  EXPECT_TRUE(a[1].reason.starts_with("switchover from node1 to node2")) << a[1].reason;
  EXPECT_EQ(a[1].lsn, 0x5000u);  // where the old primary's writes stopped

  // ...and the node elected in its place promotes without recording a failover as well.
  auto cluster = leaderless(20000, {primary_member("node1", 0x5010, 20500), replica_member("node2", 0x5010, 20600),
                                    replica_member("node3", 0x4000, 20600)});
  cluster.switchover = SwitchoverRequest{"node1", "", 9000};
  a = decide(cluster, replica_node("node2", 0x5010, "node1"), config(), 20700);
  EXPECT_EQ(kinds(a), "AcquireLease Promote ClearSwitchover") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "switchover from node1")) << a[1].reason;
  EXPECT_EQ(kinds(decide(cluster, replica_node("node3", 0x4000, "node1"), config(), 20700)), "Wait");

  // Once the switchover is stale (its leader released the key a TTL ago), it is a failover again.
  cluster.members.erase(cluster.members.begin());  // node1 is gone
  a = decide(cluster, replica_node("node2", 0x5010, "node1"), config(), 20000 + kTtl);
  auto record = std::find_if(a.begin(), a.end(), [](const Action& x) { return x.kind == ActionKind::RecordHistory; });
  ASSERT_TRUE(record != a.end()) << describe(a);
  EXPECT_EQ(record->lsn, 0x5010u);
}

TEST(Decide, test_switchover_rejected_to_a_non_synchronous_standby) {
  Switchover t;
  t.cluster.switchover->to = "node3";
  t.cluster.members[2].received_lsn = 0x5000;
  t.cluster.sync = {sc({"node2"}, 1)};
  t.leader.sync_in_force = sc({"node2"}, 1);
  const auto a = t.run(config(SyncMode::On));
  ASSERT_EQ(kinds(a), "RenewLease ClearSwitchover") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "not in the synchronous set")) << a[1].reason;
}

TEST(Decide, test_switchover_cleared_because_requested_from_another_node) {
  Switchover t;
  t.cluster.switchover->from = "node3";
  EXPECT_EQ(kinds(t.run()), "RenewLease ClearSwitchover");
}

TEST(Decide, test_manual_failover_to_named_node) {
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000), replica_member("node3", 0x800, 40000)});
  cluster.failover_to = "node3";
  auto a = decide(cluster, replica_node("node3", 0x800, "node1"), config(), 40100);
  EXPECT_EQ(kinds(a), "AcquireLease Promote RecordHistory ClearSwitchover") << describe(a);
  a = decide(cluster, replica_node("node2", 0x900, "node1"), config(), 40100);
  EXPECT_EQ(kinds(a), "Wait") << describe(a);

  cluster.paused = true;  // a manual failover is allowed in maintenance mode
  EXPECT_TRUE(promotes(decide(cluster, replica_node("node3", 0x800, "node1"), config(), 40100)));
}

TEST(Decide, test_manual_failover_blocked_by_sync_constraints) {
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000), replica_member("node3", 0x800, 40000)});
  cluster.sync = {sc({"node2", "node3"}, 1)};
  cluster.failover_to = "node3";
  const auto a = decide(cluster, replica_node("node3", 0x800, "node1"), config(SyncMode::Quorum), 40100);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "node2 has more WAL")) << a[0].reason;
  EXPECT_FALSE(promotes(decide(cluster, replica_node("node2", 0x900, "node1"), config(SyncMode::Quorum), 40100)));
}

TEST(Decide, test_manual_failover_to_absent_node_is_ignored) {
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000)});
  cluster.failover_to = "node9";
  const auto a = decide(cluster, replica_node("node2", 0x900, "node1"), config(), 40100);
  EXPECT_EQ(kinds(a), "AcquireLease Promote RecordHistory ClearSwitchover") << describe(a);
}

TEST(Decide, test_manual_failover_cleared_while_leader_alive) {
  ClusterView cluster = led_by("node1", {primary_member("node1", 100, 9900)});
  cluster.failover_to = "node2";
  EXPECT_EQ(kinds(decide(cluster, primary_node("node1", 100, 9500), config(), 10000)), "RenewLease ClearSwitchover");
}

// =============================================================================================
// Rule 7: the DCS is unreachable.

TEST(Decide, test_dcs_unreachable_replica_keeps_following) {
  ClusterView cluster = led_by("node1", {primary_member("node1", 100, 9900)});
  cluster.dcs_reachable = false;
  EXPECT_EQ(kinds(decide(cluster, replica_node("node2", 100, "node1"), config(), 10000)), "Wait");
}

TEST(Decide, test_dcs_unreachable_nobody_promotes_or_acquires) {
  ClusterView cluster = leaderless(39500, {replica_member("node2", 0x900, 40000)});
  cluster.dcs_reachable = false;
  EXPECT_EQ(kinds(decide(cluster, replica_node("node2", 0x900, "node1"), config(), 40100)), "Wait");
  NodeView node1 = primary_node("node1", 0x900, 0);
  node1.fenced = true;
  EXPECT_EQ(kinds(decide(cluster, node1, config(), 40100)), "Wait");
}

// =============================================================================================
// Clock jumps.

TEST(Decide, test_clock_backwards_fences_and_renews_with_the_current_revision) {
  const auto cluster = led_by("node1", {primary_member("node1", 100, 9900)}, 55);
  const auto a = decide(cluster, primary_node("node1", 100, 50000), config(), 40000);
  ASSERT_EQ(kinds(a), "Fence RenewLease") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "backwards")) << a[0].reason;
  EXPECT_EQ(a[1].revision, 55);

  ClusterView down = cluster;
  down.dcs_reachable = false;
  EXPECT_EQ(kinds(decide(down, primary_node("node1", 100, 50000), config(), 40000)), "Fence");
}

TEST(Decide, test_clock_far_forward_fences) {
  const auto cluster = led_by("node1", {primary_member("node1", 100, 9900)});
  EXPECT_EQ(kinds(decide(cluster, primary_node("node1", 100, 9500), config(), 9500 + 1000000000)),
            "Fence RenewLease");
}

// =============================================================================================
// Rule 8: failsafe mode (the DCS unreachable; every member confirms over the API).

ClusterView unreachable_led_by_node1(bool failsafe) {
  ClusterView c = led_by("node1", {primary_member("node1", 100, 9900), replica_member("node2", 100, 9900)});
  c.dcs_reachable = false;
  c.failsafe = failsafe;
  return c;
}

TEST(Decide, test_no_fence_because_every_member_confirmed_in_failsafe_mode) {
  NodeView node1 = primary_node("node1", 100, 10000);  // lease safe until 38000
  node1.failsafe_confirmed_at = 37500;                 // safe until 37500 + 30000 - 2000
  auto a = decide(unreachable_led_by_node1(true), node1, config(), 40000);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "failsafe mode")) << a[0].reason;
  EXPECT_TRUE(mentions(a[0].reason, "65500 ms")) << a[0].reason;
  EXPECT_EQ(kinds(decide(unreachable_led_by_node1(true), node1, config(), 65499)), "Wait");
  // The confirmation is as old as a lease would be: fence exactly as then.
  a = decide(unreachable_led_by_node1(true), node1, config(), 65500);
  EXPECT_EQ(kinds(a), "Fence") << describe(a);
}

TEST(Decide, test_fence_because_failsafe_mode_is_off_even_with_confirmations) {
  NodeView node1 = primary_node("node1", 100, 10000);
  node1.failsafe_confirmed_at = 37500;
  EXPECT_EQ(kinds(decide(unreachable_led_by_node1(false), node1, config(), 40000)), "Fence");
}

TEST(Decide, test_fence_because_no_round_confirmed_by_every_member) {
  NodeView node1 = primary_node("node1", 100, 10000);  // failsafe_confirmed_at 0: a member did not answer yes
  EXPECT_EQ(kinds(decide(unreachable_led_by_node1(true), node1, config(), 38000)), "Fence");
  node1.failsafe_confirmed_at = 9000;  // confirmed once, long ago
  EXPECT_EQ(kinds(decide(unreachable_led_by_node1(true), node1, config(), 38000)), "Fence");
  node1.failsafe_confirmed_at = 39000;  // a round dated after now: the clock jumped back
  EXPECT_EQ(kinds(decide(unreachable_led_by_node1(true), node1, config(), 38000)), "Fence");
}

TEST(Decide, test_renew_without_fence_because_dcs_back_within_failsafe) {
  ClusterView cluster = unreachable_led_by_node1(true);
  cluster.dcs_reachable = true;
  NodeView node1 = primary_node("node1", 100, 10000);
  node1.failsafe_confirmed_at = 47000;
  const auto a = decide(cluster, node1, config(), 50000);
  ASSERT_EQ(kinds(a), "RenewLease") << describe(a);
  EXPECT_EQ(a[0].revision, 7);
}

TEST(Decide, test_take_the_key_back_because_it_expired_during_a_confirmed_outage) {
  auto cluster = leaderless(40000, {primary_member("node1", 500, 48000), replica_member("node2", 500, 48000)});
  cluster.failsafe = true;
  NodeView node1 = primary_node("node1", 500, 10000);
  node1.failsafe_confirmed_at = 47000;
  auto a = decide(cluster, node1, config(), 50000);
  ASSERT_EQ(kinds(a), "AcquireLease") << describe(a);  // no Fence: writes never stop
  EXPECT_TRUE(mentions(a[0].reason, "takes it back")) << a[0].reason;

  node1.failsafe_confirmed_at = 0;  // without the confirmations: stop writes first, as always
  EXPECT_EQ(kinds(decide(cluster, node1, config(), 50000)), "Fence AcquireLease");
}

TEST(Decide, test_replica_that_confirmed_does_not_take_the_key_for_a_ttl) {
  // node1 is cut off from the DCS but not from node2, which confirmed at 45000; node1's key expired.
  auto cluster = leaderless(40000, {replica_member("node2", 0x900, 46000), replica_member("node3", 0x800, 46000)});
  cluster.failsafe = true;
  NodeView node2 = replica_node("node2", 0x900, "node1");
  node2.failsafe_leader = "node1";
  node2.failsafe_heard_at = 45000;
  auto a = decide(cluster, node2, config(), 46500);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "confirmed at 45000 ms that it follows node1")) << a[0].reason;
  // Even if the mode was switched off meanwhile: the promise was given.
  cluster.failsafe = false;
  EXPECT_EQ(kinds(decide(cluster, node2, config(), 74999)), "Wait");
  // A TTL after its last answer node1 has stopped writing (it fenced two loops earlier).
  a = decide(cluster, node2, config(), 75000);
  EXPECT_EQ(kinds(a), "AcquireLease Promote RecordHistory") << describe(a);
}

TEST(Decide, test_nobody_elected_while_a_member_reports_a_failsafe_confirmation) {
  // node3 confirmed to node1 (and publishes it); node2, which did not, must not take over either.
  auto cluster = leaderless(40000, {replica_member("node2", 0x900, 46000), replica_member("node3", 0x800, 46000)});
  cluster.members[1].failsafe_for = "node1";
  auto a = decide(cluster, replica_node("node2", 0x900, "node1"), config(), 46500);
  ASSERT_EQ(kinds(a), "Wait") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "node3 confirmed")) << a[0].reason;
  cluster.members[1].failsafe_for.clear();  // its promise ended
  EXPECT_EQ(kinds(decide(cluster, replica_node("node2", 0x900, "node1"), config(), 46500)),
            "AcquireLease Promote RecordHistory");
}

// =============================================================================================
// Rule 9: a leader that does not run as primary within primary_start_timeout steps down.

constexpr TimeMs kStart = 300000;  // primary_start_timeout (the default)

TEST(Decide, test_step_down_because_the_promotion_did_not_finish_in_time) {
  // node2 won the key at 10000 and has tried to promote since (pg_promote fails every time).
  const auto cluster = led_by("node2", {replica_member("node2", 0x900, 9900), replica_member("node3", 0x900, 9900)}, 12);
  NodeView node2 = replica_node("node2", 0x900, "");
  node2.lease_renewed_at = 10000 + kStart - 1000;
  node2.leading_down_since = 10000;
  auto a = decide(cluster, node2, config(), 10000 + kStart - 1);
  EXPECT_EQ(kinds(a), "RenewLease Promote") << describe(a);

  a = decide(cluster, node2, config(), 10000 + kStart);
  ASSERT_EQ(kinds(a), "StepDown ReleaseLease") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "its promotion did not finish")) << a[0].reason;
  EXPECT_TRUE(mentions(a[0].reason, "primary_start_timeout 300000 ms")) << a[0].reason;
  EXPECT_EQ(a[1].revision, 12);
}

TEST(Decide, test_step_down_because_the_primary_does_not_start) {
  // node1 holds the key; its PostgreSQL crashes on every start (a full disk, a broken setting).
  const auto cluster = led_by("node1", {primary_member("node1", 0x900, 9900), replica_member("node2", 0x900, 9900)}, 5);
  NodeView node1 = primary_node("node1", 0x900, 10000 + kStart - 500);
  node1.postmaster_running = false;
  node1.accepting = false;
  node1.leading_down_since = 10000;
  EXPECT_EQ(kinds(decide(cluster, node1, config(), 10000 + kStart - 1)), "RenewLease StartPostgres");
  auto a = decide(cluster, node1, config(), 10000 + kStart);
  ASSERT_EQ(kinds(a), "StepDown ReleaseLease") << describe(a);
  EXPECT_TRUE(mentions(a[0].reason, "it did not start")) << a[0].reason;

  // Its postmaster runs but never accepts connections (crash recovery that does not end): it is
  // stopped before the key goes, so it cannot start taking writes without the key.
  node1.postmaster_running = true;
  a = decide(cluster, node1, config(), 10000 + kStart);
  EXPECT_EQ(kinds(a), "StepDown Fence ReleaseLease") << describe(a);
}

TEST(Decide, test_no_step_down_while_paused_or_without_the_dcs) {
  auto cluster = led_by("node2", {replica_member("node2", 0x900, 9900), replica_member("node3", 0x900, 9900)});
  NodeView node2 = replica_node("node2", 0x900, "");
  node2.lease_renewed_at = 10000 + kStart - 1000;
  node2.leading_down_since = 10000;
  cluster.paused = true;  // maintenance: the operator restarts things on purpose
  EXPECT_FALSE(mentions(kinds(decide(cluster, node2, config(), 10000 + kStart)), "StepDown"));
  cluster.paused = false;
  cluster.dcs_reachable = false;  // nobody could be elected meanwhile anyway
  EXPECT_FALSE(mentions(kinds(decide(cluster, node2, config(), 10000 + kStart)), "StepDown"));
}

TEST(Decide, test_step_down_when_the_key_expired_during_a_blocked_promotion) {
  // pg_promote blocked the loop past the TTL: the key is gone, the clock still runs.
  const auto cluster = leaderless(20000, {replica_member("node2", 0x900, 21000), replica_member("node3", 0x900, 21000)});
  NodeView node2 = replica_node("node2", 0x900, "");
  node2.leading_down_since = 10000;
  EXPECT_EQ(kinds(decide(cluster, node2, config(), 10000 + kStart)), "StepDown");
}

TEST(Decide, test_election_takes_a_member_that_stepped_down_last) {
  // node2 is ahead but stepped down (it published so); node3 takes over.
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000), replica_member("node3", 0x800, 40000)});
  cluster.members[0].stepped_down = true;
  EXPECT_EQ(kinds(decide(cluster, replica_node("node2", 0x900, "node1"), config(), 40100)), "Wait");
  auto a = decide(cluster, replica_node("node3", 0x800, "node1"), config(), 40100);
  ASSERT_EQ(kinds(a), "AcquireLease Promote RecordHistory") << describe(a);
  EXPECT_TRUE(mentions(a[1].reason, "node2 stepped down recently: the last choice")) << a[1].reason;

  // node2's own status in the DCS does not say so yet (it stepped down this loop): it knows.
  cluster.members[0].stepped_down = false;
  NodeView node2 = replica_node("node2", 0x900, "node1");
  node2.stepped_down_at = 39000;
  EXPECT_EQ(kinds(decide(cluster, node2, config(), 40100)), "Wait");
  // ...for max(primary_start_timeout, ttl); then it is a candidate like any other again.
  EXPECT_TRUE(promotes(decide(cluster, node2, config(), 39000 + kStart)));
}

TEST(Decide, test_a_member_that_stepped_down_is_elected_when_nobody_else_may_take_over) {
  // node3 is not running; node2, which stepped down, is the only candidate: retrying beats no primary.
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000), replica_member("node3", 0x800, 40000)});
  cluster.members[0].stepped_down = true;
  cluster.members[1].running = false;
  EXPECT_TRUE(promotes(decide(cluster, replica_node("node2", 0x900, "node1"), config(), 40100)));

  // Async: node3 runs but is too far behind what the old primary wrote; node2 is close enough.
  cluster = leaderless(39500, {primary_member("node1", 0x10000000, 9800), replica_member("node2", 0x10000000, 40000),
                               replica_member("node3", 0x800, 40000)});
  cluster.members[1].stepped_down = true;
  auto a = decide(cluster, replica_node("node2", 0x10000000, "node1"), config(), 40100);
  EXPECT_TRUE(promotes(a)) << describe(a);
  EXPECT_FALSE(promotes(decide(cluster, replica_node("node3", 0x800, "node1"), config(), 40100)));
}

TEST(Decide, test_manual_failover_may_name_a_member_that_stepped_down) {
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000), replica_member("node3", 0x900, 40000)});
  cluster.members[0].stepped_down = true;
  cluster.failover_to = "node2";
  EXPECT_TRUE(promotes(decide(cluster, replica_node("node2", 0x900, "node1"), config(), 40100)));
}

TEST(LeadingClock, starts_when_holding_the_key_without_running_as_primary) {
  const auto mine = led_by("node2", {});
  NodeView promoting = replica_node("node2", 0x900, "");
  EXPECT_EQ(next_leading_clock({}, mine, promoting, 5000), (LeadingClock{5000, 0x900}));
  NodeView serving = primary_node("node2", 0x900, 4000);
  EXPECT_EQ(next_leading_clock({}, mine, serving, 5000), LeadingClock{});
  // Not holding the key and not leading before: no clock.
  EXPECT_EQ(next_leading_clock({}, leaderless(1000, {}), promoting, 5000), LeadingClock{});
  // The last known key while the DCS is unreachable does not start it.
  auto unreachable = mine;
  unreachable.dcs_reachable = false;
  EXPECT_EQ(next_leading_clock({}, unreachable, promoting, 5000), LeadingClock{});
}

TEST(LeadingClock, keeps_running_until_the_node_serves_or_another_leads) {
  const LeadingClock running{5000, 0x900};
  NodeView stuck = replica_node("node2", 0x900, "");
  EXPECT_EQ(next_leading_clock(running, led_by("node2", {}), stuck, 9000), running);
  EXPECT_EQ(next_leading_clock(running, leaderless(6000, {}), stuck, 9000), running);  // key lost meanwhile
  NodeView down = stuck;
  down.postmaster_running = false;
  down.accepting = false;
  EXPECT_EQ(next_leading_clock(running, led_by("node2", {}), down, 9000), running);  // crashed while promoting
  EXPECT_EQ(next_leading_clock(running, led_by("node3", {}), stuck, 9000), LeadingClock{});
  EXPECT_EQ(next_leading_clock(running, led_by("node2", {}), primary_node("node2", 0x900, 8000), 9000), LeadingClock{});
  NodeView fenced = primary_node("node2", 0x900, 8000);
  fenced.fenced = true;  // a fenced primary holding the key: it lifts the fence next loop
  EXPECT_EQ(next_leading_clock(running, led_by("node2", {}), fenced, 9000), running);
  NodeView no_data = stuck;
  no_data.data_exists = false;
  EXPECT_EQ(next_leading_clock(running, led_by("node2", {}), no_data, 9000), LeadingClock{});
}

TEST(LeadingClock, restarts_while_a_promotion_still_replays) {
  const LeadingClock running{5000, 0x900};
  NodeView replaying = replica_node("node2", 0x900, "");
  replaying.replayed_lsn = 0x1900;
  EXPECT_EQ(next_leading_clock(running, led_by("node2", {}), replaying, 9000), (LeadingClock{9000, 0x1900}));
  replaying.accepting = false;  // a position read while not accepting is the last one published, not progress
  EXPECT_EQ(next_leading_clock(running, led_by("node2", {}), replaying, 9000), running);
}

TEST(SitsOut, for_the_longer_of_primary_start_timeout_and_ttl) {
  Settings s = config();
  EXPECT_FALSE(sits_out(0, s, 1000));
  EXPECT_TRUE(sits_out(1000, s, 1000));
  EXPECT_TRUE(sits_out(1000, s, 1000 + kStart - 1));
  EXPECT_FALSE(sits_out(1000, s, 1000 + kStart));
  EXPECT_FALSE(sits_out(1000, s, 999));  // a clock that went backwards: no judgement
  s.primary_start_timeout = 0;
  EXPECT_TRUE(sits_out(1000, s, 1000 + kTtl - 1));
  EXPECT_FALSE(sits_out(1000, s, 1000 + kTtl));
}

// =============================================================================================
// Properties.

TEST(Decide, test_same_inputs_same_actions) {
  auto cluster = leaderless(39500, {replica_member("node2", 0x900, 40000), replica_member("node3", 0x800, 40000)});
  cluster.sync = {sc({"node2", "node3"}, 1)};
  const NodeView node2 = replica_node("node2", 0x900, "node1");
  EXPECT_EQ(decide(cluster, node2, config(SyncMode::Quorum), 40100), decide(cluster, node2, config(SyncMode::Quorum), 40100));
}

TEST(Decide, test_every_action_has_a_reason) {
  Switchover t;
  for (const auto& a : t.run()) EXPECT_FALSE(a.reason.empty()) << to_string(a.kind);
  EXPECT_EQ(to_string(ActionKind::SetSyncStandbys), "SetSyncStandbys");
}

}  // namespace
