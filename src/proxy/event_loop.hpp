// EventLoop: one epoll loop per proxy thread; file descriptors, periodic timers and tasks posted
// from other threads. Everything registered with a loop runs on that loop's thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace pgfleet::proxy {

using Clock = std::chrono::steady_clock;

// Something with a file descriptor in the loop. on_io gets epoll event bits.
class IoHandler {
 public:
  virtual ~IoHandler() = default;
  virtual void on_io(uint32_t events) = 0;
};

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Registration; `handler` must stay alive until remove() (use retire() to free it safely).
  void add(int fd, uint32_t events, IoHandler* handler);
  void modify(int fd, uint32_t events, IoHandler* handler);
  void remove(int fd);
  // Frees `handler` after the current batch of events, so a pending event never reaches a
  // destroyed object.
  void retire(std::unique_ptr<IoHandler> handler);

  // Calls `tick` every `period` (checked once per loop iteration, so at least every 50 ms).
  void every(std::chrono::milliseconds period, std::function<void()> tick);
  // Calls `task` once, `delay` from now (same checking granularity as every()).
  void after(std::chrono::milliseconds delay, std::function<void()> task);
  // Same thread only: runs `task` after the current batch of events (no syscall, no lock).
  void defer(std::function<void()> task) { deferred_.push_back(std::move(task)); }
  // Thread-safe: runs `task` on the loop's thread soon (called on that thread: as defer()).
  void post(std::function<void()> task);
  // Thread-safe: run() returns after the current iteration.
  void stop();
  void run();

  // Time at the start of the current iteration (cheap; good enough for timeouts).
  [[nodiscard]] Clock::time_point now() const { return now_; }

 private:
  void drain_posted();

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  bool stopping_ = false;
  Clock::time_point now_ = Clock::now();
  struct Timer {
    std::chrono::milliseconds period;
    Clock::time_point next;
    std::function<void()> tick;
    bool once = false;
  };
  std::vector<Timer> timers_;
  std::vector<std::unique_ptr<IoHandler>> graveyard_;
  std::vector<std::function<void()>> deferred_;
  void run_deferred();
  std::mutex posted_mutex_;  // only for cross-thread posts, never on the data path
  std::vector<std::function<void()>> posted_;
};

}  // namespace pgfleet::proxy
