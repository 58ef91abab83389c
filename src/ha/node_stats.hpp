// NodeStatsSampler: the load figures an agent adds to its member state each loop (TPS and
// connections from its PostgreSQL, CPU/memory/disk/temperature from its host), for dashboards.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "dcs/member.hpp"
#include "postgres/pgconn.hpp"

namespace pgfleet::ha {

class NodeStatsSampler {
 public:
  explicit NodeStatsSampler(std::string data_dir) : data_dir_(std::move(data_dir)) {}
  // `conn`: the agent's connection when its PostgreSQL accepts queries, else null (database
  // figures become null; host figures are still read). One cheap query.
  dcs::NodeStats sample(postgres::PgConn* conn);

 private:
  std::string data_dir_;
  std::map<std::string, double> last_cpu_;
  std::optional<int64_t> last_xacts_;
  std::chrono::steady_clock::time_point last_xacts_at_;
};

}  // namespace pgfleet::ha
