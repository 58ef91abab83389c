// HTTP responses and the route table: what a handler returns, and how requests find handlers.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "http/request.hpp"

namespace pgfleet::http {

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers

  static Response text(int status, std::string body);
  static Response json(int status, std::string body);
};

// "OK", "Service Unavailable", ...
std::string_view status_text(int status);

// The bytes of `r`: status line, Date-free headers, Content-Length, the body unless head_only.
std::string serialize(const Response& r, bool keep_alive, bool head_only);

using Handler = std::function<Response(const Request&)>;

// Exact-path routes and prefix routes ("/static/"). HEAD and OPTIONS fall back to the GET route
// with the body left out, as Patroni does: HAProxy's `option httpchk` sends OPTIONS by default.
// Unknown paths get 404, known paths with another method 405 with an Allow header.
// Thread: built before the server starts, then read-only.
class Router {
 public:
  void add(const std::string& method, const std::string& path, Handler handler);
  void add_prefix(const std::string& method, const std::string& prefix, Handler handler);
  [[nodiscard]] Response dispatch(const Request& request) const;

 private:
  const Handler* find(const std::string& method, const std::string& path) const;
  std::map<std::pair<std::string, std::string>, Handler> exact_;
  std::vector<std::pair<std::pair<std::string, std::string>, Handler>> prefixes_;
};

}  // namespace pgfleet::http
