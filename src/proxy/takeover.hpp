// Takeover: a new proxy process receives the listening sockets of the running one over a Unix
// socket (SCM_RIGHTS), so a restart never refuses a connection; the old one then drains.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace pgfleet::proxy {

// The most descriptors one SCM_RIGHTS message carries (the kernel's SCM_MAX_FD).
inline constexpr std::size_t kMaxTakeoverFds = 253;

// Runs in the old proxy: serves `path`; the first process to connect receives `listeners`, and
// then `on_handed_over` runs (to start a graceful shutdown).
class TakeoverServer {
 public:
  TakeoverServer(std::string path, std::vector<int> listeners, std::function<void()> on_handed_over);
  ~TakeoverServer();

 private:
  std::string path_;
  int fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::atomic<bool> handed_over_{false};  // then the path belongs to the new process
  std::thread thread_;
};

// Runs in the new proxy: the listening sockets of the proxy serving `path` (empty on failure,
// with `error` set).
std::vector<int> receive_listeners(const std::string& path, std::string& error);

}  // namespace pgfleet::proxy
