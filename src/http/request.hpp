// HTTP/1.1 request parsing with limits: bytes in, one Request out (no sockets here).
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgfleet::http {

struct Limits {
  size_t max_header_bytes = 16 * 1024;  // request line + headers
  size_t max_headers = 100;
  size_t max_body_bytes = 1024 * 1024;
};

struct Request {
  std::string method;  // as sent (methods are case-sensitive)
  std::string target;  // as sent: path and query
  std::string path;    // percent-decoded, without the query
  std::map<std::string, std::string> query;  // decoded; the last of repeated names wins
  int minor_version = 1;                     // HTTP/1.<minor>
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, values trimmed
  std::string body;

  // The first header of that (lower-case) name.
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const;
  [[nodiscard]] std::string query_value(const std::string& name) const;
  // HTTP/1.1 keeps the connection unless "Connection: close"; 1.0 only with "keep-alive".
  [[nodiscard]] bool keep_alive() const;
  // True when the client prefers HTML (a browser), by its Accept header.
  [[nodiscard]] bool wants_html() const;
};

enum class ParseStatus { Incomplete, Complete, Invalid };

struct ParseOutcome {
  ParseStatus status = ParseStatus::Incomplete;
  size_t consumed = 0;   // Complete: bytes of this request (the next one may follow)
  int error_status = 0;  // Invalid: the status to answer (400, 413, 431, 501, 505)
  std::string error;     // Invalid: why, for the response body
};

// Parses the request at the start of `data`. Incomplete asks for more bytes (never when a limit
// is already exceeded); Invalid means answer error_status and close the connection.
ParseOutcome parse_request(std::string_view data, Request& out, const Limits& limits = {});

// %XX and (in queries) '+' decoding; nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space);

}  // namespace pgfleet::http
