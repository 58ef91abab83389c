// Transport I/O: recv/send for plain sockets, SSL_read/SSL_write once TLS is on.
#include "proxy/transport.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
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
// How much plaintext is encrypted ahead of the socket: enough for a batch, bounded so that a
// slow reader keeps the rest in the connection's queue, where backpressure counts it.
constexpr size_t kRecordsAhead = 256 * 1024;

// A write-only BIO appending to a ByteQueue; flush is a no-op (the proxy sends the queue).
BIO_METHOD* queue_bio_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pgfleet byte queue");
    BIO_meth_set_write_ex(m, [](BIO* bio, const char* data, size_t len, size_t* written) -> int {
      static_cast<ByteQueue*>(BIO_get_data(bio))->append({reinterpret_cast<const uint8_t*>(data), len});
      *written = len;
      return 1;
    });
    BIO_meth_set_ctrl(m, [](BIO*, int cmd, long, void*) -> long { return cmd == BIO_CTRL_FLUSH ? 1 : 0; });
    BIO_meth_set_create(m, [](BIO* bio) -> int {
      BIO_set_init(bio, 1);
      return 1;
    });
    return m;
  }();
  return method;
}
}  // namespace

void Transport::start_tls(SSL_CTX* ctx, bool server_side) {
  ssl_ = SSL_new(ctx);
  BIO* from_socket = BIO_new_socket(fd_, BIO_NOCLOSE);
  BIO* to_records = BIO_new(queue_bio_method());
  BIO_set_data(to_records, &records_);
  SSL_set_bio(ssl_, from_socket, to_records);
  // Read-ahead: one recv takes a whole record (and whatever follows it) instead of a 5-byte
  // header read and then a body read. Released buffers: an idle TLS connection gives its 16 kB
  // read and write buffers back, or 10,000 idle TLS clients would hold over 300 MB.
  SSL_set_read_ahead(ssl_, 1);
  SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  server_side_ = server_side;
  handshake_done_ = false;
}

void Transport::expect_host(const std::string& host) {
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
  // An IP address is matched against the certificate's IP entries, a name against its DNS ones.
  if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
    SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    SSL_set1_host(ssl_, host.c_str());
    SSL_set_tlsext_host_name(ssl_, host.c_str());
  }
}

int Transport::handshake() {
  int rc = server_side_ ? SSL_accept(ssl_) : SSL_connect(ssl_);
  int err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, rc);
  std::string why = rc == 1 || err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ? "" : tls::last_error();
  // This step's records (or the alert of a failure) go out now; what the socket does not take
  // waits for EPOLLOUT (wants_write()).
  if (send_plain(records_) == Io::kError) return -1;
  if (rc == 1) {
    handshake_done_ = true;
    wants_write_ = false;
    return 1;
  }
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    wants_write_ = err == SSL_ERROR_WANT_WRITE;
    return 0;
  }
  error_ = "TLS handshake failed: " + why;
  // Which check the peer's certificate failed ("IP address mismatch", "self-signed certificate"...):
  // what an operator needs to fix it.
  if (long verify = SSL_get_verify_result(ssl_); !server_side_ && verify != X509_V_OK) {
    error_ += fmt::format(" ({})", X509_verify_cert_error_string(verify));
  }
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
  // Past the limit, still take what OpenSSL holds: bytes it read ahead from the socket would wake
  // no epoll, and a paused reader must find them in the socket (or in `in`) when it resumes.
  // This goes over the limit by at most OpenSSL's read buffer.
  while (in.size() < limit || (ssl_ != nullptr && SSL_has_pending(ssl_) == 1)) {
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
        // Read on while OpenSSL holds bytes it took from the socket (read-ahead can take several
        // records), or after a full record (COPY, big rows). After a short record with nothing
        // held, stop: epoll is level-triggered, so bytes still in the socket wake us again, and
        // asking now would mostly get EAGAIN.
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
  if (ssl_ == nullptr) return send_plain(out);
  while (true) {
    Io result = send_plain(records_);
    if (result != Io::kOk || !records_.empty() || out.empty()) return result;
    if (!encrypt(out)) return Io::kError;
  }
}

ByteQueue* Transport::wire(ByteQueue& out) {
  if (ssl_ == nullptr) return &out;
  if (records_.empty() && !encrypt(out)) return nullptr;
  return &records_;
}

bool Transport::encrypt(ByteQueue& out) {
  while (!out.empty() && records_.size() < kRecordsAhead) {
    auto v = out.view();
    int n = SSL_write(ssl_, v.data(), static_cast<int>(std::min(v.size(), kRecordsAhead)));
    if (n <= 0) {
      error_ = "TLS write failed: " + tls::last_error();
      return false;
    }
    out.consume(static_cast<size_t>(n));
  }
  return true;
}

Transport::Io Transport::send_plain(ByteQueue& q) {
  while (!q.empty()) {
    auto v = q.view();
    ssize_t n = ::send(fd_, v.data(), v.size(), MSG_NOSIGNAL);
    if (n > 0) {
      q.consume(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Io::kOk;
    return fail(std::string("write failed: ") + std::strerror(errno));
  }
  if (&q == &records_) records_.release();  // an idle TLS connection holds no record buffer
  return Io::kOk;
}

Transport::Io Transport::sent(ByteQueue& out, int result) {
  wants_write_ = false;
  ByteQueue& q = ssl_ != nullptr ? records_ : out;
  if (result >= 0) {
    q.consume(std::min(static_cast<size_t>(result), q.size()));
    if (ssl_ != nullptr && records_.empty()) records_.release();
    return Io::kOk;
  }
  if (result == -EAGAIN || result == -EWOULDBLOCK || result == -EINTR) return Io::kOk;
  return fail(std::string("write failed: ") + std::strerror(-result));
}

void Transport::close() {
  if (ssl_ != nullptr) {
    if (handshake_done_ && SSL_shutdown(ssl_) >= 0) (void)send_plain(records_);  // close_notify, best effort
    // What a failed shutdown left in this thread's OpenSSL error queue would make SSL_get_error
    // report a failure for the next connection's SSL call.
    ERR_clear_error();
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  records_.clear();
  records_.release();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace pgfleet::proxy
