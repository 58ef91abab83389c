// Message encoders and decoders: each decoder checks every length against the bytes left before using it.
#include "protocol/messages.hpp"

#include <algorithm>

namespace pgfleet::protocol {
namespace {

Error malformed(std::string_view what) { return make_error("malformed " + std::string(what) + " message"); }

std::string str(std::string_view s) { return std::string(s); }

// Counts (parameters, columns) are 16-bit on the wire, read unsigned as PostgreSQL and libpq do.
std::optional<size_t> read_count(Reader& r) {
  auto n = r.read_i16();
  if (!n) return std::nullopt;
  return static_cast<uint16_t>(*n);
}
void write_count(Writer& w, size_t n) { w.write_i16(static_cast<int16_t>(static_cast<uint16_t>(n))); }
constexpr size_t kMaxCount = 0xffff;

// Decoders for messages made of one C string, or of nothing.
template <class M>
Result<M> decode_one_string(ByteSpan body, std::string_view what, std::string M::*member) {
  Reader r(body);
  auto s = r.read_cstring();
  if (!s || !r.at_end()) return malformed(what);
  M m;
  m.*member = str(*s);
  return m;
}

template <class M>
Result<M> decode_empty(ByteSpan body, std::string_view what) {
  if (!body.empty()) return malformed(what);
  return M{};
}

template <class M>
void encode_empty(Writer& w) {
  w.begin_message(M::kType);
  w.finish_message();
}

Result<ErrorFields> decode_fields(ByteSpan body, std::string_view what) {
  Reader r(body);
  ErrorFields fields;
  while (true) {
    auto code = r.read_u8();
    if (!code) return malformed(what);
    if (*code == 0) break;
    auto value = r.read_cstring();
    if (!value) return malformed(what);
    fields.insert_or_assign(static_cast<char>(*code), str(*value));
  }
  if (!r.at_end()) return malformed(what);
  return fields;
}

void encode_fields(Writer& w, char type, const ErrorFields& fields) {
  w.begin_message(type);
  for (const auto& [code, value] : fields) {
    if (code == 0) continue;  // would end the list early
    w.write_u8(static_cast<uint8_t>(code));
    w.write_cstring(value);
  }
  w.write_u8(0);
  w.finish_message();
}

Result<Target> decode_target(std::optional<uint8_t> byte) {
  if (byte == 'S') return Target::kStatement;
  if (byte == 'P') return Target::kPortal;
  return Error{};
}

}  // namespace

// --- Builders ---

Authentication auth_ok() { return {}; }
Authentication auth_cleartext_password() { return {AuthCode::kCleartextPassword, {}, {}, {}}; }
Authentication auth_md5_password(std::array<uint8_t, 4> salt) { return {AuthCode::kMD5Password, salt, {}, {}}; }
Authentication auth_sasl(std::vector<std::string> mechanisms) {
  return {AuthCode::kSASL, {}, std::move(mechanisms), {}};
}
Authentication auth_sasl_continue(std::string data) { return {AuthCode::kSASLContinue, {}, {}, std::move(data)}; }
Authentication auth_sasl_final(std::string data) { return {AuthCode::kSASLFinal, {}, {}, std::move(data)}; }

// --- Encoders ---

void encode(Writer& w, const Authentication& m) {
  w.begin_message(Authentication::kType);
  w.write_i32(static_cast<int32_t>(m.code));
  if (m.code == AuthCode::kMD5Password) {
    w.write_bytes(m.salt);
  } else if (m.code == AuthCode::kSASL) {
    for (const auto& mech : m.mechanisms) {
      if (!mech.empty()) w.write_cstring(mech);
    }
    w.write_u8(0);
  } else {
    w.write_bytes(m.data);
  }
  w.finish_message();
}

void encode(Writer& w, const PasswordMessage& m) {
  w.begin_message(PasswordMessage::kType);
  w.write_cstring(m.password);
  w.finish_message();
}

void encode(Writer& w, const SASLInitialResponse& m) {
  w.begin_message(SASLInitialResponse::kType);
  w.write_cstring(m.mechanism);
  if (m.data) {
    w.write_i32(static_cast<int32_t>(m.data->size()));
    w.write_bytes(*m.data);
  } else {
    w.write_i32(-1);
  }
  w.finish_message();
}

void encode(Writer& w, const SASLResponse& m) {
  w.begin_message(SASLResponse::kType);
  w.write_bytes(m.data);
  w.finish_message();
}

void encode(Writer& w, const ParameterStatus& m) {
  w.begin_message(ParameterStatus::kType);
  w.write_cstring(m.name);
  w.write_cstring(m.value);
  w.finish_message();
}

void encode(Writer& w, const BackendKeyData& m) {
  w.begin_message(BackendKeyData::kType);
  w.write_i32(m.key.pid);
  w.write_i32(m.key.secret);
  w.finish_message();
}

void encode(Writer& w, const ReadyForQuery& m) {
  w.begin_message(ReadyForQuery::kType);
  w.write_u8(static_cast<uint8_t>(m.status));
  w.finish_message();
}

void encode(Writer& w, const NegotiateProtocolVersion& m) {
  w.begin_message(NegotiateProtocolVersion::kType);
  w.write_i32(m.newest_minor);
  w.write_i32(static_cast<int32_t>(m.unrecognized_options.size()));
  for (const auto& name : m.unrecognized_options) w.write_cstring(name);
  w.finish_message();
}

void encode(Writer& w, const ErrorResponse& m) { encode_fields(w, ErrorResponse::kType, m.fields); }
void encode(Writer& w, const NoticeResponse& m) { encode_fields(w, NoticeResponse::kType, m.fields); }

void encode(Writer& w, const Query& m) {
  w.begin_message(Query::kType);
  w.write_cstring(m.sql);
  w.finish_message();
}

void encode(Writer& w, const Parse& m) {
  w.begin_message(Parse::kType);
  w.write_cstring(m.statement);
  w.write_cstring(m.query);
  size_t n = std::min(m.param_types.size(), kMaxCount);
  write_count(w, n);
  for (size_t i = 0; i < n; ++i) w.write_i32(static_cast<int32_t>(m.param_types[i]));
  w.finish_message();
}

void encode(Writer& w, const Bind& m) {
  w.begin_message(Bind::kType);
  w.write_cstring(m.portal);
  w.write_cstring(m.statement);
  w.write_bytes(m.rest);
  w.finish_message();
}

void encode(Writer& w, const Close& m) {
  w.begin_message(Close::kType);
  w.write_u8(static_cast<uint8_t>(m.target));
  w.write_cstring(m.name);
  w.finish_message();
}

void encode(Writer& w, const Describe& m) {
  w.begin_message(Describe::kType);
  w.write_u8(static_cast<uint8_t>(m.target));
  w.write_cstring(m.name);
  w.finish_message();
}

void encode(Writer& w, const Execute& m) {
  w.begin_message(Execute::kType);
  w.write_cstring(m.portal);
  w.write_i32(m.max_rows);
  w.finish_message();
}

void encode(Writer& w, const Sync&) { encode_empty<Sync>(w); }
void encode(Writer& w, const Flush&) { encode_empty<Flush>(w); }
void encode(Writer& w, const Terminate&) { encode_empty<Terminate>(w); }
void encode(Writer& w, const EmptyQueryResponse&) { encode_empty<EmptyQueryResponse>(w); }

void encode(Writer& w, const CommandComplete& m) {
  w.begin_message(CommandComplete::kType);
  w.write_cstring(m.tag);
  w.finish_message();
}

void encode(Writer& w, const RowDescription& m) {
  w.begin_message(RowDescription::kType);
  size_t n = std::min(m.fields.size(), kMaxCount);
  write_count(w, n);
  for (size_t i = 0; i < n; ++i) {
    const FieldDescription& f = m.fields[i];
    w.write_cstring(f.name);
    w.write_i32(static_cast<int32_t>(f.table_oid));
    w.write_i16(f.column);
    w.write_i32(static_cast<int32_t>(f.type_oid));
    w.write_i16(f.type_size);
    w.write_i32(f.type_modifier);
    w.write_i16(f.format);
  }
  w.finish_message();
}

void encode(Writer& w, const DataRow& m) {
  w.begin_message(DataRow::kType);
  size_t n = std::min(m.values.size(), kMaxCount);
  write_count(w, n);
  for (size_t i = 0; i < n; ++i) {
    if (!m.values[i]) {
      w.write_i32(-1);
      continue;
    }
    w.write_i32(static_cast<int32_t>(m.values[i]->size()));
    w.write_bytes(*m.values[i]);
  }
  w.finish_message();
}

void encode(Writer& w, const NotificationResponse& m) {
  w.begin_message(NotificationResponse::kType);
  w.write_i32(m.pid);
  w.write_cstring(m.channel);
  w.write_cstring(m.payload);
  w.finish_message();
}

void encode(Writer& w, const StartupMessage& m) {
  w.begin_untyped_message();
  w.write_i32(kProtocolV3);
  for (const auto& [name, value] : m.parameters) {
    if (name.empty()) continue;  // an empty name is the terminator
    w.write_cstring(name);
    w.write_cstring(value);
  }
  w.write_u8(0);
  w.finish_message();
}

void encode(Writer& w, const CancelKey& m) {
  w.begin_untyped_message();
  w.write_i32(kCancelRequestCode);
  w.write_i32(m.pid);
  w.write_i32(m.secret);
  w.finish_message();
}

void encode_ssl_request(Writer& w) {
  w.begin_untyped_message();
  w.write_i32(kSslRequestCode);
  w.finish_message();
}

void encode_gssenc_request(Writer& w) {
  w.begin_untyped_message();
  w.write_i32(kGssEncRequestCode);
  w.finish_message();
}

std::string_view field_value(const ErrorFields& fields, char code) {
  auto it = fields.find(code);
  return it == fields.end() ? std::string_view{} : std::string_view{it->second};
}

ErrorResponse error_response(std::string_view severity, std::string_view sqlstate, std::string_view message) {
  return ErrorResponse{{{field::kSeverity, str(severity)},
                        {field::kSeverityRaw, str(severity)},
                        {field::kCode, str(sqlstate)},
                        {field::kMessage, str(message)}}};
}

Result<Bytes> result_set(const std::vector<std::string>& columns,
                         const std::vector<std::vector<std::optional<std::string>>>& rows, std::string_view tag) {
  if (columns.size() > kMaxCount) return make_error("result set has too many columns");
  for (const auto& row : rows) {
    if (row.size() != columns.size()) {
      return make_error("result set row has " + std::to_string(row.size()) + " values for " +
                        std::to_string(columns.size()) + " columns");
    }
  }
  Writer w;
  RowDescription desc;
  for (const auto& name : columns) {
    FieldDescription f;
    f.name = name;
    desc.fields.push_back(std::move(f));
  }
  encode(w, desc);
  for (const auto& row : rows) encode(w, DataRow{row});
  encode(w, CommandComplete{tag.empty() ? "SELECT " + std::to_string(rows.size()) : str(tag)});
  return w.take();
}

// --- Decoders ---

Result<Authentication> decode_authentication(ByteSpan body) {
  Reader r(body);
  auto code = r.read_i32();
  if (!code) return malformed("Authentication");
  Authentication m;
  m.code = static_cast<AuthCode>(*code);
  switch (m.code) {
    case AuthCode::kOk:
    case AuthCode::kKerberosV5:
    case AuthCode::kCleartextPassword:
    case AuthCode::kGSS:
    case AuthCode::kSSPI:
      break;
    case AuthCode::kMD5Password: {
      auto salt = r.read_bytes(4);
      if (!salt) return malformed("AuthenticationMD5Password");
      std::copy(salt->begin(), salt->end(), m.salt.begin());
      break;
    }
    case AuthCode::kSASL:
      while (true) {
        auto mech = r.read_cstring();
        if (!mech) return malformed("AuthenticationSASL");
        if (mech->empty()) break;
        m.mechanisms.push_back(str(*mech));
      }
      break;
    default:  // SASLContinue, SASLFinal, GSSContinue, codes we do not know
      m.data = str(as_chars(r.read_rest()));
      break;
  }
  if (!r.at_end()) return malformed("Authentication");
  return m;
}

Result<PasswordMessage> decode_password_message(ByteSpan body) {
  return decode_one_string<PasswordMessage>(body, "PasswordMessage", &PasswordMessage::password);
}

Result<SASLInitialResponse> decode_sasl_initial_response(ByteSpan body) {
  Reader r(body);
  auto mech = r.read_cstring();
  auto len = r.read_i32();
  if (!mech || !len || *len < -1) return malformed("SASLInitialResponse");
  SASLInitialResponse m{str(*mech), std::nullopt};
  if (*len >= 0) {
    auto data = r.read_bytes(static_cast<size_t>(*len));
    if (!data) return malformed("SASLInitialResponse");
    m.data = str(as_chars(*data));
  }
  if (!r.at_end()) return malformed("SASLInitialResponse");
  return m;
}

Result<SASLResponse> decode_sasl_response(ByteSpan body) { return SASLResponse{str(as_chars(body))}; }

Result<ParameterStatus> decode_parameter_status(ByteSpan body) {
  Reader r(body);
  auto name = r.read_cstring();
  auto value = r.read_cstring();
  if (!name || !value || !r.at_end()) return malformed("ParameterStatus");
  return ParameterStatus{str(*name), str(*value)};
}

Result<BackendKeyData> decode_backend_key_data(ByteSpan body) {
  Reader r(body);
  auto pid = r.read_i32();
  auto secret = r.read_i32();
  if (!pid || !secret || !r.at_end()) return malformed("BackendKeyData");
  return BackendKeyData{{*pid, *secret}};
}

Result<ReadyForQuery> decode_ready_for_query(ByteSpan body) {
  Reader r(body);
  auto status = r.read_u8();
  if (!status || !r.at_end() || (*status != 'I' && *status != 'T' && *status != 'E')) {
    return malformed("ReadyForQuery");
  }
  return ReadyForQuery{static_cast<TransactionStatus>(*status)};
}

Result<NegotiateProtocolVersion> decode_negotiate_protocol_version(ByteSpan body) {
  Reader r(body);
  auto minor = r.read_i32();
  auto count = r.read_i32();
  // Each name takes at least its NUL: bound the count by the bytes left before reserving.
  if (!minor || !count || *count < 0 || static_cast<size_t>(*count) > r.remaining()) {
    return malformed("NegotiateProtocolVersion");
  }
  NegotiateProtocolVersion m{*minor, {}};
  m.unrecognized_options.reserve(static_cast<size_t>(*count));
  for (int32_t i = 0; i < *count; ++i) {
    auto name = r.read_cstring();
    if (!name) return malformed("NegotiateProtocolVersion");
    m.unrecognized_options.push_back(str(*name));
  }
  if (!r.at_end()) return malformed("NegotiateProtocolVersion");
  return m;
}

Result<ErrorResponse> decode_error_response(ByteSpan body) {
  auto fields = decode_fields(body, "ErrorResponse");
  if (!fields) return Error{fields.error()};
  return ErrorResponse{std::move(fields).value()};
}

Result<NoticeResponse> decode_notice_response(ByteSpan body) {
  auto fields = decode_fields(body, "NoticeResponse");
  if (!fields) return Error{fields.error()};
  return NoticeResponse{std::move(fields).value()};
}

Result<Query> decode_query(ByteSpan body) { return decode_one_string<Query>(body, "Query", &Query::sql); }

std::optional<std::string_view> query_text(ByteSpan body) {
  if (body.empty() || body.back() != 0) return std::nullopt;
  std::string_view sql(reinterpret_cast<const char*>(body.data()), body.size() - 1);
  if (sql.find('\0') != std::string_view::npos) return std::nullopt;
  return sql;
}

Result<Parse> decode_parse(ByteSpan body) {
  Reader r(body);
  auto name = r.read_cstring();
  auto query = r.read_cstring();
  auto count = read_count(r);
  if (!name || !query || !count || *count * 4 != r.remaining()) return malformed("Parse");
  Parse m{str(*name), str(*query), {}};
  m.param_types.reserve(*count);
  for (size_t i = 0; i < *count; ++i) m.param_types.push_back(static_cast<uint32_t>(*r.read_i32()));
  return m;
}

Result<Bind> decode_bind(ByteSpan body) {
  Reader r(body);
  auto portal = r.read_cstring();
  auto statement = r.read_cstring();
  if (!portal || !statement) return malformed("Bind");
  ByteSpan rest = r.read_rest();
  return Bind{str(*portal), str(*statement), Bytes(rest.begin(), rest.end())};
}

Result<Close> decode_close(ByteSpan body) {
  Reader r(body);
  auto target = decode_target(r.read_u8());
  auto name = r.read_cstring();
  if (!target || !name || !r.at_end()) return malformed("Close");
  return Close{*target, str(*name)};
}

Result<Describe> decode_describe(ByteSpan body) {
  Reader r(body);
  auto target = decode_target(r.read_u8());
  auto name = r.read_cstring();
  if (!target || !name || !r.at_end()) return malformed("Describe");
  return Describe{*target, str(*name)};
}

Result<Execute> decode_execute(ByteSpan body) {
  Reader r(body);
  auto portal = r.read_cstring();
  auto max_rows = r.read_i32();
  if (!portal || !max_rows || !r.at_end()) return malformed("Execute");
  return Execute{str(*portal), *max_rows};
}

Result<Sync> decode_sync(ByteSpan body) { return decode_empty<Sync>(body, "Sync"); }
Result<Flush> decode_flush(ByteSpan body) { return decode_empty<Flush>(body, "Flush"); }
Result<Terminate> decode_terminate(ByteSpan body) { return decode_empty<Terminate>(body, "Terminate"); }
Result<EmptyQueryResponse> decode_empty_query_response(ByteSpan body) {
  return decode_empty<EmptyQueryResponse>(body, "EmptyQueryResponse");
}

Result<CommandComplete> decode_command_complete(ByteSpan body) {
  return decode_one_string<CommandComplete>(body, "CommandComplete", &CommandComplete::tag);
}

Result<RowDescription> decode_row_description(ByteSpan body) {
  constexpr size_t kMinFieldSize = 1 + 4 + 2 + 4 + 2 + 4 + 2;  // empty name + fixed part
  Reader r(body);
  auto count = read_count(r);
  if (!count || *count * kMinFieldSize > r.remaining()) return malformed("RowDescription");
  RowDescription m;
  m.fields.reserve(*count);
  for (size_t i = 0; i < *count; ++i) {
    auto name = r.read_cstring();
    auto table = r.read_i32();
    auto column = r.read_i16();
    auto type = r.read_i32();
    auto size = r.read_i16();
    auto modifier = r.read_i32();
    auto format = r.read_i16();
    if (!name || !table || !column || !type || !size || !modifier || !format) return malformed("RowDescription");
    m.fields.push_back({str(*name), static_cast<uint32_t>(*table), *column, static_cast<uint32_t>(*type), *size,
                        *modifier, *format});
  }
  if (!r.at_end()) return malformed("RowDescription");
  return m;
}

Result<DataRow> decode_data_row(ByteSpan body) {
  Reader r(body);
  auto count = read_count(r);
  if (!count || *count * 4 > r.remaining()) return malformed("DataRow");
  DataRow m;
  m.values.reserve(*count);
  for (size_t i = 0; i < *count; ++i) {
    auto len = r.read_i32();
    if (!len || *len < -1) return malformed("DataRow");
    if (*len == -1) {
      m.values.emplace_back(std::nullopt);
      continue;
    }
    auto value = r.read_bytes(static_cast<size_t>(*len));
    if (!value) return malformed("DataRow");
    m.values.emplace_back(str(as_chars(*value)));
  }
  if (!r.at_end()) return malformed("DataRow");
  return m;
}

Result<NotificationResponse> decode_notification_response(ByteSpan body) {
  Reader r(body);
  auto pid = r.read_i32();
  auto channel = r.read_cstring();
  auto payload = r.read_cstring();
  if (!pid || !channel || !payload || !r.at_end()) return malformed("NotificationResponse");
  return NotificationResponse{*pid, str(*channel), str(*payload)};
}

}  // namespace pgfleet::protocol
