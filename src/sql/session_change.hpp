// What a statement does to the session state a pooler must carry between server connections:
// SET / RESET / DISCARD ALL / DEALLOCATE ALL, read from the statement's text alone, and the
// statement text helpers that find those statements in a query (the proxy runs them on every
// query of a pooled client, so they are cheap scans, not parses; LISTEN is read by
// listen_statement.hpp, with PostgreSQL's own parser).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgfleet::sql {

struct SessionChange {
  enum class Kind {
    kSet,            // SET name = value (value as written: quoted literal, identifier list...)
    kReset,          // RESET name, SET name TO DEFAULT
    kResetAll,       // RESET ALL
    kDiscardAll,     // DISCARD ALL: every setting and every prepared statement
    kDeallocateAll,  // DEALLOCATE [PREPARE] ALL: every prepared statement
    kListen,         // LISTEN name / UNLISTEN name|kAllChannels (the proxy's own parser: parse_session_change
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

// Helpers for statement text: lowercase; the next identifier-like word (lowercased) and the rest,
// after blanks and comments; surrounding blanks and trailing ';' removed.
std::string lower_ascii(std::string_view s);
std::pair<std::string, std::string_view> next_word(std::string_view s);
std::string_view trim_statement(std::string_view s);

// `s` from its first token on: PostgreSQL's blanks (space, \t, \n, \r, \f, \v), `--` comments and
// nested `/* */` comments skipped. Empty if nothing else follows or a comment does not end.
std::string_view skip_blanks_and_comments(std::string_view s);

// The statements of a query string, split at the semicolons outside string constants (with E''
// backslash escapes), quoted identifiers, dollar quotes and comments. The pieces are views into
// `sql`, in order, without their ';' (blank pieces included). Text after something unterminated is
// one last piece.
std::vector<std::string_view> split_statements(std::string_view sql);

// Whether a statement of `sql` may start with SET, RESET, DISCARD, DEALLOCATE, LISTEN or UNLISTEN:
// a quick test, run on every query, before split_statements() and the parsers. Never false where
// one of split_statements()' pieces is such a statement.
bool mentions_session_verb(std::string_view sql);

// The same for a statement that may be cut short (the start of a Parse message being received):
// nullopt while too little of it is here to tell; `complete` says there is no more.
std::optional<bool> may_mention_session_verb(std::string_view sql, bool complete);

// Whether running `sql` inside an open transaction block may commit it: a statement of it is
// COMMIT, END or PREPARE TRANSACTION (every statement of a multi-statement string counts). When a
// server is lost while such work runs, the transaction may have committed; otherwise it surely
// was rolled back.
bool may_commit_transaction(std::string_view sql);

}  // namespace pgfleet::sql
