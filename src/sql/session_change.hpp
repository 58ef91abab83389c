// What a statement does to the session state a pooler must carry between server connections:
// SET / RESET / DISCARD ALL / DEALLOCATE ALL, read from the statement's text alone.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace pgfleet::sql {

struct SessionChange {
  enum class Kind {
    kSet,            // SET name = value (value as written: quoted literal, identifier list...)
    kReset,          // RESET name, SET name TO DEFAULT
    kResetAll,       // RESET ALL
    kDiscardAll,     // DISCARD ALL: every setting and every prepared statement
    kDeallocateAll,  // DEALLOCATE [PREPARE] ALL: every prepared statement
    kListen,         // LISTEN name / UNLISTEN name|* (the proxy's own parser: parse_session_change
    kUnlisten,       // never yields these)
  };
  Kind kind = Kind::kSet;
  std::string name;   // lowercased; "role" for SET ROLE
  std::string value;  // kSet only

  bool operator==(const SessionChange&) const = default;
};

// One statement (no trailing ';' needed). nullopt for anything else, and for what ends with the
// transaction anyway: SET LOCAL, SET TRANSACTION, SET CONSTRAINTS, SET SESSION CHARACTERISTICS.
// SET SESSION AUTHORIZATION is not tracked either (replaying it would also reset the role, and
// only superusers may run it).
std::optional<SessionChange> parse_session_change(std::string_view statement);

// Helpers for statement text: lowercase; the next identifier-like word (lowercased) and the rest;
// surrounding blanks and trailing ';' removed.
std::string lower_ascii(std::string_view s);
std::pair<std::string, std::string_view> next_word(std::string_view s);
std::string_view trim_statement(std::string_view s);

}  // namespace pgfleet::sql
