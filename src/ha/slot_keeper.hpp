// The agent's hands for the permanent replication slots: reads the DCS key `slots`, looks at the
// node's pg_replication_slots, runs the steps plan_slot_sync() chose (slot_sync.hpp), and copies a
// logical slot's state file from the primary into a stopped replica.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cluster/permanent_slots.hpp"
#include "dcs/dcs.hpp"
#include "postgres/pgconn.hpp"
#include "util/result.hpp"

namespace pgfleet::ha {

class SlotKeeper {
 public:
  // The DCS key `slots` as read this loop (nullptr: none). An invalid value keeps the slots in
  // force and returns the problem.
  std::string read_specs(const dcs::KeyValue* kv);
  // Nothing to keep (no key, or no slots in it, live or dropped): sync() is not needed.
  [[nodiscard]] bool idle() const { return specs_.empty(); }

  struct Pass {
    std::map<std::string, std::string> positions;  // this node's copies, for its member key
    std::vector<std::string> to_copy;              // logical slots to copy from the primary
    std::vector<std::string> problems;             // for the agent's last_error
  };
  // One pass over the node's slots. `local_conninfo` reaches the node as the superuser (its
  // dbname is replaced for logical slots, which are used from their own database).
  Pass sync(postgres::PgConn& conn, const std::string& local_conninfo, bool primary,
            const std::map<std::string, uint64_t>& primary_positions, uint64_t replayed);

  // Where this node's oldest WAL file begins (pg_ls_waldir): a copied slot needs its WAL from the
  // slot's restart_lsn on, and a replica rebuilt with pg_basebackup has none from before that.
  static Result<uint64_t> oldest_wal(postgres::PgConn& local);
  // The state files of `names` on the primary (pg_replslot/<name>/state), by name, of the slots
  // whose restart_lsn is at `oldest_local_wal` or later; the others are named in `waiting` (their
  // consumer moves them on: the next try may copy them).
  static Result<std::map<std::string, std::string>> fetch_states(const std::string& primary_conninfo,
                                                                 const std::vector<std::string>& names,
                                                                 uint64_t oldest_local_wal, std::vector<std::string>& waiting);
  // Writes them into `data_dir`/pg_replslot while the server is stopped; it loads them at start.
  static Status install_states(const std::string& data_dir, const std::map<std::string, std::string>& states);

  // Drops the per-database connections (the server restarted or went away).
  void disconnect() { database_conns_.clear(); }

 private:
  postgres::PgConn* conn_for(postgres::PgConn& default_conn, const std::string& local_conninfo,
                             const std::string& database, std::string& error);

  cluster::SlotSpecs specs_;
  int64_t seen_revision_ = -1;
  std::map<std::string, postgres::PgConn> database_conns_;
};

}  // namespace pgfleet::ha
