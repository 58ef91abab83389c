// libFuzzer target: arbitrary text through the SQL the proxy reads from clients' queries — the
// statement splitter, the quick session-verb test, the SET/RESET and LISTEN parsers and the
// read/write classifier (which runs PostgreSQL's parser, libpg_query).
//
// Build and run (from the repository root):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Isrc \
//       src/sql/*.cpp tests/fuzz/fuzz_sql.cpp /usr/lib/x86_64-linux-gnu/libpg_query.a -o /tmp/fuzz_sql
//   /tmp/fuzz_sql -max_total_time=60 tests/fuzz/corpus/sql
// Properties beyond "no crash, no over-read":
// - split_statements() returns pieces of the input, in order, separated by single ';';
// - it splits where PostgreSQL's parser does, whenever that parser accepts the text;
// - mentions_session_verb() is never false where a piece is a SET/RESET/DISCARD/DEALLOCATE/LISTEN
//   the proxy would track (the quick test must not hide one), nor may_mention_session_verb();
// - parse_listen() returns channels as the server names them (non-empty, at most 63 bytes).
#include <pg_query.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sql/classifier.hpp"
#include "sql/listen_statement.hpp"
#include "sql/session_change.hpp"

using namespace pgfleet::sql;

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

bool blank(std::string_view piece) { return skip_blanks_and_comments(piece).empty(); }

// Where PostgreSQL's parser splits the text, compared with our pieces that hold a statement.
void compare_with_parser(const std::string& text, const std::vector<std::string_view>& pieces) {
  PgQuerySplitResult split = pg_query_split_with_parser(text.c_str());
  if (split.error == nullptr) {
    std::vector<std::string_view> statements;
    for (std::string_view p : pieces) {
      if (!blank(p)) statements.push_back(p);
    }
    check(statements.size() == static_cast<size_t>(split.n_stmts));
    for (int i = 0; i < split.n_stmts && static_cast<size_t>(i) < statements.size(); ++i) {
      const size_t piece_begin = static_cast<size_t>(statements[static_cast<size_t>(i)].data() - text.data());
      const size_t piece_end = piece_begin + statements[static_cast<size_t>(i)].size();
      const auto begin = static_cast<size_t>(split.stmts[i]->stmt_location);
      const auto end = begin + static_cast<size_t>(split.stmts[i]->stmt_len);
      check(begin >= piece_begin && end <= piece_end);
    }
  }
  pg_query_free_split_result(split);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The proxy sees query text up to its first NUL (the protocol's C string).
  std::string text(reinterpret_cast<const char*>(data), size);
  text = text.substr(0, text.find('\0'));
  const std::string_view sql(text);

  const auto pieces = split_statements(sql);
  size_t at = 0;
  bool tracked = false;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::string_view p = pieces[i];
    check(p.data() == sql.data() + at);
    at += p.size();
    if (i + 1 < pieces.size()) {
      check(at < sql.size() && sql[at] == ';');
      ++at;
    }
    const std::string verb = next_word(p).first;
    if (parse_session_change(p) || verb == "listen" || verb == "unlisten") tracked = true;
    if (auto listen = parse_listen(p)) {
      check(!listen->channel.empty() && listen->channel.size() <= 63);
      check(verb == (listen->listen ? "listen" : "unlisten"));
    }
  }
  check(at == sql.size() || (at + 1 == sql.size() && sql[at] == ';'));  // a last ';' ends no piece
  if (tracked) check(mentions_session_verb(sql));
  if (!pieces.empty() && (parse_session_change(pieces[0]) || parse_listen(pieces[0]))) {
    check(may_mention_session_verb(pieces[0], true) == true);
    // Cut short anywhere, the answer is "not yet" or the same.
    auto cut = may_mention_session_verb(pieces[0].substr(0, size % (pieces[0].size() + 1)), false);
    check(!cut.has_value() || *cut);
  }
  compare_with_parser(text, pieces);
  (void)classify_uncached(sql);
  return 0;
}
