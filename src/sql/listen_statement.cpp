#include "sql/listen_statement.hpp"

#include <pg_query.h>

#include "sql/classifier.hpp"
#include "sql/json_tree.hpp"
#include "sql/session_change.hpp"

namespace pgfleet::sql {

std::optional<ListenRequest> parse_listen(std::string_view sql) {
  sql = sql.substr(0, sql.find('\0'));  // PostgreSQL reads the query as a C string
  const std::string verb = next_word(sql).first;
  if (verb != "listen" && verb != "unlisten") return std::nullopt;
  // Short enough to parse on the caller's stack (see classifier.hpp).
  if (sql.size() > kInlineParseBytes) return std::nullopt;
  const std::string text(sql);
  PgQueryParseResult result = pg_query_parse(text.c_str());
  struct Free {
    PgQueryParseResult& r;
    ~Free() { pg_query_free_parse_result(r); }
  } free_result{result};
  if (result.error != nullptr || result.parse_tree == nullptr) return std::nullopt;
  JsonTree tree;
  if (!tree.parse(result.parse_tree)) return std::nullopt;
  JsonTree::Value stmts = tree.root()["stmts"];
  if (!stmts.is_array() || stmts.size() != 1) return std::nullopt;
  JsonTree::Value stmt = (*stmts.begin())["stmt"];
  if (JsonTree::Value listen = stmt["ListenStmt"]; listen.is_object()) {
    auto channel = listen["conditionname"].str();
    if (channel.empty()) return std::nullopt;
    return ListenRequest{true, std::string(channel)};
  }
  if (JsonTree::Value unlisten = stmt["UnlistenStmt"]; unlisten.is_object()) {
    auto channel = unlisten["conditionname"].str();  // left out for UNLISTEN *
    return ListenRequest{false, channel.empty() ? kAllChannels : std::string(channel)};
  }
  return std::nullopt;
}

}  // namespace pgfleet::sql
