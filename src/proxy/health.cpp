// Polls every node with one connection each: role, replay/insert LSN, lag in bytes and in time;
// every 10 ms while a client needs fresh positions, every 200 ms otherwise. A node that cannot be
// reached is retried every second.
#include "proxy/health.hpp"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <cstdlib>

#include "cluster/discovery.hpp"
#include "postgres/lsn.hpp"
#include "proxy/server_conn.hpp"
#include "proxy/topology.hpp"
#include "util/log.hpp"

namespace pgfleet::proxy {

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

uint64_t end_of_inserted_wal(uint64_t insert_lsn, uint64_t segment_size) {
  constexpr uint64_t kPage = 8192, kShortHeader = 24, kLongHeader = 40;
  if (insert_lsn % kPage == kShortHeader) return insert_lsn - kShortHeader;
  if (segment_size > 0 && insert_lsn % segment_size == kLongHeader) return insert_lsn - kLongHeader;
  return insert_lsn;
}

HealthPoller::HealthPoller(cluster::ClusterConfig config, std::optional<cluster::Layout> layout,
                           const TopologyWatcher& topology)
    : config_(std::move(config)), layout_(std::move(layout)), topology_(topology) {}

HealthPoller::~HealthPoller() { stop(); }

void HealthPoller::start() {
  for (size_t i = 0; i < config_.nodes.size() && i < kMaxNodes; ++i) threads_.emplace_back([this, i] { run(i); });
}

void HealthPoller::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stopped_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void HealthPoller::want_fresh() {
  int64_t now = steady_ms();
  int64_t until = fresh_until_ms_.load(std::memory_order_relaxed);
  if (until - now > kFreshForMs / 2) return;  // renewed recently: the pollers are fast already
  fresh_until_ms_.store(now + kFreshForMs, std::memory_order_relaxed);
  if (until > now) return;  // still fast: nobody sleeps the long interval
  {
    std::lock_guard lock(mutex_);
    ++fresh_generation_;
  }
  stopped_.notify_all();
}

void HealthPoller::mark_down(int index) {
  if (index < 0 || static_cast<size_t>(index) >= kMaxNodes) return;
  nodes_[static_cast<size_t>(index)].down_until_ms.store(steady_ms() + kDownMs, std::memory_order_relaxed);
  want_fresh();
}

bool HealthPoller::wait_for_next_poll() {
  std::unique_lock lock(mutex_);
  if (steady_ms() < fresh_until_ms_.load(std::memory_order_relaxed)) {
    return stopped_.wait_for(lock, kPollInterval, [&] { return stopping_; });
  }
  uint64_t generation = fresh_generation_;
  stopped_.wait_for(lock, kIdlePollInterval, [&] { return stopping_ || fresh_generation_ != generation; });
  return stopping_;
}

void HealthPoller::record_primary_sample(size_t index, int64_t at_ms, uint64_t lsn) {
  History& h = history_[index];
  std::lock_guard lock(h.mutex);
  if (!h.samples.empty() && h.samples.back().second >= lsn) return;
  h.samples.emplace_back(at_ms, lsn);
  // An hour of changes at most (a replica further behind is excluded long before).
  while (h.samples.size() > 20000 || (h.samples.size() > 1 && at_ms - h.samples.front().first > 3'600'000)) {
    h.samples.pop_front();
  }
}

std::optional<int64_t> HealthPoller::behind_since(size_t primary, uint64_t replay) {
  History& h = history_[primary];
  std::lock_guard lock(h.mutex);
  if (h.samples.empty() || h.samples.back().second <= replay) return std::nullopt;
  // The first time the primary was seen past `replay`.
  for (const auto& [at, lsn] : h.samples) {
    if (lsn > replay) return at;
  }
  return std::nullopt;
}

void HealthPoller::run(size_t index) {
  const cluster::NodeConfig& n = config_.nodes[index];
  NodeHealth& health = nodes_[index];
  std::string host = n.host.empty() ? cluster::connect_host(config_) : n.host;
  std::string conninfo = fmt::format(
      "host={} port={} user={} dbname={} connect_timeout=2 application_name=pgfleet-proxy-health "
      "options='-c statement_timeout=1000' keepalives_idle=5 keepalives_interval=1 keepalives_count=3 {}",
      host, n.port, config_.proxy.auth_user.empty() ? config_.superuser : config_.proxy.auth_user, config_.database,
      libpq_tls_options(config_.proxy.server_sslmode, host, server_ca_file(config_, layout_)));
  if (layout_) conninfo += " passfile=" + layout_->passfile();
  // One query for both roles: the replay position of a standby, the insert position of a primary
  // (at least the end of every commit acknowledged before it ran).
  const char* poll_sql =
      "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
      "ELSE pg_current_wal_insert_lsn() END";
  PGconn* conn = nullptr;
  bool logged_failure = false;
  uint64_t segment_size = 0;
  auto wait = [&](std::chrono::milliseconds d) {
    std::unique_lock lock(mutex_);
    return stopped_.wait_for(lock, d, [&] { return stopping_; });
  };
  while (true) {
    if (conn == nullptr) {
      conn = PQconnectdb(conninfo.c_str());
      if (PQstatus(conn) != CONNECTION_OK) {
        if (!logged_failure) log::info("health: cannot reach {} ({}:{}): {}", n.name, host, n.port, PQerrorMessage(conn));
        logged_failure = true;
        PQfinish(conn);
        conn = nullptr;
        health.reachable.store(false, std::memory_order_relaxed);
        health.polls_failed.fetch_add(1, std::memory_order_relaxed);
        if (wait(kRetryInterval)) break;
        continue;
      }
      if (logged_failure) log::info("health: {} reachable again", n.name);
      logged_failure = false;
      PGresult* s = PQexec(conn, "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'");
      if (PQresultStatus(s) == PGRES_TUPLES_OK && PQntuples(s) == 1) segment_size = std::strtoull(PQgetvalue(s, 0, 0), nullptr, 10);
      PQclear(s);
    }
    uint64_t number = health.samples_started.fetch_add(1, std::memory_order_acq_rel) + 1;
    PGresult* r = PQexec(conn, poll_sql);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    if (ok) {
      bool recovery = std::string_view(PQgetvalue(r, 0, 0)) == "t";
      auto lsn = PQgetisnull(r, 0, 1) ? std::optional<uint64_t>() : postgres::parse_lsn(PQgetvalue(r, 0, 1));
      int64_t now = steady_ms();
      uint64_t value = lsn.value_or(0);
      if (!recovery && lsn) value = end_of_inserted_wal(value, segment_size);
      health.in_recovery.store(recovery, std::memory_order_relaxed);
      health.lsn.store(value, std::memory_order_release);
      health.samples_done.store(number, std::memory_order_release);
      if (!recovery) {
        record_primary_sample(index, now, value);
        health.lag_bytes.store(0, std::memory_order_relaxed);
        health.lag_ms.store(0, std::memory_order_relaxed);
      } else {
        auto topology = topology_.current();
        if (topology->primary && topology->primary->index >= 0) {
          auto p = static_cast<size_t>(topology->primary->index);
          uint64_t primary_lsn = nodes_[p].lsn.load(std::memory_order_acquire);
          health.lag_bytes.store(primary_lsn > value ? static_cast<int64_t>(primary_lsn - value) : 0,
                                 std::memory_order_relaxed);
          auto since = behind_since(p, value);
          health.lag_ms.store(since ? now - *since : 0, std::memory_order_relaxed);
        }
      }
      health.last_ok_ms.store(now, std::memory_order_relaxed);
      health.reachable.store(true, std::memory_order_release);
    }
    PQclear(r);
    if (!ok) {
      health.reachable.store(false, std::memory_order_relaxed);
      health.polls_failed.fetch_add(1, std::memory_order_relaxed);
      PQfinish(conn);
      conn = nullptr;
      if (wait(kRetryInterval)) break;
      continue;
    }
    if (wait_for_next_poll()) break;
  }
  if (conn != nullptr) PQfinish(conn);
}

}  // namespace pgfleet::proxy
