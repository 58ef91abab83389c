// probe(): one round of queries that tells what a running node is (role, LSNs, timeline, peers).
#pragma once

#include <string>
#include <vector>

#include "dcs/member.hpp"
#include "postgres/pgconn.hpp"

namespace pgfleet::postgres {

// Fills the PostgreSQL-derived fields of `member` (role, timeline, LSNs, replay delay,
// wal receiver state, replication peers, postmaster start). Leaves the rest untouched.
Status probe(PgConn& conn, dcs::Member& member);

// The parameters changed in the configuration that wait for a restart, sorted. Reading
// pg_settings costs about half a millisecond of the server's CPU, so it is asked after the agent
// reloads or starts the server, and now and then for a reload made by someone else.
Result<std::vector<std::string>> pending_restart(PgConn& conn);

}  // namespace pgfleet::postgres
