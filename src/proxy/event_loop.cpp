// EventLoop on epoll (level-triggered) with an eventfd for cross-thread wake-ups.
#include "proxy/event_loop.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <stdexcept>
#include <string>
#include <cstring>

namespace pgfleet::proxy {

namespace {
struct WakeHandler final : IoHandler {
  void on_io(uint32_t) override {}
};
WakeHandler g_wake_marker;
}  // namespace

EventLoop::EventLoop() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) throw std::runtime_error(std::string("epoll/eventfd: ") + std::strerror(errno));
  add(wake_fd_, EPOLLIN, &g_wake_marker);
}

EventLoop::~EventLoop() {
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void EventLoop::add(int fd, uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    throw std::runtime_error(std::string("epoll_ctl add: ") + std::strerror(errno));
  }
}

void EventLoop::modify(int fd, uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::remove(int fd) { ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

void EventLoop::retire(std::unique_ptr<IoHandler> handler) { graveyard_.push_back(std::move(handler)); }

void EventLoop::every(std::chrono::milliseconds period, std::function<void()> tick) {
  timers_.push_back(Timer{period, Clock::now() + period, std::move(tick), false});
}

void EventLoop::after(std::chrono::milliseconds delay, std::function<void()> task) {
  timers_.push_back(Timer{delay, Clock::now() + delay, std::move(task), true});
}

namespace {
thread_local const EventLoop* t_running_loop = nullptr;  // the loop this thread runs, if any
}  // namespace

void EventLoop::post(std::function<void()> task) {
  // From the loop's own thread (an auth cache hit answers at once): no lock, no eventfd write
  // and read, which were three of a new client's syscalls.
  if (t_running_loop == this) {
    defer(std::move(task));
    return;
  }
  {
    std::lock_guard lock(posted_mutex_);
    posted_.push_back(std::move(task));
  }
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

void EventLoop::stop() {
  post([this] { stopping_ = true; });
}

void EventLoop::drain_posted() {
  uint64_t count = 0;
  (void)!::read(wake_fd_, &count, sizeof count);
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard lock(posted_mutex_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
}

void EventLoop::run() {
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  t_running_loop = this;
  while (!stopping_) {
    int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, 50);
    now_ = Clock::now();
    for (int i = 0; i < n; ++i) {
      auto* handler = static_cast<IoHandler*>(events[i].data.ptr);
      if (handler == &g_wake_marker) {
        drain_posted();
      } else {
        handler->on_io(events[i].events);
      }
    }
    run_deferred();
    // By index: a tick may add timers (and so move the vector).
    bool any_done = false;
    for (size_t i = 0; i < timers_.size(); ++i) {
      if (now_ < timers_[i].next) continue;
      timers_[i].next = now_ + timers_[i].period;
      std::function<void()> tick;
      if (timers_[i].once) {
        tick.swap(timers_[i].tick);  // leaves the slot empty, to be erased below
        any_done = true;
      } else {
        tick = timers_[i].tick;
      }
      tick();
    }
    if (any_done) std::erase_if(timers_, [](const Timer& t) { return t.once && !t.tick; });
    run_deferred();  // what the ticks deferred or posted, before sleeping again
    graveyard_.clear();
  }
  drain_posted();
  run_deferred();
  graveyard_.clear();
  t_running_loop = nullptr;
}

void EventLoop::run_deferred() {
  while (!deferred_.empty()) {
    std::vector<std::function<void()>> batch;
    batch.swap(deferred_);
    for (auto& task : batch) task();
  }
}

}  // namespace pgfleet::proxy
