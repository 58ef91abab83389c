// The proxy's TopologyWatcher against a real etcd: the proxy_pause key a planned change
// (`pgfleet switchover --dcs`) writes holds new transactions while it exists, and no longer once it
// is deleted, its lease expires, or etcd cannot be read to confirm it.
#include <chrono>
#include <functional>
#include <random>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "cluster/control.hpp"
#include "dcs/member.hpp"
#include "etcd_fixture.hpp"
#include "proxy/topology.hpp"

namespace pgfleet::proxy {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return condition();
}

TEST(ProxyPauseFromEtcd, HeldWhileTheKeyExistsReleasedWhenDeletedExpiredOrUnreadable) {
  etcdtest::EtcdCluster etcd(1);
  cluster::ClusterConfig config;
  config.cluster = "pause" + std::to_string(std::random_device{}() % 100000);
  config.etcd.endpoints = etcd.endpoints();
  config.dcs_ttl_seconds = 10;
  auto store = cluster::open_dcs(cluster::Layout("/nonexistent"), config);
  // A member and a leader, as the agents publish them: the proxy follows this cluster.
  dcs::Member m;
  m.name = "node1";
  m.role = "primary";
  m.state = "running";
  m.host = "127.0.0.1";
  m.port = 5432;
  ASSERT_TRUE(store->put(dcs::keys::member("node1"), dcs::to_json(m).dump()));
  ASSERT_TRUE(store->put(dcs::keys::kLeader, "node1"));

  TopologyWatcher watcher(config, std::nullopt);
  watcher.start();
  ASSERT_TRUE(watcher.wait_for_primary(5s));
  EXPECT_FALSE(watcher.planned_pause());

  const std::string value = R"({"reason": "switching over", "requested_ms": 1})";
  ASSERT_TRUE(store->put(dcs::keys::kProxyPause, value, 30s));
  EXPECT_TRUE(eventually([&] { return watcher.planned_pause(); }, 3s)) << "the key was not seen";
  ASSERT_TRUE(store->remove(dcs::keys::kProxyPause));
  EXPECT_TRUE(eventually([&] { return !watcher.planned_pause(); }, 3s)) << "still held after the key was deleted";

  // A command that died: its lease runs out (etcd checks leases about every 500 ms).
  ASSERT_TRUE(store->put(dcs::keys::kProxyPause, value, 2s));
  EXPECT_TRUE(eventually([&] { return watcher.planned_pause(); }, 3s));
  EXPECT_TRUE(eventually([&] { return !watcher.planned_pause(); }, 6s)) << "still held after the key's TTL";

  // etcd gone: the key cannot be confirmed, so clients are not held on a guess.
  ASSERT_TRUE(store->put(dcs::keys::kProxyPause, value, 60s));
  EXPECT_TRUE(eventually([&] { return watcher.planned_pause(); }, 3s));
  etcd.kill_member(0);
  EXPECT_TRUE(eventually([&] { return !watcher.planned_pause(); }, 8s)) << "still held with etcd unreachable";
  EXPECT_TRUE(watcher.current()->primary.has_value()) << "the last topology stands while etcd is away";
  watcher.stop();
}

}  // namespace
}  // namespace pgfleet::proxy
