// The dashboard's in-memory history: series aligned on time, capacity, events from state changes.
#include <gtest/gtest.h>

#include "dashboard/routes.hpp"

namespace pgfleet::dashboard {
namespace {

nlohmann::json status(const std::string& leader, const std::vector<std::tuple<std::string, std::string, std::string, double>>& nodes) {
  nlohmann::json j = {{"leader", leader}, {"nodes", nlohmann::json::array()}, {"history", nlohmann::json::array()}};
  for (const auto& [name, role, state, tps] : nodes) {
    j["nodes"].push_back({{"name", name}, {"role", role}, {"state", state},
                          {"lag_bytes", role == "replica" ? nlohmann::json(128) : nlohmann::json(nullptr)},
                          {"lag_seconds", nullptr},
                          {"stats", {{"tps", tps}}}});
  }
  return j;
}

TEST(DashboardHistory, SeriesSinceReturnsOnlyNewerPointsWithColumnsAlignedOnTime) {
  History h;
  h.add(status("node1", {{"node1", "primary", "running", 10}}), 1000);
  h.add(status("node1", {{"node1", "primary", "running", 20}, {"node2", "replica", "streaming", 1}}), 2000);
  auto all = h.series_since(0);
  EXPECT_EQ(all["t"], (nlohmann::json{1000, 2000}));
  EXPECT_EQ(all["nodes"]["node1"]["tps"], (nlohmann::json{10.0, 20.0}));
  // node2 appeared later: null where it was not there, so every column has one value per time.
  EXPECT_EQ(all["nodes"]["node2"]["tps"], (nlohmann::json{nullptr, 1.0}));
  EXPECT_EQ(all["nodes"]["node2"]["lag_bytes"], (nlohmann::json{nullptr, 128.0}));
  EXPECT_EQ(all["nodes"]["node1"]["lag_bytes"], (nlohmann::json{nullptr, nullptr}));
  auto newer = h.series_since(1000);
  EXPECT_EQ(newer["t"], (nlohmann::json{2000}));
  EXPECT_EQ(newer["nodes"]["node1"]["tps"], (nlohmann::json{20.0}));
  EXPECT_TRUE(h.series_since(2000)["t"].empty());
}

TEST(DashboardHistory, KeepsFifteenMinutesOfOneSecondSamples) {
  History h;
  for (int i = 1; i <= static_cast<int>(History::kCapacity) + 60; ++i) {
    h.add(status("node1", {{"node1", "primary", "running", 1}}), int64_t{i} * 1000);
  }
  auto s = h.series_since(0);
  ASSERT_EQ(s["t"].size(), History::kCapacity);
  EXPECT_EQ(s["t"].front(), 61000);
}

TEST(DashboardHistory, EventsMergeTheDcsHistoryWithChangesSeenBetweenSamples) {
  History h;
  h.add(status("node1", {{"node1", "primary", "running", 1}, {"node2", "replica", "streaming", 1}}), 1000);
  auto later = status("node2", {{"node1", "primary", "crashed", 0}, {"node2", "primary", "running", 1}});
  later["history"].push_back({{"time", "1970-01-01T00:00:01Z"}, {"from", "node1"}, {"to", "node2"},
                              {"reason", "failover from node1 to node2 at 0/3000000: node1 lost"}});
  h.add(later, 3000);
  auto events = h.events(later);
  std::vector<std::string> seen;
  for (const auto& e : events) seen.push_back(std::to_string(e["time_ms"].get<int64_t>()) + " " + e["kind"].get<std::string>());
  EXPECT_EQ(seen, (std::vector<std::string>{"1000 failover", "3000 leader", "3000 down", "3000 role"}));
}

}  // namespace
}  // namespace pgfleet::dashboard
