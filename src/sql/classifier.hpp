// SQL statement classifier for the proxy's read/write split: parses a query string with libpg_query (the real
// PostgreSQL 15 parser) and says whether it may run on a replica or must run on the primary, plus what it does to
// the session's transaction and state. No I/O. Thread-safe: libpg_query keeps its memory per thread, and the result
// cache is thread_local (no locks).
//
// The route is a property of the statement text alone. Where a statement must go given the session's state (an open
// transaction already bound to a server, temp tables created earlier, a cursor declared on the primary) is the
// proxy's decision; the flags below tell it what the statement changes.
//
// Stack and time: queries up to kInlineParseBytes are parsed on the caller's thread and need up to about 700 KiB of
// its stack (libpg_query writes its parse tree recursively, and "SELECT 1+1+...+1" nests once per two bytes).
// Longer queries, up to kMaxParseBytes, are parsed on a short-lived helper thread whose stack is sized to the query;
// longer ones still are not parsed and go to the primary. A short statement costs a few microseconds to parse (tens
// of nanoseconds from the cache); a 256 KiB one can take 100 ms or more, on the calling thread's time.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgfleet::sql {

enum class Route { Replica, Primary };

const char* to_string(Route route);

struct Classification {
  // Replica: may run on any server (a replica, or wherever the current transaction is). Primary: must run on the
  // primary. Authoritative: the flags below never widen it.
  Route route = Route::Replica;
  // Why it must go to the primary ("INSERT", "SELECT ... FOR UPDATE", "calls volatile function nextval",
  // "parse error: ...", "temp table", ...). Empty when route is Replica.
  std::string reason;
  // BEGIN / START TRANSACTION (also COMMIT AND CHAIN / ROLLBACK AND CHAIN, which start the next one at once).
  bool begins_transaction = false;
  // The transaction was declared READ ONLY: BEGIN READ ONLY, START TRANSACTION READ ONLY, SET TRANSACTION READ ONLY.
  // It may run on a replica when route is Replica (a SERIALIZABLE one cannot: hot standbys refuse that level).
  bool read_only_transaction = false;
  // COMMIT / ROLLBACK / END / ABORT, and PREPARE TRANSACTION (which ends the session's transaction; route Primary).
  bool ends_transaction = false;
  // Changes session state that outlives the transaction: SET, RESET, DISCARD, PREPARE, DEALLOCATE, LISTEN, UNLISTEN,
  // LOAD, DECLARE ... WITH HOLD, SET SESSION CHARACTERISTICS, set_config(), setseed(). SET LOCAL and
  // SET TRANSACTION do not count (they end with the transaction).
  bool sets_session_state = false;
  // Creates or names temp objects: CREATE TEMP ..., SELECT INTO TEMP, anything qualified with pg_temp.
  bool uses_temp_objects = false;
  // A leading comment /* pgfleet:primary */ or /* pgfleet:replica */ (or a first line -- pgfleet:primary). Reported
  // as is: route above is still the statement's true route; the proxy decides whether to honour a replica hint.
  std::optional<Route> hint;

  friend bool operator==(const Classification&, const Classification&) = default;
};

struct ClassifierOptions {
  // function_routing = permissive: functions not known either way count as read-only. Known writers (nextval,
  // advisory locks, set_config, ...) and writing_functions still send the statement to the primary.
  bool permissive_functions = false;
  // Extra functions known not to write (lowercase, may be schema-qualified "schema.name"; an unqualified entry
  // matches the function in any schema). They cannot override the built-in writers.
  std::vector<std::string> read_only_functions;
  // Extra functions that write (always primary). Same matching; they win over every other list.
  std::vector<std::string> writing_functions;
};

// Cache key of a query whose route cannot depend on the value of a literal: `sql` with every numeric and
// string constant replaced by '?' ("SELECT abalance FROM t WHERE aid = 42" and "... aid = 7" share one entry).
// Only single SELECT / INSERT / UPDATE / DELETE / WITH / VALUES statements qualify (never EXPLAIN, whose
// ANALYZE option may be a number), and only when the text is plain: no dollar quotes, no backslash in a string,
// nothing unterminated. Returns false (and leaves `out` unspecified) when the text does not qualify.
bool literal_free_key(std::string_view sql, std::string& out);

// Parses and classifies a query string (one or more statements; a multi-statement string routes as a whole: to the
// primary if any statement needs it, and the flags of all statements are OR-ed; the reason is the first statement's
// own reason, else the first function call's in the text). Anything
// that fails to parse goes to the primary. The query ends at its first NUL byte, if any (PostgreSQL reads a C string).
// Results are cached per thread (LRU, 4096 entries) by literal_free_key() where it applies, else by exact query text;
// the options are applied on every call, so one cache serves callers with different options.
Classification classify(std::string_view sql, const ClassifierOptions& options = {});

// The same without the cache (for benchmarks and tests).
Classification classify_uncached(std::string_view sql, const ClassifierOptions& options = {});

// Empties this thread's cache.
void clear_classify_cache();

// The routing hint in the comments before the first token, if any (what Classification::hint reports).
std::optional<Route> parse_hint(std::string_view sql);

// Queries longer than this are parsed on a helper thread with a stack sized to them.
inline constexpr std::size_t kInlineParseBytes = 8 * 1024;
// Queries longer than this are not parsed: route Primary, reason "query too large to classify".
inline constexpr std::size_t kMaxParseBytes = 256 * 1024;
// Queries longer than this are not cached.
inline constexpr std::size_t kMaxCachedQueryBytes = 16 * 1024;

}  // namespace pgfleet::sql
