// SendBatch: what the connections of one event-loop iteration queued for their sockets, sent
// together when the iteration's events are handled — with io_uring, in one system call.
//
// Why: on a small machine each send wakes a backend or a client, which then preempts the proxy
// as the send returns to user space. Sending every message the moment it was parsed cost one
// preemption (two context switches) per message; one io_uring_enter for the whole batch returns
// to user space once. Without io_uring (old kernel, a sandbox that forbids it, or
// PGFLEET_IO_URING=off) the batch is sent with one send() per connection, still after the
// iteration's reads.
#pragma once

#include <memory>
#include <vector>

#include "proxy/byte_queue.hpp"
#include "proxy/transport.hpp"

struct io_uring;

namespace pgfleet::proxy {

class EventLoop;

// A connection whose output can wait for the end of the iteration.
class BatchedSender {
 public:
  virtual ~BatchedSender() = default;

 protected:
  friend class SendBatch;
  virtual Transport& transport() = 0;
  virtual ByteQueue& output() = 0;
  // Writes now, the unbatched way (a TLS handshake, or no io_uring).
  virtual void flush() = 0;
  // After a batched write: the transport's verdict (kError: see transport().error()).
  virtual void after_write(Transport::Io result) = 0;

 private:
  bool queued_ = false;
};

class SendBatch {
 public:
  // allow_io_uring = false: always send() (tests of the fallback).
  explicit SendBatch(EventLoop& loop, bool allow_io_uring = true);
  ~SendBatch();
  SendBatch(const SendBatch&) = delete;
  SendBatch& operator=(const SendBatch&) = delete;

  // Flush `sender` once this iteration's events are handled (a second add is a no-op).
  void add(BatchedSender* sender);
  // `sender` is being destroyed.
  void forget(BatchedSender* sender);
  // Whether sends go through io_uring (known after the first batch).
  [[nodiscard]] bool uses_io_uring() const { return ring_ != nullptr; }

 private:
  void send_all();
  void send_with_ring();
  bool open_ring();

  EventLoop& loop_;
  std::vector<BatchedSender*> queued_;
  // Reused between batches (no allocation per iteration).
  std::vector<BatchedSender*> sending_;
  struct InRing {
    BatchedSender* sender;
    int result;  // bytes sent or -errno
    bool reaped;
  };
  std::vector<InRing> in_ring_;
  std::vector<BatchedSender*> unbatched_;
  bool scheduled_ = false;
  bool ring_tried_ = false;
  bool allow_io_uring_;
  std::unique_ptr<io_uring> ring_;
};

}  // namespace pgfleet::proxy
