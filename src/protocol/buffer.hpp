// Byte buffers for the wire protocol: a big-endian message writer and a bounds-checked reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pgfleet::protocol {

using Bytes = std::vector<uint8_t>;
using ByteSpan = std::span<const uint8_t>;

inline ByteSpan as_bytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
inline std::string_view as_chars(ByteSpan b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// Appends big-endian fields to a growable buffer. Messages are framed with begin_message() ... finish_message(),
// which patches the length word; one message is open at a time (no nesting). Single-threaded, owns its bytes.
class Writer {
 public:
  void write_u8(uint8_t v) { buf_.push_back(v); }
  void write_i16(int16_t v);
  void write_i32(int32_t v);
  // Writes `s` and a NUL. A C string cannot hold a NUL, so anything from the first NUL in `s` on is dropped:
  // the frame stays well-formed and the peer sees what PostgreSQL would have seen.
  void write_cstring(std::string_view s);
  void write_bytes(ByteSpan b) { buf_.insert(buf_.end(), b.begin(), b.end()); }
  void write_bytes(std::string_view s) { write_bytes(as_bytes(s)); }

  // Starts a message: the type byte and a placeholder length. finish_message() sets the length to the number of
  // bytes written since the type byte (the length counts itself, not the type byte).
  void begin_message(char type);
  // Same for the startup-phase messages, which have no type byte.
  void begin_untyped_message();
  void finish_message();

  [[nodiscard]] const Bytes& bytes() const { return buf_; }
  [[nodiscard]] size_t size() const { return buf_.size(); }
  [[nodiscard]] Bytes take() { return std::move(buf_); }

 private:
  Bytes buf_;
  std::optional<size_t> length_at_;  // offset of the open message's length word
};

// Reads big-endian fields from a span it does not own. Every read checks the remaining length first and returns
// nullopt (consuming nothing) instead of reading past the end.
class Reader {
 public:
  explicit Reader(ByteSpan data) : data_(data) {}

  std::optional<uint8_t> read_u8();
  std::optional<int16_t> read_i16();
  std::optional<int32_t> read_i32();
  // The bytes up to the next NUL (excluded), as a view into the input; nullopt if there is no NUL.
  std::optional<std::string_view> read_cstring();
  std::optional<ByteSpan> read_bytes(size_t n);
  // Everything left (possibly empty).
  ByteSpan read_rest();

  [[nodiscard]] size_t remaining() const { return data_.size() - pos_; }
  [[nodiscard]] bool at_end() const { return pos_ == data_.size(); }

 private:
  ByteSpan data_;
  size_t pos_ = 0;
};

// Big-endian loads from a span the caller has already checked holds 2 or 4 bytes.
inline uint32_t load_u32(ByteSpan b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}
inline uint16_t load_u16(ByteSpan b) { return static_cast<uint16_t>((b[0] << 8) | b[1]); }

}  // namespace pgfleet::protocol
