// LISTEN and UNLISTEN, which a pooler in transaction mode serves itself (one LISTEN connection per
// database fans notifications out), so it must know the channel exactly as the server would.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace pgfleet::sql {

// UNLISTEN *'s channel: a NUL, which no identifier holds (`UNLISTEN "*"` names a channel `*`).
inline const std::string kAllChannels(1, '\0');

struct ListenRequest {
  bool listen = true;   // else UNLISTEN
  std::string channel;  // kAllChannels for UNLISTEN *

  bool operator==(const ListenRequest&) const = default;
};

// `sql` when it is a single LISTEN or UNLISTEN statement (comments and a trailing ';' allowed),
// read by PostgreSQL's own parser: the channel comes case-folded, unquoted and truncated to 63
// bytes as the server names it in its notifications. nullopt for anything else, including text
// that does not parse (sent on, the server reports the error) and statements over 8 KiB.
// Cheap for other statements: their first word rules them out.
std::optional<ListenRequest> parse_listen(std::string_view sql);

}  // namespace pgfleet::sql
