// Monitoring against real clusters: the agents' Patroni-compatible health checks follow role
// changes, the token-guarded POST endpoints act (failsafe confirmations included), /metrics passes `promtool check metrics` and
// agrees with PostgreSQL (lag while replay is paused), the real HAProxy routes with
// deploy/haproxy.cfg, deploy/alerts.yml passes promtool, and with http.tls the CLI asks the agents over HTTPS.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "harness.hpp"
#include "util/process.hpp"

#ifndef PGFLEET_SOURCE_DIR
#error "PGFLEET_SOURCE_DIR must name the source tree (deploy/ files)"
#endif

namespace pgfleet::itest {
namespace {

struct HttpReply {
  int status = 0;  // 0: no answer
  std::string headers;
  std::string body;
};

// One request on a fresh connection ("Connection: close"); `raw` sends exactly the given bytes.
HttpReply http_raw(int port, const std::string& request) {
  HttpReply reply;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return reply;
  }
  (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string in;
  char buf[8192];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) in.append(buf, static_cast<size_t>(n));
  ::close(fd);
  size_t end = in.find("\r\n\r\n");
  if (in.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) return reply;
  reply.status = std::atoi(in.c_str() + 9);
  reply.headers = in.substr(0, end);
  reply.body = in.substr(end + 4);
  return reply;
}

HttpReply http(int port, const std::string& method, const std::string& path, const std::string& headers = "",
               const std::string& body = "") {
  return http_raw(port, method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers +
                            (body.empty() ? "" : "Content-Length: " + std::to_string(body.size()) + "\r\n") + "\r\n" +
                            body);
}

int status_of(int port, const std::string& path) { return http(port, "GET", path).status; }

// The value of the first sample named `name` whose labels contain `labels` (e.g. "role=\"primary\"").
std::optional<double> metric(const std::string& text, const std::string& name, const std::string& labels = "") {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind(name, 0) != 0 || (line[name.size()] != '{' && line[name.size()] != ' ')) continue;
    if (!labels.empty() && line.find(labels) == std::string::npos) continue;
    return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return std::nullopt;
}

// The sum of every sample named `name` whose labels contain `labels` (0 when there is none).
double metric_sum(const std::string& text, const std::string& name, const std::string& labels = "") {
  std::istringstream in(text);
  std::string line;
  double sum = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind(name, 0) != 0 || (line[name.size()] != '{' && line[name.size()] != ' ')) continue;
    if (!labels.empty() && line.find(labels) == std::string::npos) continue;
    sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

std::set<std::string> metric_families(const std::string& text) {
  std::set<std::string> out;
  std::regex type_line("^# TYPE (\\S+) ");
  std::istringstream in(text);
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_search(line, m, type_line)) out.insert(m[1]);
  }
  return out;
}

std::string source_file(const std::string& relative) { return read_text(std::string(PGFLEET_SOURCE_DIR) + "/" + relative); }

// Runs a shell command line (promtool, haproxy -c) and returns exit code and output.
CmdResult shell(const std::string& command) {
  auto r = process::run({"/bin/sh", "-c", command});
  return CmdResult{r.exit_code, r.output};
}

class MonitoringTest : public PgfleetTest {
 protected:
  int api_port(int k) const { return base_port_ + 50 + k - 1; }
  int http_port() const { return base_port_ + 3; }
  std::string token() { return nlohmann::json::parse(read_text(dir_ + "/secrets.json")).at("api_token"); }
  std::string bearer() { return "Authorization: Bearer " + token() + "\r\n"; }

  // Waits until `k`'s API answers `path` with `status`.
  bool wait_status(int k, const std::string& path, int status, std::chrono::milliseconds timeout = 60s) {
    return eventually([&] { return status_of(api_port(k), path) == status; }, timeout, 200ms);
  }
  std::string scrape(int port) {
    auto r = http(port, "GET", "/metrics");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_NE(r.headers.find("text/plain; version=0.0.4"), std::string::npos) << r.headers;
    return r.body;
  }
  void expect_promtool_accepts(const std::string& text, const std::string& what) {
    std::string file = tmp_ + "/scrape-" + what + ".txt";
    write_text(file, text);
    auto r = shell("promtool check metrics < " + file);
    EXPECT_EQ(r.exit_code, 0) << "promtool check metrics on " << what << ":\n" << r.output;
  }
};

TEST_F(MonitoringTest, HealthEndpointsFollowRoleChangesAndPostEndpointsAct) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  ASSERT_TRUE(wait_all_streaming());
  ASSERT_TRUE(wait_status(1, "/primary", 200));
  ASSERT_TRUE(wait_status(2, "/replica", 200));
  ASSERT_TRUE(wait_status(3, "/replica", 200));

  // Patroni's status codes on a primary (node1) and an asynchronous streaming replica (node2).
  const std::vector<std::tuple<std::string, int, int>> expected = {
      {"/primary", 200, 503},   {"/master", 200, 503},    {"/leader", 200, 503},   {"/", 200, 503},
      {"/replica", 503, 200},   {"/read-only", 200, 200}, {"/health", 200, 200},   {"/liveness", 200, 200},
      {"/readiness", 200, 200}, {"/sync", 503, 503},      {"/async", 503, 200},    {"/replica?lag=10MB", 503, 200},
      {"/replica?lag=5s", 503, 200}};
  for (const auto& [path, on_primary, on_replica] : expected) {
    EXPECT_EQ(status_of(api_port(1), path), on_primary) << "GET " << path << " on the primary";
    EXPECT_EQ(status_of(api_port(2), path), on_replica) << "GET " << path << " on a replica";
  }
  // HAProxy's httpchk sends OPTIONS (or HEAD): same status, no body.
  for (const char* method : {"OPTIONS", "HEAD"}) {
    auto p = http(api_port(1), method, "/primary");
    EXPECT_EQ(p.status, 200) << method;
    EXPECT_TRUE(p.body.empty()) << method << " returned a body";
    EXPECT_EQ(http(api_port(2), method, "/primary").status, 503) << method;
  }
  // The node document.
  auto doc = nlohmann::json::parse(http(api_port(2), "GET", "/replica").body);
  EXPECT_EQ(doc["role"], "replica");
  EXPECT_EQ(doc["state"], "streaming");
  EXPECT_EQ(doc["leader"], "node1");
  EXPECT_EQ(doc["timeline"], 1);
  EXPECT_TRUE(doc["xlog"]["replayed_location"].is_number()) << doc.dump(2);
  // Bad input gets clear 4xx answers.
  EXPECT_EQ(status_of(api_port(2), "/replica?lag=ten"), 400);
  EXPECT_EQ(status_of(api_port(2), "/no-such-page"), 404);
  EXPECT_EQ(status_of(api_port(2), "/restart"), 405);
  EXPECT_EQ(http_raw(api_port(2), "HELLO\r\n\r\n").status, 400);
  EXPECT_EQ(http_raw(api_port(2), "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").status, 501);

  // status --json names every API and the cluster's dashboard and metrics addresses.
  auto status = status_json();
  for (int k = 1; k <= 3; ++k) {
    EXPECT_EQ(str(node_of(status, "node" + std::to_string(k)), "api_url"),
              "http://127.0.0.1:" + std::to_string(api_port(k)));
  }
  EXPECT_EQ(str(status, "dashboard_url"), "http://127.0.0.1:" + std::to_string(http_port()) + "/");
  EXPECT_EQ(str(status, "metrics_url"), "http://127.0.0.1:" + std::to_string(http_port()) + "/metrics");
  // /api/cluster (agents and the proxy's HTTP port): the same document, without passwords.
  std::string password = nlohmann::json::parse(read_text(dir_ + "/secrets.json")).at("superuser_password");
  for (int port : {http_port(), api_port(3)}) {
    auto api = http(port, "GET", "/api/cluster");
    ASSERT_EQ(api.status, 200) << "port " << port;
    auto cluster = nlohmann::json::parse(api.body);
    EXPECT_EQ(cluster["leader"], "node1");
    EXPECT_EQ(cluster["nodes"].size(), 3u);
    EXPECT_EQ(api.body.find(password), std::string::npos) << "the API leaks the superuser password";
  }

  // A switchover by the CLI: the checks follow.
  auto sw = pgfleet({"switchover", "--to", "node2"});
  ASSERT_TRUE(sw.ok()) << sw.output;
  EXPECT_TRUE(wait_status(2, "/primary", 200));
  EXPECT_TRUE(wait_status(1, "/primary", 503));
  EXPECT_TRUE(wait_status(1, "/replica", 200));
  EXPECT_EQ(status_of(api_port(2), "/replica"), 503);

  // Mutating endpoints need the cluster's token.
  ASSERT_TRUE(wait_all_streaming());
  ASSERT_TRUE(wait_status(3, "/replica", 200));
  // A switchover to node3 is refused (not delayed) while node3 still reports the old timeline,
  // which it may for up to a loop after it began following node2.
  ASSERT_TRUE(eventually([&] { return num(node_status("node3"), "timeline") == num(node_status("node2"), "timeline"); },
                         30s))
      << status_json().dump(2);
  std::string body = R"({"leader": "node2", "candidate": "node3"})";
  auto no_token = http(api_port(1), "POST", "/switchover", "", body);
  EXPECT_EQ(no_token.status, 401) << no_token.body;
  EXPECT_EQ(http(api_port(1), "POST", "/switchover", "Authorization: Bearer wrong\r\n", body).status, 403);
  EXPECT_EQ(http(api_port(1), "POST", "/switchover", bearer(), R"({"leader": "node1"})").status, 412);
  EXPECT_EQ(http(api_port(1), "POST", "/switchover", bearer(), "not json").status, 400);
  auto accepted = http(api_port(1), "POST", "/switchover", bearer(), body);
  EXPECT_EQ(accepted.status, 202) << accepted.body;
  EXPECT_TRUE(wait_status(3, "/primary", 200));
  EXPECT_TRUE(wait_status(2, "/primary", 503));
  EXPECT_TRUE(wait_status(2, "/replica", 200));
  ASSERT_TRUE(wait_all_streaming());

  // reinit refuses the primary; restart restarts a replica's postmaster.
  EXPECT_EQ(http(api_port(3), "POST", "/reinit", bearer()).status, 503);
  int64_t old_pid = num(node_status("node1"), "pid");
  ASSERT_GT(old_pid, 0);
  EXPECT_EQ(http(api_port(1), "POST", "/restart", "").status, 401);
  EXPECT_EQ(http(api_port(1), "POST", "/restart", bearer()).status, 202);
  nlohmann::json last;
  EXPECT_TRUE(eventually(
      [&] {
        last = node_status("node1");
        return num(last, "pid") != 0 && num(last, "pid") != old_pid && str(last, "state") == "streaming";
      },
      90s, 250ms))
      << last.dump(2);
  EXPECT_TRUE(wait_status(1, "/replica", 200));

  // `pgfleet restart` goes through the same endpoint.
  std::string agent_log = dir_ + "/nodes/node2/log/agent.log";
  auto requests = [&] {
    std::string log = read_text(agent_log);
    size_t n = 0;
    for (size_t pos = 0; (pos = log.find("http: restart requested", pos)) != std::string::npos; ++pos) ++n;
    return n;
  };
  size_t before = requests();
  auto restarted = pgfleet({"restart", "node2"});
  ASSERT_TRUE(restarted.ok()) << restarted.output;
  EXPECT_EQ(requests(), before + 1) << "pgfleet restart did not use POST /restart:\n" << read_text(agent_log);

  // POST /failsafe: what a primary cut off from the DCS asks each node (docs/multihost.md).
  ASSERT_TRUE(wait_status(3, "/primary", 200));
  const std::string leader3 = R"({"leader": "node3"})";
  EXPECT_EQ(http(api_port(1), "POST", "/failsafe", "", leader3).status, 401);
  auto off = http(api_port(1), "POST", "/failsafe", bearer(), leader3);
  EXPECT_EQ(off.status, 409) << off.body;
  EXPECT_NE(off.body.find("failsafe mode is off"), std::string::npos) << off.body;
  EXPECT_FALSE(status_json()["failsafe_mode"].get<bool>());
  auto on = pgfleet({"failsafe", "on"});
  ASSERT_TRUE(on.ok()) << on.output;
  EXPECT_TRUE(status_json()["failsafe_mode"].get<bool>());
  EXPECT_NE(pgfleet({"status"}).output.find("failsafe mode"), std::string::npos);
  EXPECT_NE(pgfleet({"failsafe"}).output.find("failsafe mode is on"), std::string::npos);
  HttpReply confirmed;
  EXPECT_TRUE(eventually([&] { return (confirmed = http(api_port(1), "POST", "/failsafe", bearer(), leader3)).status == 200; },
                         10s, 200ms))
      << confirmed.status << " " << confirmed.body;
  EXPECT_NE(read_text(dir_ + "/nodes/node1/log/agent.log").find("failsafe: confirmed that node3 is the primary"),
            std::string::npos);
  // node2 answers from its own view of the cluster, which learns of failsafe mode at its next loop.
  HttpReply other;
  EXPECT_TRUE(eventually(
      [&] {
        other = http(api_port(2), "POST", "/failsafe", bearer(), R"({"leader": "node1"})");
        return other.body.find("failsafe mode is off") == std::string::npos;
      },
      10s, 200ms));
  EXPECT_EQ(other.status, 409) << other.body;  // node3 holds the key, not node1
  EXPECT_NE(other.body.find("node3 holds the leader key"), std::string::npos) << other.body;
  auto primary = http(api_port(3), "POST", "/failsafe", bearer(), R"({"leader": "node1"})");
  EXPECT_EQ(primary.status, 409) << primary.body;  // a writable primary vouches for nobody
  EXPECT_EQ(http(api_port(1), "POST", "/failsafe", bearer(), "{}").status, 400);
  ASSERT_TRUE(succeeded(pgfleet({"failsafe", "off"})));
  EXPECT_FALSE(status_json()["failsafe_mode"].get<bool>());
  auto wrong = pgfleet({"failsafe", "maybe"});
  EXPECT_FALSE(wrong.ok());
  EXPECT_NE(wrong.output.find("maybe"), std::string::npos) << wrong.output;
  // remove-node is for etcd clusters; on one host it points to scale (tests/multihost runs it).
  auto remove = pgfleet({"remove-node", "node3"});
  EXPECT_FALSE(remove.ok());
  EXPECT_NE(remove.output.find("several hosts"), std::string::npos) << remove.output;
  EXPECT_NE(remove.output.find("pgfleet scale"), std::string::npos) << remove.output;
}

TEST_F(MonitoringTest, MetricsPassPromtoolAndLagFollowsPausedReplay) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  ASSERT_TRUE(wait_all_streaming());
  ASSERT_TRUE(wait_status(2, "/replica", 200));
  std::string primary = node_url("node1"), replica = node_url("node2");
  // node3 restarted, its replay paused before it replays any commit: it has no replay timestamp
  // to date its lag from (pg_last_xact_replay_timestamp() is NULL), yet its lag must show.
  auto restarted = pgfleet({"restart", "node3"});
  ASSERT_TRUE(restarted.ok()) << restarted.output;
  ASSERT_TRUE(wait_state("node3", "streaming"));
  std::string fresh = node_url("node3");
  sql(fresh, "SELECT pg_wal_replay_pause()");
  ASSERT_EQ(sql_value(fresh, "SELECT pg_last_xact_replay_timestamp() IS NULL"), "t");

  // Replay paused on node2 while the primary writes: lag grows in bytes and seconds. (node2
  // replays one commit first, so its lag is dated from that commit.)
  sql(primary, "CREATE TABLE before_pause (x int)");
  ASSERT_TRUE(eventually([&] { return sql_value(replica, "SELECT to_regclass('before_pause') IS NOT NULL") == "t"; }, 30s));
  sql(replica, "SELECT pg_wal_replay_pause()");
  sql(primary, "CREATE TABLE lagging AS SELECT g FROM generate_series(1, 20000) g");
  double written_lag = std::stod(sql_value(
      primary, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '" +
                   sql_value(replica, "SELECT pg_last_wal_replay_lsn()") + "')"));
  ASSERT_GT(written_lag, 100000) << "the insert should have written WAL";
  std::string text;
  bool grew = eventually(
      [&] {
        text = scrape(api_port(2));
        auto lag = metric(text, "pgfleet_replication_lag_bytes");
        return metric(text, "pgfleet_pg_replay_paused") == 1.0 && lag && *lag >= written_lag;
      },
      30s, 300ms);
  ASSERT_TRUE(grew) << "lag did not reach " << written_lag << " bytes:\n" << text;
  // The replayed position is what PostgreSQL says (it stands still while paused).
  double replayed = std::stod(sql_value(replica, "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')"));
  EXPECT_TRUE(eventually([&] { return metric(scrape(api_port(2)), "pgfleet_wal_replayed_lsn_bytes") == replayed; }, 10s))
      << "metric " << metric(scrape(api_port(2)), "pgfleet_wal_replayed_lsn_bytes").value_or(-1) << " vs " << replayed;
  EXPECT_TRUE(eventually(
      [&] {
        sql(primary, "INSERT INTO lagging VALUES (1)");
        return metric(scrape(api_port(2)), "pgfleet_replication_lag_seconds").value_or(0) >= 1.0;
      },
      30s, 500ms));
  // Health checks with lag limits see it too; without a limit the replica still serves.
  EXPECT_EQ(status_of(api_port(2), "/replica?lag=64kB"), 503);
  EXPECT_EQ(status_of(api_port(2), "/replica?lag=1GB"), 200);
  EXPECT_EQ(status_of(api_port(2), "/replica"), 200);
  expect_promtool_accepts(scrape(api_port(2)), "paused-replica");

  EXPECT_TRUE(eventually(
      [&] { return metric(scrape(api_port(3)), "pgfleet_replication_lag_seconds").value_or(0) >= 1.0; }, 30s, 500ms))
      << "a replica behind with no replayed commit shows no lag in seconds:\n" << scrape(api_port(3));
  sql(fresh, "SELECT pg_wal_replay_resume()");
  EXPECT_TRUE(eventually([&] { return metric(scrape(api_port(3)), "pgfleet_replication_lag_seconds") == 0.0; }, 30s, 300ms));

  sql(replica, "SELECT pg_wal_replay_resume()");
  EXPECT_TRUE(eventually([&] { return metric(scrape(api_port(2)), "pgfleet_replication_lag_bytes") == 0.0; }, 30s, 300ms));
  EXPECT_TRUE(wait_status(2, "/replica?lag=64kB", 200));

  // Figures that PostgreSQL reports: committed transactions count up, the timeline is right.
  std::string p = scrape(api_port(1));
  double commits = metric(p, "pgfleet_pg_xact_commit_total", "datname=\"postgres\"").value_or(-1);
  for (int i = 0; i < 5; ++i) sql(primary, "INSERT INTO lagging VALUES (2)");
  EXPECT_GE(metric(scrape(api_port(1)), "pgfleet_pg_xact_commit_total", "datname=\"postgres\"").value_or(-1), commits + 5);
  EXPECT_EQ(metric(p, "pgfleet_primary"), 1.0);
  EXPECT_EQ(metric(p, "pgfleet_node_role", "role=\"primary\""), 1.0);
  EXPECT_EQ(metric(p, "pgfleet_timeline"), 1.0);
  EXPECT_EQ(metric(p, "pgfleet_replicas_streaming"), 2.0);
  EXPECT_TRUE(metric(p, "pgfleet_pg_replication_slot_retained_bytes", "slot=\"node2\""));
  EXPECT_GT(metric(p, "pgfleet_host_data_disk_total_bytes").value_or(0), 0);
  EXPECT_GT(metric(p, "pgfleet_host_memory_total_bytes").value_or(0), 0);
  expect_promtool_accepts(p, "primary");

  // A switchover is counted and timed in the cluster metrics (agents and the proxy's port).
  auto sw = pgfleet({"switchover", "--to", "node3"});
  ASSERT_TRUE(sw.ok()) << sw.output;
  // The CLI asked the leader's agent over its API, with the token.
  auto agent_log = pgfleet({"logs", "node1", "--agent", "-n", "200"});
  EXPECT_NE(agent_log.output.find("http: switchover from node1 to node3 requested"), std::string::npos) << agent_log.output;
  std::string proxy;
  EXPECT_TRUE(eventually(
      [&] {
        proxy = scrape(http_port());
        return metric(proxy, "pgfleet_cluster_leader_changes_total", "kind=\"switchover\"") == 1.0 &&
               metric(proxy, "pgfleet_cluster_last_leader_change_duration_seconds") &&
               metric(proxy, "pgfleet_cluster_primaries") == 1.0 &&
               metric(proxy, "pgfleet_cluster_failover_candidates") == 2.0;  // node1 rejoined, node2 followed
      },
      30s, 300ms))
      << proxy;
  EXPECT_GT(metric(proxy, "pgfleet_cluster_last_leader_change_duration_seconds").value_or(0), 0);
  // Traffic through the proxy shows in its pool metrics.
  std::string via_proxy = str(status_json()["connection"], "proxy");
  for (int i = 0; i < 3; ++i) sql(via_proxy, "SELECT 1");
  EXPECT_TRUE(eventually(
      [&] {
        proxy = scrape(http_port());
        return metric(proxy, "pgfleet_proxy_queries_total", "database=\"postgres\"").value_or(0) >= 3;
      },
      10s, 300ms))
      << proxy;
  expect_promtool_accepts(proxy, "proxy");

  // Every metric the shipped alerts and Grafana dashboard use is one we export.
  std::set<std::string> families = metric_families(p);  // node1 while it was the primary
  for (auto& f : metric_families(scrape(api_port(1)))) families.insert(f);
  for (auto& f : metric_families(scrape(api_port(2)))) families.insert(f);
  for (auto& f : metric_families(proxy)) families.insert(f);
  bool thermal = !list_dir("/sys/class/thermal").empty();
  std::regex name("pgfleet_[a-z0-9_]+");
  for (const char* file : {"deploy/alerts.yml", "deploy/grafana/pgfleet.json"}) {
    std::string shipped = source_file(file);
    for (std::sregex_iterator it(shipped.begin(), shipped.end(), name), end; it != end; ++it) {
      std::string n = it->str();
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        if (n.ends_with(suffix) && families.count(n.substr(0, n.size() - std::string(suffix).size()))) {
          n = n.substr(0, n.size() - std::string(suffix).size());
        }
      }
      if (n == "pgfleet_host_temperature_celsius" && !thermal) continue;
      EXPECT_TRUE(families.count(n)) << file << " uses " << n << ", which no scrape exports";
    }
  }
}

TEST_F(MonitoringTest, HaproxyWithTheShippedConfigRoutesWritesToThePrimaryAndReadsToReplicas) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  ASSERT_TRUE(wait_all_streaming());
  // deploy/haproxy.cfg with this test's ports instead of the defaults.
  std::string cfg = source_file("deploy/haproxy.cfg");
  int write_port = base_port_ + 90, read_port = base_port_ + 91, stats_port = base_port_ + 92;
  auto replace_all = [&](const std::string& from, const std::string& to) {
    size_t n = 0;
    for (size_t pos = 0; (pos = cfg.find(from, pos)) != std::string::npos; pos += to.size(), ++n) cfg.replace(pos, from.size(), to);
    return n;
  };
  ASSERT_EQ(replace_all("127.0.0.1:5000", "127.0.0.1:" + std::to_string(write_port)), 1u);
  ASSERT_EQ(replace_all("127.0.0.1:5001", "127.0.0.1:" + std::to_string(read_port)), 1u);
  ASSERT_EQ(replace_all("127.0.0.1:7000", "127.0.0.1:" + std::to_string(stats_port)), 1u);
  for (int k = 1; k <= 3; ++k) {
    ASSERT_EQ(replace_all("127.0.0.1:" + std::to_string(5432 + k), "127.0.0.1:" + std::to_string(node_port(k))), 2u);
    ASSERT_EQ(replace_all("port " + std::to_string(8008 + k), "port " + std::to_string(api_port(k))), 2u);
  }
  std::string cfg_path = tmp_ + "/haproxy.cfg";
  write_text(cfg_path, cfg);
  auto check = shell("haproxy -c -f " + cfg_path);
  ASSERT_EQ(check.exit_code, 0) << check.output;
  // Stopped when the test body ends, before the harness checks that nothing of the test still runs.
  struct Haproxy {
    pid_t pid;
    ~Haproxy() {
      if (pid <= 0) return;
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  } haproxy{process::spawn({"/usr/sbin/haproxy", "-db", "-f", cfg_path}, tmp_ + "/haproxy.log")};
  ASSERT_GT(haproxy.pid, 0);

  std::string node1 = node_url("node1");
  auto through = [&](int port) {
    std::string uri = node1;
    uri.replace(uri.find(":" + std::to_string(node_port(1)) + "/"), std::to_string(node_port(1)).size() + 2,
                ":" + std::to_string(port) + "/");
    return with_param(uri, "connect_timeout=3");
  };
  auto served_by = [&](int port) {
    auto rows = try_sql(through(port), "SELECT pg_is_in_recovery()::text, inet_server_port()::text", 5s);
    if (!rows || rows->empty()) return std::string("error: ") + (rows ? "no row" : rows.error());
    return rows->front()[0].value_or("") + "@" + rows->front()[1].value_or("");
  };
  std::string seen;
  EXPECT_TRUE(eventually([&] { return (seen = served_by(write_port)) == "false@" + std::to_string(node_port(1)); }, 30s, 250ms))
      << "write port reached " << seen << "\n" << read_text(tmp_ + "/haproxy.log");
  std::set<std::string> readers;
  EXPECT_TRUE(eventually(
      [&] {
        seen = served_by(read_port);
        if (seen.rfind("true@", 0) == 0) readers.insert(seen);
        return readers.size() == 2;
      },
      30s, 100ms))
      << "read port reached " << seen << "; replicas seen: " << readers.size() << "\n" << read_text(tmp_ + "/haproxy.log");

  // After a switchover HAProxy follows the health checks to the new primary.
  auto sw = pgfleet({"switchover", "--to", "node2"});
  ASSERT_TRUE(sw.ok()) << sw.output;
  EXPECT_TRUE(eventually([&] { return (seen = served_by(write_port)) == "false@" + std::to_string(node_port(2)); }, 30s, 250ms))
      << "write port reached " << seen;
  EXPECT_TRUE(eventually([&] { return served_by(read_port).rfind("true@", 0) == 0; }, 30s, 250ms));
}

TEST_F(MonitoringTest, ATakenApiPortIsRefusedBeforeAnythingIsBuilt) {
  int port = api_port(2);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  auto r = up();
  ::close(fd);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("port " + std::to_string(port) + " for node node2's API is already in use"), std::string::npos)
      << r.output;
  EXPECT_FALSE(path_exists(dir_ + "/pgfleet.yaml")) << r.output;
}

TEST_F(MonitoringTest, WithHttpTlsTheCliAsksTheAgentsOverHttpsForSwitchoverRestartAndReinit) {
  // http.tls on (the default on several hosts): the agents' API speaks HTTPS with a certificate of
  // the cluster CA, and the CLI verifies it with the CA instead of falling back to the DCS, a
  // signal or doing the work itself.
  const std::string config = tmp_ + "/https.yaml";
  write_text(config, "http:\n  tls: true\n");
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--config", config}));
  ASSERT_TRUE(wait_all_streaming());
  EXPECT_NE(status_of(api_port(1), "/health"), 200) << "plain HTTP answered on an HTTPS port";
  auto agent_log = [&](const std::string& node) { return read_text(node_dir(node) + "/log/agent.log"); };

  auto r = pgfleet({"switchover", "--to", "node2"});
  ASSERT_TRUE(succeeded(r));
  EXPECT_NE(agent_log("node1").find("http: switchover from node1 to node2 requested"), std::string::npos)
      << tail_lines(agent_log("node1"), 20);
  ASSERT_TRUE(wait_all_streaming());
  ASSERT_TRUE(succeeded(pgfleet({"restart", "node3"})));
  EXPECT_NE(agent_log("node3").find("http: restart requested"), std::string::npos) << tail_lines(agent_log("node3"), 20);
  ASSERT_TRUE(wait_all_streaming());
  ASSERT_TRUE(succeeded(pgfleet({"reinit", "node3"})));
  EXPECT_NE(agent_log("node3").find("http: reinit requested"), std::string::npos) << tail_lines(agent_log("node3"), 20);
}

TEST(MonitoringDeployFiles, AlertRulesAndPrometheusConfigPassPromtool) {
  std::string src = PGFLEET_SOURCE_DIR;
  auto rules = shell("promtool check rules " + src + "/deploy/alerts.yml");
  EXPECT_EQ(rules.exit_code, 0) << rules.output;
  auto config = shell("cd " + src + "/deploy && promtool check config prometheus.yml");
  EXPECT_EQ(config.exit_code, 0) << config.output;
  auto tests = shell("promtool test rules " + src + "/tests/integration/data/alerts_test.yml");
  EXPECT_EQ(tests.exit_code, 0) << tests.output;
  auto grafana = nlohmann::json::parse(read_text(src + "/deploy/grafana/pgfleet.json"));
  EXPECT_EQ(grafana["uid"], "pgfleet");
  EXPECT_GE(grafana["panels"].size(), 10u);
}

TEST_F(MonitoringTest, ProxyMetricsCountStatementsPerNodeRoutingReasonsWaitsAndErrors) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  ASSERT_TRUE(wait_all_streaming());
  std::string via_proxy = str(status_json()["connection"], "proxy");
  sql(via_proxy, "CREATE TABLE routed (id int)");
  auto writer = connect_or_throw(via_proxy);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(writer.exec("INSERT INTO routed VALUES (" + std::to_string(i) + ")"));
  // Another client, so that causal reads (this one wrote nothing) leave its reads on the replicas.
  auto reader = connect_or_throw(via_proxy);
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(reader.scalar("SELECT 1"));
  std::string bad_password = via_proxy;
  auto at = bad_password.find('@');
  auto colon = bad_password.rfind(':', at);
  bad_password.replace(colon + 1, at - colon - 1, "not-the-password");
  std::string wrong = connect_error(bad_password);
  ASSERT_NE(wrong.find("password authentication failed"), std::string::npos) << wrong;

  // The workers publish their counters once a second.
  std::string text;
  EXPECT_TRUE(eventually(
      [&] {
        text = scrape(http_port());
        return metric_sum(text, "pgfleet_proxy_statements_routed_total", "role=\"replica\"") >= 40 &&
               metric_sum(text, "pgfleet_proxy_client_errors_total", "kind=\"auth\"") >= 1;
      },
      10s, 300ms))
      << text;
  // The writer and the reader are connected, between transactions: idle clients, no server held.
  EXPECT_GE(metric_sum(text, "pgfleet_proxy_clients", "state=\"idle\""), 2);
  EXPECT_EQ(metric_sum(text, "pgfleet_proxy_clients", "state=\"active\""), 0);
  // Reads went to the two replicas (both appear), writes to the primary, and the reasons say so.
  EXPECT_TRUE(metric(text, "pgfleet_proxy_statements_routed_total", "node=\"node2\""));
  EXPECT_TRUE(metric(text, "pgfleet_proxy_statements_routed_total", "node=\"node3\""));
  EXPECT_GE(metric_sum(text, "pgfleet_proxy_statements_routed_total", "role=\"primary\""), 6);
  EXPECT_GE(metric_sum(text, "pgfleet_proxy_routing_decisions_total", "reason=\"read\""), 40);
  EXPECT_GE(metric_sum(text, "pgfleet_proxy_routing_decisions_total", "reason=\"write\""), 6);
  EXPECT_EQ(metric_sum(text, "pgfleet_proxy_client_errors_total", "kind=\"wait_timeout\""), 0);
  // Histograms: the +Inf bucket is the count, and every statement's time is in it.
  for (const std::string h : {"pgfleet_proxy_query_duration_seconds", "pgfleet_proxy_wait_seconds"}) {
    SCOPED_TRACE(h);
    double inf = metric_sum(text, h + "_bucket", "le=\"+Inf\"");
    EXPECT_EQ(inf, metric_sum(text, h + "_count"));
    EXPECT_GE(metric_sum(text, h + "_sum"), 0);
  }
  EXPECT_GE(metric_sum(text, "pgfleet_proxy_query_duration_seconds_count"), 45);
  expect_promtool_accepts(text, "proxy-routing");
}

}  // namespace
}  // namespace pgfleet::itest
