// HealthPoller: each node's health, role and WAL position as the proxy sees them — one polling
// thread per node (off the worker threads), results in atomics the workers read without locks.
// Polls are fast (kPollInterval) only while someone needs fresh positions (want_fresh()): an idle
// proxy should not spend its CPU, and the servers', on a hundred queries a second per node.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cluster/config.hpp"
#include "cluster/layout.hpp"

namespace pgfleet::proxy {

class TopologyWatcher;

// Milliseconds on the steady clock, the time base of every field below.
int64_t steady_ms();

// A primary's insert LSN as the end of the WAL written so far: at the start of a page the insert
// position is past the page header (24 bytes, 40 at a segment's start), where no record can end;
// the WAL before it ends at the page boundary, which is what a replica that replayed it reports.
uint64_t end_of_inserted_wal(uint64_t insert_lsn, uint64_t segment_size);

// One node, written by its polling thread (and `down_until_ms` by workers), read by anyone.
struct NodeHealth {
  std::atomic<bool> reachable{false};     // the last poll succeeded
  std::atomic<bool> in_recovery{false};   // pg_is_in_recovery() of the last poll
  // Replay LSN (in recovery) or insert LSN (primary): monotonic while the role stays.
  std::atomic<uint64_t> lsn{0};
  // Polls started and polls published: a poll numbered > n started after samples_started read n.
  std::atomic<uint64_t> samples_started{0};
  std::atomic<uint64_t> samples_done{0};
  std::atomic<int64_t> last_ok_ms{0};     // when the last good poll finished
  std::atomic<int64_t> lag_bytes{0};      // replica: the primary's insert LSN minus our replay LSN
  std::atomic<int64_t> lag_ms{0};         // replica: how long the primary has had WAL we have not replayed
  std::atomic<int64_t> down_until_ms{0};  // a worker could not log in: skip the node until then
  std::atomic<uint64_t> polls_failed{0};

  // Healthy replica now: reachable, in recovery, polled recently, not marked down.
  [[nodiscard]] bool usable_replica(int64_t now_ms) const {
    return reachable.load(std::memory_order_relaxed) && in_recovery.load(std::memory_order_relaxed) &&
           now_ms - last_ok_ms.load(std::memory_order_relaxed) < kStaleMs &&
           now_ms >= down_until_ms.load(std::memory_order_relaxed);
  }
  static constexpr int64_t kStaleMs = 1500;
};

class HealthPoller {
 public:
  static constexpr size_t kMaxNodes = 64;
  static constexpr auto kPollInterval = std::chrono::milliseconds(10);       // while fresh positions are wanted
  static constexpr auto kIdlePollInterval = std::chrono::milliseconds(200);  // otherwise (well within kStaleMs)
  static constexpr int64_t kFreshForMs = 1000;  // how long one want_fresh() keeps polls fast
  static constexpr auto kRetryInterval = std::chrono::milliseconds(1000);

  HealthPoller(cluster::ClusterConfig config, std::optional<cluster::Layout> layout, const TopologyWatcher& topology);
  ~HealthPoller();
  void start();
  void stop();

  // Poll every node every kPollInterval for the next kFreshForMs, starting now: a client waits for
  // a poll after its commit (causal reads), for a replica to catch up, or to learn what became of a
  // primary it lost. Cheap to call often: it takes the lock only when the window is half spent.
  void want_fresh();

  // A worker could not reach a replica: it takes no reads for kDownMs, and the polls hurry to
  // tell whether it is gone.
  void mark_down(int index);
  static constexpr int64_t kDownMs = 2000;

  // By node index in the configuration (Backend::index).
  [[nodiscard]] NodeHealth& node(int index) { return nodes_[static_cast<size_t>(index)]; }
  [[nodiscard]] const NodeHealth& node(int index) const { return nodes_[static_cast<size_t>(index)]; }

 private:
  void run(size_t index);
  // Sleeps until the next poll is due; true when stopping.
  bool wait_for_next_poll();
  void record_primary_sample(size_t index, int64_t at_ms, uint64_t lsn);
  // Since when the primary has had WAL past `replay` (ms), or nullopt when the replica has it all.
  std::optional<int64_t> behind_since(size_t primary, uint64_t replay);

  cluster::ClusterConfig config_;
  std::optional<cluster::Layout> layout_;
  const TopologyWatcher& topology_;
  std::array<NodeHealth, kMaxNodes> nodes_;
  // Each primary's insert LSN over time (only changes), for replicas' lag in time.
  struct History {
    std::mutex mutex;
    std::deque<std::pair<int64_t, uint64_t>> samples;  // (ms, lsn), oldest first
  };
  std::array<History, kMaxNodes> history_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable stopped_;
  bool stopping_ = false;
  std::atomic<int64_t> fresh_until_ms_{0};
  uint64_t fresh_generation_ = 0;  // under mutex_: bumped by want_fresh() to wake idle pollers
};

}  // namespace pgfleet::proxy
