// Sampling a node's load for its member state: rates are differences between two samples.
#include "ha/node_stats.hpp"

#include <algorithm>

#include "http/host_stats.hpp"

namespace pgfleet::ha {

dcs::NodeStats NodeStatsSampler::sample(postgres::PgConn* conn) {
  dcs::NodeStats s;
  auto host = http::read_host_stats(data_dir_);
  if (!last_cpu_.empty()) s.cpu_percent = http::cpu_percent(last_cpu_, host.cpu_seconds);
  last_cpu_ = host.cpu_seconds;
  if (host.memory_total_bytes > 0) {
    s.memory_percent = 100.0 * static_cast<double>(host.memory_total_bytes - host.memory_available_bytes) /
                       static_cast<double>(host.memory_total_bytes);
  }
  if (host.disk_total_bytes && host.disk_free_bytes && *host.disk_total_bytes > 0) {
    s.disk_used_percent = 100.0 * static_cast<double>(*host.disk_total_bytes - *host.disk_free_bytes) /
                          static_cast<double>(*host.disk_total_bytes);
    s.disk_free_bytes = static_cast<int64_t>(*host.disk_free_bytes);
  }
  for (const auto& [zone, celsius] : host.temperatures_celsius) {
    s.temperature_celsius = std::max(s.temperature_celsius.value_or(celsius), celsius);
  }
  s.load1 = host.load1;

  if (conn == nullptr) {
    last_xacts_.reset();
    return s;
  }
  auto rows = conn->query_prepared(  // every loop: planned once per connection
      "SELECT (SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database)::bigint, "
      "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')");
  if (!rows || rows->empty() || rows->front().size() < 2 || !rows->front()[0] || !rows->front()[1]) {
    last_xacts_.reset();
    return s;
  }
  int64_t xacts = std::stoll(*rows->front()[0]);
  s.connections = std::stoll(*rows->front()[1]);
  auto now = std::chrono::steady_clock::now();
  if (last_xacts_ && xacts >= *last_xacts_) {
    double secs = std::chrono::duration<double>(now - last_xacts_at_).count();
    if (secs > 0.05) s.tps = static_cast<double>(xacts - *last_xacts_) / secs;
  }
  last_xacts_ = xacts;
  last_xacts_at_ = now;
  return s;
}

}  // namespace pgfleet::ha
