// pgfleet bench's pure part: pgbench's command line per workload, its summary and logs read back,
// and the report's medians, shares and JSON.
#include "bench/pgbench.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "bench/report.hpp"

namespace pgfleet::bench {
namespace {

// pgbench 15's summary of a mixed run (taken from a real run).
const char* const kMixedOutput = R"(pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: multiple scripts
scaling factor: 2
query mode: simple
number of clients: 2
number of threads: 1
maximum number of tries: 1
duration: 1 s
number of transactions actually processed: 3136
number of failed transactions: 7 (0.223%)
latency average = 0.602 ms
initial connection time = 61.685 ms
tps = 3322.850531 (without initial connection time)
SQL script 1: <builtin: select only>
 - weight: 80 (targets 80.0% of total)
 - 2540 transactions (81.0% of total, tps = 2691.339397)
 - latency average = 0.269 ms
)";

const char* const kAbortedOutput = R"(pgbench (15.18 (Debian 15.18-0+deb12u1))
pgbench: error: client 0 script 0 aborted in command 5 query 0: ERROR:  cannot execute UPDATE in a read-only transaction
pgbench: error: client 1 script 0 aborted in command 5 query 0: ERROR:  cannot execute UPDATE in a read-only transaction
transaction type: <builtin: TPC-B (sort of)>
number of transactions actually processed: 0
number of failed transactions: 0 (NaN%)
pgbench: error: Run was aborted; the above results are incomplete.
)";

bool has(const std::vector<std::string>& args, const std::string& value) {
  return std::find(args.begin(), args.end(), value) != args.end();
}

TEST(PgbenchSummary, ReadsTheTotalsNotThePerScriptLines) {
  auto f = parse_summary(kMixedOutput, 0);
  EXPECT_TRUE(f.ok);
  EXPECT_DOUBLE_EQ(f.tps, 3322.850531);
  EXPECT_DOUBLE_EQ(f.latency_avg_ms, 0.602);
  EXPECT_EQ(f.transactions, 3136);
  EXPECT_EQ(f.failed, 7);
  EXPECT_EQ(f.error, "");
}

TEST(PgbenchSummary, AnAbortedRunFailsWithTheFirstClientError) {
  auto f = parse_summary(kAbortedOutput, 2);
  EXPECT_FALSE(f.ok);
  EXPECT_EQ(f.error, "client 0 script 0 aborted in command 5 query 0: ERROR:  cannot execute UPDATE in a read-only transaction");
  EXPECT_EQ(f.transactions, 0);
}

TEST(PgbenchSummary, ANonZeroExitFailsEvenWithAThroughput) {
  auto f = parse_summary(kMixedOutput, 2);
  EXPECT_FALSE(f.ok);
  EXPECT_NE(f.error, "");  // the last line, for want of an error line
  auto silent = parse_summary("", 1);
  EXPECT_FALSE(silent.ok);
  EXPECT_EQ(silent.error, "pgbench exited with code 1");
}

TEST(PgbenchSummary, NoConnectionGivesLibpqsMessage) {
  auto f = parse_summary(
      "pgbench: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n"
      "\tIs the server running on that host and accepting TCP/IP connections?\n"
      "pgbench: error: could not create connection for setup\n",
      1);
  EXPECT_FALSE(f.ok);
  EXPECT_EQ(f.error, "connection to server at \"127.0.0.1\", port 1 failed: Connection refused");
}

TEST(PgbenchLog, LatenciesAreTheThirdFieldAndFailuresAreLeftOut) {
  std::vector<int64_t> us;
  read_log_latencies("0 1 4525 0 1796654325 204207\n0 2 743 0 1796654325 204981\n"
                     "1 1 failed 0 1796654325 213333\n1 2 skipped 0 1796654325 213334\n1 3 391 0 1796654325 213340",
                     us);
  EXPECT_EQ(us, (std::vector<int64_t>{4525, 743, 391}));
  read_log_latencies("garbage\n\n1 2\n1 2 12x 0 1 2\n", us);
  EXPECT_EQ(us.size(), 3u);
}

TEST(PgbenchLog, PercentilesByNearestRank) {
  std::vector<int64_t> values;
  for (int64_t v = 100; v >= 1; --v) values.push_back(v);
  EXPECT_EQ(percentile(values, 50), 50.0);
  EXPECT_EQ(percentile(values, 99), 99.0);
  EXPECT_EQ(percentile(values, 100), 100.0);
  std::vector<int64_t> one{7};
  EXPECT_EQ(percentile(one, 99), 7.0);
  std::vector<int64_t> none;
  EXPECT_FALSE(percentile(none, 50).has_value());
}

TEST(PgbenchLog, Median) {
  EXPECT_EQ(median({3, 1, 2}), 2);
  EXPECT_EQ(median({4, 1, 3, 2}), 2.5);
  EXPECT_EQ(median({}), 0);
}

TEST(PgbenchArgs, EachWorkloadIsItsBuiltinScripts) {
  Plan p;
  p.workload = Workload::Read;
  auto read = pgbench_args(p, "/bin/pgbench", "postgresql://u@h:1/db", "/tmp/x/r1");
  EXPECT_EQ(read.front(), "/bin/pgbench");
  EXPECT_EQ(read.back(), "postgresql://u@h:1/db");
  EXPECT_TRUE(has(read, "-n"));  // no vacuum: replicas refuse it
  EXPECT_TRUE(has(read, "select-only"));
  EXPECT_TRUE(has(read, "--log-prefix=/tmp/x/r1"));
  EXPECT_FALSE(has(read, "tpcb-like"));
  p.workload = Workload::Write;
  EXPECT_TRUE(has(pgbench_args(p, "pgbench", "c", "l"), "tpcb-like"));
  p.workload = Workload::Mixed;
  p.read_percent = 70;
  auto mixed = pgbench_args(p, "pgbench", "c", "l");
  EXPECT_TRUE(has(mixed, "select-only@70"));
  EXPECT_TRUE(has(mixed, "tpcb-like@30"));
  p.read_percent = 100;  // pgbench refuses a lone script weighted 0
  EXPECT_TRUE(has(pgbench_args(p, "pgbench", "c", "l"), "select-only"));
  EXPECT_FALSE(has(pgbench_args(p, "pgbench", "c", "l"), "tpcb-like@0"));
  p.read_percent = 0;
  EXPECT_TRUE(has(pgbench_args(p, "pgbench", "c", "l"), "tpcb-like"));
  p.workload = Workload::Custom;
  p.scripts = {"/tmp/a.sql@3", "/tmp/b.sql"};
  auto custom = pgbench_args(p, "pgbench", "c", "l");
  EXPECT_TRUE(has(custom, "/tmp/a.sql@3"));
  EXPECT_TRUE(has(custom, "/tmp/b.sql"));
  EXPECT_FALSE(has(custom, "-b"));
}

TEST(PgbenchArgs, ClientsThreadsTimeProtocolAndSamplingOfLongRuns) {
  Plan p;
  p.clients = 32;
  p.jobs = 4;
  p.seconds = 30;
  p.protocol = "prepared";
  auto args = pgbench_args(p, "pgbench", "c", "l");
  auto after = [&](const std::string& flag) { return *(std::find(args.begin(), args.end(), flag) + 1); };
  EXPECT_EQ(after("-c"), "32");
  EXPECT_EQ(after("-j"), "4");
  EXPECT_EQ(after("-T"), "30");
  EXPECT_EQ(after("-M"), "prepared");
  EXPECT_TRUE(std::none_of(args.begin(), args.end(), [](const std::string& a) { return a.rfind("--sampling-rate", 0) == 0; }));
  p.seconds = 600;
  EXPECT_TRUE(has(pgbench_args(p, "pgbench", "c", "l"), "--sampling-rate=0.1000"));
}

TEST(PgbenchPlan, WrongRequestsAreNamed) {
  Plan ok;
  EXPECT_EQ(plan_error(ok), "");
  auto error_of = [](auto change) {
    Plan p;
    change(p);
    return plan_error(p);
  };
  EXPECT_EQ(error_of([](Plan& p) { p.clients = 0; }), "--clients must be at least 1");
  EXPECT_EQ(error_of([](Plan& p) { p.jobs = 9; }), "--jobs (9) cannot exceed --clients (8)");
  EXPECT_EQ(error_of([](Plan& p) { p.seconds = 0; }), "--time must be at least 1 (seconds)");
  EXPECT_EQ(error_of([](Plan& p) { p.rounds = 0; }), "--rounds must be at least 1");
  EXPECT_EQ(error_of([](Plan& p) { p.read_percent = 101; }), "--read-percent must be between 0 and 100");
  EXPECT_EQ(error_of([](Plan& p) { p.protocol = "fast"; }), "--protocol must be simple, extended or prepared");
  EXPECT_EQ(error_of([](Plan& p) { p.workload = Workload::Custom; }), "the custom workload needs --file SCRIPT");
  EXPECT_NE(error_of([](Plan& p) { p.scripts = {"a.sql"}; }), "");
  EXPECT_EQ(parse_workload("read"), Workload::Read);
  EXPECT_EQ(parse_workload("custom"), Workload::Custom);
  EXPECT_FALSE(parse_workload("tpcc").has_value());
  EXPECT_EQ(workload_name(Workload::Mixed), "mixed");
}

TEST(PgbenchUri, DatabasePasswordAndAddress) {
  const std::string uri = "postgresql://postgres:Secret1@127.0.0.1:6432/postgres";
  EXPECT_EQ(with_database(uri, "pgfleet_bench"), "postgresql://postgres:Secret1@127.0.0.1:6432/pgfleet_bench");
  EXPECT_EQ(with_database("postgresql://u:p@a:1,b:2/app?target_session_attrs=read-write", "x"),
            "postgresql://u:p@a:1,b:2/x?target_session_attrs=read-write");
  EXPECT_EQ(with_database("postgresql://u:p@/app?host=/run/pg&port=5", "x"), "postgresql://u:p@/x?host=/run/pg&port=5");
  EXPECT_EQ(with_database("postgresql://u@h:1", "x"), "postgresql://u@h:1/x");
  auto [bare, password] = split_password(uri);
  EXPECT_EQ(bare, "postgresql://postgres@127.0.0.1:6432/postgres");
  EXPECT_EQ(password, "Secret1");
  EXPECT_EQ(split_password("postgresql://u@h:1/db").second, "");
  EXPECT_EQ(split_password("postgresql://h:1/db").first, "postgresql://h:1/db");
  EXPECT_EQ(address_of(uri), "127.0.0.1:6432");
  EXPECT_EQ(address_of("postgresql://h:1"), "h:1");
  EXPECT_EQ(address_of("not a uri"), "");
}

RunFigures run(double tps, double p99, bool ok = true) {
  RunFigures r;
  r.ok = ok;
  r.tps = tps;
  r.latency_avg_ms = 1000.0 / tps;
  r.transactions = static_cast<int64_t>(tps * 10);
  r.p50_ms = p99 / 2;
  r.p99_ms = p99;
  if (!ok) r.error = "connection refused";
  return r;
}

TEST(BenchReport, MediansOverSuccessfulRoundsAndTheFirstError) {
  TargetResult t{"proxy", "127.0.0.1:6432", {run(100, 4), run(300, 2), run(200, 3), run(0, 0, false)}, {}};
  auto s = summarize(t);
  EXPECT_EQ(s.rounds_ok, 3);
  EXPECT_EQ(s.tps, 200);
  EXPECT_EQ(s.p99_ms, 3.0);
  EXPECT_EQ(s.transactions, 6000);
  EXPECT_EQ(s.error, "connection refused");
}

TEST(BenchReport, TableComparesWithTheFirstTargetAndShowsShares) {
  Report r;
  r.database = "pgfleet_bench";
  r.scale = 10;
  r.targets.push_back({"primary", "127.0.0.1:5432", {run(1000, 2)}, {{"node1", 10000}}});
  r.targets.push_back({"proxy", "127.0.0.1:6432", {run(800, 3)}, {{"node1", 0}, {"node2", 3000}, {"node3", 1000}}});
  r.targets.push_back({"node2", "127.0.0.1:5433", {run(0, 0, false)}, {}});
  auto text = render_report(r);
  EXPECT_NE(text.find("mixed (80% pgbench select-only, 20% tpcb-like), 8 clients"), std::string::npos) << text;
  EXPECT_NE(text.find("database pgfleet_bench (scale 10)"), std::string::npos) << text;
  EXPECT_NE(text.find("VS primary"), std::string::npos) << text;
  EXPECT_NE(text.find("0.80x"), std::string::npos) << text;
  EXPECT_NE(text.find("node2 75%, node3 25%"), std::string::npos) << text;  // largest first, none for 0
  EXPECT_EQ(text.find("node1 0%"), std::string::npos) << text;
  EXPECT_NE(text.find("node2: 1 of 1 round failed: connection refused"), std::string::npos) << text;
  EXPECT_FALSE(report_ok(r));
  r.targets.pop_back();
  EXPECT_TRUE(report_ok(r));
}

TEST(BenchReport, JsonHasEveryRoundAndTheMedians) {
  Report r;
  r.plan.workload = Workload::Read;
  r.database = "db";
  r.scale = 1;
  r.targets.push_back({"proxy", "h:1", {run(100, 4), run(300, 2)}, {{"node2", 5}}});
  auto j = report_to_json(r);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["workload"], "read");
  EXPECT_TRUE(j["read_percent"].is_null());
  const auto& t = j["targets"][0];
  EXPECT_EQ(t["tps"], 200.0);
  EXPECT_EQ(t["latency_p99_ms"], 3.0);
  EXPECT_EQ(t["rounds"].size(), 2u);
  EXPECT_EQ(t["served_by"]["node2"], 5);
  EXPECT_TRUE(t["error"].is_null());
}

}  // namespace
}  // namespace pgfleet::bench
