// The server loop: accept, read, parse, dispatch, write; one thread, non-blocking sockets.
#include "http/server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <stdexcept>

#include "util/log.hpp"

namespace pgfleet::http {
namespace {

using Clock = std::chrono::steady_clock;

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  std::string in;
  std::string out;
  size_t out_sent = 0;
  bool close_after_write = false;
  Clock::time_point last_active = Clock::now();

  ~Conn() {
    if (ssl) SSL_free(ssl);
    if (fd >= 0) ::close(fd);
  }
};

enum class IoResult { Progress, WouldBlock, Closed };

// Reads what is available into c.in (plain or TLS).
IoResult read_some(Conn& c) {
  char buf[16384];
  bool progress = false;
  while (true) {
    ssize_t n;
    if (c.ssl) {
      int r = SSL_read(c.ssl, buf, sizeof buf);
      if (r <= 0) {
        int err = SSL_get_error(c.ssl, r);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
          return progress ? IoResult::Progress : IoResult::WouldBlock;
        }
        return IoResult::Closed;
      }
      n = r;
    } else {
      n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return progress ? IoResult::Progress : IoResult::WouldBlock;
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return IoResult::Closed;
    }
    c.in.append(buf, static_cast<size_t>(n));
    progress = true;
    if (c.in.size() > 4 * 1024 * 1024) return IoResult::Progress;  // the parser will refuse it
  }
}

// Writes pending output; false when the connection broke.
bool write_some(Conn& c) {
  while (c.out_sent < c.out.size()) {
    const char* p = c.out.data() + c.out_sent;
    size_t len = c.out.size() - c.out_sent;
    if (c.ssl) {
      int r = SSL_write(c.ssl, p, static_cast<int>(len));
      if (r <= 0) {
        int err = SSL_get_error(c.ssl, r);
        return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
      }
      c.out_sent += static_cast<size_t>(r);
    } else {
      ssize_t n = ::send(c.fd, p, len, MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      c.out_sent += static_cast<size_t>(n);
    }
  }
  c.out.clear();
  c.out_sent = 0;
  return true;
}

}  // namespace

Server::Server(ServerOptions options, Router router) : options_(std::move(options)), router_(std::move(router)) {}

Server::~Server() { stop(); }

void Server::start() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string port_text = std::to_string(options_.port);
  const char* host = options_.address == "*" || options_.address.empty() ? nullptr : options_.address.c_str();
  if (int rc = ::getaddrinfo(host, port_text.c_str(), &hints, &found); rc != 0) {
    throw std::runtime_error(fmt::format("http: cannot resolve {}: {}", options_.address, gai_strerror(rc)));
  }
  int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd >= 0 && options_.reuse_port) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (fd < 0 || ::bind(fd, found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
    int err = errno;
    ::freeaddrinfo(found);
    if (fd >= 0) ::close(fd);
    throw std::runtime_error(
        fmt::format("http: cannot listen on {}:{}: {}", options_.address, options_.port, std::strerror(err)));
  }
  ::freeaddrinfo(found);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  listen_fd_ = fd;
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  thread_ = std::thread([this] { run(); });
}

void Server::stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  thread_.join();
  ::close(listen_fd_);
  ::close(wake_fd_);
  listen_fd_ = wake_fd_ = -1;
}

void Server::run() {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd_;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.data.fd = wake_fd_;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, wake_fd_, &ev);
  std::map<int, std::unique_ptr<Conn>> conns;

  auto close_conn = [&](int fd) {
    ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    conns.erase(fd);
  };
  auto want = [&](Conn& c) {
    epoll_event e{};
    e.events = EPOLLIN | EPOLLRDHUP | (c.out.empty() ? 0u : static_cast<uint32_t>(EPOLLOUT));
    e.data.fd = c.fd;
    ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &e);
  };
  // Answers every complete request in c.in (pipelining); stops at the first invalid one.
  auto serve = [&](Conn& c) {
    while (!c.close_after_write) {
      Request request;
      auto outcome = parse_request(c.in, request, options_.limits);
      if (outcome.status == ParseStatus::Incomplete) break;
      if (outcome.status == ParseStatus::Invalid) {
        c.out += serialize(Response::text(outcome.error_status, "bad request: " + outcome.error), false, false);
        c.close_after_write = true;
        c.in.clear();
        break;
      }
      c.in.erase(0, outcome.consumed);
      Response response = router_.dispatch(request);
      bool keep = request.keep_alive() && !stopping_;
      bool head = request.method == "HEAD" || request.method == "OPTIONS";
      c.out += serialize(response, keep, head);
      if (!keep) c.close_after_write = true;
    }
  };

  epoll_event events[64];
  auto last_sweep = Clock::now();
  while (!stopping_) {
    int n = ::epoll_wait(ep, events, 64, 1000);
    auto now = Clock::now();
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == wake_fd_) continue;
      if (fd == listen_fd_) {
        while (true) {
          int cfd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) break;
          if (static_cast<int>(conns.size()) >= options_.max_connections) {
            ::close(cfd);
            continue;
          }
          int one = 1;
          ::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          auto c = std::make_unique<Conn>();
          c->fd = cfd;
          if (options_.tls) {
            c->ssl = SSL_new(options_.tls);
            SSL_set_fd(c->ssl, cfd);
            SSL_set_accept_state(c->ssl);
          }
          epoll_event e{};
          e.events = EPOLLIN | EPOLLRDHUP;
          e.data.fd = cfd;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &e);
          conns[cfd] = std::move(c);
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      Conn& c = *it->second;
      c.last_active = now;
      bool broken = false, peer_closed = false;
      if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        peer_closed = read_some(c) == IoResult::Closed;
      }
      // A client that sent its request and shut its side down still gets the answer.
      if (!c.close_after_write) serve(c);
      if (!c.out.empty() && !write_some(c)) broken = true;
      if (broken || peer_closed || (c.close_after_write && c.out.empty())) {
        close_conn(fd);
        continue;
      }
      want(c);
    }
    if (now - last_sweep > std::chrono::seconds(1)) {
      last_sweep = now;
      std::vector<int> idle;
      for (const auto& [fd, c] : conns) {
        if (now - c->last_active > std::chrono::milliseconds(options_.idle_timeout_ms)) idle.push_back(fd);
      }
      for (int fd : idle) close_conn(fd);
    }
  }
  conns.clear();
  ::close(ep);
}

}  // namespace pgfleet::http
