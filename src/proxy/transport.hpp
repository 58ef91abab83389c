// Transport: a non-blocking socket, plain or TLS, moving bytes between it and ByteQueues.
// Both sides of the proxy use it, so TLS and error handling live in one place.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <string>

#include "proxy/byte_queue.hpp"

namespace pgfleet::proxy {

class Transport {
 public:
  enum class Io { kOk, kClosed, kError };

  explicit Transport(int fd = -1) : fd_(fd) {}
  ~Transport() { close(); }
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  void reset(int fd) {
    close();
    fd_ = fd;
  }
  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] bool tls() const { return ssl_ != nullptr; }
  // Starts TLS on the socket as server (accept) or client (connect); then call handshake().
  void start_tls(SSL_CTX* ctx, bool server_side);
  // Client side, after start_tls: the peer's certificate must name `host` (a DNS name or an IP).
  void expect_host(const std::string& host);
  // 1 = done, 0 = in progress (wait for wants_write() ? EPOLLOUT : EPOLLIN), -1 = failed (see error()).
  int handshake();
  // Reads until the socket would block or `limit` bytes are buffered; kClosed at end of stream.
  Io read(ByteQueue& in, size_t limit);
  // Writes as much of `out` as the socket takes now.
  Io write(ByteQueue& out);
  // Open, and past any TLS handshake: its writes can be batched (SendBatch).
  [[nodiscard]] bool batchable() const { return fd_ >= 0 && (ssl_ == nullptr || handshake_done_); }
  // The bytes to send for `out`: `out` itself on a plain socket. With TLS, the records OpenSSL
  // made of it (up to a bound; the rest stays in `out`); nullptr if encrypting failed (error()).
  ByteQueue* wire(ByteQueue& out);
  // Applies the result of a send of wire(out) made elsewhere (bytes sent or -errno).
  Io sent(ByteQueue& out, int result);
  // Bytes wait for the socket to take them: TLS records not sent yet, or a handshake step.
  [[nodiscard]] bool wants_write() const { return wants_write_ || !records_.empty(); }
  [[nodiscard]] const std::string& error() const { return error_; }
  void close();

 private:
  Io fail(const std::string& what);
  // Sends from `q` until it is empty or the socket is full.
  Io send_plain(ByteQueue& q);
  // Encrypts from `out` into records_ (bounded); false if OpenSSL failed.
  bool encrypt(ByteQueue& out);

  int fd_ = -1;
  SSL* ssl_ = nullptr;
  // OpenSSL writes its records here (a BIO over this queue) rather than to the socket, so the
  // proxy sends them itself: batched with everything else in the iteration, like plain bytes.
  ByteQueue records_;
  bool server_side_ = false;
  bool handshake_done_ = false;
  bool wants_write_ = false;
  std::string error_;
};

}  // namespace pgfleet::proxy
