// Writer and Reader: big-endian field encoding with explicit bounds checks.
#include "protocol/buffer.hpp"

#include <cassert>
#include <cstring>

namespace pgfleet::protocol {

void Writer::write_i16(int16_t v) {
  auto u = static_cast<uint16_t>(v);
  buf_.push_back(static_cast<uint8_t>(u >> 8));
  buf_.push_back(static_cast<uint8_t>(u));
}

void Writer::write_i32(int32_t v) {
  auto u = static_cast<uint32_t>(v);
  for (int shift = 24; shift >= 0; shift -= 8) buf_.push_back(static_cast<uint8_t>(u >> shift));
}

void Writer::write_cstring(std::string_view s) {
  write_bytes(s.substr(0, s.find('\0')));
  buf_.push_back(0);
}

void Writer::begin_message(char type) {
  write_u8(static_cast<uint8_t>(type));
  begin_untyped_message();
}

void Writer::begin_untyped_message() {
  assert(!length_at_ && "begin_message: a message is already open");
  length_at_ = buf_.size();
  write_i32(0);
}

void Writer::finish_message() {
  assert(length_at_ && "finish_message without begin_message");
  auto length = static_cast<uint32_t>(buf_.size() - *length_at_);
  for (int i = 0; i < 4; ++i) buf_[*length_at_ + i] = static_cast<uint8_t>(length >> (24 - 8 * i));
  length_at_.reset();
}

std::optional<uint8_t> Reader::read_u8() {
  if (remaining() < 1) return std::nullopt;
  return data_[pos_++];
}

std::optional<int16_t> Reader::read_i16() {
  if (remaining() < 2) return std::nullopt;
  auto v = static_cast<int16_t>(load_u16(data_.subspan(pos_, 2)));
  pos_ += 2;
  return v;
}

std::optional<int32_t> Reader::read_i32() {
  if (remaining() < 4) return std::nullopt;
  auto v = static_cast<int32_t>(load_u32(data_.subspan(pos_, 4)));
  pos_ += 4;
  return v;
}

std::optional<std::string_view> Reader::read_cstring() {
  if (at_end()) return std::nullopt;  // memchr must not see a null pointer
  const void* nul = std::memchr(data_.data() + pos_, 0, remaining());
  if (nul == nullptr) return std::nullopt;
  size_t len = static_cast<const uint8_t*>(nul) - (data_.data() + pos_);
  std::string_view s = as_chars(data_.subspan(pos_, len));
  pos_ += len + 1;
  return s;
}

std::optional<ByteSpan> Reader::read_bytes(size_t n) {
  if (remaining() < n) return std::nullopt;
  ByteSpan b = data_.subspan(pos_, n);
  pos_ += n;
  return b;
}

ByteSpan Reader::read_rest() {
  ByteSpan b = data_.subspan(pos_);
  pos_ = data_.size();
  return b;
}

}  // namespace pgfleet::protocol
