#include "sql/session_change.hpp"

#include <cctype>
#include <cstddef>

namespace pgfleet::sql {

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// What may continue an identifier (PostgreSQL's ident_cont: letters, digits, _, $ and every byte
// of a multibyte character).
bool is_identifier_byte(char c) {
  auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '_' || c == '$' || u >= 0x80;
}

// The end (one past "*/") of the comment that starts at `at` ("/*"); comments nest. npos if it
// does not end.
size_t comment_end(std::string_view s, size_t at) {
  int depth = 0;
  for (size_t i = at; i + 1 < s.size();) {
    if (s[i] == '/' && s[i + 1] == '*') {
      ++depth;
      i += 2;
    } else if (s[i] == '*' && s[i + 1] == '/') {
      i += 2;
      if (--depth == 0) return i;
    } else {
      ++i;
    }
  }
  return std::string_view::npos;
}

// The word at the start of `s` is `word` (lowercase), case-insensitively, as a whole word.
bool starts_with_word(std::string_view s, std::string_view word) {
  if (s.size() < word.size()) return false;
  for (size_t i = 0; i < word.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != word[i]) return false;
  }
  return s.size() == word.size() || !is_identifier_byte(s[word.size()]);
}

bool starts_with_session_verb(std::string_view s) {
  if (s.empty()) return false;
  switch (s[0] | 0x20) {  // most statements are ruled out by their first letter
    case 's': return starts_with_word(s, "set");
    case 'r': return starts_with_word(s, "reset");
    case 'd': return starts_with_word(s, "discard") || starts_with_word(s, "deallocate");
    case 'l': return starts_with_word(s, "listen");
    case 'u': return starts_with_word(s, "unlisten");
    default: return false;
  }
}

}  // namespace

std::string_view skip_blanks_and_comments(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (is_blank(s[i])) {
      ++i;
    } else if (s.substr(i, 2) == "--") {
      i = s.find_first_of("\n\r", i);
      if (i == std::string_view::npos) return {};
    } else if (s.substr(i, 2) == "/*") {
      i = comment_end(s, i);
      if (i == std::string_view::npos) return {};
    } else {
      break;
    }
  }
  return s.substr(i);
}

namespace {

// Calls `fn` with each statement of `sql` (see split_statements) until it returns true; whether
// one did. One pass over the text.
template <class Fn>
bool any_statement(std::string_view sql, Fn&& fn) {
  size_t start = 0;
  const size_t n = sql.size();
  // The index of the quote closing the one at `open`; doubled quotes are one character, and so is
  // a backslash with the next byte in an E'' string. npos if it does not close.
  auto closing_quote = [&](size_t open, bool backslash_escapes) {
    for (size_t j = open + 1; j < n; ++j) {
      if (backslash_escapes && sql[j] == '\\') {
        ++j;
      } else if (sql[j] == sql[open]) {
        if (j + 1 < n && sql[j + 1] == sql[open]) ++j;
        else return j;
      }
    }
    return std::string_view::npos;
  };
  for (size_t i = 0; i < n; ++i) {
    const char c = sql[i];
    size_t end = i;  // the last byte of what starts at i
    if (c == '\'' || c == '"') {
      const bool escape_string =
          c == '\'' && i > 0 && (sql[i - 1] | 0x20) == 'e' && (i == 1 || !is_identifier_byte(sql[i - 2]));
      end = closing_quote(i, escape_string);
    } else if (c == '$' && (i == 0 || !is_identifier_byte(sql[i - 1]))) {
      // $tag$ ... $tag$, the tag empty or an identifier; $1 is a parameter.
      size_t j = i + 1;
      if (j < n && std::isdigit(static_cast<unsigned char>(sql[j]))) continue;
      while (j < n && sql[j] != '$' && is_identifier_byte(sql[j])) ++j;
      if (j >= n || sql[j] != '$') continue;
      auto tag = sql.substr(i, j - i + 1);
      size_t close = sql.find(tag, j + 1);
      end = close == std::string_view::npos ? close : close + tag.size() - 1;
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      end = sql.find_first_of("\n\r", i);
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      end = comment_end(sql, i);
      if (end != std::string_view::npos) --end;
    } else if (c == ';') {
      if (fn(sql.substr(start, i - start))) return true;
      start = i + 1;
    }
    if (end == std::string_view::npos) break;  // unterminated: the rest is one piece
    i = end;
  }
  return start < n && fn(sql.substr(start));
}

}  // namespace

std::vector<std::string_view> split_statements(std::string_view sql) {
  std::vector<std::string_view> out;
  any_statement(sql, [&](std::string_view statement) {
    out.push_back(statement);
    return false;
  });
  return out;
}

bool mentions_session_verb(std::string_view sql) {
  // Most queries are one statement: no need to look for where statements end.
  if (sql.find(';') == std::string_view::npos) return starts_with_session_verb(skip_blanks_and_comments(sql));
  return any_statement(sql, [](std::string_view statement) {
    return starts_with_session_verb(skip_blanks_and_comments(statement));
  });
}

std::optional<bool> may_mention_session_verb(std::string_view sql, bool complete) {
  auto rest = skip_blanks_and_comments(sql);
  if (!complete) {  // the first word must be whole, unless it is already longer than every verb
    size_t word = 0;
    while (word < rest.size() && is_identifier_byte(rest[word])) ++word;
    if (word == rest.size() && word <= std::string_view("deallocate").size()) return std::nullopt;
    if (rest.size() == 1 && (rest[0] == '/' || rest[0] == '-')) return std::nullopt;  // a comment's start?
  }
  return starts_with_session_verb(rest);
}

bool may_commit_transaction(std::string_view sql) {
  auto commits = [](std::string_view statement) {
    auto [word, rest] = next_word(statement);
    return word == "commit" || word == "end" || (word == "prepare" && next_word(rest).first == "transaction");
  };
  if (sql.find(';') == std::string_view::npos) return commits(sql);
  return any_statement(sql, commits);
}

std::pair<std::string, std::string_view> next_word(std::string_view s) {
  s = skip_blanks_and_comments(s);
  size_t i = 0;
  while (i < s.size() && (is_identifier_byte(s[i]) || s[i] == '.')) ++i;
  return {lower_ascii(s.substr(0, i)), s.substr(i)};
}

std::string_view trim_statement(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && (std::isspace(static_cast<unsigned char>(s.back())) || s.back() == ';')) s.remove_suffix(1);
  return s;
}

std::optional<SessionChange> parse_session_change(std::string_view statement) {
  using Kind = SessionChange::Kind;
  auto [verb, rest] = next_word(statement);
  if (verb == "discard") {
    if (next_word(rest).first == "all") return SessionChange{Kind::kDiscardAll, "", ""};
    return std::nullopt;  // DISCARD PLANS / SEQUENCES / TEMP: nothing the proxy replays
  }
  if (verb == "deallocate") {
    auto [word, after] = next_word(rest);
    if (word == "prepare") word = next_word(after).first;
    if (word == "all") return SessionChange{Kind::kDeallocateAll, "", ""};
    return std::nullopt;
  }
  if (verb == "reset") {
    auto [name, after] = next_word(rest);
    if (name.empty()) return std::nullopt;
    if (name == "all") return SessionChange{Kind::kResetAll, "", ""};
    if (name == "session") {  // RESET SESSION AUTHORIZATION
      return std::nullopt;
    }
    return SessionChange{Kind::kReset, name, ""};
  }
  if (verb != "set") return std::nullopt;
  auto [name, after] = next_word(rest);
  if (name == "local" || name == "transaction" || name == "constraints" || name == "session_authorization") {
    return std::nullopt;
  }
  if (name == "session") {
    auto [real, after2] = next_word(after);
    if (real == "characteristics" || real == "authorization") return std::nullopt;
    name = real;
    after = after2;
  }
  if (name.empty()) return std::nullopt;
  auto value = trim_statement(skip_blanks_and_comments(after));
  auto [to, value_rest] = next_word(value);
  if (name == "schema") {  // SET SCHEMA 'name': search_path, which servers do not report
    if (value.empty() || value.front() != '\'') return std::nullopt;
    name = "search_path";
  } else if (to == "to") {
    value = trim_statement(value_rest);
  } else if (!value.empty() && value.front() == '=') {
    value = trim_statement(skip_blanks_and_comments(value.substr(1)));
  } else if (name != "role") {  // SET ROLE takes its value without TO or =
    return std::nullopt;
  }
  if (value.empty()) return std::nullopt;
  auto word = lower_ascii(value);
  if (word == "default" || (name == "role" && word == "none")) return SessionChange{Kind::kReset, name, ""};
  return SessionChange{Kind::kSet, name, std::string(value)};
}

}  // namespace pgfleet::sql
