// `pgfleet scale` while an application keeps writing: replicas come and go, clients never notice.
#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

// A client inserting rows into scale_load in a loop on its own connection (autocommit), counting
// acknowledged inserts and errors; it reconnects after an error, as an application would.
class Writer {
 public:
  explicit Writer(std::string uri) : uri_(std::move(uri)) {
    thread_ = std::thread([this] { loop(); });
  }
  ~Writer() { stop(); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t acknowledged() const { return acknowledged_; }
  int errors() const { return errors_; }
  std::string first_error() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return first_error_;
  }

 private:
  void loop() {
    std::optional<postgres::PgConn> conn;
    int64_t next = 1;
    while (!stop_) {
      if (!conn) {
        auto c = postgres::PgConn::connect(with_param(uri_, "connect_timeout=5"));
        if (!c) {
          fail("connect: " + c.error());
          std::this_thread::sleep_for(50ms);
          continue;
        }
        conn.emplace(std::move(c.value()));
      }
      auto r = query_with_deadline(*conn, "INSERT INTO scale_load (id) VALUES (" + std::to_string(next) + ")", 10s);
      ++next;  // never reuse an id, even one whose fate is unknown
      if (r) {
        ++acknowledged_;
      } else {
        fail("insert: " + r.error());
        conn.reset();
      }
      std::this_thread::sleep_for(2ms);
    }
  }
  void fail(const std::string& message) {
    ++errors_;
    std::lock_guard<std::mutex> lock(mutex_);
    if (first_error_.empty()) first_error_ = message;
  }

  std::string uri_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> acknowledged_{0};
  std::atomic<int> errors_{0};
  mutable std::mutex mutex_;
  std::string first_error_;
};

std::set<std::string> node_names(const nlohmann::json& status) {
  std::set<std::string> out;
  for (const auto& n : status["nodes"]) out.insert(str(n, "name"));
  return out;
}

std::string names_of(const std::set<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : " ") + n;
  return out;
}

using ScaleTest = PgfleetTest;

TEST_F(ScaleTest, ScaleUpAndDownUnderWriteLoadLosesNoWrites) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--replicas", "1"}));
  std::string primary = url({"--primary"});
  sql(primary, "CREATE TABLE scale_load (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())");

  Writer writer(primary);
  ASSERT_TRUE(eventually([&] { return writer.acknowledged() >= 20 || writer.errors() > 0; }, 10s))
      << "the writer could not start: " << writer.first_error();

  // Up: node3 and node4 join.
  int64_t before_up = writer.acknowledged();
  auto grow = pgfleet({"scale", "--replicas", "3"});
  ASSERT_EQ(grow.exit_code, 0) << grow.output;
  EXPECT_GT(writer.acknowledged(), before_up) << "no write was acknowledged while scaling up";
  auto s = status_json();
  EXPECT_EQ(node_names(s), (std::set<std::string>{"node1", "node2", "node3", "node4"})) << s.dump(2);
  for (const std::string node : {"node2", "node3", "node4"}) {
    EXPECT_EQ(str(node_of(s, node), "role"), "replica") << s.dump(2);
    EXPECT_EQ(str(node_of(s, node), "state"), "streaming") << s.dump(2);
    EXPECT_EQ(str(node_of(s, node), "upstream"), "node1") << s.dump(2);
  }
  // The new replicas receive the ongoing writes.
  for (const std::string node : {"node3", "node4"}) {
    std::string uri = node_url(node);
    int64_t target = writer.acknowledged();
    int64_t seen = 0;
    EXPECT_TRUE(eventually(
        [&] {
          seen = std::stoll(sql_value(uri, "SELECT count(*) FROM scale_load"));
          return seen >= target;
        },
        20s, 100ms))
        << node << " has " << seen << " rows, the writer had " << target << " acknowledged";
  }

  // Down: the newest replicas (node4, node3) go; node2 stays.
  int64_t before_down = writer.acknowledged();
  auto shrink = pgfleet({"scale", "--replicas", "1"});
  ASSERT_EQ(shrink.exit_code, 0) << shrink.output;
  EXPECT_GT(writer.acknowledged(), before_down) << "no write was acknowledged while scaling down";
  s = status_json();
  EXPECT_EQ(node_names(s), (std::set<std::string>{"node1", "node2"})) << s.dump(2);
  EXPECT_EQ(str(node_of(s, "node2"), "state"), "streaming") << s.dump(2);

  // The removed nodes leave nothing behind: no slot holding WAL on the primary, no data.
  std::set<std::string> slots;
  for (const auto& row : sql(primary, "SELECT slot_name FROM pg_replication_slots")) slots.insert(row[0].value_or(""));
  EXPECT_EQ(slots, std::set<std::string>{"node2"}) << "replication slots on the primary: " << names_of(slots);
  for (const std::string node : {"node3", "node4"}) {
    EXPECT_FALSE(path_exists(node_dir(node))) << node_dir(node) << " still exists";
  }
  EXPECT_EQ(list_dir(dir_ + "/nodes"), (std::set<std::string>{"node1", "node2"}));

  writer.stop();
  EXPECT_EQ(writer.errors(), 0) << "client errors during scale; first: " << writer.first_error();
  int64_t acknowledged = writer.acknowledged();
  ASSERT_GT(acknowledged, 0);

  // Every acknowledged row is on the primary and, eventually, on the remaining replica.
  int64_t on_primary = std::stoll(sql_value(primary, "SELECT count(*) FROM scale_load"));
  EXPECT_GE(on_primary, acknowledged);
  std::string node2 = node_url("node2");
  int64_t on_node2 = 0;
  EXPECT_TRUE(eventually(
      [&] {
        on_node2 = std::stoll(sql_value(node2, "SELECT count(*) FROM scale_load"));
        return on_node2 == on_primary;
      },
      20s, 100ms))
      << "node2 has " << on_node2 << " rows, the primary " << on_primary;
}

}  // namespace
}  // namespace pgfleet::itest
