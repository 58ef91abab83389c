#include "proxy/local_socket.hpp"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace pgfleet::proxy {

namespace {
constexpr std::string_view kPrefix = "/.s.PGSQL.";

sockaddr_un address_of(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    throw std::runtime_error(fmt::format("the Unix socket path {} is longer than {} bytes", path, sizeof addr.sun_path - 1));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Whether something accepts connections at `path` now.
bool in_use(const sockaddr_un& addr) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool accepted = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return accepted;
}
}  // namespace

std::string local_socket_path(const std::string& dir, int port) { return fmt::format("{}{}{}", dir, kPrefix, port); }

int listen_local(const std::string& path) {
  sockaddr_un addr = address_of(path);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw std::runtime_error(path + " exists and is not a socket");
    if (in_use(addr)) throw std::runtime_error("another process listens on " + path);
    ::unlink(path.c_str());  // left by a process that is gone (PostgreSQL does the same)
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(fmt::format("cannot create a Unix socket: {}", std::strerror(errno)));
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 4096) != 0) {
    int err = errno;
    ::close(fd);
    throw std::runtime_error(fmt::format("cannot listen on {}: {}", path, std::strerror(err)));
  }
  // Anyone who may enter the directory may connect, as PostgreSQL's default 0777: the directory
  // is what restricts access (a cluster's is 0700), and clients still authenticate.
  ::chmod(path.c_str(), 0777);
  return fd;
}

std::string bound_local_path(int fd) {
  sockaddr_un addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || addr.sun_family != AF_UNIX) return "";
  return std::string(addr.sun_path, strnlen(addr.sun_path, sizeof addr.sun_path));
}

}  // namespace pgfleet::proxy
