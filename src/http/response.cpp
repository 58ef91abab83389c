// Response serialisation and route lookup.
#include "http/response.hpp"

#include <fmt/format.h>

#include <exception>
#include <set>

#include "util/log.hpp"

namespace pgfleet::http {

Response Response::text(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  if (!r.body.empty() && r.body.back() != '\n') r.body += '\n';
  return r;
}

Response Response::json(int status, std::string body) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  return r;
}

std::string_view status_text(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string serialize(const Response& r, bool keep_alive, bool head_only) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n", r.status,
                                status_text(r.status), r.content_type, r.body.size());
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  out += "Cache-Control: no-store\r\n";
  for (const auto& [name, value] : r.headers) out += fmt::format("{}: {}\r\n", name, value);
  out += "\r\n";
  if (!head_only) out += r.body;
  return out;
}

void Router::add(const std::string& method, const std::string& path, Handler handler) {
  exact_[{method, path}] = std::move(handler);
}

void Router::add_prefix(const std::string& method, const std::string& prefix, Handler handler) {
  prefixes_.push_back({{method, prefix}, std::move(handler)});
}

const Handler* Router::find(const std::string& method, const std::string& path) const {
  if (auto it = exact_.find({method, path}); it != exact_.end()) return &it->second;
  for (const auto& [key, handler] : prefixes_) {
    if (key.first == method && path.starts_with(key.second)) return &handler;
  }
  return nullptr;
}

Response Router::dispatch(const Request& request) const {
  const Handler* handler = find(request.method, request.path);
  if (!handler && (request.method == "HEAD" || request.method == "OPTIONS")) handler = find("GET", request.path);
  if (!handler) {
    std::set<std::string> allowed;
    for (const auto& [key, h] : exact_) {
      if (key.second == request.path) allowed.insert(key.first);
    }
    for (const auto& [key, h] : prefixes_) {
      if (request.path.starts_with(key.second)) allowed.insert(key.first);
    }
    if (allowed.empty()) return Response::text(404, "not found: " + request.path);
    if (allowed.count("GET")) allowed.insert({"HEAD", "OPTIONS"});
    std::string allow;
    for (const auto& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
    auto r = Response::text(405, fmt::format("{} is not allowed on {}; use {}", request.method, request.path, allow));
    r.headers.emplace_back("Allow", allow);
    return r;
  }
  try {
    return (*handler)(request);
  } catch (const std::exception& e) {
    log::error("http: {} {} failed: {}", request.method, request.path, e.what());
    return Response::text(500, std::string("internal error: ") + e.what());
  }
}

}  // namespace pgfleet::http
