// LSN text conversions, strict: anything but two hex numbers around one slash is rejected.
#include "postgres/lsn.hpp"

#include <fmt/format.h>

#include <cctype>

namespace pgfleet::postgres {

std::optional<uint64_t> parse_lsn(const std::string& text) {
  auto slash = text.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 >= text.size() || slash > 8 ||
      text.size() - slash - 1 > 8) {
    return std::nullopt;
  }
  uint64_t hi = 0, lo = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (i == slash) continue;
    char c = text[i];
    if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
    uint64_t d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10);
    (i < slash ? hi : lo) = (i < slash ? hi : lo) * 16 + d;
  }
  return (hi << 32) | lo;
}

std::string format_lsn(uint64_t lsn) { return fmt::format("{:X}/{:X}", lsn >> 32, lsn & 0xffffffffu); }

}  // namespace pgfleet::postgres
