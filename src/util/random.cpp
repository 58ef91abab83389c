// random_secret on getrandom(2): no seeding, no userspace PRNG state to leak.
#include "util/random.hpp"

#include <sys/random.h>

#include <stdexcept>
#include <string_view>

namespace pgfleet {

std::string random_secret(size_t length) {
  constexpr std::string_view alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string out;
  while (out.size() < length) {
    unsigned char buf[64];
    if (::getrandom(buf, sizeof buf, 0) != static_cast<ssize_t>(sizeof buf)) {
      throw std::runtime_error("getrandom failed");
    }
    for (unsigned char b : buf) {
      if (b < 248 && out.size() < length) out.push_back(alphabet[b % alphabet.size()]);  // 248 = 4*62
    }
  }
  return out;
}

}  // namespace pgfleet
