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
  // 1 = done, 0 = in progress (wait for wants_write() ? EPOLLOUT : EPOLLIN), -1 = failed (see error()).
  int handshake();
  // Reads until the socket would block or `limit` bytes are buffered; kClosed at end of stream.
  Io read(ByteQueue& in, size_t limit);
  // Writes as much of `out` as the socket takes now.
  Io write(ByteQueue& out);
  // A plain socket, open: its writes can be batched (SendBatch); TLS writes go through OpenSSL.
  [[nodiscard]] bool batchable() const { return ssl_ == nullptr && fd_ >= 0; }
  // Applies the result of a send made for this socket elsewhere (bytes sent or -errno) to `out`.
  Io sent(ByteQueue& out, int result);
  // TLS must write before it can go on (a read or a handshake step asked for it).
  [[nodiscard]] bool wants_write() const { return wants_write_; }
  [[nodiscard]] const std::string& error() const { return error_; }
  void close();

 private:
  Io fail(const std::string& what);

  int fd_ = -1;
  SSL* ssl_ = nullptr;
  bool server_side_ = false;
  bool handshake_done_ = false;
  bool wants_write_ = false;
  std::string error_;
};

}  // namespace pgfleet::proxy
