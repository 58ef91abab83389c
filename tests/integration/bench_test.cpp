// `pgfleet bench` on a real cluster: pgbench through the proxy and directly, its tables created
// on first use and replicated, reads that the proxy spreads over the replicas, writes that reach
// the primary, and the requests it must refuse with a reason.
#include <signal.h>

#include <string>

#include "bench/pgbench.hpp"
#include "harness.hpp"

namespace pgfleet::itest {
namespace {

class BenchTest : public PgfleetTest {
 protected:
  // Runs `pgfleet bench --json` with a short run; the JSON report and what was said before it.
  struct BenchRun {
    CmdResult result;
    std::string notes;  // stderr lines before the report ("creating database ...")
    nlohmann::json report;
  };
  BenchRun bench(std::vector<std::string> args, int expected_exit = 0) {
    std::vector<std::string> all{"bench", "--json", "--time", "2", "--clients", "4", "--jobs", "2"};
    all.insert(all.end(), args.begin(), args.end());
    BenchRun run{pgfleet(all, 300s), "", nullptr};
    EXPECT_EQ(run.result.exit_code, expected_exit) << run.result.output;
    size_t json = run.result.output.find("{\n");
    if (json == std::string::npos) {
      ADD_FAILURE() << "no JSON report in:\n" << run.result.output;
      return run;
    }
    run.notes = run.result.output.substr(0, json);
    run.report = nlohmann::json::parse(run.result.output.substr(json));
    return run;
  }
  static const nlohmann::json& target(const nlohmann::json& report, const std::string& name) {
    for (const auto& t : report["targets"])
      if (t["name"] == name) return t;
    static const nlohmann::json none;
    return none;
  }
  static int64_t served(const nlohmann::json& t, const std::string& node) {
    return t["served_by"].contains(node) ? t["served_by"][node].get<int64_t>() : 0;
  }
  std::string bench_db(const std::string& node) { return bench::with_database(node_url(node), "pgfleet_bench"); }
};

TEST_F(BenchTest, ReadsGoToTheReplicasWritesToThePrimaryAndFailuresAreNamed) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());

  // First use: the database and pgbench's tables are made on the primary, and the replicas have
  // them before the reads start (else the proxy's reads would fail on a replica).
  auto read = bench({"--workload", "read", "--target", "proxy,primary", "--scale", "1"});
  EXPECT_NE(read.notes.find("creating database pgfleet_bench"), std::string::npos) << read.notes;
  EXPECT_NE(read.notes.find("at scale 1 on node1 (the primary)"), std::string::npos) << read.notes;
  EXPECT_EQ(read.report["ok"], true);
  EXPECT_EQ(read.report["scale"], 1);
  const auto& proxy = target(read.report, "proxy");
  const auto& primary = target(read.report, "primary");
  ASSERT_FALSE(proxy.is_null()) << read.report.dump(2);
  ASSERT_FALSE(primary.is_null()) << read.report.dump(2);
  EXPECT_EQ(proxy["address"], "127.0.0.1:" + std::to_string(base_port_));
  for (const auto* t : {&proxy, &primary}) {
    EXPECT_EQ((*t)["ok"], true) << t->dump(2);
    EXPECT_GT((*t)["tps"].get<double>(), 0) << t->dump(2);
    EXPECT_GT((*t)["transactions"].get<int64_t>(), 100) << t->dump(2);
    EXPECT_EQ((*t)["failed"], 0) << t->dump(2);
    EXPECT_GT((*t)["latency_p50_ms"].get<double>(), 0) << t->dump(2);
    EXPECT_GE((*t)["latency_p99_ms"].get<double>(), (*t)["latency_p50_ms"].get<double>()) << t->dump(2);
  }
  // The proxy's rw-split port sent every read to the replicas, both of them.
  EXPECT_GT(served(proxy, "node2"), 0) << proxy.dump(2);
  EXPECT_GT(served(proxy, "node3"), 0) << proxy.dump(2);
  EXPECT_EQ(served(proxy, "node1"), 0) << proxy.dump(2);
  EXPECT_GE(served(proxy, "node2") + served(proxy, "node3"), proxy["transactions"].get<int64_t>()) << proxy.dump(2);
  EXPECT_EQ(served(primary, "node1"), primary["transactions"].get<int64_t>()) << primary.dump(2);
  EXPECT_EQ(sql_value(bench_db("node3"), "SELECT count(*) FROM pgbench_accounts"), "100000");

  // Writes through the proxy reach the primary; the tables are reused, not filled again.
  auto write = bench({"--workload", "write", "--target", "proxy"});
  EXPECT_EQ(write.notes.find("filling"), std::string::npos) << write.notes;
  const auto& writes = target(write.report, "proxy");
  EXPECT_EQ(writes["ok"], true) << writes.dump(2);
  EXPECT_GT(served(writes, "node1"), 0) << writes.dump(2);
  EXPECT_GE(served(writes, "node1"), writes["transactions"].get<int64_t>()) << writes.dump(2);
  // Only pgbench's own look at the scale (a SELECT before the run) may go to a replica.
  EXPECT_LT(100 * (served(writes, "node2") + served(writes, "node3")), served(writes, "node1")) << writes.dump(2);
  EXPECT_GT(std::stoll(sql_value(bench_db("node1"), "SELECT count(*) FROM pgbench_history")), 0);

  // A write workload on a replica fails with PostgreSQL's reason, and the exit code says so.
  auto refused = bench({"--workload", "write", "--target", "node2"}, 1);
  EXPECT_EQ(refused.report["ok"], false);
  EXPECT_NE(target(refused.report, "node2")["error"].get<std::string>().find("read-only transaction"),
            std::string::npos)
      << refused.report.dump(2);

  // Another scale fills the tables again.
  auto rescaled = bench({"--workload", "read", "--target", "proxy-replicas", "--scale", "2"});
  EXPECT_NE(rescaled.notes.find("at scale 2"), std::string::npos) << rescaled.notes;
  EXPECT_EQ(rescaled.report["scale"], 2);
  EXPECT_EQ(sql_value(bench_db("node1"), "SELECT count(*) FROM pgbench_branches"), "2");

  // The table for people names the workload and compares each target with the first.
  auto table = pgfleet({"bench", "--workload", "mixed", "--read-percent", "50", "--time", "1", "--clients", "2",
                        "--jobs", "1", "--target", "primary,proxy"},
                       300s);
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_NE(table.output.find("mixed (50% pgbench select-only, 50% tpcb-like), 2 clients"), std::string::npos)
      << table.output;
  EXPECT_NE(table.output.find("VS primary"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find("round 1/1: proxy"), std::string::npos) << table.output;
}

TEST_F(BenchTest, OwnScriptsAndRequestsItRefuses) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());

  // The caller's own script, read before the command takes the cluster owner's identity.
  const std::string script = tmp_ + "/mine.sql";
  write_text(script, "SELECT pg_is_in_recovery();\n");
  ::chmod(script.c_str(), 0600);
  auto own = bench({"--file", script, "--target", "proxy-replicas,proxy-primary"});
  EXPECT_EQ(own.report["workload"], "custom");
  EXPECT_EQ(own.notes.find("filling"), std::string::npos) << own.notes;  // its own tables only
  EXPECT_GT(served(target(own.report, "proxy-replicas"), "node2") + served(target(own.report, "proxy-replicas"), "node3"),
            0)
      << own.report.dump(2);
  EXPECT_GT(served(target(own.report, "proxy-primary"), "node1"), 0) << own.report.dump(2);

  struct Refusal {
    std::vector<std::string> args;
    std::string message;
  };
  for (const auto& r : std::vector<Refusal>{
           {{"--target", "node9"}, "unknown --target 'node9'"},
           {{"--target", "proxy,proxy"}, "--target names 'proxy' twice"},
           {{"--workload", "tpcc"}, "unknown --workload 'tpcc'"},
           {{"--workload", "read", "--read-percent", "50"}, "--read-percent applies to the mixed workload only"},
           {{"--read-percent", "101"}, "--read-percent must be between 0 and 100"},
           {{"--clients", "2", "--jobs", "3"}, "--jobs (3) cannot exceed --clients (2)"},
           {{"--protocol", "binary"}, "--protocol must be simple, extended or prepared"},
           {{"--file", tmp_ + "/missing.sql"}, "cannot read --file"},
           {{"--database", "pgfleet"}, "other than pgfleet"},
       }) {
    std::vector<std::string> args{"bench"};
    args.insert(args.end(), r.args.begin(), r.args.end());
    auto refused = pgfleet(args, 60s);
    EXPECT_EQ(refused.exit_code, 1) << refused.output;
    EXPECT_NE(refused.output.find(r.message), std::string::npos) << refused.output;
  }
  auto hint = pgfleet({"bench", "--target", "node9"}, 60s);
  EXPECT_NE(hint.output.find("hint: one or more of: primary, proxy, proxy-primary, proxy-replicas, node1, node2, node3"),
            std::string::npos)
      << hint.output;

  // A stopped proxy is named, not waited for.
  int64_t proxy = num(status_json()["proxy"], "pid");
  ASSERT_GT(proxy, 0);
  ASSERT_EQ(::kill(static_cast<pid_t>(proxy), SIGTERM), 0);
  ASSERT_TRUE(eventually([&] { return str(status_json()["proxy"], "state") == "stopped"; }, 30s));
  auto stopped = pgfleet({"bench", "--target", "proxy"}, 60s);
  EXPECT_EQ(stopped.exit_code, 1) << stopped.output;
  EXPECT_NE(stopped.output.find("target 'proxy': the proxy is stopped"), std::string::npos) << stopped.output;
}

}  // namespace
}  // namespace pgfleet::itest
