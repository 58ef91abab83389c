// The read/write-split classifier: a table of statements with their route, reason and flags, then options, the
// cache, threads, very long queries, and a benchmark that prints (does not assert) the cost per call.
#include "sql/classifier.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace pgfleet::sql {
namespace {

using namespace std::string_literals;

constexpr unsigned kNone = 0;
constexpr unsigned kBegins = 1;
constexpr unsigned kReadOnly = 2;
constexpr unsigned kEnds = 4;
constexpr unsigned kSession = 8;
constexpr unsigned kTemp = 16;

unsigned flags_of(const Classification& c) {
  return (c.begins_transaction ? kBegins : kNone) | (c.read_only_transaction ? kReadOnly : kNone) |
         (c.ends_transaction ? kEnds : kNone) | (c.sets_session_state ? kSession : kNone) |
         (c.uses_temp_objects ? kTemp : kNone);
}

const ClassifierOptions kDefault;
const ClassifierOptions kPermissive{.permissive_functions = true, .read_only_functions = {}, .writing_functions = {}};
const ClassifierOptions kMyFuncReadOnly{.permissive_functions = false,
                                        .read_only_functions = {"my_func", "app.compute", "nextval"},
                                        .writing_functions = {}};
const ClassifierOptions kAuditWrites{
    .permissive_functions = true, .read_only_functions = {}, .writing_functions = {"audit_log", "count", "ops.purge"}};

constexpr auto R = Route::Replica;
constexpr auto P = Route::Primary;

struct Case {
  std::string sql;
  Route route;
  std::string reason = {};  // a substring of the expected reason (checked when route is Primary)
  unsigned flags = kNone;
  std::optional<Route> hint = std::nullopt;
  const ClassifierOptions* options = &kDefault;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> kCases = {
      // Plain reads.
      {"SELECT 1", R},
      {"select abalance from pgbench_accounts where aid = 42", R},
      {"SELECT a.x, b.y FROM a JOIN b ON a.id = b.id LEFT JOIN c USING (id) CROSS JOIN d", R},
      {"SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE u.v > 3)", R},
      {"SELECT EXISTS (SELECT 1 FROM t WHERE t.a = outer_t.a) FROM outer_t", R},
      {"SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.id = t.id LIMIT 1) l", R},
      {"WITH x AS (SELECT * FROM t) SELECT count(*) FROM x", R},
      {"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT sum(n) FROM r", R},
      {"SELECT 1 UNION SELECT 2 EXCEPT SELECT 3 INTERSECT SELECT 4", R},
      {"VALUES (1, 'a'), (2, 'b')", R},
      {"TABLE pgbench_branches", R},
      {"SHOW search_path", R},
      {"SHOW ALL", R},
      {"SHOW TRANSACTION ISOLATION LEVEL", R},
      {"SELECT now(), current_timestamp, current_user, lower(name), coalesce(a, b), greatest(a, b) FROM t", R},
      {"SELECT EXTRACT(year FROM ts), substring(s FROM 2 FOR 3), position('a' IN s), trim(both ' ' FROM s), "
       "ts AT TIME ZONE 'UTC', s SIMILAR TO 'a%' FROM t",
       R},
      {"SELECT jsonb_build_object('a', 1), json_agg(t), string_agg(name, ',') FROM t", R},
      {"SELECT g FROM generate_series(1, 10) g", R},
      {"SELECT pg_catalog.count(*), pg_catalog.now() FROM t", R},
      {"SELECT random(), pg_sleep(0.01), version(), pg_is_in_recovery(), pg_last_wal_replay_lsn()", R},
      {"SELECT row_number() OVER (PARTITION BY a ORDER BY b), rank() OVER w FROM t WINDOW w AS (ORDER BY c)", R},
      {"SELECT current_setting('search_path'), date_trunc('day', now()), to_char(now(), 'YYYY')", R},
      {"SELECT x::int, CAST(y AS text), z::regclass FROM t", R},
      {"SELECT * FROM t ORDER BY 1 DESC NULLS LAST LIMIT 10 OFFSET 5", R},
      {"SELECT a, count(*) FROM t GROUP BY ROLLUP (a) HAVING count(*) > 1", R},
      {"SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b", R},
      {"SELECT CASE WHEN a > 0 THEN 'pos' ELSE 'neg' END, a BETWEEN 1 AND 2, a IS NULL FROM t", R},
      {"SELECT \"名前\", \"ñandú\" FROM \"テーブル\" WHERE \"ключ\" = 'значение'", R},
      {"SELECT 'INSERT INTO t VALUES (1); DELETE FROM t' AS s, $$UPDATE$$ AS d", R},
      {"SELECT $1::int, $2 FROM t WHERE id = $3", R},
      {"SELECT 1 -- trailing comment", R},
      {"/* leading comment */ SELECT 1", R},
      {"SELECT * FROM t TABLESAMPLE SYSTEM (10)", R},
      // Locking reads.
      {"SELECT * FROM t FOR UPDATE", P, "SELECT ... FOR UPDATE"},
      {"SELECT * FROM t FOR NO KEY UPDATE", P, "FOR NO KEY UPDATE"},
      {"SELECT * FROM t FOR SHARE", P, "FOR SHARE"},
      {"SELECT * FROM t FOR KEY SHARE", P, "FOR KEY SHARE"},
      {"SELECT * FROM t WHERE id = 1 FOR UPDATE OF t SKIP LOCKED", P, "FOR UPDATE"},
      {"SELECT * FROM (SELECT * FROM t FOR UPDATE NOWAIT) s", P, "FOR UPDATE"},
      {"WITH x AS (SELECT * FROM t FOR SHARE) SELECT * FROM x", P, "FOR SHARE"},
      {"SELECT 1 UNION SELECT 2 FOR UPDATE", P, "FOR UPDATE"},
      // Writes.
      {"INSERT INTO t VALUES (1)", P, "INSERT"},
      {"INSERT INTO t SELECT * FROM u ON CONFLICT (id) DO UPDATE SET v = excluded.v", P, "INSERT"},
      {"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1", P, "UPDATE"},
      {"DELETE FROM t WHERE id = 1 RETURNING *", P, "DELETE"},
      {"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v "
       "WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)",
       P, "MERGE"},
      {"WITH ins AS (INSERT INTO t VALUES (1) RETURNING id) SELECT * FROM ins", P, "INSERT (data-modifying CTE)"},
      {"WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d", P, "DELETE (data-modifying CTE)"},
      {"WITH u AS (UPDATE t SET v = 1 RETURNING *) SELECT * FROM u", P, "UPDATE"},
      {"SELECT * FROM t WHERE id IN (WITH m AS (DELETE FROM u RETURNING id) SELECT id FROM m)", P, "DELETE"},
      {"SELECT * INTO newtable FROM t", P, "SELECT INTO"},
      {"CREATE TABLE t2 AS SELECT * FROM t", P, "CREATE TABLE AS"},
      {"CREATE MATERIALIZED VIEW mv AS SELECT 1", P, "CREATE MATERIALIZED VIEW"},
      // DDL and maintenance.
      {"CREATE TABLE t (id int PRIMARY KEY, v text DEFAULT 'x')", P, "CREATE TABLE"},
      {"ALTER TABLE t ADD COLUMN c text", P, "ALTER TABLE"},
      {"DROP TABLE IF EXISTS t CASCADE", P, "DROP"},
      {"CREATE INDEX CONCURRENTLY i ON t (a)", P, "CREATE INDEX"},
      {"TRUNCATE t", P, "TRUNCATE"},
      {"VACUUM (VERBOSE) t", P, "VACUUM"},
      {"ANALYZE t", P, "ANALYZE"},
      {"GRANT SELECT ON t TO bob", P, "GRANT"},
      {"REVOKE ALL ON t FROM bob", P, "REVOKE"},
      {"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", P, "CREATE FUNCTION"},
      {"REFRESH MATERIALIZED VIEW CONCURRENTLY mv", P, "REFRESH MATERIALIZED VIEW"},
      {"CREATE EXTENSION IF NOT EXISTS pg_stat_statements", P, "CREATE EXTENSION"},
      {"COMMENT ON TABLE t IS 'x'", P, "COMMENT"},
      {"CHECKPOINT", P, "CHECKPOINT"},
      {"ALTER SYSTEM SET work_mem = '64MB'", P, "ALTER SYSTEM"},
      // EXPLAIN: of a read is a read; of anything else goes to the primary, ANALYZE or not.
      {"EXPLAIN SELECT * FROM t", R},
      {"EXPLAIN ANALYZE SELECT * FROM t WHERE id = 1", R},
      {"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT 1", R},
      {"EXPLAIN INSERT INTO t VALUES (1)", P, "EXPLAIN INSERT"},
      {"EXPLAIN ANALYZE INSERT INTO t VALUES (1)", P, "EXPLAIN ANALYZE INSERT"},
      {"EXPLAIN (ANALYZE false) DELETE FROM t", P, "EXPLAIN DELETE"},
      {"EXPLAIN (ANALYZE on) UPDATE t SET a = 1", P, "EXPLAIN ANALYZE UPDATE"},
      {"EXPLAIN SELECT * FROM t FOR UPDATE", P, "EXPLAIN SELECT ... FOR UPDATE"},
      {"EXPLAIN ANALYZE SELECT nextval('s')", P, "nextval"},
      {"EXPLAIN CREATE TABLE x AS SELECT 1", P, "EXPLAIN CREATE TABLE AS"},
      // COPY: TO the client is a read, FROM is a write, TO a server file or program goes to the primary.
      {"COPY t TO STDOUT", R},
      {"COPY (SELECT * FROM t WHERE a > 1) TO STDOUT WITH (FORMAT csv, HEADER)", R},
      {"COPY t FROM STDIN", P, "COPY FROM"},
      {"COPY t (a, b) FROM '/tmp/data.csv' CSV", P, "COPY FROM"},
      {"COPY t TO '/tmp/out.csv'", P, "COPY TO file"},
      {"COPY t TO PROGRAM 'gzip > /tmp/x.gz'", P, "COPY TO PROGRAM"},
      {"COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT", P, "COPY (INSERT)"},
      {"COPY (SELECT nextval('s')) TO STDOUT", P, "nextval"},
      // DO, CALL, LOCK.
      {"DO $$BEGIN PERFORM 1; END$$", P, "DO"},
      {"DO LANGUAGE plpgsql 'BEGIN NULL; END'", P, "DO"},
      {"CALL my_procedure(1, 2)", P, "CALL"},
      {"LOCK TABLE t IN ACCESS SHARE MODE", P, "LOCK"},
      {"LOCK t", P, "LOCK"},
      // Session state.
      {"SET search_path TO app, public", P, "SET", kSession},
      {"SET SESSION statement_timeout = '5s'", P, "SET", kSession},
      {"SET LOCAL statement_timeout = '5s'", R},
      {"SET TIME ZONE 'UTC'", P, "SET", kSession},
      {"SET application_name TO DEFAULT", P, "SET", kSession},
      {"RESET statement_timeout", P, "RESET", kSession},
      {"RESET ALL", P, "RESET", kSession},
      {"SET ROLE reporting", P, "SET", kSession},
      {"SET SESSION AUTHORIZATION bob", P, "SET", kSession},
      {"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", P, "SET SESSION CHARACTERISTICS", kSession},
      {"DISCARD ALL", P, "DISCARD", kSession},
      {"DISCARD TEMP", P, "DISCARD", kSession},
      {"PREPARE q(int) AS SELECT * FROM t WHERE id = $1", P, "PREPARE", kSession},
      {"EXECUTE q(1)", P, "EXECUTE"},
      {"DEALLOCATE q", P, "DEALLOCATE", kSession},
      {"DEALLOCATE ALL", P, "DEALLOCATE", kSession},
      {"LISTEN chan", P, "LISTEN", kSession},
      {"UNLISTEN *", P, "UNLISTEN", kSession},
      {"NOTIFY chan, 'payload'", P, "NOTIFY"},
      {"LOAD 'auto_explain'", P, "LOAD", kSession},
      {"SELECT set_config('search_path', 'app', false)", P, "set_config (changes session state)", kSession},
      {"SELECT pg_catalog.set_config('search_path', '', false)", P, "set_config", kSession},
      {"SELECT setseed(0.5)", P, "setseed", kSession},
      // Transaction control.
      {"BEGIN", P, "BEGIN (read-write)", kBegins},
      {"BEGIN TRANSACTION", P, "BEGIN", kBegins},
      {"BEGIN WORK ISOLATION LEVEL READ COMMITTED", P, "BEGIN", kBegins},
      {"BEGIN READ ONLY", R, "", kBegins | kReadOnly},
      {"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", R, "", kBegins | kReadOnly},
      {"BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE", P, "SERIALIZABLE", kBegins | kReadOnly},
      {"BEGIN READ WRITE", P, "BEGIN", kBegins},
      {"START TRANSACTION", P, "START TRANSACTION (read-write)", kBegins},
      {"START TRANSACTION READ ONLY", R, "", kBegins | kReadOnly},
      {"START TRANSACTION READ WRITE", P, "START TRANSACTION", kBegins},
      {"START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY", R, "", kBegins | kReadOnly},
      {"COMMIT", R, "", kEnds},
      {"END", R, "", kEnds},
      {"ROLLBACK", R, "", kEnds},
      {"ABORT", R, "", kEnds},
      {"COMMIT AND CHAIN", R, "", kEnds | kBegins},
      {"SAVEPOINT sp1", R},
      {"RELEASE SAVEPOINT sp1", R},
      {"ROLLBACK TO SAVEPOINT sp1", R},
      {"PREPARE TRANSACTION 'tx1'", P, "PREPARE TRANSACTION", kEnds},
      {"COMMIT PREPARED 'tx1'", P, "COMMIT PREPARED"},
      {"ROLLBACK PREPARED 'tx1'", P, "ROLLBACK PREPARED"},
      {"SET TRANSACTION READ ONLY", R, "", kReadOnly},
      {"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", R},
      {"SET TRANSACTION READ WRITE", P, "SET TRANSACTION READ WRITE"},
      {"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", P, "SERIALIZABLE"},
      {"SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", P, "SET TRANSACTION SNAPSHOT"},
      // Functions: writers, advisory locks, primary-only, unknown.
      {"SELECT nextval('my_seq')", P, "calls volatile function nextval"},
      {"SELECT currval('s'), lastval()", P, "currval"},
      {"SELECT setval('s', 10)", P, "setval"},
      {"INSERT INTO t (id) VALUES (nextval('s'))", P, "INSERT"},
      {"SELECT pg_advisory_lock(42)", P, "calls advisory-lock function pg_advisory_lock"},
      {"SELECT pg_try_advisory_xact_lock(1, 2)", P, "advisory-lock"},
      {"SELECT pg_advisory_unlock_all()", P, "advisory-lock"},
      {"SELECT pg_catalog.pg_advisory_xact_lock_shared(7)", P, "advisory-lock"},
      {"SELECT my_func(1)", P, "calls function my_func (not known to be read-only)"},
      {"SELECT * FROM my_srf(1)", P, "my_srf"},
      {"SELECT app.compute(x) FROM t", P, "app.compute"},
      {"SELECT myschema.count(*) FROM t", P, "myschema.count"},
      {"SELECT \"NextVal\"('s')", P, "NextVal"},
      {"SELECT txid_current()", P, "txid_current (runs only on the primary)"},
      {"SELECT pg_current_wal_lsn()", P, "pg_current_wal_lsn"},
      {"SELECT lo_import('/tmp/x')", P, "lo_import"},
      {"SELECT pg_notify('chan', 'x')", P, "pg_notify"},
      {"SELECT lower(my_func(x)) FROM t", P, "my_func"},
      {"SELECT \"we\"\"ird\"()", P, "calls function we\"ird ("},
      {"SELECT \"ключ\"(1), \"名前\".\"関数\"()", P, "calls function ключ ("},
      {"SELECT * FROM t WHERE id IN (SELECT f(id) FROM u)", P, "calls function f"},
      {"SELECT * FROM t WHERE a = ANY (SELECT unnest(g(1)))", P, "calls function g"},
      // Options: permissive routing, user lists.
      {"SELECT my_func(1)", R, "", kNone, std::nullopt, &kPermissive},
      {"SELECT nextval('s')", P, "nextval", kNone, std::nullopt, &kPermissive},
      {"SELECT pg_advisory_lock(1)", P, "advisory-lock", kNone, std::nullopt, &kPermissive},
      {"SELECT set_config('a.b', 'c', false)", P, "set_config", kSession, std::nullopt, &kPermissive},
      {"SELECT my_func(1)", R, "", kNone, std::nullopt, &kMyFuncReadOnly},
      {"SELECT s.my_func(1)", R, "", kNone, std::nullopt, &kMyFuncReadOnly},
      {"SELECT app.compute(x) FROM t", R, "", kNone, std::nullopt, &kMyFuncReadOnly},
      {"SELECT compute(x) FROM t", R, "", kNone, std::nullopt, &kMyFuncReadOnly},
      {"SELECT other.compute(x) FROM t", P, "other.compute", kNone, std::nullopt, &kMyFuncReadOnly},
      {"SELECT my_func(1), your_func(2)", P, "your_func", kNone, std::nullopt, &kMyFuncReadOnly},
      {"SELECT nextval('s')", P, "nextval", kNone, std::nullopt, &kMyFuncReadOnly},
      {"SELECT audit_log('x')", P, "calls writing function audit_log", kNone, std::nullopt, &kAuditWrites},
      {"SELECT count(*) FROM t", P, "calls writing function count", kNone, std::nullopt, &kAuditWrites},
      {"SELECT ops.purge()", P, "ops.purge", kNone, std::nullopt, &kAuditWrites},
      {"SELECT purge()", P, "purge", kNone, std::nullopt, &kAuditWrites},
      {"SELECT other.purge()", R, "", kNone, std::nullopt, &kAuditWrites},
      // Temp objects.
      {"CREATE TEMP TABLE tmp (a int)", P, "CREATE TEMP TABLE", kTemp},
      {"CREATE TEMPORARY TABLE tmp AS SELECT 1", P, "CREATE TEMP TABLE AS", kTemp},
      {"CREATE TEMP SEQUENCE tmp_seq", P, "CREATE TEMP SEQUENCE", kTemp},
      {"CREATE TEMP VIEW v AS SELECT 1", P, "CREATE TEMP VIEW", kTemp},
      {"SELECT * INTO TEMP tmp FROM t", P, "SELECT INTO", kTemp},
      {"SELECT * FROM pg_temp.tmp", P, "temp table", kTemp},
      {"SELECT * FROM t JOIN pg_temp_3.tmp USING (id)", P, "temp table", kTemp},
      {"INSERT INTO pg_temp.tmp VALUES (1)", P, "INSERT", kTemp},
      {"SELECT pg_temp.f()", P, "temp table", kTemp},
      {"COPY pg_temp.tmp TO STDOUT", P, "temp table", kTemp},
      {"SELECT * FROM pg_temporary_stuff.t", R},
      // Cursors.
      {"DECLARE c CURSOR FOR SELECT * FROM t", R},
      {"DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t", P, "WITH HOLD", kSession},
      {"DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", P, "FOR UPDATE"},
      {"FETCH 10 FROM c", P, "FETCH"},
      {"MOVE NEXT IN c", P, "MOVE"},
      {"CLOSE c", P, "CLOSE"},
      // Several statements in one string route as a whole.
      {"SELECT 1; SELECT 2", R},
      {"SELECT 1; INSERT INTO t VALUES (1)", P, "INSERT"},
      {"BEGIN; UPDATE t SET a = 1; COMMIT", P, "BEGIN", kBegins | kEnds},
      {"BEGIN READ ONLY; SELECT 1; COMMIT", R, "", kBegins | kReadOnly | kEnds},
      {"SET search_path = a; SELECT 1", P, "SET", kSession},
      {"SELECT 1;;; SELECT 2;", R},
      {"SELECT 1; SELECT nextval('s'); SELECT 3", P, "nextval"},
      // Parse errors.
      {"SELEC 1", P, "parse error: syntax error at or near \"SELEC\""},
      {"SELECT FROM t WHERE", P, "parse error"},
      {"SELECT 1; DELET FROM t", P, "parse error"},
      {"SELECT 'unterminated", P, "parse error"},
      {"SELECT * FROM t WHERE a = ?", P, "parse error"},
      // A query is a C string: it ends at the first NUL, as the server reads it.
      {"SELECT 1\0"s, R},
      {"SELECT 1\0; DROP TABLE t"s, R},
      {"INSERT INTO t VALUES (1)\0"s, P, "INSERT"},
      // Empty queries.
      {"", R},
      {"   \n\t ", R},
      {";", R},
      {"-- just a comment", R},
      {"/* only a comment */", R},
      // Hints.
      {"/* pgfleet:primary */ SELECT 1", R, "", kNone, P},
      {"/* pgfleet:replica */ INSERT INTO t VALUES (1)", P, "INSERT", kNone, R},
      {"-- pgfleet:primary\nSELECT 1", R, "", kNone, P},
      {"/*pgfleet:replica*/SELECT 1", R, "", kNone, R},
      {"  \n/* app=web */ /* PGFLEET: Primary */ SELECT 1", R, "", kNone, P},
      {"/* app=web, pgfleet:replica, route=x */ SELECT 1", R, "", kNone, R},
      {"/* a /* nested */ pgfleet:replica */ SELECT 1", R, "", kNone, R},
      {"/* pgfleet:primary */ SELEC", P, "parse error", kNone, P},
      {"SELECT 1 /* pgfleet:primary */", R},
      {"SELECT 1 -- pgfleet:primary", R},
      {"/* pgfleet:secondary */ SELECT 1", R},
      {"/* notpgfleet:primary */ SELECT 1", R},
      {"/* pgfleet:primaryx */ SELECT 1", R},
  };
  return kCases;
}

class ClassifyCase : public testing::TestWithParam<std::size_t> {};

void check(const Case& c, const Classification& got) {
  EXPECT_EQ(to_string(got.route), std::string(to_string(c.route))) << "reason: " << got.reason;
  if (c.route == Route::Primary) {
    EXPECT_NE(got.reason.find(c.reason), std::string::npos) << "reason: " << got.reason << "\nwanted: " << c.reason;
    EXPECT_FALSE(got.reason.empty());
  } else {
    EXPECT_EQ(got.reason, "");
  }
  EXPECT_EQ(flags_of(got), c.flags);
  EXPECT_EQ(got.hint, c.hint);
}

TEST_P(ClassifyCase, Uncached) {
  const Case& c = cases()[GetParam()];
  SCOPED_TRACE(c.sql);
  check(c, classify_uncached(c.sql, *c.options));
}

TEST_P(ClassifyCase, CachedTwice) {
  const Case& c = cases()[GetParam()];
  SCOPED_TRACE(c.sql);
  check(c, classify(c.sql, *c.options));
  check(c, classify(c.sql, *c.options));
}

INSTANTIATE_TEST_SUITE_P(Table, ClassifyCase, testing::Range<std::size_t>(0, cases().size()));

TEST(Classifier, TableHasEnoughCases) {
  EXPECT_GE(cases().size(), 80u);
}

TEST(Classifier, CacheAppliesOptionsOnEveryCall) {
  clear_classify_cache();
  const std::string sql = "SELECT my_func(1)";
  EXPECT_EQ(classify(sql).route, Route::Primary);
  EXPECT_EQ(classify(sql, kPermissive).route, Route::Replica);
  EXPECT_EQ(classify(sql).route, Route::Primary);
  EXPECT_EQ(classify(sql, kMyFuncReadOnly).route, Route::Replica);
}

TEST(Classifier, CacheKeysOnExactText) {
  clear_classify_cache();
  EXPECT_EQ(classify("SELECT 1").route, Route::Replica);
  EXPECT_EQ(classify("SELECT 1 FOR UPDATE").route, Route::Primary);
  EXPECT_EQ(classify(std::string_view("SELECT 1 FOR UPDATE").substr(0, 8)).route, Route::Replica);
  EXPECT_EQ(classify("/* pgfleet:primary */ SELECT 1").hint, Route::Primary);
  EXPECT_EQ(classify("SELECT 1").hint, std::nullopt);
}

TEST(Classifier, CacheEvictsWithoutChangingAnswers) {
  clear_classify_cache();
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 5000; ++i) {
      std::string sql = "SELECT * FROM t WHERE id = " + std::to_string(i) + (i % 2 == 0 ? "" : " FOR UPDATE");
      ASSERT_EQ(classify(sql).route, i % 2 == 0 ? Route::Replica : Route::Primary) << sql;
    }
  }
}

TEST(Classifier, ThreadsClassifyIndependently) {
  std::vector<std::thread> threads;
  std::vector<int> failures(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([t, &failures] {
      for (int i = 0; i < 300; ++i) {
        const Case& c = cases()[static_cast<std::size_t>(i * 7 + t) % cases().size()];
        Classification got = (i % 2 == 0) ? classify(c.sql, *c.options) : classify_uncached(c.sql, *c.options);
        if (got.route != c.route || flags_of(got) != c.flags || got.hint != c.hint) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
}

TEST(Classifier, ParseHint) {
  EXPECT_EQ(parse_hint("/* pgfleet:primary */ SELECT 1"), Route::Primary);
  EXPECT_EQ(parse_hint("--pgfleet:replica\r\nSELECT 1"), Route::Replica);
  EXPECT_EQ(parse_hint("/* pgfleet:replica"), Route::Replica);  // unterminated: still a leading comment
  EXPECT_EQ(parse_hint("/* x */ -- y\n /* pgfleet:primary */ SELECT"), Route::Primary);
  EXPECT_EQ(parse_hint("SELECT /* pgfleet:primary */ 1"), std::nullopt);
  EXPECT_EQ(parse_hint(""), std::nullopt);
  EXPECT_EQ(parse_hint("/* pgfleet: */ SELECT 1"), std::nullopt);
}

// Long queries: an IN list and a long VALUES list (parsed on the helper thread), a deep expression that overflows
// libpg_query's recursive JSON output on an 8 MiB stack (it must not crash), and one past the parse limit.
TEST(Classifier, LongQueries) {
  std::string in_list = "SELECT * FROM t WHERE id IN (";
  for (int i = 0; i < 20000; ++i) in_list += (i ? "," : "") + std::to_string(i);
  in_list += ")";
  ASSERT_GT(in_list.size(), kInlineParseBytes);
  EXPECT_EQ(classify(in_list).route, Route::Replica);
  EXPECT_EQ(classify(in_list + " FOR UPDATE").reason, "SELECT ... FOR UPDATE");

  std::string values = "INSERT INTO t VALUES ";
  for (int i = 0; i < 10000; ++i) values += (i ? ",(" : "(") + std::to_string(i) + ", 'row')";
  EXPECT_EQ(classify(values).reason, "INSERT");

  // The worst case for libpg_query's stack: one level of nesting per two bytes, right up to the parse limit, with
  // the function call at the bottom of the tree.
  std::string deep = "SELECT nextval('s')";
  while (deep.size() + 2 <= kMaxParseBytes) deep += "+1";
  EXPECT_EQ(classify_uncached(deep).reason, "calls volatile function nextval");

  std::string nested = "SELECT ";
  for (int i = 0; i < 2000; ++i) nested += "(SELECT ";
  nested += "1";
  for (int i = 0; i < 2000; ++i) nested += ")";
  EXPECT_EQ(classify_uncached(nested).route, Route::Replica);

  std::string huge = "SELECT '" + std::string(kMaxParseBytes, 'x') + "'";
  EXPECT_EQ(classify(huge).reason, "query too large to classify");
}

// Garbage and fragments of SQL in random order never crash the classifier, and whatever does not parse goes to the
// primary.
TEST(Classifier, RandomInputNeverCrashes) {
  const std::vector<std::string> tokens = {"SELECT",
                                           "INSERT",
                                           "INTO",
                                           "FROM",
                                           "WHERE",
                                           "(",
                                           ")",
                                           ",",
                                           ";",
                                           "'",
                                           "\"",
                                           "$1",
                                           "$$",
                                           "/*",
                                           "*/",
                                           "--",
                                           "\n",
                                           "FOR",
                                           "UPDATE",
                                           "WITH",
                                           "AS",
                                           "t",
                                           "x",
                                           "1",
                                           "+",
                                           "::",
                                           "nextval('s')",
                                           "BEGIN",
                                           "READ",
                                           "ONLY",
                                           "COPY",
                                           "EXPLAIN",
                                           "ANALYZE",
                                           "pgfleet:primary",
                                           "\\",
                                           "E'\\x'",
                                           "ключ",
                                           "\xff",
                                           "\x01",
                                           "[",
                                           "]",
                                           "{",
                                           "}"};
  std::uint64_t state = 42;
  auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::size_t>(state >> 33);
  };
  for (int i = 0; i < 3000; ++i) {
    std::string sql;
    std::size_t n = next() % 40;
    for (std::size_t k = 0; k < n; ++k) {
      if (next() % 10 == 0) {
        sql += static_cast<char>(next() % 256);
      } else {
        sql += tokens[next() % tokens.size()];
        sql += ' ';
      }
    }
    Classification c = classify_uncached(sql);
    if (c.route == Route::Replica) {
      EXPECT_TRUE(c.reason.empty()) << sql;
    }
    if (c.reason.starts_with("parse error")) {
      EXPECT_EQ(c.route, Route::Primary) << sql;
    }
  }
}

// Not a pass/fail test: prints the cost of one call, parsed every time and from the cache.
TEST(Classifier, Benchmark) {
  const std::string sql = "SELECT abalance FROM pgbench_accounts WHERE aid = 42";
  auto time_ns = [&](auto&& fn, int n) {
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) fn();
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
    return static_cast<double>(ns) / n;
  };
  Route sink = Route::Replica;
  double uncached = time_ns([&] { sink = classify_uncached(sql).route; }, 20000);
  classify(sql);
  double cached = time_ns([&] { sink = classify(sql).route; }, 200000);
  const std::string with_funcs =
      "SELECT count(*), max(abalance), now() FROM pgbench_accounts WHERE aid = 42 AND lower(filler) = 'x'";
  double uncached_funcs = time_ns([&] { sink = classify_uncached(with_funcs).route; }, 20000);
  classify(with_funcs);
  double cached_funcs = time_ns([&] { sink = classify(with_funcs).route; }, 200000);
  EXPECT_EQ(sink, Route::Replica);
  std::printf("classify \"%s\": %.0f ns parsed, %.0f ns cached\n", sql.c_str(), uncached, cached);
  std::printf("classify with 4 function calls: %.0f ns parsed, %.0f ns cached\n", uncached_funcs, cached_funcs);
}

}  // namespace
}  // namespace pgfleet::sql

namespace pgfleet::sql {
namespace {

TEST(LiteralFreeKey, ReplacesConstantsOfPlainStatements) {
  std::string key;
  ASSERT_TRUE(literal_free_key("SELECT abalance FROM pgbench_accounts WHERE aid = 4711;", key));
  EXPECT_EQ(key, "SELECT abalance FROM pgbench_accounts WHERE aid = ?;");
  ASSERT_TRUE(literal_free_key("select * from t1 where a = 'it''s' and b > 1.5e3 and c = .5", key));
  EXPECT_EQ(key, "select * from t1 where a = ? and b > ? and c = ?");
  ASSERT_TRUE(literal_free_key("/* pgfleet:primary */ SELECT \"col1\" FROM x2 -- 42\n", key));
  EXPECT_EQ(key, "/* pgfleet:primary */ SELECT \"col1\" FROM x2 -- 42\n") << "comments and identifiers stay";
  ASSERT_TRUE(literal_free_key("WITH d AS (DELETE FROM t WHERE id = 3 RETURNING *) SELECT * FROM d", key));
  EXPECT_EQ(key, "WITH d AS (DELETE FROM t WHERE id = ? RETURNING *) SELECT * FROM d");
}

TEST(LiteralFreeKey, LeavesAnythingElseExact) {
  std::string key;
  for (const char* sql : {"EXPLAIN (ANALYZE 1) DELETE FROM t", "SET work_mem = '64MB'", "BEGIN", "SELECT 1; DELETE FROM t",
                          "SELECT $1::int", "SELECT $$a$$", "SELECT E'\\n'", "SELECT 'a\\b'", "SELECT 'open",
                          "SELECT U&'d\\0061t'", "/* unterminated", "", "   "}) {
    EXPECT_FALSE(literal_free_key(sql, key)) << sql;
  }
}

TEST(LiteralFreeKey, StatementsSharingAKeyRouteAlike) {
  clear_classify_cache();
  EXPECT_EQ(classify("SELECT * FROM t WHERE id = 1").route, Route::Replica);
  EXPECT_EQ(classify("SELECT * FROM t WHERE id = 2 FOR UPDATE").route, Route::Primary);
  EXPECT_EQ(classify("SELECT nextval('a')").route, Route::Primary);
  EXPECT_EQ(classify("SELECT nextval('b')").route, Route::Primary);
  EXPECT_EQ(classify("EXPLAIN (ANALYZE 0) DELETE FROM t").route, classify_uncached("EXPLAIN (ANALYZE 0) DELETE FROM t").route);
  EXPECT_EQ(classify("EXPLAIN (ANALYZE 1) DELETE FROM t").route, Route::Primary);
  for (int i = 0; i < 100; ++i) {
    std::string sql = "UPDATE t SET v = " + std::to_string(i) + " WHERE id = " + std::to_string(i * 7);
    EXPECT_EQ(classify(sql), classify_uncached(sql)) << sql;
  }
}

}  // namespace
}  // namespace pgfleet::sql
