// SendBatch over real sockets (socketpairs): every queued byte arrives once and in order, a full
// socket never blocks the loop, a closed peer is reported as a failed write — with io_uring and
// with the send() fallback, on plain sockets and through TLS (a real OpenSSL peer decrypts).
#include "proxy/send_batch.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proxy/event_loop.hpp"
#include "util/tls.hpp"

namespace pgfleet::proxy {
namespace {

// One end of a socketpair with an output queue; the other end is read by the test.
class Sink final : public BatchedSender {
 public:
  Sink() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    io_.reset(fds[0]);
    peer_ = fds[1];
  }
  ~Sink() override {
    if (peer_ >= 0) ::close(peer_);
  }
  void queue(const std::string& s) { out_.append({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
  std::string drain_peer() {
    std::string got;
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(peer_, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }
  [[nodiscard]] int peer_fd() const { return peer_; }
  void close_peer() {
    ::close(peer_);
    peer_ = -1;
  }
  void flush() override {
    ++flushes;
    after_write(io_.write(out_));
  }
  void after_write(Transport::Io result) override {
    results.push_back(result);
    if (result == Transport::Io::kError) error = io_.error();
    if (on_written) on_written();
  }
  Transport& transport() override { return io_; }
  ByteQueue& output() override { return out_; }
  [[nodiscard]] size_t unsent() const { return out_.size(); }

  std::vector<Transport::Io> results;
  std::string error;
  int flushes = 0;
  std::function<void()> on_written;

 private:
  Transport io_;
  ByteQueue out_;
  int peer_ = -1;
};

// A TLS server certificate for the test process, made once.
SSL_CTX* server_tls_context() {
  static tls::ServerContext ctx = [] {
    auto dir = std::filesystem::temp_directory_path() / ("pgfleet-send-batch-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    tls::generate_self_signed(dir / "server.crt", dir / "server.key", {"localhost"});
    auto loaded = tls::load_server_context(dir / "server.crt", dir / "server.key");
    std::filesystem::remove_all(dir);
    return loaded;
  }();
  return ctx.ctx.get();
}

// A Sink whose transport speaks TLS (as the proxy to a client); its peer is an OpenSSL client.
class TlsSink final {
 public:
  TlsSink() : client_ctx_(SSL_CTX_new(TLS_client_method()), &SSL_CTX_free) {
    sink.transport().start_tls(server_tls_context(), true);
    peer_ssl_ = SSL_new(client_ctx_.get());
    SSL_set_fd(peer_ssl_, sink.peer_fd());
    // Both ends are non-blocking: step each until both are done.
    int server = 0, client = 0;
    for (int i = 0; i < 100 && (server != 1 || client != 1); ++i) {
      if (server != 1) server = sink.transport().handshake();
      if (client != 1) client = SSL_connect(peer_ssl_) == 1 ? 1 : 0;
      EXPECT_GE(server, 0) << sink.transport().error();
    }
    EXPECT_EQ(server, 1);
    EXPECT_EQ(client, 1);
  }
  ~TlsSink() { SSL_free(peer_ssl_); }
  // Decrypts what the peer can read now.
  std::string drain_peer() {
    std::string got;
    char buf[65536];
    for (;;) {
      int n = SSL_read(peer_ssl_, buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }
  // Bytes the proxy side still holds: plaintext not yet encrypted, or records not yet sent.
  [[nodiscard]] bool holds_output() { return sink.unsent() > 0 || sink.transport().wants_write(); }

  class Sink sink;

 private:
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> client_ctx_;
  SSL* peer_ssl_ = nullptr;
};

// Runs one loop iteration in which `queue_work` queues senders; returns once the batch is sent.
void run_iteration(EventLoop& loop, const std::function<void()>& queue_work) {
  loop.post(queue_work);
  loop.stop();
  loop.run();
}

class SendBatchTest : public ::testing::TestWithParam<bool> {};

TEST_P(SendBatchTest, EveryQueuedByteArrivesOnceAndInOrder) {
  EventLoop loop;
  SendBatch batch(loop, GetParam());
  std::vector<std::unique_ptr<Sink>> sinks;
  for (int i = 0; i < 300; ++i) sinks.push_back(std::make_unique<Sink>());  // more than one ring's worth
  run_iteration(loop, [&] {
    for (size_t i = 0; i < sinks.size(); ++i) {
      sinks[i]->queue("reply " + std::to_string(i) + ";");
      batch.add(sinks[i].get());
      sinks[i]->queue("more;");
      batch.add(sinks[i].get());  // a second add in the same iteration sends once, everything queued
    }
  });
  for (size_t i = 0; i < sinks.size(); ++i) {
    EXPECT_EQ(sinks[i]->drain_peer(), "reply " + std::to_string(i) + ";more;") << i;
    EXPECT_EQ(sinks[i]->unsent(), 0u);
    ASSERT_EQ(sinks[i]->results.size(), 1u) << i;
    EXPECT_EQ(sinks[i]->results[0], Transport::Io::kOk);
  }
}

TEST_P(SendBatchTest, AFullSocketKeepsTheRestQueuedInsteadOfBlocking) {
  EventLoop loop;
  SendBatch batch(loop, GetParam());
  Sink slow, fast;
  std::string big(8 << 20, 'x');  // far more than a socket buffer: the peer does not read
  run_iteration(loop, [&] {
    slow.queue(big);
    batch.add(&slow);
    fast.queue("hello");
    batch.add(&fast);
  });
  EXPECT_GT(slow.unsent(), 0u);
  EXPECT_LT(slow.unsent(), big.size());
  ASSERT_FALSE(slow.results.empty());
  EXPECT_EQ(slow.results.back(), Transport::Io::kOk);  // not an error: the rest waits for EPOLLOUT
  EXPECT_EQ(fast.drain_peer(), "hello");

  // What the peer then reads plus what is still queued is the whole, in order.
  std::string got = slow.drain_peer();
  while (slow.unsent() > 0) {
    run_iteration(loop, [&] { batch.add(&slow); });
    got += slow.drain_peer();
  }
  EXPECT_EQ(got.size(), big.size());
  EXPECT_EQ(got, big);
}

TEST_P(SendBatchTest, AClosedPeerIsAFailedWrite) {
  EventLoop loop;
  SendBatch batch(loop, GetParam());
  Sink gone, fine;
  gone.close_peer();
  run_iteration(loop, [&] {
    gone.queue("lost");
    batch.add(&gone);
    fine.queue("kept");
    batch.add(&fine);
  });
  ASSERT_EQ(gone.results.size(), 1u);
  EXPECT_EQ(gone.results[0], Transport::Io::kError);
  EXPECT_NE(gone.error.find("Broken pipe"), std::string::npos) << gone.error;
  EXPECT_EQ(fine.drain_peer(), "kept");
}

TEST_P(SendBatchTest, OutputQueuedWhileReactingGoesOutInTheSameIteration) {
  EventLoop loop;
  SendBatch batch(loop, GetParam());
  Sink first, second;
  bool reacted = false;
  first.on_written = [&] {  // e.g. a reply that lets a waiting client's query go to its server
    if (reacted) return;
    reacted = true;
    second.queue("then me");
    batch.add(&second);
  };
  run_iteration(loop, [&] {
    first.queue("me first");
    batch.add(&first);
  });
  EXPECT_EQ(first.drain_peer(), "me first");
  EXPECT_EQ(second.drain_peer(), "then me");
}

TEST_P(SendBatchTest, AForgottenSenderIsNotTouched) {
  EventLoop loop;
  SendBatch batch(loop, GetParam());
  auto doomed = std::make_unique<Sink>();
  Sink kept;
  run_iteration(loop, [&] {
    doomed->queue("never");
    batch.add(doomed.get());
    kept.queue("sent");
    batch.add(&kept);
    batch.forget(doomed.get());
    doomed.reset();  // freed before the batch goes out
  });
  EXPECT_EQ(kept.drain_peer(), "sent");
}

TEST(SendBatch, UsesIoUringWhereTheKernelAllowsIt) {
  EventLoop loop;
  SendBatch batch(loop);
  Sink a, b, alone;
  run_iteration(loop, [&] {
    a.queue("x");
    batch.add(&a);
    b.queue("y");
    batch.add(&b);
  });
  EXPECT_EQ(a.drain_peer(), "x");
  EXPECT_EQ(b.drain_peer(), "y");
  // This machine's kernel has io_uring enabled (kernel.io_uring_disabled = 0); a sandbox that
  // forbids it would fall back to send() and fail only this check.
  EXPECT_TRUE(batch.uses_io_uring());
  EXPECT_EQ(a.flushes + b.flushes, 0);  // sent by the ring, not by the connections' own flush()

  // A batch of one is a plain send(): the ring would only add to it.
  run_iteration(loop, [&] {
    alone.queue("z");
    batch.add(&alone);
  });
  EXPECT_EQ(alone.drain_peer(), "z");
  EXPECT_EQ(alone.flushes, 1);
}

TEST_P(SendBatchTest, TlsRecordsOfManyConnectionsGoOutInOneBatchAndDecrypt) {
  EventLoop loop;
  SendBatch batch(loop, GetParam());
  std::vector<std::unique_ptr<TlsSink>> sinks;
  for (int i = 0; i < 40; ++i) sinks.push_back(std::make_unique<TlsSink>());
  run_iteration(loop, [&] {
    for (size_t i = 0; i < sinks.size(); ++i) {
      sinks[i]->sink.queue("reply " + std::to_string(i) + ";");
      batch.add(&sinks[i]->sink);
      sinks[i]->sink.queue("more;");
      batch.add(&sinks[i]->sink);
    }
  });
  for (size_t i = 0; i < sinks.size(); ++i) {
    EXPECT_EQ(sinks[i]->drain_peer(), "reply " + std::to_string(i) + ";more;") << i;
    EXPECT_FALSE(sinks[i]->holds_output()) << i;
    ASSERT_EQ(sinks[i]->sink.results.size(), 1u) << i;
    EXPECT_EQ(sinks[i]->sink.results[0], Transport::Io::kOk);
    // With the ring the records went out in its one submission, not by each connection's send().
    if (batch.uses_io_uring()) {
      EXPECT_EQ(sinks[i]->sink.flushes, 0) << i;
    }
  }
}

TEST_P(SendBatchTest, ABigTlsReplyToASlowReaderWaitsInBoundedRecords) {
  EventLoop loop;
  SendBatch batch(loop, GetParam());
  TlsSink slow, fast;
  std::string big(8 << 20, 'y');
  for (size_t i = 0; i < big.size(); i += 4093) big[i] = static_cast<char>('a' + i % 26);
  run_iteration(loop, [&] {
    slow.sink.queue(big);
    batch.add(&slow.sink);
    fast.sink.queue("hello");
    batch.add(&fast.sink);
  });
  EXPECT_EQ(fast.drain_peer(), "hello");
  EXPECT_TRUE(slow.holds_output());
  // Only a bounded amount is encrypted ahead: the rest stays plaintext in the connection's own
  // queue, where its backpressure (pausing the server) sees it.
  EXPECT_GT(slow.sink.unsent(), big.size() - (2u << 20));
  std::string got = slow.drain_peer();
  for (int i = 0; i < 10000 && slow.holds_output(); ++i) {
    run_iteration(loop, [&] { batch.add(&slow.sink); });
    got += slow.drain_peer();
  }
  EXPECT_FALSE(slow.holds_output());
  got += slow.drain_peer();
  EXPECT_EQ(got.size(), big.size());
  EXPECT_TRUE(got == big);
  for (auto r : slow.sink.results) EXPECT_EQ(r, Transport::Io::kOk);
}

INSTANTIATE_TEST_SUITE_P(Modes, SendBatchTest, ::testing::Values(true, false),
                         [](const auto& p) { return p.param ? "IoUring" : "SendFallback"; });

}  // namespace
}  // namespace pgfleet::proxy
