// Message encoders and decoders: round trips through the framer, exact wire bytes, and truncated bodies.
#include "protocol/messages.hpp"

#include <gtest/gtest.h>

namespace pgfleet::protocol {
namespace {

using namespace std::string_view_literals;

// Encodes `m`, frames it, decodes the body and expects `m` back. For a strict decoder, every truncation of the body
// and the body with a byte appended must be rejected.
template <class M, class Decode>
void round_trip(const M& m, Decode decode, bool strict = true) {
  Bytes b = encode(m);
  auto r = next_frame(b, kMaxBackendMessageLength);
  ASSERT_TRUE(r.ok()) << r.error();
  const Frame* f = std::get_if<Frame>(&*r);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->type, M::kType);
  EXPECT_EQ(f->total_length, b.size());
  auto d = decode(f->body);
  ASSERT_TRUE(d.ok()) << d.error();
  EXPECT_TRUE(*d == m);
  if (!strict) return;
  for (size_t n = 0; n < f->body.size(); ++n) EXPECT_FALSE(decode(f->body.first(n)).ok()) << "prefix " << n;
  Bytes longer(f->body.begin(), f->body.end());
  longer.push_back(0);
  EXPECT_FALSE(decode(longer).ok()) << "trailing byte";
}

Bytes bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

TEST(Messages, AuthenticationRoundTrips) {
  round_trip(auth_ok(), decode_authentication);
  round_trip(auth_cleartext_password(), decode_authentication);
  round_trip(auth_md5_password({1, 2, 3, 4}), decode_authentication);
  round_trip(auth_sasl({"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}),
             decode_authentication);
  round_trip(auth_sasl_continue("r=abc,s=c2FsdA==,i=4096"),
             decode_authentication, false);
  round_trip(auth_sasl_final("v=xyz"), decode_authentication, false);
}

TEST(Messages, AuthenticationWireFormat) {
  EXPECT_EQ(encode(auth_ok()), (Bytes{'R', 0, 0, 0, 8, 0, 0, 0, 0}));
  EXPECT_EQ(encode(auth_md5_password({9, 8, 7, 6})),
            (Bytes{'R', 0, 0, 0, 12, 0, 0, 0, 5, 9, 8, 7, 6}));
  EXPECT_EQ(encode(auth_sasl({"SCRAM-SHA-256"})),
            bytes("R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0"sv));
}

TEST(Messages, ClientAuthResponsesRoundTrip) {
  round_trip(PasswordMessage{"md5bb41a296aab6baccb36ff243a562abff"}, decode_password_message);
  round_trip(SASLInitialResponse{"SCRAM-SHA-256", "n,,n=,r=abc"}, decode_sasl_initial_response);
  round_trip(SASLInitialResponse{"SCRAM-SHA-256", std::nullopt}, decode_sasl_initial_response);
  round_trip(SASLResponse{"c=biws,r=abc,p=xyz"}, decode_sasl_response, false);
  EXPECT_EQ(encode(SASLInitialResponse{"M", "ab"}), bytes("p\0\0\0\x0cM\0\0\0\0\x02" "ab"sv));
  EXPECT_FALSE(decode_sasl_initial_response(as_bytes("M\0\xff\xff\xff\xfe"sv)).ok());  // length -2
}

TEST(Messages, SessionStateRoundTrips) {
  round_trip(ParameterStatus{"server_version", "15.4"}, decode_parameter_status);
  round_trip(BackendKeyData{{1234, -99}}, decode_backend_key_data);
  for (auto s : {TransactionStatus::kIdle, TransactionStatus::kInTransaction, TransactionStatus::kFailed}) {
    round_trip(ReadyForQuery{s}, decode_ready_for_query);
  }
  EXPECT_EQ(encode(ReadyForQuery{TransactionStatus::kInTransaction}), (Bytes{'Z', 0, 0, 0, 5, 'T'}));
  EXPECT_FALSE(decode_ready_for_query(as_bytes("X")).ok());
  round_trip(NegotiateProtocolVersion{0, {"_pq_.a", "_pq_.b"}}, decode_negotiate_protocol_version);
  EXPECT_FALSE(decode_negotiate_protocol_version(as_bytes("\0\0\0\0\x7f\xff\xff\xff"sv)).ok());  // huge count
}

TEST(Messages, ErrorAndNoticeRoundTrip) {
  ErrorResponse e = error_response("FATAL", "28P01", "password authentication failed for user \"bob\"");
  e.fields[field::kHint] = "check the password";
  round_trip(e, decode_error_response);
  round_trip(NoticeResponse{{{field::kSeverity, "NOTICE"}, {field::kMessage, "hi"}}}, decode_notice_response);
  EXPECT_EQ(field_value(e.fields, field::kCode), "28P01");
  EXPECT_EQ(field_value(e.fields, field::kSeverityRaw), "FATAL");
  EXPECT_EQ(field_value(e.fields, field::kDetail), "");
  EXPECT_EQ(encode(error_response("ERROR", "42000", "x")),
            bytes("E\0\0\0\x1d" "C42000\0Mx\0SERROR\0VERROR\0\0"sv));
}

TEST(Messages, QueriesRoundTrip) {
  round_trip(Query{"select 1"}, decode_query);
  round_trip(Parse{"s1", "select $1::int, $2", {23, 0}}, decode_parse);
  round_trip(Parse{"", "select 1", {}}, decode_parse);
  round_trip(Bind{"", "s1", {0, 0, 0, 1, 0, 0, 0, 1, '7', 0, 0}}, decode_bind, false);
  round_trip(Close{Target::kPortal, "p1"}, decode_close);
  round_trip(Describe{Target::kStatement, "s1"}, decode_describe);
  round_trip(Execute{"", 0}, decode_execute);
  round_trip(Execute{"p1", 100}, decode_execute);
  round_trip(Sync{}, decode_sync);
  round_trip(Flush{}, decode_flush);
  round_trip(Terminate{}, decode_terminate);
  EXPECT_FALSE(decode_close(as_bytes("Xname\0"sv)).ok());
  EXPECT_FALSE(decode_sync(as_bytes("x")).ok());
  EXPECT_FALSE(decode_bind(as_bytes("portal\0stmt"sv)).ok());
  EXPECT_EQ(encode(Sync{}), (Bytes{'S', 0, 0, 0, 4}));
}

TEST(Messages, ParseWithManyParametersUsesUnsignedCount) {
  Parse p{"", "insert ...", std::vector<uint32_t>(40000, 23)};  // > 32767: the count is read unsigned
  round_trip(p, decode_parse, false);
}

TEST(Messages, ResultsRoundTrip) {
  round_trip(CommandComplete{"INSERT 0 1"}, decode_command_complete);
  round_trip(EmptyQueryResponse{}, decode_empty_query_response);
  round_trip(RowDescription{{{"id", 16384, 1, 23, 4, -1, 0}, FieldDescription{"name", 0, 0, kTextOid, -1, -1, 0}}},
             decode_row_description);
  round_trip(RowDescription{}, decode_row_description);
  round_trip(DataRow{{"1", std::nullopt, "", std::string("a\0b", 3)}}, decode_data_row);
  round_trip(NotificationResponse{77, "jobs", "{\"id\": 1}"}, decode_notification_response);
  EXPECT_FALSE(decode_data_row(as_bytes("\xff\xff"sv)).ok());                  // 65535 columns, no data
  EXPECT_FALSE(decode_data_row(as_bytes("\0\x01\xff\xff\xff\xfe"sv)).ok());    // length -2
  EXPECT_FALSE(decode_data_row(as_bytes("\0\x01\x7f\xff\xff\xff"sv)).ok());    // length past the end
  EXPECT_FALSE(decode_row_description(as_bytes("\x7f\xff"sv)).ok());
}

TEST(Messages, ResultSetForTheAdminConsole) {
  auto rs = result_set({"name", "value"}, {{"pool_size", "20"}, {"note", std::nullopt}});
  ASSERT_TRUE(rs.ok()) << rs.error();
  ByteSpan rest = *rs;
  std::vector<char> types;
  std::vector<Frame> frames;
  while (!rest.empty()) {
    auto r = next_frame(rest, kMaxBackendMessageLength);
    ASSERT_TRUE(r.ok());
    const Frame& f = std::get<Frame>(*r);
    frames.push_back(f);
    types.push_back(f.type);
    rest = rest.subspan(f.total_length);
  }
  EXPECT_EQ(types, (std::vector<char>{'T', 'D', 'D', 'C'}));
  auto desc = decode_row_description(frames[0].body);
  ASSERT_TRUE(desc.ok());
  ASSERT_EQ(desc->fields.size(), 2u);
  EXPECT_EQ(desc->fields[1].name, "value");
  EXPECT_EQ(desc->fields[1].type_oid, kTextOid);
  auto row = decode_data_row(frames[2].body);
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->values, (std::vector<std::optional<std::string>>{"note", std::nullopt}));
  EXPECT_EQ(decode_command_complete(frames[3].body)->tag, "SELECT 2");

  auto shown = result_set({"a"}, {}, "SHOW");
  ASSERT_TRUE(shown.ok());
  EXPECT_FALSE(result_set({"a", "b"}, {{"only one"}}).ok());
}

TEST(Messages, StartupPhasePacketsRoundTripThroughDecodeStartup) {
  StartupMessage m;
  m.parameters = {{"user", "alice"}, {"database", "shop"}, {"application_name", "pgfleet"}};
  Writer w;
  encode(w, m);
  encode(w, CancelKey{5, 6});
  encode_ssl_request(w);
  Bytes b = w.take();

  auto first = decode_startup(b);
  ASSERT_TRUE(first.ok()) << first.error();
  const auto& startup = std::get<StartupPacket>(*first);
  EXPECT_EQ(startup.kind, StartupKind::kStartup);
  EXPECT_EQ(startup.startup, m);
  ByteSpan rest = ByteSpan(b).subspan(startup.consumed);
  auto cancel = decode_startup(rest);
  ASSERT_TRUE(cancel.ok());
  EXPECT_EQ(std::get<StartupPacket>(*cancel).cancel, (CancelKey{5, 6}));
  auto ssl = decode_startup(rest.subspan(16));
  ASSERT_TRUE(ssl.ok());
  EXPECT_EQ(std::get<StartupPacket>(*ssl).kind, StartupKind::kSslRequest);
  EXPECT_EQ(encode(CancelKey{1, 2}), (Bytes{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2}));
}

}  // namespace
}  // namespace pgfleet::protocol
