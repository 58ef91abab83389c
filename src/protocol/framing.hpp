// Frame decoding for protocol v3: startup-phase packets, typed messages by length, and the message-type tables.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "protocol/buffer.hpp"
#include "util/result.hpp"

namespace pgfleet::protocol {

// Request codes sent in place of a protocol version in the startup phase.
inline constexpr int32_t kProtocolMajor = 3;
inline constexpr int32_t kProtocolV3 = kProtocolMajor << 16;  // 3.0 = 196608
inline constexpr int32_t kCancelRequestCode = 80877102;       // 1234.5678
inline constexpr int32_t kSslRequestCode = 80877103;          // 1234.5679
inline constexpr int32_t kGssEncRequestCode = 80877104;       // 1234.5680

// Length limits. Every limit bounds the length word, which counts itself but not the type byte.
inline constexpr size_t kMaxStartupLength = 10000;  // PostgreSQL's MAX_STARTUP_PACKET_LENGTH
// Messages a client may send before it is authenticated (PasswordMessage, SASL): PostgreSQL's PQ_SMALL_MESSAGE_LIMIT.
inline constexpr size_t kMaxSmallMessageLength = 10000;
// A client message after authentication: PostgreSQL's PQ_LARGE_MESSAGE_LIMIT (1 GB - 1).
inline constexpr size_t kMaxFrontendMessageLength = 0x3fffffff;
// A server message: a DataRow of several 1 GB values may exceed 1 GB; the length word is an int32.
inline constexpr size_t kMaxBackendMessageLength = 0x7fffffff;

// The input holds only part of the next packet; `bytes_needed` is the total the packet needs from its start
// (the header size while the length is unknown), so the caller can size its read.
struct NeedMoreData {
  size_t bytes_needed;
};

// --- Startup phase: untyped packets (length, then a protocol version or request code). ---

enum class StartupKind { kStartup, kSslRequest, kGssEncRequest, kCancelRequest };
std::string_view to_string(StartupKind kind);

struct CancelKey {
  int32_t pid = 0;
  int32_t secret = 0;
  bool operator==(const CancelKey&) const = default;
};

// A StartupMessage. `parameters` holds every pair the client sent (user, database, options, application_name,
// replication, GUCs, "_pq_." protocol options); a repeated name keeps its last value, as in PostgreSQL.
struct StartupMessage {
  int32_t protocol = kProtocolV3;
  std::map<std::string, std::string> parameters;

  [[nodiscard]] int minor_version() const { return protocol & 0xffff; }
  // Never empty in a decoded message (decode_startup rejects a missing or empty user).
  [[nodiscard]] std::string_view user() const { return get("user"); }
  // The "database" parameter, or the user name when absent or empty (PostgreSQL's default).
  [[nodiscard]] std::string_view database() const;
  [[nodiscard]] std::string_view options() const { return get("options"); }
  [[nodiscard]] std::string_view application_name() const { return get("application_name"); }
  // Names starting with "_pq_.": protocol options. We support none, so a server must list them in its
  // NegotiateProtocolVersion reply, as it must when minor_version() > 0.
  [[nodiscard]] std::vector<std::string> protocol_options() const;
  [[nodiscard]] std::string_view get(const std::string& name) const;
  bool operator==(const StartupMessage&) const = default;
};

struct StartupPacket {
  StartupKind kind = StartupKind::kStartup;
  StartupMessage startup;  // kStartup only
  CancelKey cancel;        // kCancelRequest only
  size_t consumed = 0;     // bytes of the input this packet occupies
};

// Decodes the first packet of `data`. Errors (the connection should be closed with SQLSTATE 08P01, or 0A000 for
// an unsupported version): length < 8 or > max_len, a request with the wrong length, a protocol major version other
// than 3, parameters that are not NUL-terminated name/value pairs ending in an empty name at the last byte, no user.
// Protocol 3.x with x > 0 is accepted: the server side answers with NegotiateProtocolVersion (see messages.hpp).
Result<std::variant<NeedMoreData, StartupPacket>> decode_startup(ByteSpan data, size_t max_len = kMaxStartupLength);

// --- Regular messages: type byte, int32 length (counting itself), body. ---

inline constexpr size_t kHeaderSize = 5;

struct FrameHeader {
  char type = 0;
  uint32_t length = 0;  // the length word as sent, unvalidated; see check_header()
  [[nodiscard]] size_t body_length() const { return length - 4; }  // valid once check_header() passed
  [[nodiscard]] size_t total_length() const { return size_t{length} + 1; }
};

struct Frame {
  char type = 0;
  ByteSpan body;  // without the 5-byte header; a view into the caller's buffer
  size_t total_length = 0;  // header + body: the bytes to consume or forward
};

// The header of the first message, or nullopt when fewer than 5 bytes are buffered. A proxy must carry messages
// far larger than it wants to buffer (DataRow and CopyData up to 1 GB and more), so it can read just the header,
// check it, forward those 5 bytes and then the body_length() bytes that follow in chunks as they arrive, without
// ever holding the whole message.
std::optional<FrameHeader> peek_header(ByteSpan data);
// Error when the length word is < 4 (a protocol violation) or > max_len (too large to accept).
[[nodiscard]] Status check_header(const FrameHeader& header, size_t max_len);

// The first complete message in `data`. Bodies are not parsed: that is messages.hpp's job, for the few messages
// the proxy must inspect; everything else is forwarded by length. `max_len` bounds what the caller is willing to
// buffer; for larger messages use peek_header() and stream.
Result<std::variant<NeedMoreData, Frame>> next_frame(ByteSpan data, size_t max_len);

// --- Message types, per direction, for validation, logs and the admin console. ---

struct MessageType {
  char type;
  std::string_view name;
};

std::span<const MessageType> frontend_message_types();
std::span<const MessageType> backend_message_types();
bool is_known_frontend(char type);
bool is_known_backend(char type);
// The name of a message type, or "Unknown" ('p' is PasswordMessage, which also carries SASL and GSS responses).
std::string_view frontend_message_name(char type);
std::string_view backend_message_name(char type);

}  // namespace pgfleet::protocol
