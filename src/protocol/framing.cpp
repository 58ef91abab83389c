// Frame decoding: length checks before anything is read or allocated, and the message-type tables.
#include "protocol/framing.hpp"

#include <algorithm>

namespace pgfleet::protocol {
namespace {

constexpr MessageType kFrontendTypes[] = {
    {'Q', "Query"},        {'P', "Parse"},    {'B', "Bind"},      {'E', "Execute"},      {'D', "Describe"},
    {'C', "Close"},        {'S', "Sync"},     {'H', "Flush"},     {'F', "FunctionCall"}, {'X', "Terminate"},
    {'d', "CopyData"},     {'c', "CopyDone"}, {'f', "CopyFail"},  {'p', "PasswordMessage"},
};

// 'd' and 'c' travel in both directions (COPY TO STDOUT, replication streams).
constexpr MessageType kBackendTypes[] = {
    {'R', "Authentication"},       {'K', "BackendKeyData"},          {'S', "ParameterStatus"},
    {'Z', "ReadyForQuery"},        {'T', "RowDescription"},          {'D', "DataRow"},
    {'C', "CommandComplete"},      {'E', "ErrorResponse"},           {'N', "NoticeResponse"},
    {'A', "NotificationResponse"}, {'1', "ParseComplete"},           {'2', "BindComplete"},
    {'3', "CloseComplete"},        {'n', "NoData"},                  {'s', "PortalSuspended"},
    {'t', "ParameterDescription"}, {'I', "EmptyQueryResponse"},      {'G', "CopyInResponse"},
    {'H', "CopyOutResponse"},      {'W', "CopyBothResponse"},        {'V', "FunctionCallResponse"},
    {'v', "NegotiateProtocolVersion"}, {'d', "CopyData"},            {'c', "CopyDone"},
};

const MessageType* find_type(std::span<const MessageType> table, char type) {
  auto it = std::find_if(table.begin(), table.end(), [type](const MessageType& m) { return m.type == type; });
  return it == table.end() ? nullptr : &*it;
}

Error startup_error(const std::string& what) { return make_error("invalid startup packet: " + what); }

Result<StartupMessage> parse_startup_parameters(int32_t protocol, ByteSpan params) {
  StartupMessage msg;
  msg.protocol = protocol;
  Reader r(params);
  while (true) {
    auto name = r.read_cstring();
    if (!name) return startup_error("parameter name is not NUL-terminated");
    if (name->empty()) break;
    auto value = r.read_cstring();
    if (!value) return startup_error("parameter \"" + std::string(*name) + "\" has no NUL-terminated value");
    msg.parameters.insert_or_assign(std::string(*name), std::string(*value));
  }
  if (!r.at_end()) return startup_error("expected the terminator as the last byte");
  if (msg.user().empty()) return startup_error("no PostgreSQL user name specified");
  return msg;
}

}  // namespace

std::string_view to_string(StartupKind kind) {
  switch (kind) {
    case StartupKind::kStartup: return "StartupMessage";
    case StartupKind::kSslRequest: return "SSLRequest";
    case StartupKind::kGssEncRequest: return "GSSENCRequest";
    case StartupKind::kCancelRequest: return "CancelRequest";
  }
  return "Unknown";
}

std::string_view StartupMessage::get(const std::string& name) const {
  auto it = parameters.find(name);
  return it == parameters.end() ? std::string_view{} : std::string_view{it->second};
}

std::string_view StartupMessage::database() const {
  std::string_view db = get("database");
  return db.empty() ? user() : db;
}

std::vector<std::string> StartupMessage::protocol_options() const {
  std::vector<std::string> names;
  for (const auto& [name, value] : parameters) {
    if (name.starts_with("_pq_.")) names.push_back(name);
  }
  return names;
}

Result<std::variant<NeedMoreData, StartupPacket>> decode_startup(ByteSpan data, size_t max_len) {
  if (data.size() < 4) return {NeedMoreData{4}};
  auto length = static_cast<int32_t>(load_u32(data));
  if (length < 8 || static_cast<size_t>(length) > max_len) {
    return startup_error("length " + std::to_string(length) + " outside [8, " + std::to_string(max_len) + "]");
  }
  auto len = static_cast<size_t>(length);
  if (data.size() < len) return {NeedMoreData{len}};

  StartupPacket packet;
  packet.consumed = len;
  auto code = static_cast<int32_t>(load_u32(data.subspan(4)));
  ByteSpan rest = data.subspan(8, len - 8);
  switch (code) {
    case kSslRequestCode:
    case kGssEncRequestCode:
      if (len != 8) return startup_error("encryption request of length " + std::to_string(len));
      packet.kind = code == kSslRequestCode ? StartupKind::kSslRequest : StartupKind::kGssEncRequest;
      return {std::move(packet)};
    case kCancelRequestCode:
      if (len != 16) return startup_error("cancel request of length " + std::to_string(len));
      packet.kind = StartupKind::kCancelRequest;
      packet.cancel = {static_cast<int32_t>(load_u32(rest)), static_cast<int32_t>(load_u32(rest.subspan(4)))};
      return {std::move(packet)};
    default:
      break;
  }
  auto major = static_cast<uint32_t>(code) >> 16;
  if (major != kProtocolMajor) {
    return make_error("unsupported frontend protocol " + std::to_string(major) + "." +
                      std::to_string(code & 0xffff) + ": server supports 3.0 to 3.0");
  }
  auto msg = parse_startup_parameters(code, rest);
  if (!msg) return Error{msg.error()};
  packet.kind = StartupKind::kStartup;
  packet.startup = std::move(msg).value();
  return {std::move(packet)};
}

std::optional<FrameHeader> peek_header(ByteSpan data) {
  if (data.size() < kHeaderSize) return std::nullopt;
  return FrameHeader{static_cast<char>(data[0]), load_u32(data.subspan(1))};
}

Status check_header(const FrameHeader& header, size_t max_len) {
  if (header.length < 4 || header.length > max_len) {
    return make_error("invalid message length " + std::to_string(static_cast<int32_t>(header.length)) +
                      " for message type '" + std::string(1, header.type) + "' (limit " + std::to_string(max_len) +
                      ")");
  }
  return {};
}

Result<std::variant<NeedMoreData, Frame>> next_frame(ByteSpan data, size_t max_len) {
  auto header = peek_header(data);
  if (!header) return {NeedMoreData{kHeaderSize}};
  if (auto status = check_header(*header, max_len); !status) return Error{status.error()};
  if (data.size() < header->total_length()) return {NeedMoreData{header->total_length()}};
  return {Frame{header->type, data.subspan(kHeaderSize, header->body_length()), header->total_length()}};
}

std::span<const MessageType> frontend_message_types() { return kFrontendTypes; }
std::span<const MessageType> backend_message_types() { return kBackendTypes; }
bool is_known_frontend(char type) { return find_type(kFrontendTypes, type) != nullptr; }
bool is_known_backend(char type) { return find_type(kBackendTypes, type) != nullptr; }

std::string_view frontend_message_name(char type) {
  const MessageType* m = find_type(kFrontendTypes, type);
  return m ? m->name : "Unknown";
}

std::string_view backend_message_name(char type) {
  const MessageType* m = find_type(kBackendTypes, type);
  return m ? m->name : "Unknown";
}

}  // namespace pgfleet::protocol
