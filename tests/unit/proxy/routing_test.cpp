// Routing policy of the rw-split port: statement → primary or replica (with the real classifier),
// session stickiness, the replica choice (weights, load, lag, causal reads), and the WAL end a
// primary's insert LSN stands for.
#include "proxy/routing.hpp"
#include "proxy/health.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace pgfleet::proxy {
namespace {

StatementRoute route(const std::string& sql, SessionRouting& session) {
  return route_statement(sql::classify(sql), session, sql);
}

StatementRoute route(const std::string& sql) {
  SessionRouting session;
  return route(sql, session);
}

struct Case {
  const char* sql;
  bool primary;
  RouteReason reason;
};

TEST(RouteStatement, RoutingTable) {
  const std::vector<Case> cases = {
      {"SELECT 1", false, RouteReason::kRead},
      {"select * from t where id = $1", false, RouteReason::kRead},
      {"WITH x AS (SELECT 1) SELECT * FROM x", false, RouteReason::kRead},
      {"SHOW work_mem", false, RouteReason::kRead},
      {"VALUES (1), (2)", false, RouteReason::kRead},
      {"EXPLAIN SELECT * FROM t", false, RouteReason::kRead},
      {"SELECT count(*), now(), lower('A') FROM t", false, RouteReason::kRead},
      {"SELECT inet_server_port(), pg_is_in_recovery()", false, RouteReason::kRead},
      {"SELECT * FROM t FOR UPDATE", true, RouteReason::kWrite},
      {"SELECT * FROM t FOR SHARE", true, RouteReason::kWrite},
      {"SELECT * FROM t FOR NO KEY UPDATE", true, RouteReason::kWrite},
      {"SELECT * FROM t FOR KEY SHARE", true, RouteReason::kWrite},
      {"INSERT INTO t VALUES (1)", true, RouteReason::kWrite},
      {"UPDATE t SET a = 1", true, RouteReason::kWrite},
      {"DELETE FROM t", true, RouteReason::kWrite},
      {"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", true, RouteReason::kWrite},
      {"WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", true, RouteReason::kWrite},
      {"CREATE TABLE t2 (a int)", true, RouteReason::kWrite},
      {"ALTER TABLE t ADD COLUMN b int", true, RouteReason::kWrite},
      {"DROP TABLE t", true, RouteReason::kWrite},
      {"TRUNCATE t", true, RouteReason::kWrite},
      {"LOCK TABLE t", true, RouteReason::kWrite},
      {"COPY t FROM STDIN", true, RouteReason::kWrite},
      {"CALL p()", true, RouteReason::kWrite},
      {"DO $$ BEGIN END $$", true, RouteReason::kWrite},
      {"SELECT * INTO t3 FROM t", true, RouteReason::kWrite},
      {"NOTIFY ch", true, RouteReason::kWrite},
      {"VACUUM t", true, RouteReason::kWrite},
      {"EXPLAIN ANALYZE DELETE FROM t", true, RouteReason::kWrite},
      {"SELEC 1", true, RouteReason::kWrite},  // a parse error
      {"SELECT nextval('s')", true, RouteReason::kFunction},
      {"SELECT setval('s', 1)", true, RouteReason::kFunction},
      {"SELECT pg_advisory_lock(1)", true, RouteReason::kFunction},
      {"SELECT pg_try_advisory_xact_lock(1)", true, RouteReason::kFunction},
      {"SELECT my_function(1)", true, RouteReason::kFunction},
      {"SELECT txid_current()", true, RouteReason::kFunction},
      {"BEGIN", true, RouteReason::kTransaction},
      {"START TRANSACTION", true, RouteReason::kTransaction},
      {"BEGIN READ WRITE", true, RouteReason::kTransaction},
      {"BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", true, RouteReason::kTransaction},
      {"BEGIN READ ONLY", false, RouteReason::kReadOnlyTransaction},
      {"START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", false, RouteReason::kReadOnlyTransaction},
      {"BEGIN; INSERT INTO t VALUES (1); COMMIT", true, RouteReason::kTransaction},
      {"/* pgfleet:primary */ SELECT 1", true, RouteReason::kHint},
      {"-- pgfleet:primary\nSELECT 1", true, RouteReason::kHint},
      {"/* pgfleet:replica */ SELECT 1", false, RouteReason::kHint},
      {"/* pgfleet:replica */ SELECT my_report()", false, RouteReason::kHint},
      {"/* pgfleet:replica */ INSERT INTO t VALUES (1)", true, RouteReason::kWrite},  // never a write
      {"/* pgfleet:replica */ SELECT nextval('s')", true, RouteReason::kFunction},
  };
  for (const auto& c : cases) {
    auto r = route(c.sql);
    EXPECT_EQ(r.primary, c.primary) << c.sql;
    EXPECT_EQ(r.reason, c.reason) << c.sql << ": " << to_string(r.reason);
  }
}

TEST(RouteStatement, SessionSettingsChangeNoData) {
  EXPECT_FALSE(route("SET work_mem = '8MB'").may_write);
  EXPECT_FALSE(route("RESET ALL").may_write);
  EXPECT_TRUE(route("INSERT INTO t VALUES (1)").may_write);
  EXPECT_TRUE(route("BEGIN").may_write);
  EXPECT_TRUE(route("SELECT nextval('s')").may_write);
  EXPECT_TRUE(combine(route("SET a.b = 1"), route("DELETE FROM t")).may_write);
  EXPECT_FALSE(combine(route("SET a.b = 1"), route("SELECT 1")).may_write);
}

TEST(RouteStatement, TempTablesPinTheSessionToThePrimary) {
  SessionRouting session;
  EXPECT_EQ(route("SELECT 1", session).primary, false);
  auto r = route("CREATE TEMP TABLE tt (a int)", session);
  EXPECT_TRUE(r.primary);
  EXPECT_TRUE(session.pinned_to_primary);
  r = route("SELECT * FROM tt", session);
  EXPECT_TRUE(r.primary);
  EXPECT_EQ(r.reason, RouteReason::kSession);
  r = route("SELECT 1", session);
  EXPECT_TRUE(r.primary) << "every later statement stays with the temp table";
  // A primary hint is still reported as a hint; a replica hint cannot unpin.
  EXPECT_EQ(route("/* pgfleet:replica */ SELECT 1", session).primary, true);
}

TEST(RouteStatement, DefaultTransactionReadOnlyLetsPlainBeginUseAReplica) {
  SessionRouting session;
  session.default_read_only = true;
  auto r = route("BEGIN", session);
  EXPECT_FALSE(r.primary);
  EXPECT_EQ(r.reason, RouteReason::kReadOnlyTransaction);
  EXPECT_TRUE(route("BEGIN READ WRITE", session).primary);
  EXPECT_TRUE(route("begin  read\n write", session).primary);
  EXPECT_TRUE(route("BEGIN ISOLATION LEVEL SERIALIZABLE", session).primary);
}

TEST(RouteStatement, RulesByClient) {
  SessionRouting readonly;
  readonly.rule = sql::Route::Replica;
  EXPECT_EQ(route("SELECT 1", readonly).reason, RouteReason::kRule);
  EXPECT_FALSE(route("SELECT 1", readonly).primary);
  EXPECT_TRUE(route("INSERT INTO t VALUES (1)", readonly).primary) << "a rule never sends a write to a replica";
  SessionRouting writer;
  writer.rule = sql::Route::Primary;
  auto r = route("SELECT 1", writer);
  EXPECT_TRUE(r.primary);
  EXPECT_EQ(r.reason, RouteReason::kRule);
}

TEST(RouteStatement, CombineTakesThePrimaryOnceAnyStatementNeedsIt) {
  StatementRoute read{false, RouteReason::kRead};
  StatementRoute write{true, RouteReason::kWrite};
  StatementRoute ro{false, RouteReason::kReadOnlyTransaction};
  EXPECT_EQ(combine(read, read).primary, false);
  EXPECT_EQ(combine(read, write).reason, RouteReason::kWrite);
  EXPECT_EQ(combine(write, read).reason, RouteReason::kWrite);
  EXPECT_EQ(combine(read, ro).reason, RouteReason::kReadOnlyTransaction);
}

Candidate replica(int node, int weight = 1) {
  Candidate c;
  c.node = node;
  c.weight = weight;
  c.healthy = true;
  c.replay_lsn = 1000;
  return c;
}

std::map<int, int> spread(std::vector<Candidate> replicas, BalanceLimits limits, int picks, uint64_t causal = 0) {
  BalancerState state;
  Candidate primary = replica(0);
  std::map<int, int> seen;
  for (int i = 0; i < picks; ++i) ++seen[choose_replica(replicas, primary, limits, causal, state).node];
  return seen;
}

TEST(ChooseReplica, IdleClientsSpreadEvenlyAndByWeight) {
  auto even = spread({replica(1), replica(2)}, {}, 100);
  EXPECT_EQ(even[1], 50);
  EXPECT_EQ(even[2], 50);
  auto weighted = spread({replica(1, 2), replica(2, 1)}, {}, 300);
  EXPECT_EQ(weighted[1], 200);
  EXPECT_EQ(weighted[2], 100);
  auto none = spread({replica(1, 0), replica(2, 1)}, {}, 10);
  EXPECT_EQ(none[2], 10) << "weight 0 takes no reads";
}

TEST(ChooseReplica, BusyNodesGetFewerRequests) {
  Candidate busy = replica(1);
  busy.outstanding = 9;
  auto seen = spread({busy, replica(2)}, {}, 100);
  EXPECT_GT(seen[2], 85);
  EXPECT_GT(seen[1], 0) << "still some, so a busy node is not starved";
}

TEST(ChooseReplica, PrimaryTakesItsShareOfReads) {
  BalanceLimits limits;
  limits.primary_weight = 1;
  auto seen = spread({replica(1), replica(2)}, limits, 300);
  EXPECT_EQ(seen[-1], 100);
  EXPECT_EQ(seen[1], 100);
  EXPECT_EQ(seen[2], 100);
}

TEST(ChooseReplica, EligibilityAndWhyNot) {
  BalancerState state;
  Candidate primary = replica(0);
  Candidate down = replica(1);
  down.healthy = false;
  auto c = choose_replica(std::vector<Candidate>{down}, primary, {}, 0, state);
  EXPECT_EQ(c.node, -1);
  EXPECT_EQ(c.reason, RouteReason::kNoReplica);
  EXPECT_EQ(choose_replica(std::vector<Candidate>{}, primary, {}, 0, state).reason, RouteReason::kNoReplica);

  Candidate behind = replica(1);
  behind.lag_bytes = 5000;
  behind.lag_ms = 200;
  BalanceLimits bytes;
  bytes.max_lag_bytes = 4096;
  c = choose_replica(std::vector<Candidate>{behind}, primary, bytes, 0, state);
  EXPECT_EQ(c.node, -1);
  EXPECT_EQ(c.reason, RouteReason::kLag);
  BalanceLimits seconds;
  seconds.max_lag_ms = 100;
  EXPECT_EQ(choose_replica(std::vector<Candidate>{behind}, primary, seconds, 0, state).reason, RouteReason::kLag);
  BalanceLimits loose;
  loose.max_lag_bytes = 1 << 20;
  loose.max_lag_ms = 1000;
  EXPECT_EQ(choose_replica(std::vector<Candidate>{behind}, primary, loose, 0, state).node, 1);

  // Lag-excluded replicas are skipped, the others still serve.
  auto seen = spread({behind, replica(2)}, bytes, 10);
  EXPECT_EQ(seen[2], 10);
}

TEST(ChooseReplica, CausalReadsNeedTheClientsLastWriteReplayed) {
  BalancerState state;
  Candidate primary = replica(0);
  Candidate old = replica(1);
  old.replay_lsn = 500;
  Candidate fresh = replica(2);
  fresh.replay_lsn = 2000;
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(choose_replica(std::vector<Candidate>{old, fresh}, primary, {}, 1500, state).node, 2);
  }
  auto c = choose_replica(std::vector<Candidate>{old}, primary, {}, 1500, state);
  EXPECT_EQ(c.node, -1);
  EXPECT_EQ(c.reason, RouteReason::kCausal);
  EXPECT_EQ(choose_replica(std::vector<Candidate>{old}, primary, {}, 500, state).node, 1) << "replayed exactly";
}

}  // namespace
}  // namespace pgfleet::proxy

namespace pgfleet::proxy {
namespace {

TEST(EndOfInsertedWal, PageHeadersAreNotWal) {
  constexpr uint64_t kSegment = 16u << 20;
  EXPECT_EQ(end_of_inserted_wal(0x4018098, kSegment), 0x4018098u) << "mid-page: as is";
  EXPECT_EQ(end_of_inserted_wal(0x4002018, kSegment), 0x4002000u) << "just past a page header";
  EXPECT_EQ(end_of_inserted_wal(0x5000028, kSegment), 0x5000000u) << "just past a segment's long header";
  EXPECT_EQ(end_of_inserted_wal(0x4100028, kSegment), 0x4100028u) << "offset 40 of an ordinary page is WAL";
  EXPECT_EQ(end_of_inserted_wal(0x4100028, 0), 0x4100028u);
}

}  // namespace
}  // namespace pgfleet::proxy

namespace pgfleet::proxy {
namespace {

// A client's connection to the primary node1 died; what the proxy tells it, as it learns more.
TEST(LostPrimaryCause, ANewLeaderIsNamedAtOnce) {
  EXPECT_EQ(lost_primary_cause({.node = "node1", .primary = "node2"}), LostPrimaryCause::kMovedTo);
  // Even while the old node still answers (it was demoted, or is cut off from the DCS).
  EXPECT_EQ(lost_primary_cause({.node = "node1", .primary = "node2", .polled_after = true}), LostPrimaryCause::kMovedTo);
}

TEST(LostPrimaryCause, NoLeaderMeansAFailoverIsUnderWay) {
  EXPECT_EQ(lost_primary_cause({.node = "node1", .primary = ""}), LostPrimaryCause::kGone);
}

TEST(LostPrimaryCause, AnUnreachablePrimaryIsCalledGoneAfterHalfASecond) {
  LostPrimaryView v{.node = "node1", .primary = "node1", .polls_failed = true, .waited_ms = 100};
  EXPECT_EQ(lost_primary_cause(v), LostPrimaryCause::kWait) << "a new leader may be named in a moment";
  v.waited_ms = kLostPrimaryDownMs;
  EXPECT_EQ(lost_primary_cause(v), LostPrimaryCause::kGone);
}

TEST(LostPrimaryCause, AHealthyPrimaryMeansOnlyTheConnectionEnded) {
  LostPrimaryView v{.node = "node1", .primary = "node1", .waited_ms = 20};
  EXPECT_EQ(lost_primary_cause(v), LostPrimaryCause::kWait) << "no poll since the loss yet";
  v.polled_after = true;
  EXPECT_EQ(lost_primary_cause(v), LostPrimaryCause::kConnectionOnly);
  v.in_recovery = true;
  EXPECT_EQ(lost_primary_cause(v), LostPrimaryCause::kDemoted);
  // A failed poll outweighs good ones (they may have raced the node's death).
  v.in_recovery = false;
  v.polls_failed = true;
  EXPECT_EQ(lost_primary_cause(v), LostPrimaryCause::kWait);
}

TEST(LostPrimaryCause, TheClientWaitsAtMostTheBound) {
  LostPrimaryView v{.node = "node1", .primary = "node1", .waited_ms = kLostPrimaryMaxWaitMs - 1};
  EXPECT_EQ(lost_primary_cause(v), LostPrimaryCause::kWait);
  v.waited_ms = kLostPrimaryMaxWaitMs;
  EXPECT_EQ(lost_primary_cause(v), LostPrimaryCause::kConnectionOnly);
}

}  // namespace
}  // namespace pgfleet::proxy
