// Writer and Reader: big-endian encoding, message length patching, and reads that stop at the end.
#include "protocol/buffer.hpp"

#include <gtest/gtest.h>

namespace pgfleet::protocol {
namespace {

TEST(Buffer, WritesBigEndianAndPatchesLength) {
  Writer w;
  w.begin_message('Q');
  w.write_i16(0x0102);
  w.write_i32(-2);
  w.write_cstring("ab");
  w.finish_message();
  EXPECT_EQ(w.bytes(), (Bytes{'Q', 0, 0, 0, 13, 1, 2, 0xff, 0xff, 0xff, 0xfe, 'a', 'b', 0}));

  Writer u;
  u.begin_untyped_message();
  u.write_u8(7);
  u.finish_message();
  EXPECT_EQ(u.take(), (Bytes{0, 0, 0, 5, 7}));
}

TEST(Buffer, CstringStopsAtEmbeddedNul) {
  Writer w;
  w.write_cstring(std::string_view("ab\0cd", 5));
  EXPECT_EQ(w.bytes(), (Bytes{'a', 'b', 0}));
}

TEST(Buffer, ReadsBackWhatWasWritten) {
  Writer w;
  w.write_u8(9);
  w.write_i16(-300);
  w.write_i32(123456789);
  w.write_cstring("name");
  w.write_bytes("xyz");
  Reader r(w.bytes());
  EXPECT_EQ(r.read_u8(), 9);
  EXPECT_EQ(r.read_i16(), -300);
  EXPECT_EQ(r.read_i32(), 123456789);
  EXPECT_EQ(r.read_cstring(), "name");
  auto rest = r.read_bytes(3);
  ASSERT_TRUE(rest);
  EXPECT_EQ(as_chars(*rest), "xyz");
  EXPECT_TRUE(r.at_end());
}

TEST(Buffer, ReadsPastTheEndFailWithoutConsuming) {
  const uint8_t data[] = {1, 2, 3};
  Reader r(data);
  EXPECT_FALSE(r.read_i32());
  EXPECT_FALSE(r.read_cstring());  // no NUL
  EXPECT_FALSE(r.read_bytes(4));
  EXPECT_EQ(r.remaining(), 3u);
  EXPECT_EQ(r.read_i16(), 0x0102);
  EXPECT_FALSE(r.read_i16());
  EXPECT_EQ(r.read_u8(), 3);
  EXPECT_FALSE(r.read_u8());
  EXPECT_FALSE(r.read_cstring());
  EXPECT_TRUE(r.read_rest().empty());

  Reader empty{ByteSpan{}};
  EXPECT_FALSE(empty.read_cstring());
  EXPECT_TRUE(empty.read_bytes(0));
}

}  // namespace
}  // namespace pgfleet::protocol
