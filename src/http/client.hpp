// A minimal blocking HTTP/1.1 client for the CLI's calls to the agents' APIs (plain HTTP only).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "util/result.hpp"

namespace pgfleet::http {

struct ClientReply {
  int status = 0;
  std::string body;
};

// One request on a fresh connection with "Connection: close"; `headers` are full lines without
// CRLF ("Authorization: Bearer x"). Errors: cannot connect, timeout, a malformed answer.
Result<ClientReply> request(const std::string& host, int port, const std::string& method, const std::string& path,
                            const std::vector<std::string>& headers = {}, const std::string& body = "",
                            std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace pgfleet::http
