// The HTTP/1.1 request parser: strict about framing (it decides where the next request starts),
// tolerant about what it does not need.
#include "http/request.hpp"

#include <algorithm>
#include <cctype>

namespace pgfleet::http {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_token_char(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_token_char); }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

ParseOutcome invalid(int status, std::string why) {
  ParseOutcome o;
  o.status = ParseStatus::Invalid;
  o.error_status = status;
  o.error = std::move(why);
  return o;
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      int hi = hex(text[i + 1]), lo = hex(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::optional<std::string> Request::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return std::nullopt;
}

std::string Request::query_value(const std::string& name) const {
  auto it = query.find(name);
  return it == query.end() ? "" : it->second;
}

bool Request::keep_alive() const {
  std::string connection = lower(header("connection").value_or(""));
  if (minor_version == 0) return connection.find("keep-alive") != std::string::npos;
  return connection.find("close") == std::string::npos;
}

bool Request::wants_html() const { return header("accept").value_or("").find("text/html") != std::string::npos; }

ParseOutcome parse_request(std::string_view data, Request& out, const Limits& limits) {
  size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (data.size() > limits.max_header_bytes) return invalid(431, "request headers too large");
    return {};
  }
  if (end + 4 > limits.max_header_bytes) return invalid(431, "request headers too large");
  std::string_view head = data.substr(0, end + 2);  // every line ends with CRLF

  out = Request{};
  size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return invalid(400, "malformed request line");
  }
  std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                   version = line.substr(sp2 + 1);
  if (!is_token(method)) return invalid(400, "malformed method");
  if (version.size() != 8 || version.substr(0, 7) != "HTTP/1.") {
    return version.substr(0, 5) == "HTTP/" ? invalid(505, "only HTTP/1.0 and HTTP/1.1 are supported")
                                           : invalid(400, "malformed HTTP version");
  }
  if (version[7] != '0' && version[7] != '1') return invalid(505, "only HTTP/1.0 and HTTP/1.1 are supported");
  out.minor_version = version[7] - '0';
  if (target.empty() || (target[0] != '/' && target != "*")) return invalid(400, "the target must be a path");
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return invalid(400, "control character in the target");
  }
  out.method = std::string(method);
  out.target = std::string(target);
  size_t q = target.find('?');
  auto path = percent_decode(target.substr(0, q), false);
  if (!path) return invalid(400, "malformed percent-encoding in the path");
  out.path = std::move(*path);
  if (q != std::string_view::npos) {
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
      size_t amp = rest.find('&');
      std::string_view pair = rest.substr(0, amp);
      size_t eq = pair.find('=');
      auto name = percent_decode(pair.substr(0, eq), true);
      auto value = eq == std::string_view::npos ? std::optional<std::string>("") : percent_decode(pair.substr(eq + 1), true);
      if (!name || !value) return invalid(400, "malformed percent-encoding in the query");
      if (!name->empty()) out.query[*name] = *value;
      if (amp == std::string_view::npos) break;
      rest.remove_prefix(amp + 1);
    }
  }

  std::optional<size_t> content_length;
  size_t pos = line_end + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    std::string_view h = head.substr(pos, e - pos);
    pos = e + 2;
    if (h.front() == ' ' || h.front() == '\t') return invalid(400, "folded header lines are not allowed");
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || !is_token(h.substr(0, colon))) return invalid(400, "malformed header line");
    if (out.headers.size() >= limits.max_headers) return invalid(431, "too many headers");
    std::string name = lower(h.substr(0, colon));
    std::string_view value = trim(h.substr(colon + 1));
    for (char c : value) {
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
        return invalid(400, "control character in header " + name);
      }
    }
    if (name == "transfer-encoding") return invalid(501, "Transfer-Encoding is not supported; send Content-Length");
    if (name == "content-length") {
      if (value.empty() || value.size() > 12 ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return invalid(400, "malformed Content-Length");
      }
      size_t n = std::stoull(std::string(value));
      if (content_length && *content_length != n) return invalid(400, "conflicting Content-Length headers");
      content_length = n;
    }
    out.headers.emplace_back(std::move(name), std::string(value));
  }
  if (out.minor_version == 1 && !out.header("host")) return invalid(400, "HTTP/1.1 requires a Host header");

  size_t body = content_length.value_or(0);
  if (body > limits.max_body_bytes) return invalid(413, "request body too large");
  size_t total = end + 4 + body;
  if (data.size() < total) return {};
  out.body = std::string(data.substr(end + 4, body));
  ParseOutcome done;
  done.status = ParseStatus::Complete;
  done.consumed = total;
  return done;
}

}  // namespace pgfleet::http
