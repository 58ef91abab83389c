// SCM_RIGHTS over a Unix stream socket: one message carrying every listener fd.
#include "proxy/takeover.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/log.hpp"

namespace pgfleet::proxy {

namespace {
bool fill_address(const std::string& path, sockaddr_un& addr) {
  if (path.size() >= sizeof addr.sun_path) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return true;
}
}  // namespace

TakeoverServer::TakeoverServer(std::string path, std::vector<int> listeners, std::function<void()> on_handed_over)
    : path_(std::move(path)) {
  if (listeners.size() > kMaxTakeoverFds) listeners.resize(kMaxTakeoverFds);
  sockaddr_un addr{};
  if (!fill_address(path_, addr)) {
    log::warn("takeover socket path too long: {}", path_);
    return;
  }
  ::unlink(path_.c_str());
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 1) != 0) {
    log::warn("cannot serve takeover on {}: {}", path_, std::strerror(errno));
    return;
  }
  if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) return;
  thread_ = std::thread([this, listeners, on_handed_over] {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    while (::poll(fds, 2, -1) >= 0 || errno == EINTR) {
      if (fds[1].revents) return;
      if (!(fds[0].revents & POLLIN)) continue;
      int peer = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (peer < 0) continue;
      char cmsg_space[CMSG_SPACE(sizeof(int) * kMaxTakeoverFds)] = {};
      char byte = 'L';
      iovec iov{&byte, 1};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = cmsg_space;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * listeners.size());
      cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int) * listeners.size());
      std::memcpy(CMSG_DATA(cmsg), listeners.data(), sizeof(int) * listeners.size());
      bool sent = ::sendmsg(peer, &msg, MSG_NOSIGNAL) == 1;
      ::close(peer);
      if (sent) {
        handed_over_ = true;
        log::info("listening sockets handed over to a new proxy process");
        on_handed_over();
        return;
      }
    }
  });
}

TakeoverServer::~TakeoverServer() {
  if (stop_pipe_[1] >= 0) (void)!::write(stop_pipe_[1], "x", 1);
  if (thread_.joinable()) thread_.join();
  for (int fd : {fd_, stop_pipe_[0], stop_pipe_[1]}) {
    if (fd >= 0) ::close(fd);
  }
  if (fd_ >= 0 && !handed_over_) ::unlink(path_.c_str());
}

std::vector<int> receive_listeners(const std::string& path, std::string& error) {
  sockaddr_un addr{};
  if (!fill_address(path, addr)) {
    error = "takeover socket path too long";
    return {};
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    error = std::string("cannot reach the running proxy at ") + path + ": " + std::strerror(errno);
    ::close(fd);
    return {};
  }
  char cmsg_space[CMSG_SPACE(sizeof(int) * kMaxTakeoverFds)] = {};
  char byte = 0;
  iovec iov{&byte, 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cmsg_space;
  msg.msg_controllen = sizeof cmsg_space;
  ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  ::close(fd);
  std::vector<int> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); n == 1 && c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      fds.resize(count);
      std::memcpy(fds.data(), CMSG_DATA(c), count * sizeof(int));
    }
  }
  if (fds.empty()) error = "the running proxy sent no listening sockets";
  return fds;
}

}  // namespace pgfleet::proxy
