// probe(): one round of queries that tells what a running node is (role, LSNs, timeline, peers).
#pragma once

#include "dcs/member.hpp"
#include "postgres/pgconn.hpp"

namespace pgfleet::postgres {

// Fills the PostgreSQL-derived fields of `member` (role, timeline, LSNs, replay delay,
// wal receiver state, replication peers, postmaster start). Leaves the rest untouched.
Status probe(PgConn& conn, dcs::Member& member);

}  // namespace pgfleet::postgres
