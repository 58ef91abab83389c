// LSNs: PostgreSQL's "X/Y" text form to and from a 64-bit WAL position.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace pgfleet::postgres {

std::optional<uint64_t> parse_lsn(const std::string& text);
std::string format_lsn(uint64_t lsn);

}  // namespace pgfleet::postgres
