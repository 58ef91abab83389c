// Encoders and decoders for the messages a pooler inspects or generates; every decoder has a matching encoder.
//
// Encoders append a whole frame (header included) to a Writer; encode(msg) returns it as bytes. Decoders take the
// body of a frame from next_frame() (after the 5-byte header) and reject short, malformed or over-long bodies;
// they never read past the span and allocate only after the lengths they rely on are checked. Strings are copied
// out, so a decoded message does not refer to the input. The 'p' type carries PasswordMessage, SASLInitialResponse
// and SASLResponse: the authentication state says which decoder applies.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/buffer.hpp"
#include "protocol/framing.hpp"
#include "util/result.hpp"

namespace pgfleet::protocol {

// --- Authentication ('R', server -> client) ---

enum class AuthCode : int32_t {
  kOk = 0,
  kKerberosV5 = 2,
  kCleartextPassword = 3,
  kMD5Password = 5,
  kGSS = 7,
  kGSSContinue = 8,
  kSSPI = 9,
  kSASL = 10,
  kSASLContinue = 11,
  kSASLFinal = 12,
};

struct Authentication {
  static constexpr char kType = 'R';
  AuthCode code = AuthCode::kOk;
  std::array<uint8_t, 4> salt{};        // kMD5Password
  std::vector<std::string> mechanisms;  // kSASL, in the server's order of preference
  std::string data;                     // kSASLContinue, kSASLFinal, kGSSContinue, and the body of unknown codes
  bool operator==(const Authentication&) const = default;
};

Authentication auth_ok();
Authentication auth_cleartext_password();
Authentication auth_md5_password(std::array<uint8_t, 4> salt);
Authentication auth_sasl(std::vector<std::string> mechanisms);
Authentication auth_sasl_continue(std::string data);  // server-first-message
Authentication auth_sasl_final(std::string data);     // server-final-message

// --- Client authentication responses ('p') ---

struct PasswordMessage {
  static constexpr char kType = 'p';
  std::string password;  // cleartext, or "md5" + hex for MD5
  bool operator==(const PasswordMessage&) const = default;
};

struct SASLInitialResponse {
  static constexpr char kType = 'p';
  std::string mechanism;
  std::optional<std::string> data;  // the client-first-message; nullopt is sent as length -1
  bool operator==(const SASLInitialResponse&) const = default;
};

struct SASLResponse {
  static constexpr char kType = 'p';
  std::string data;  // the client-final-message
  bool operator==(const SASLResponse&) const = default;
};

// --- Session state (server -> client) ---

struct ParameterStatus {
  static constexpr char kType = 'S';
  std::string name;
  std::string value;
  bool operator==(const ParameterStatus&) const = default;
};

struct BackendKeyData {
  static constexpr char kType = 'K';
  CancelKey key;
  bool operator==(const BackendKeyData&) const = default;
};

enum class TransactionStatus : char { kIdle = 'I', kInTransaction = 'T', kFailed = 'E' };

struct ReadyForQuery {
  static constexpr char kType = 'Z';
  TransactionStatus status = TransactionStatus::kIdle;
  bool operator==(const ReadyForQuery&) const = default;
};

// Sent in reply to a StartupMessage asking for protocol 3.x (x > 0) or for "_pq_." options we do not support.
struct NegotiateProtocolVersion {
  static constexpr char kType = 'v';
  int32_t newest_minor = 0;
  std::vector<std::string> unrecognized_options;
  bool operator==(const NegotiateProtocolVersion&) const = default;
};

// --- Errors and notices ('E' / 'N'): a map of field code to value ---

namespace field {
inline constexpr char kSeverity = 'S';          // localized
inline constexpr char kSeverityRaw = 'V';       // never localized
inline constexpr char kCode = 'C';              // SQLSTATE
inline constexpr char kMessage = 'M';
inline constexpr char kDetail = 'D';
inline constexpr char kHint = 'H';
inline constexpr char kPosition = 'P';
inline constexpr char kWhere = 'W';
inline constexpr char kSchema = 's';
inline constexpr char kTable = 't';
inline constexpr char kColumn = 'c';
inline constexpr char kConstraint = 'n';
}  // namespace field

using ErrorFields = std::map<char, std::string>;

struct ErrorResponse {
  static constexpr char kType = 'E';
  ErrorFields fields;
  bool operator==(const ErrorResponse&) const = default;
};

struct NoticeResponse {
  static constexpr char kType = 'N';
  ErrorFields fields;
  bool operator==(const NoticeResponse&) const = default;
};

// The value of a field, or "" when absent.
std::string_view field_value(const ErrorFields& fields, char code);
// S and V set to `severity` ("ERROR", "FATAL", ...), C to `sqlstate`, M to `message`.
ErrorResponse error_response(std::string_view severity, std::string_view sqlstate, std::string_view message);

// --- Simple and extended query (client -> server) ---

struct Query {
  static constexpr char kType = 'Q';
  std::string sql;
  bool operator==(const Query&) const = default;
};

struct Parse {
  static constexpr char kType = 'P';
  std::string statement;  // "" = the unnamed statement
  std::string query;
  std::vector<uint32_t> param_types;  // OIDs; 0 = unspecified
  bool operator==(const Parse&) const = default;
};

// Only the names are decoded (what a router needs); formats, parameter values and result formats stay as bytes.
struct Bind {
  static constexpr char kType = 'B';
  std::string portal;
  std::string statement;
  Bytes rest;
  bool operator==(const Bind&) const = default;
};

enum class Target : char { kStatement = 'S', kPortal = 'P' };

struct Close {
  static constexpr char kType = 'C';
  Target target = Target::kStatement;
  std::string name;
  bool operator==(const Close&) const = default;
};

struct Describe {
  static constexpr char kType = 'D';
  Target target = Target::kStatement;
  std::string name;
  bool operator==(const Describe&) const = default;
};

struct Execute {
  static constexpr char kType = 'E';
  std::string portal;
  int32_t max_rows = 0;  // 0 = no limit
  bool operator==(const Execute&) const = default;
};

struct Sync {
  static constexpr char kType = 'S';
  bool operator==(const Sync&) const = default;
};
struct Flush {
  static constexpr char kType = 'H';
  bool operator==(const Flush&) const = default;
};
struct Terminate {
  static constexpr char kType = 'X';
  bool operator==(const Terminate&) const = default;
};

// --- Results (server -> client) ---

struct CommandComplete {
  static constexpr char kType = 'C';
  std::string tag;  // "SELECT 3", "INSERT 0 1", ...
  bool operator==(const CommandComplete&) const = default;
};

struct EmptyQueryResponse {
  static constexpr char kType = 'I';
  bool operator==(const EmptyQueryResponse&) const = default;
};

inline constexpr uint32_t kTextOid = 25;

struct FieldDescription {
  std::string name;
  uint32_t table_oid = 0;
  int16_t column = 0;
  uint32_t type_oid = kTextOid;
  int16_t type_size = -1;
  int32_t type_modifier = -1;
  int16_t format = 0;  // 0 text, 1 binary
  bool operator==(const FieldDescription&) const = default;
};

struct RowDescription {
  static constexpr char kType = 'T';
  std::vector<FieldDescription> fields;
  bool operator==(const RowDescription&) const = default;
};

struct DataRow {
  static constexpr char kType = 'D';
  std::vector<std::optional<std::string>> values;  // nullopt = NULL
  bool operator==(const DataRow&) const = default;
};

struct NotificationResponse {
  static constexpr char kType = 'A';
  int32_t pid = 0;
  std::string channel;
  std::string payload;
  bool operator==(const NotificationResponse&) const = default;
};

// --- Encoders: each appends one complete frame ---

void encode(Writer& w, const Authentication& m);
void encode(Writer& w, const PasswordMessage& m);
void encode(Writer& w, const SASLInitialResponse& m);
void encode(Writer& w, const SASLResponse& m);
void encode(Writer& w, const ParameterStatus& m);
void encode(Writer& w, const BackendKeyData& m);
void encode(Writer& w, const ReadyForQuery& m);
void encode(Writer& w, const NegotiateProtocolVersion& m);
void encode(Writer& w, const ErrorResponse& m);
void encode(Writer& w, const NoticeResponse& m);
void encode(Writer& w, const Query& m);
void encode(Writer& w, const Parse& m);
void encode(Writer& w, const Bind& m);
void encode(Writer& w, const Close& m);
void encode(Writer& w, const Describe& m);
void encode(Writer& w, const Execute& m);
void encode(Writer& w, const Sync& m);
void encode(Writer& w, const Flush& m);
void encode(Writer& w, const Terminate& m);
void encode(Writer& w, const CommandComplete& m);
void encode(Writer& w, const EmptyQueryResponse& m);
void encode(Writer& w, const RowDescription& m);
void encode(Writer& w, const DataRow& m);
void encode(Writer& w, const NotificationResponse& m);
// Startup-phase packets (no type byte), decoded by decode_startup(). A StartupMessage goes out in protocol 3.0 with
// its parameters in name order (m.protocol is ignored).
void encode(Writer& w, const StartupMessage& m);
void encode(Writer& w, const CancelKey& m);  // CancelRequest
void encode_ssl_request(Writer& w);
void encode_gssenc_request(Writer& w);

template <class M>
Bytes encode(const M& m) {
  Writer w;
  encode(w, m);
  return w.take();
}

// A result set for the admin console: RowDescription (all columns text), one DataRow per row, CommandComplete
// with `tag` ("SELECT <rows>" when empty). Error if a row's width differs from the number of columns.
Result<Bytes> result_set(const std::vector<std::string>& columns,
                         const std::vector<std::vector<std::optional<std::string>>>& rows, std::string_view tag = {});

// --- Decoders: `body` is Frame::body of a frame with the matching type ---

Result<Authentication> decode_authentication(ByteSpan body);
Result<PasswordMessage> decode_password_message(ByteSpan body);
Result<SASLInitialResponse> decode_sasl_initial_response(ByteSpan body);
Result<SASLResponse> decode_sasl_response(ByteSpan body);
Result<ParameterStatus> decode_parameter_status(ByteSpan body);
Result<BackendKeyData> decode_backend_key_data(ByteSpan body);
Result<ReadyForQuery> decode_ready_for_query(ByteSpan body);
Result<NegotiateProtocolVersion> decode_negotiate_protocol_version(ByteSpan body);
Result<ErrorResponse> decode_error_response(ByteSpan body);
Result<NoticeResponse> decode_notice_response(ByteSpan body);
Result<Query> decode_query(ByteSpan body);
// The SQL of a Query body without copying it (for the proxy's per-query checks); nullopt when
// the body is not one NUL-terminated string.
std::optional<std::string_view> query_text(ByteSpan body);
Result<Parse> decode_parse(ByteSpan body);
Result<Bind> decode_bind(ByteSpan body);
Result<Close> decode_close(ByteSpan body);
Result<Describe> decode_describe(ByteSpan body);
Result<Execute> decode_execute(ByteSpan body);
Result<Sync> decode_sync(ByteSpan body);
Result<Flush> decode_flush(ByteSpan body);
Result<Terminate> decode_terminate(ByteSpan body);
Result<CommandComplete> decode_command_complete(ByteSpan body);
Result<EmptyQueryResponse> decode_empty_query_response(ByteSpan body);
Result<RowDescription> decode_row_description(ByteSpan body);
Result<DataRow> decode_data_row(ByteSpan body);
Result<NotificationResponse> decode_notification_response(ByteSpan body);

}  // namespace pgfleet::protocol
