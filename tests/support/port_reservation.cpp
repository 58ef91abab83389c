#include "port_reservation.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>

#include "util/ports.hpp"

namespace pgfleet::testing {
namespace {

constexpr int kBlock = 100;
constexpr const char* kLockDir = "/tmp/pgfleet-test-ports";

// The kernel's ephemeral range: a client socket may take such a port between our check and the
// server's bind, so blocks below it are tried first.
int ephemeral_low(int high) {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 0, hi = 0;
  if (in >> lo >> hi && lo > 0) return std::min(lo, high);
  return high;
}

// Takes the lock for `base`; the descriptor stays open (close-on-exec, so servers started by the
// test do not inherit it) and the kernel releases the lock when the process ends, however it ends.
bool lock_block(int base) {
  ::mkdir(kLockDir, 01777);
  ::chmod(kLockDir, 01777);  // shared by users who run tests as themselves
  std::string path = std::string(kLockDir) + "/" + std::to_string(base);
  int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return false;
  }
  return true;  // fd deliberately kept open
}

bool block_is_free(int base) {
  for (int p = base; p < base + kBlock; ++p) {
    if (!ports::is_free("127.0.0.1", p)) return false;
  }
  return true;
}

}  // namespace

int reserve_port_block(int low, int high) {
  low = (low + kBlock - 1) / kBlock * kBlock;
  const int preferred_high = std::max(low + kBlock, ephemeral_low(high));
  std::random_device rd;
  std::mt19937 gen(rd());
  for (int attempt = 0; attempt < 500; ++attempt) {
    int top = attempt < 250 ? preferred_high : high;
    std::uniform_int_distribution<int> dist(low / kBlock, top / kBlock - 1);
    int base = dist(gen) * kBlock;
    if (!lock_block(base)) continue;
    if (block_is_free(base)) return base;
    // Held by something outside the tests; keep the lock so this process does not pick it again.
  }
  throw std::runtime_error("no free block of 100 ports found in [" + std::to_string(low) + ", " +
                           std::to_string(high) + ")");
}

}  // namespace pgfleet::testing
