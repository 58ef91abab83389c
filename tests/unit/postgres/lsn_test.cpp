// LSN parsing and formatting.
#include "postgres/lsn.hpp"

#include <gtest/gtest.h>

namespace pgfleet::postgres {
namespace {

TEST(Lsn, RoundTrips) {
  EXPECT_EQ(parse_lsn("0/3000148"), 0x3000148u);
  EXPECT_EQ(parse_lsn("16/B374D848"), (0x16ull << 32) | 0xB374D848u);
  EXPECT_EQ(format_lsn(0x3000148u), "0/3000148");
  EXPECT_EQ(format_lsn((0x16ull << 32) | 0xB374D848u), "16/B374D848");
  EXPECT_EQ(parse_lsn("ffffffff/ffffffff"), ~0ull);
}

TEST(Lsn, RejectsMalformedText) {
  for (const char* bad : {"", "/", "0/", "/1", "0x1/2", "1/2/3", "g/1", "123456789/1", "1/123456789", " 0/1"}) {
    EXPECT_FALSE(parse_lsn(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace pgfleet::postgres
