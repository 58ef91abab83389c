// Health-check rules (Patroni-compatible status codes) and lag limits.
#include <gtest/gtest.h>

#include "http/health.hpp"

namespace pgfleet::http {
namespace {

TEST(LagLimit, ReadsSizesAndDurations) {
  auto mb = parse_lag_limit("10MB");
  ASSERT_TRUE(mb);
  EXPECT_EQ(mb->kind, LagLimit::Kind::Bytes);
  EXPECT_DOUBLE_EQ(mb->value, 10.0 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(parse_lag_limit("16384")->value, 16384);
  EXPECT_DOUBLE_EQ(parse_lag_limit("1kB")->value, 1024);
  EXPECT_DOUBLE_EQ(parse_lag_limit("2 GB")->value, 2.0 * 1024 * 1024 * 1024);
  auto s = parse_lag_limit("5s");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->kind, LagLimit::Kind::Seconds);
  EXPECT_DOUBLE_EQ(s->value, 5);
  EXPECT_DOUBLE_EQ(parse_lag_limit("500ms")->value, 0.5);
  EXPECT_DOUBLE_EQ(parse_lag_limit("2min")->value, 120);
  for (const char* bad : {"", "MB", "10XB", "-5s", "1.2.3MB", "s5"}) EXPECT_FALSE(parse_lag_limit(bad)) << bad;
}

NodeFacts primary() {
  NodeFacts f;
  f.member.name = "node1";
  f.member.role = "primary";
  f.member.state = "running";
  f.leader = "node1";
  return f;
}

NodeFacts replica(const std::string& sync_state = "async", int64_t lag = 0) {
  NodeFacts f;
  f.member.name = "node2";
  f.member.role = "replica";
  f.member.state = "streaming";
  f.leader = "node1";
  f.lag_bytes = lag;
  f.sync_state = sync_state;
  return f;
}

TEST(HealthChecks, PrimaryAnswersOnlyPrimaryChecks) {
  auto p = primary();
  EXPECT_EQ(evaluate(Check::Primary, p, {}), 200);
  EXPECT_EQ(evaluate(Check::Leader, p, {}), 200);
  EXPECT_EQ(evaluate(Check::ReadOnly, p, {}), 200);
  EXPECT_EQ(evaluate(Check::Health, p, {}), 200);
  EXPECT_EQ(evaluate(Check::Readiness, p, {}), 200);
  EXPECT_EQ(evaluate(Check::Replica, p, {}), 503);
  EXPECT_EQ(evaluate(Check::Sync, p, {}), 503);
  EXPECT_EQ(evaluate(Check::Async, p, {}), 503);
}

TEST(HealthChecks, FencedOrKeylessPrimaryIsNoPrimary) {
  auto p = primary();
  p.fenced = true;
  EXPECT_EQ(evaluate(Check::Primary, p, {}), 503);
  auto q = primary();
  q.leader = "node3";
  EXPECT_EQ(evaluate(Check::Primary, q, {}), 503);
  q.leader.clear();
  EXPECT_EQ(evaluate(Check::Primary, q, {}), 503);
  EXPECT_EQ(evaluate(Check::Health, q, {}), 200);  // PostgreSQL still runs
}

TEST(HealthChecks, ReplicaChecksFollowStreamingLagAndSyncState) {
  auto r = replica("sync", 1000);
  EXPECT_EQ(evaluate(Check::Primary, r, {}), 503);
  EXPECT_EQ(evaluate(Check::Replica, r, {}), 200);
  EXPECT_EQ(evaluate(Check::Sync, r, {}), 200);
  EXPECT_EQ(evaluate(Check::Async, r, {}), 503);
  EXPECT_EQ(evaluate(Check::Replica, r, LagLimit{LagLimit::Kind::Bytes, 999}), 503);
  EXPECT_EQ(evaluate(Check::Replica, r, LagLimit{LagLimit::Kind::Bytes, 1000}), 200);
  r.member.replay_delay_seconds = 7;
  EXPECT_EQ(evaluate(Check::Replica, r, LagLimit{LagLimit::Kind::Seconds, 5}), 503);
  EXPECT_EQ(evaluate(Check::Replica, r, LagLimit{LagLimit::Kind::Seconds, 10}), 200);
  auto a = replica("async");
  EXPECT_EQ(evaluate(Check::Async, a, {}), 200);
  EXPECT_EQ(evaluate(Check::Sync, a, {}), 503);
  EXPECT_EQ(evaluate(Check::Sync, replica("quorum"), {}), 200);
  auto down = replica();
  down.member.state = "running";  // WAL receiver not streaming
  EXPECT_EQ(evaluate(Check::Replica, down, {}), 503);
  EXPECT_EQ(evaluate(Check::Health, down, {}), 200);
  auto unknown_lag = replica();
  unknown_lag.lag_bytes.reset();
  EXPECT_EQ(evaluate(Check::Replica, unknown_lag, LagLimit{LagLimit::Kind::Bytes, 1e12}), 503);
}

TEST(HealthChecks, AReplicaTaggedNoloadbalanceLeavesTheLoadBalancingChecks) {
  NodeFacts r = replica();
  r.member.noloadbalance = true;
  EXPECT_EQ(evaluate(Check::Replica, r, {}), 503);
  EXPECT_EQ(evaluate(Check::ReadOnly, r, {}), 503);
  EXPECT_EQ(evaluate(Check::Readiness, r, {}), 200) << "it is still a ready replica";
  EXPECT_EQ(evaluate(Check::Health, r, {}), 200);
  auto doc = node_document(r);
  EXPECT_EQ(doc["tags"], nlohmann::json({{"noloadbalance", true}}));
  EXPECT_FALSE(node_document(replica()).contains("tags")) << "no tags, no key (as Patroni)";
}

TEST(HealthChecks, LivenessFollowsTheAgentLoop) {
  auto f = replica();
  f.loop_age_ms = 1000;
  f.ttl_ms = 30000;
  EXPECT_EQ(evaluate(Check::Liveness, f, {}), 200);
  f.loop_age_ms = 31000;
  EXPECT_EQ(evaluate(Check::Liveness, f, {}), 503);
  f.member.state = "stopped";
  EXPECT_EQ(evaluate(Check::Health, f, {}), 503);
}

TEST(HealthChecks, PathsIncludePatroniAliases) {
  EXPECT_EQ(check_for_path("/master"), Check::Primary);
  EXPECT_EQ(check_for_path("/standby"), Check::Replica);
  EXPECT_EQ(check_for_path("/synchronous"), Check::Sync);
  EXPECT_EQ(check_for_path("/asynchronous"), Check::Async);
  EXPECT_FALSE(check_for_path("/nope"));
}

TEST(HealthChecks, NodeDocumentHasPatroniFields) {
  auto r = replica("sync", 42);
  r.member.received_lsn = "0/3000060";
  r.member.replayed_lsn = "0/3000000";
  auto doc = node_document(r);
  EXPECT_EQ(doc["role"], "replica");
  EXPECT_EQ(doc["xlog"]["received_location"], 0x3000060);
  EXPECT_EQ(doc["xlog"]["replayed_location"], 0x3000000);
  EXPECT_EQ(doc["lag_bytes"], 42);
  EXPECT_EQ(doc["sync_state"], "sync");
  EXPECT_EQ(doc["leader"], "node1");
  auto p = primary();
  p.member.current_lsn = "0/5000000";
  EXPECT_EQ(node_document(p)["xlog"]["location"], 0x5000000);
}

}  // namespace
}  // namespace pgfleet::http
