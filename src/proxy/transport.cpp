// Transport I/O: recv/send for plain sockets, SSL_read/SSL_write once TLS is on.
#include "proxy/transport.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "util/tls.hpp"

namespace pgfleet::proxy {

namespace {
constexpr size_t kReadChunk = 64 * 1024;
}

void Transport::start_tls(SSL_CTX* ctx, bool server_side) {
  ssl_ = SSL_new(ctx);
  SSL_set_fd(ssl_, fd_);
  server_side_ = server_side;
  handshake_done_ = false;
}

int Transport::handshake() {
  int rc = server_side_ ? SSL_accept(ssl_) : SSL_connect(ssl_);
  if (rc == 1) {
    handshake_done_ = true;
    wants_write_ = false;
    return 1;
  }
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    wants_write_ = err == SSL_ERROR_WANT_WRITE;
    return 0;
  }
  error_ = "TLS handshake failed: " + tls::last_error();
  return -1;
}

Transport::Io Transport::fail(const std::string& what) {
  error_ = what;
  return Io::kError;
}

namespace {
constexpr int kMaxTlsRecord = 16384;  // SSL3_RT_MAX_PLAIN_LENGTH
}  // namespace

Transport::Io Transport::read(ByteQueue& in, size_t limit) {
  wants_write_ = false;
  // Reads land in a per-thread scratch buffer unless the queue already has room: an idle
  // connection then holds only what it received, not a 64 kB read buffer (10,000 clients).
  thread_local std::unique_ptr<uint8_t[]> scratch = std::make_unique_for_overwrite<uint8_t[]>(kReadChunk);
  while (in.size() < limit) {
    bool direct = in.capacity() - in.size() >= kReadChunk;
    uint8_t* at = direct ? in.reserve(kReadChunk) : scratch.get();
    auto keep = [&](size_t n) {
      if (direct) in.commit(n);
      else in.append({at, n});
    };
    if (ssl_ != nullptr) {
      int n = SSL_read(ssl_, at, static_cast<int>(kReadChunk));
      if (n > 0) {
        keep(static_cast<size_t>(n));
        // Without read-ahead OpenSSL takes one record at a time from the socket. After a short
        // record (the usual query or reply) stop: epoll is level-triggered, so bytes still in
        // the socket wake us again, and asking now would mostly get EAGAIN. Full records
        // (COPY, big rows) and anything OpenSSL still holds are read on at once.
        if (SSL_has_pending(ssl_) == 1 || n >= kMaxTlsRecord) continue;
        return Io::kOk;
      }
      int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_READ) return Io::kOk;
      if (err == SSL_ERROR_WANT_WRITE) {
        wants_write_ = true;
        return Io::kOk;
      }
      if (err == SSL_ERROR_ZERO_RETURN) return Io::kClosed;
      return fail("TLS read failed: " + tls::last_error());
    }
    ssize_t n = ::recv(fd_, at, kReadChunk, 0);
    if (n > 0) {
      keep(static_cast<size_t>(n));
      if (static_cast<size_t>(n) < kReadChunk) return Io::kOk;  // drained: skip the EAGAIN call
      continue;
    }
    if (n == 0) return Io::kClosed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::kOk;
    return fail(std::string("read failed: ") + std::strerror(errno));
  }
  return Io::kOk;
}

Transport::Io Transport::write(ByteQueue& out) {
  wants_write_ = false;
  while (!out.empty()) {
    auto v = out.view();
    if (ssl_ != nullptr) {
      int n = SSL_write(ssl_, v.data(), static_cast<int>(std::min<size_t>(v.size(), 1 << 20)));
      if (n > 0) {
        out.consume(static_cast<size_t>(n));
        continue;
      }
      int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        wants_write_ = err == SSL_ERROR_WANT_WRITE;
        return Io::kOk;
      }
      return fail("TLS write failed: " + tls::last_error());
    }
    ssize_t n = ::send(fd_, v.data(), v.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out.consume(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Io::kOk;
    return fail(std::string("write failed: ") + std::strerror(errno));
  }
  return Io::kOk;
}

Transport::Io Transport::sent(ByteQueue& out, int result) {
  wants_write_ = false;
  if (result >= 0) {
    out.consume(std::min(static_cast<size_t>(result), out.size()));
    return Io::kOk;
  }
  if (result == -EAGAIN || result == -EWOULDBLOCK || result == -EINTR) return Io::kOk;
  return fail(std::string("write failed: ") + std::strerror(-result));
}

void Transport::close() {
  if (ssl_ != nullptr) {
    if (handshake_done_) SSL_shutdown(ssl_);
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace pgfleet::proxy
