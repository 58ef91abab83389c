#include "sql/session_change.hpp"

#include <cctype>

namespace pgfleet::sql {

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::pair<std::string, std::string_view> next_word(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  size_t start = i;
  while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_' || s[i] == '.')) ++i;
  return {lower_ascii(s.substr(start, i - start)), s.substr(i)};
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
  auto value = trim_statement(after);
  auto [to, value_rest] = next_word(value);
  if (to == "to") value = trim_statement(value_rest);
  else if (!value.empty() && value.front() == '=') value = trim_statement(value.substr(1));
  else if (name != "role") return std::nullopt;  // SET ROLE takes its value without TO or =
  if (value.empty()) return std::nullopt;
  auto word = lower_ascii(value);
  if (word == "default" || (name == "role" && word == "none")) return SessionChange{Kind::kReset, name, ""};
  return SessionChange{Kind::kSet, name, std::string(value)};
}

}  // namespace pgfleet::sql
