// A small parser for synchronous_standby_names, following PostgreSQL's grammar (syncrep_gram.y).
#include "ha/sync_names.hpp"

#include <cctype>

namespace pgfleet::ha {

std::string render_sync_names(const SyncConstraint& c, SyncMode mode) {
  if (c.members.empty() || c.quorum <= 0) return "";
  std::string list;
  for (const auto& m : c.members) list += (list.empty() ? "\"" : ", \"") + m + "\"";
  return std::string(mode == SyncMode::Quorum ? "ANY " : "FIRST ") + std::to_string(c.quorum) + " (" + list + ")";
}

namespace {
struct Lexer {
  std::string_view s;
  size_t i = 0;
  void skip() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  bool eat(char c) {
    skip();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  std::optional<std::string> name() {
    skip();
    if (i >= s.size()) return std::nullopt;
    std::string out;
    if (s[i] == '"') {
      for (++i; i < s.size(); ++i) {
        if (s[i] == '"' && i + 1 < s.size() && s[i + 1] == '"') {
          out += '"';
          ++i;
        } else if (s[i] == '"') {
          ++i;
          return out;
        } else {
          out += s[i];
        }
      }
      return std::nullopt;
    }
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_' || s[i] == '*' ||
                            s[i] == '$' || s[i] == '-')) {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(s[i++])));
    }
    if (out.empty()) return std::nullopt;
    return out;
  }
  bool at_end() {
    skip();
    return i == s.size();
  }
};

std::optional<std::vector<std::string>> name_list(Lexer& lx) {
  std::vector<std::string> names;
  do {
    auto n = lx.name();
    if (!n) return std::nullopt;
    names.push_back(*n);
  } while (lx.eat(','));
  return names;
}
}  // namespace

std::optional<SyncConstraint> parse_sync_names(std::string_view text) {
  Lexer lx{text};
  if (lx.at_end()) return SyncConstraint{};
  size_t start = lx.i;
  auto first = lx.name();
  if (!first) return std::nullopt;
  int quorum = 1;
  bool counted = false;
  if (*first == "first" || *first == "any") {
    auto k = lx.name();
    if (!k || k->find_first_not_of("0123456789") != std::string::npos) {
      lx.i = start;  // a standby literally named first/any
    } else {
      quorum = std::stoi(*k);
      counted = true;
    }
  } else if (first->find_first_not_of("0123456789") == std::string::npos) {
    quorum = std::stoi(*first);
    counted = true;
  } else {
    lx.i = start;
  }
  if (counted && !lx.eat('(')) return std::nullopt;
  auto names = name_list(lx);
  if (!names) return std::nullopt;
  if (counted && !lx.eat(')')) return std::nullopt;
  if (!lx.at_end()) return std::nullopt;
  return SyncConstraint{*names, quorum};
}

}  // namespace pgfleet::ha
