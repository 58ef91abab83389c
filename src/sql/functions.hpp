// What the classifier knows about built-in (and common extension) functions: which are safe to call on a replica and
// which must run on the primary. Internal to src/sql.
#pragma once

#include <string_view>

namespace pgfleet::sql {

enum class FunctionKind {
  Unknown,       // not in any list: primary unless function routing is permissive
  ReadOnly,      // does not write and works on a hot standby (count, now, lower, jsonb_build_object, pg_sleep, ...)
  Writes,        // writes or has side effects a standby refuses (nextval, setval, lo_import, pg_notify, ...)
  AdvisoryLock,  // pg_advisory_lock*, pg_try_advisory_*, pg_advisory_unlock*
  SessionState,  // changes session state (set_config, setseed)
  PrimaryOnly,   // reads or acts on the primary's own state (txid_current, pg_current_wal_lsn, pg_reload_conf, ...)
};

// `schema` is empty for an unqualified call. The read-only list matches only unqualified or pg_catalog calls (a
// function of the same name in another schema is someone else's); the other lists match a name in any schema.
FunctionKind builtin_function_kind(std::string_view schema, std::string_view name);

}  // namespace pgfleet::sql
