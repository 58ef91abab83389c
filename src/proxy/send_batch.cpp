#include "proxy/send_batch.hpp"

#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "proxy/event_loop.hpp"
#include "util/log.hpp"

namespace pgfleet::proxy {

namespace {
constexpr unsigned kRingEntries = 256;
}

SendBatch::SendBatch(EventLoop& loop, bool allow_io_uring) : loop_(loop), allow_io_uring_(allow_io_uring) {}

SendBatch::~SendBatch() {
  if (ring_) io_uring_queue_exit(ring_.get());
}

void SendBatch::add(BatchedSender* sender) {
  if (sender->queued_) return;
  sender->queued_ = true;
  queued_.push_back(sender);
  if (!scheduled_) {
    scheduled_ = true;
    loop_.defer([this] { send_all(); });  // deferred tasks run after the iteration's events
  }
}

void SendBatch::forget(BatchedSender* sender) {
  // Connections are freed between iterations (EventLoop::retire), never during send_all().
  if (!sender->queued_) return;
  sender->queued_ = false;
  std::erase(queued_, sender);
}

bool SendBatch::open_ring() {
  ring_tried_ = true;
  const char* env = std::getenv("PGFLEET_IO_URING");
  if (!allow_io_uring_ || (env != nullptr && std::string_view(env) == "off")) {
    if (allow_io_uring_) log::info("proxy: PGFLEET_IO_URING=off, sending with send()");
    return false;
  }
  auto ring = std::make_unique<io_uring>();
  // SUBMIT_ALL: one failing entry must not stop the others from being submitted.
  int rc = io_uring_queue_init(kRingEntries, ring.get(), IORING_SETUP_SUBMIT_ALL);
  if (rc < 0) {
    log::info("proxy: io_uring unavailable ({}), sending with send()", std::strerror(-rc));
    return false;
  }
  ring_ = std::move(ring);
  log::debug("proxy: an event-loop thread sends its output with io_uring");
  return true;
}

void SendBatch::send_all() {
  scheduled_ = false;
  sending_.swap(queued_);
  queued_.clear();
  for (auto* s : sending_) s->queued_ = false;
  if (!ring_tried_) open_ring();
  // One connection (low load) gains nothing from the ring: its send() is one call too, and cheaper.
  if (ring_ && sending_.size() > 1) {
    send_with_ring();
  } else {
    for (auto* s : sending_) s->flush();
  }
  sending_.clear();
}

void SendBatch::send_with_ring() {
  auto& sent = in_ring_;
  auto& unbatched = unbatched_;
  size_t next = 0;
  bool ring_failed = false;
  while (next < sending_.size()) {
    sent.clear();
    unbatched.clear();
    // Sockets with bytes to send go into the ring (plain bytes, or the TLS records made of them);
    // the rest (closed, in a TLS handshake, nothing queued, a failed encryption) flush themselves,
    // after the ring's sends, so nothing they trigger touches a buffer in flight.
    for (; next < sending_.size() && sent.size() < kRingEntries; ++next) {
      BatchedSender* s = sending_[next];
      ByteQueue* wire = s->transport().batchable() ? s->transport().wire(s->output()) : nullptr;
      if (wire == nullptr || wire->empty()) {
        unbatched.push_back(s);
        continue;
      }
      auto bytes = wire->view();
      io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
      // MSG_DONTWAIT: a full socket answers -EAGAIN at once instead of io_uring waiting for room
      // (the rest then goes out on EPOLLOUT, as with send()).
      io_uring_prep_send(sqe, s->transport().fd(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      io_uring_sqe_set_data64(sqe, sent.size());
      sent.push_back({s, 0, false});
    }
    if (!sent.empty()) {
      unsigned want = static_cast<unsigned>(sent.size());
      int rc = io_uring_submit_and_wait(ring_.get(), want);
      // Every entry completes during the submission (MSG_DONTWAIT); -EINTR can only cut the wait.
      unsigned seen = 0;
      while (seen < want) {
        io_uring_cqe* cqe = nullptr;
        int wait = io_uring_wait_cqe(ring_.get(), &cqe);
        if (wait == -EINTR) continue;
        if (wait < 0) {
          // Not expected: the ring itself failed. Whether the unreaped sends went out is unknown,
          // so their connections are closed (as after a failed write) rather than risk sending
          // bytes twice; later batches use send().
          log::error("proxy: io_uring failed ({}, submit {}); sending with send() from now on",
                     std::strerror(-wait), rc);
          for (auto& e : sent) {
            if (!e.reaped) e.result = wait;
          }
          ring_failed = true;
          break;
        }
        auto& e = sent[io_uring_cqe_get_data64(cqe)];
        e.result = cqe->res;
        e.reaped = true;
        io_uring_cqe_seen(ring_.get(), cqe);
        ++seen;
      }
    }
    // All sends are done: now the connections may react (close, queue more, pause a peer).
    for (auto& e : sent) {
      if (!e.sender->transport().batchable()) continue;  // closed by an earlier reaction
      e.sender->after_write(e.sender->transport().sent(e.sender->output(), e.result));
    }
    for (auto* s : unbatched) s->flush();
    if (ring_failed) {
      io_uring_queue_exit(ring_.get());
      ring_.reset();
      for (; next < sending_.size(); ++next) sending_[next]->flush();
    }
  }
}

}  // namespace pgfleet::proxy
