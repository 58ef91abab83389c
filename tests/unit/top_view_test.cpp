// pgfleet top's pure parts: keys, sorting, screen layout, events derived from two snapshots.
#include <gtest/gtest.h>

#include "top/collector.hpp"
#include "top/model.hpp"

namespace pgfleet::top {
namespace {

Snapshot three_nodes() {
  Snapshot s;
  s.cluster = "pgfleet";
  s.leader = "node1";
  s.taken_ms = 1'700'000'000'000;
  NodeRow a{.name = "node1", .role = "primary", .state = "running", .upstream = "", .sync_state = "",
            .lag_bytes = std::nullopt, .lag_seconds = std::nullopt, .tps = 120.0, .connections = 9,
            .cpu_percent = 40.0, .memory_percent = 50.0, .disk_percent = 10.0, .temperature_c = 61.0};
  NodeRow b = a, c = a;
  b.name = "node2", b.role = "replica", b.state = "streaming", b.upstream = "node1", b.lag_bytes = 4096, b.tps = 3.0,
  b.connections = 2;
  c.name = "node3", c.role = "replica", c.state = "crashed", c.upstream = "node1", c.lag_bytes = 10, c.tps = std::nullopt,
  c.connections = std::nullopt;
  s.nodes = {c, a, b};
  s.proxy_enabled = true;
  s.proxy_state = "running on port 6432";
  return s;
}

std::vector<std::string> names(const std::vector<NodeRow>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.name);
  return out;
}

TEST(TopKeys, TabAndDigitsSwitchViewsSCyclesSortRReversesQQuits) {
  ViewState st;
  EXPECT_TRUE(handle_key(st, '\t'));
  EXPECT_EQ(st.view, View::Pools);
  EXPECT_TRUE(handle_key(st, '3'));
  EXPECT_EQ(st.view, View::Events);
  EXPECT_TRUE(handle_key(st, '\t'));
  EXPECT_EQ(st.view, View::Overview);
  EXPECT_TRUE(handle_key(st, 's'));
  EXPECT_EQ(st.sort, SortKey::Role);
  for (int i = 0; i < 4; ++i) handle_key(st, 's');
  EXPECT_EQ(st.sort, SortKey::Name);
  handle_key(st, 'r');
  EXPECT_TRUE(st.descending);
  EXPECT_TRUE(handle_key(st, 'x'));  // unknown keys are ignored
  EXPECT_FALSE(handle_key(st, 'q'));
  EXPECT_FALSE(handle_key(st, 3));  // Ctrl-C arrives as a key in raw mode
}

TEST(TopSort, ByEachColumnMissingValuesFirstTiesByName) {
  auto s = three_nodes();
  ViewState st;
  EXPECT_EQ(names(sorted_nodes(s.nodes, st)), (std::vector<std::string>{"node1", "node2", "node3"}));
  st.sort = SortKey::Role;
  EXPECT_EQ(names(sorted_nodes(s.nodes, st)), (std::vector<std::string>{"node1", "node2", "node3"}));
  st.sort = SortKey::Lag;
  EXPECT_EQ(names(sorted_nodes(s.nodes, st)), (std::vector<std::string>{"node1", "node3", "node2"}));
  st.sort = SortKey::Tps;
  st.descending = true;
  EXPECT_EQ(names(sorted_nodes(s.nodes, st)), (std::vector<std::string>{"node1", "node2", "node3"}));
  st.sort = SortKey::Connections;
  st.descending = false;
  EXPECT_EQ(names(sorted_nodes(s.nodes, st)), (std::vector<std::string>{"node3", "node2", "node1"}));
}

TEST(TopRender, FillsTheScreenExactlyWithTheFooterLastAndNoLineWiderThanTheTerminal) {
  auto s = three_nodes();
  for (int width : {40, 80, 200}) {
    auto lines = render(s, {}, width, 24, false);
    ASSERT_EQ(lines.size(), 24u);
    for (const auto& l : lines) EXPECT_LE(static_cast<int>(l.size()), width) << l;
    EXPECT_EQ(lines.back().rfind("q quit", 0), 0u) << lines.back();
  }
  auto lines = render(s, {}, 140, 30, false);
  std::string all;
  for (const auto& l : lines) all += l + "\n";
  EXPECT_NE(all.find("primary node1"), std::string::npos) << all;
  EXPECT_NE(all.find("node2      replica   streaming  node1"), std::string::npos) << all;
  EXPECT_NE(all.find("4.0kB"), std::string::npos) << all;
  EXPECT_NE(all.find("61C"), std::string::npos) << all;
  EXPECT_NE(all.find("(no pools yet"), std::string::npos) << all;
}

TEST(TopRender, ColourCodesTakeNoColumnsAndAreAlwaysReset) {
  auto s = three_nodes();
  auto lines = render(s, {}, 60, 20, true);
  for (const auto& l : lines) {
    std::string visible;
    for (size_t i = 0; i < l.size(); ++i) {
      if (l[i] == '\033') {
        i = l.find('m', i);
        continue;
      }
      visible += l[i];
    }
    EXPECT_LE(visible.size(), 60u) << visible;
  }
  std::string all;
  for (const auto& l : lines) all += l;
  EXPECT_NE(all.find("\033[1;97;42mPRIMARY"), std::string::npos);  // the primary stands out
  EXPECT_NE(all.find("\033[1;31mcrashed"), std::string::npos);     // so does a broken node
}

TEST(TopRender, NoPrimaryIsSaidInTheTitle) {
  auto s = three_nodes();
  s.leader.clear();
  EXPECT_NE(render(s, {}, 100, 10, false).front().find("primary NONE"), std::string::npos);
}

TEST(TopRender, TheTitleSaysHowOldTheLastBackupIsWhenThereIsOne) {
  auto s = three_nodes();
  EXPECT_EQ(render(s, {}, 160, 10, false).front().find("backup"), std::string::npos);  // none taken
  s.backups = 2;
  s.newest_backup = "20231114T195320Z";
  s.newest_backup_ms = s.taken_ms - 3 * 3600 * 1000 - 5000;
  EXPECT_NE(render(s, {}, 160, 10, false).front().find("last backup 3h ago"), std::string::npos)
      << render(s, {}, 160, 10, false).front();
}

TEST(TopEvents, ANewBackupIsAnEvent) {
  auto before = three_nodes();
  auto after = before;
  after.taken_ms += 1000;
  EXPECT_TRUE(diff_events(before, after).empty());
  after.backups = 1;
  after.newest_backup = "20231114T221320Z";
  after.newest_backup_ms = after.taken_ms - 200;
  auto events = diff_events(before, after);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "backup");
  EXPECT_EQ(events[0].text, "backup 20231114T221320Z finished");
  EXPECT_TRUE(diff_events(after, after).empty());  // once, not on every refresh
}

TEST(TopEvents, LeaderChangeNodeDownAndUpRolesAndScaleAreDerived) {
  auto before = three_nodes();
  auto after = before;
  after.taken_ms += 1000;
  after.leader = "node2";
  after.nodes[1].state = "stopped";   // node1 went down
  after.nodes[0].state = "streaming";  // node3 came back
  after.nodes[2].role = "primary";     // node2 promoted
  after.nodes.push_back(NodeRow{.name = "node4", .role = "replica", .state = "starting", .upstream = "",
                                .sync_state = "", .lag_bytes = {}, .lag_seconds = {}, .tps = {}, .connections = {},
                                .cpu_percent = {}, .memory_percent = {}, .disk_percent = {}, .temperature_c = {}});
  auto events = diff_events(before, after);
  std::vector<std::string> kinds;
  for (const auto& e : events) {
    kinds.push_back(e.kind + ": " + e.text);
    EXPECT_EQ(e.time_ms, after.taken_ms);
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"leader: primary is now node2 (was node1)", "up: node3 crashed -> streaming",
                                             "down: node1 running -> stopped", "role: node2 replica -> primary",
                                             "scale: node4 added"}));
  EXPECT_TRUE(diff_events(before, before).empty());
  EXPECT_EQ(history_kind("switchover from node1 to node2 at 0/3000000"), "switchover");
  EXPECT_EQ(history_kind("manual failover from node1 to node2"), "failover");
}

}  // namespace
}  // namespace pgfleet::top
