// Prometheus formatting, host statistics readers and the history-derived metrics.
#include <gtest/gtest.h>

#include <cmath>

#include "http/cluster_api.hpp"
#include "http/host_stats.hpp"
#include "http/metrics.hpp"

namespace pgfleet::http {
namespace {

TEST(Metrics, FormatsValuesAsPrometheusReadsThem) {
  EXPECT_EQ(format_value(3), "3");
  EXPECT_EQ(format_value(-2), "-2");
  EXPECT_EQ(format_value(0.25), "0.25");
  EXPECT_EQ(format_value(1e300), "1e+300");
  EXPECT_EQ(format_value(INFINITY), "+Inf");
  EXPECT_EQ(format_value(NAN), "NaN");
  EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(Metrics, GroupsSamplesUnderOneHelpAndTypePerFamily) {
  MetricsWriter w;
  w.set_common_labels({{"cluster", "c"}});
  w.family("pgfleet_x_total", "counter", "X things.");
  w.gauge("pgfleet_y", "Y.", 1.5, {{"node", "n1"}});
  w.add("pgfleet_x_total", {{"db", "a"}}, 1);
  w.add("pgfleet_x_total", {{"db", "b"}}, 2);
  w.family("pgfleet_x_total", "counter", "again");  // harmless
  w.family("pgfleet_empty", "gauge", "never sampled");
  EXPECT_EQ(w.text(),
            "# HELP pgfleet_x_total X things.\n# TYPE pgfleet_x_total counter\n"
            "pgfleet_x_total{cluster=\"c\",db=\"a\"} 1\npgfleet_x_total{cluster=\"c\",db=\"b\"} 2\n"
            "# HELP pgfleet_y Y.\n# TYPE pgfleet_y gauge\npgfleet_y{cluster=\"c\",node=\"n1\"} 1.5\n");
  EXPECT_THROW(w.add("pgfleet_undeclared", {}, 1), std::logic_error);
}

TEST(Metrics, HistogramPartsShareTheirFamily) {
  MetricsWriter w;
  w.family("pgfleet_h_seconds", "histogram", "H.");
  w.add("pgfleet_h_seconds", {{"le", "0.1"}}, 1, "_bucket");
  w.add("pgfleet_h_seconds", {{"le", "+Inf"}}, 2, "_bucket");
  w.add("pgfleet_h_seconds", {}, 0.3, "_sum");
  w.add("pgfleet_h_seconds", {}, 2, "_count");
  EXPECT_EQ(w.text(),
            "# HELP pgfleet_h_seconds H.\n# TYPE pgfleet_h_seconds histogram\n"
            "pgfleet_h_seconds_bucket{le=\"0.1\"} 1\npgfleet_h_seconds_bucket{le=\"+Inf\"} 2\n"
            "pgfleet_h_seconds_sum 0.3\npgfleet_h_seconds_count 2\n");
}

TEST(HostStats, ReadsProcFormats) {
  int cpus = 0;
  auto cpu = parse_proc_stat_cpu("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0\ncpu1 50 0 25 400 25 0 0 0\nintr 1\n", cpus);
  EXPECT_EQ(cpus, 2);
  ASSERT_TRUE(cpu.count("user"));
  EXPECT_GT(cpu["idle"], cpu["user"]);
  auto later = cpu;
  later["user"] += 3;
  later["idle"] += 1;
  EXPECT_DOUBLE_EQ(*cpu_percent(cpu, later), 75.0);
  EXPECT_FALSE(cpu_percent(cpu, cpu));
  auto [total, available] = parse_meminfo("MemTotal:       1000 kB\nMemFree:  10 kB\nMemAvailable:    500 kB\n");
  EXPECT_EQ(total, 1024000u);
  EXPECT_EQ(available, 512000u);
  auto net = parse_net_dev(
      "Inter-|   Receive                                                |  Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
      "    lo:  1234      10    0    0    0     0          0         0     5678      10    0    0    0     0       0          0\n");
  ASSERT_TRUE(net.count("lo"));
  EXPECT_EQ(net["lo"].first, 1234u);
  EXPECT_EQ(net["lo"].second, 5678u);
}

TEST(ClusterMetrics, CountChangesAndTimeTheLastOne) {
  MetricsWriter w;
  nlohmann::json history = nlohmann::json::array(
      {{{"time_ms", 1000}, {"reason", "failover from node1 to node2"}, {"started_ms", 1000}, {"promoted_ms", 4500}},
       {{"time_ms", 9000}, {"reason", "switchover from node2 to node1"}, {"started_ms", 9000}, {"promoted_ms", 9250}}});
  write_history_metrics(w, history);
  std::string text = w.text();
  EXPECT_NE(text.find("pgfleet_cluster_leader_changes_total{kind=\"failover\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgfleet_cluster_leader_changes_total{kind=\"switchover\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgfleet_cluster_failovers_total 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgfleet_cluster_last_leader_change_duration_seconds 0.25\n"), std::string::npos) << text;
  EXPECT_NE(text.find("pgfleet_cluster_last_leader_change_timestamp_seconds 9\n"), std::string::npos) << text;
}

TEST(ClusterApi, StripsPasswordsFromUris) {
  EXPECT_EQ(strip_password("postgresql://postgres:s3cret@127.0.0.1:5433,127.0.0.1:5434/postgres?x=1"),
            "postgresql://postgres@127.0.0.1:5433,127.0.0.1:5434/postgres?x=1");
  EXPECT_EQ(strip_password("postgresql://postgres@h/db"), "postgresql://postgres@h/db");
  EXPECT_EQ(strip_password("postgresql://h:5432/db"), "postgresql://h:5432/db");
}

}  // namespace
}  // namespace pgfleet::http
