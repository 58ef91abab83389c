// The CLI's HTTP client: getaddrinfo, one request, read to the end.
#include "http/client.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace pgfleet::http {

Result<ClientReply> request(const std::string& host, int port, const std::string& method, const std::string& path,
                            const std::vector<std::string>& headers, const std::string& body,
                            std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0) {
    return Error{fmt::format("cannot resolve {}: {}", host, gai_strerror(rc))};
  }
  int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  if (fd >= 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  if (fd < 0 || ::connect(fd, found->ai_addr, found->ai_addrlen) != 0) {
    int err = errno;
    ::freeaddrinfo(found);
    if (fd >= 0) ::close(fd);
    return Error{fmt::format("cannot connect to {}:{}: {}", host, port, std::strerror(err))};
  }
  ::freeaddrinfo(found);
  std::string out = fmt::format("{} {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nContent-Length: {}\r\n", method,
                                path, host, port, body.size());
  for (const auto& h : headers) out += h + "\r\n";
  out += "\r\n" + body;
  size_t sent = 0;
  while (sent < out.size()) {
    ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return Error{fmt::format("cannot send to {}:{}: {}", host, port, std::strerror(errno))};
    }
    sent += static_cast<size_t>(n);
  }
  std::string in;
  char buf[8192];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) in.append(buf, static_cast<size_t>(n));
  int err = errno;
  ::close(fd);
  if (n < 0 && in.empty()) return Error{fmt::format("no answer from {}:{}: {}", host, port, std::strerror(err))};
  size_t end = in.find("\r\n\r\n");
  if (in.rfind("HTTP/1.", 0) != 0 || in.size() < 12 || end == std::string::npos) {
    return Error{fmt::format("{}:{} did not answer HTTP", host, port)};
  }
  return ClientReply{std::atoi(in.c_str() + 9), in.substr(end + 4)};
}

}  // namespace pgfleet::http
