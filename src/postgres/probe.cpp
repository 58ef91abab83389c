// The status queries, kept to two round trips so a loaded server still answers within the loop.
#include "postgres/probe.hpp"

#include <cstdlib>

namespace pgfleet::postgres {
namespace {
constexpr const char* kNodeQuery = R"(
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_is_in_recovery()
            THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),
                          (SELECT timeline_id FROM pg_control_checkpoint()))
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       (SELECT status FROM pg_stat_wal_receiver),
       CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), -1) END,
       extract(epoch FROM pg_postmaster_start_time())::bigint,
       current_setting('synchronous_standby_names'))";

constexpr const char* kPeersQuery = R"(
SELECT application_name, state, sync_state, coalesce(replay_lsn::text, ''),
       coalesce(extract(epoch FROM replay_lag), 0)
FROM pg_stat_replication WHERE application_name <> '' ORDER BY application_name)";

std::string text(const std::optional<std::string>& v) { return v.value_or(""); }
}  // namespace

Status probe(PgConn& conn, dcs::Member& member) {
  auto rows = conn.query_prepared(kNodeQuery);  // every loop: planned once per connection
  if (!rows) return Error{rows.error()};
  const auto& r = rows->at(0);
  bool in_recovery = text(r[0]) == "t";
  member.role = in_recovery ? "replica" : "primary";
  member.current_lsn = text(r[1]);
  member.received_lsn = text(r[2]);
  member.replayed_lsn = text(r[3]);
  member.timeline = std::atoi(text(r[4]).c_str());
  member.wal_receiver_streaming = text(r[5]) == "streaming";
  member.replay_delay_seconds = std::atof(text(r[6]).c_str());
  member.postmaster_start = std::atoll(text(r[7]).c_str());
  member.sync_standby_names = text(r[8]);

  auto peers = conn.query_prepared(kPeersQuery);
  if (!peers) return Error{peers.error()};
  member.replication.clear();
  for (const auto& p : *peers) {
    member.replication.push_back(
        dcs::ReplicationPeer{text(p[0]), text(p[1]), text(p[2]), text(p[3]), std::atof(text(p[4]).c_str())});
  }
  return {};
}

Result<std::vector<std::string>> pending_restart(PgConn& conn) {
  auto rows = conn.query("SELECT name FROM pg_settings WHERE pending_restart ORDER BY name");
  if (!rows) return Error{rows.error()};
  std::vector<std::string> names;
  for (const auto& r : *rows) names.push_back(text(r[0]));
  return names;
}

}  // namespace pgfleet::postgres
