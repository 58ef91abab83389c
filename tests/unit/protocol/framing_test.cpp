// Frame decoding: startup packets, regular frames fed whole, split and back to back, and rejected lengths.
#include "protocol/framing.hpp"

#include <gtest/gtest.h>

#include "protocol/messages.hpp"

namespace pgfleet::protocol {
namespace {

Bytes startup_bytes(int32_t protocol, std::string_view params) {
  Writer w;
  w.begin_untyped_message();
  w.write_i32(protocol);
  w.write_bytes(params);
  w.finish_message();
  return w.take();
}

// The packet, failing the test on an error or NeedMoreData.
StartupPacket startup_ok(ByteSpan data) {
  auto r = decode_startup(data);
  EXPECT_TRUE(r.ok()) << r.error();
  if (!r.ok() || !std::holds_alternative<StartupPacket>(*r)) return {};
  return std::get<StartupPacket>(*r);
}

TEST(Startup, DecodesParameters) {
  using namespace std::string_view_literals;
  Bytes b = startup_bytes(kProtocolV3,
                          "user\0alice\0database\0shop\0application_name\0psql\0options\0-c x=1\0"
                          "TimeZone\0UTC\0\0"sv);
  StartupPacket p = startup_ok(b);
  EXPECT_EQ(p.kind, StartupKind::kStartup);
  EXPECT_EQ(p.consumed, b.size());
  EXPECT_EQ(p.startup.user(), "alice");
  EXPECT_EQ(p.startup.database(), "shop");
  EXPECT_EQ(p.startup.application_name(), "psql");
  EXPECT_EQ(p.startup.options(), "-c x=1");
  EXPECT_EQ(p.startup.get("TimeZone"), "UTC");
  EXPECT_EQ(p.startup.parameters.size(), 5u);
}

TEST(Startup, DatabaseDefaultsToUserAndLastDuplicateWins) {
  using namespace std::string_view_literals;
  StartupPacket p = startup_ok(startup_bytes(kProtocolV3, "user\0a\0user\0bob\0\0"sv));
  EXPECT_EQ(p.startup.user(), "bob");
  EXPECT_EQ(p.startup.database(), "bob");
}

TEST(Startup, AcceptsMinorVersionsForNegotiation) {
  using namespace std::string_view_literals;
  StartupPacket p = startup_ok(startup_bytes(kProtocolV3 | 2, "user\0u\0_pq_.thing\0on\0\0"sv));
  EXPECT_EQ(p.startup.minor_version(), 2);
  EXPECT_EQ(p.startup.protocol_options(), std::vector<std::string>{"_pq_.thing"});
}

TEST(Startup, DecodesRequests) {
  Writer w;
  encode_ssl_request(w);
  encode_gssenc_request(w);
  encode(w, CancelKey{42, -7});
  Bytes b = w.take();
  ByteSpan rest = b;
  StartupPacket ssl = startup_ok(rest);
  EXPECT_EQ(ssl.kind, StartupKind::kSslRequest);
  EXPECT_EQ(ssl.consumed, 8u);
  rest = rest.subspan(ssl.consumed);
  EXPECT_EQ(startup_ok(rest).kind, StartupKind::kGssEncRequest);
  rest = rest.subspan(8);
  StartupPacket cancel = startup_ok(rest);
  EXPECT_EQ(cancel.kind, StartupKind::kCancelRequest);
  EXPECT_EQ(cancel.cancel, (CancelKey{42, -7}));
  EXPECT_EQ(cancel.consumed, 16u);
  EXPECT_EQ(to_string(cancel.kind), "CancelRequest");
}

TEST(Startup, AsksForMoreData) {
  using namespace std::string_view_literals;
  Bytes b = startup_bytes(kProtocolV3, "user\0u\0\0"sv);
  for (size_t n = 0; n < b.size(); ++n) {
    auto r = decode_startup(ByteSpan(b).first(n));
    ASSERT_TRUE(r.ok()) << n;
    ASSERT_TRUE(std::holds_alternative<NeedMoreData>(*r)) << n;
    EXPECT_EQ(std::get<NeedMoreData>(*r).bytes_needed, n < 4 ? 4 : b.size());
  }
}

TEST(Startup, RejectsMalformedPackets) {
  using namespace std::string_view_literals;
  auto rejected = [](const Bytes& b, size_t max_len = kMaxStartupLength) {
    auto r = decode_startup(b, max_len);
    return !r.ok();
  };
  EXPECT_TRUE(rejected({0, 0, 0, 7, 0, 0, 0}));                   // length < 8
  EXPECT_TRUE(rejected({0xff, 0xff, 0xff, 0xff}));               // negative length
  EXPECT_TRUE(rejected({0, 0, 0x27, 0x11}));                     // 10001 > default max, before the body arrives
  EXPECT_TRUE(rejected(startup_bytes(kProtocolV3, "user\0u\0\0"sv), 10));
  EXPECT_TRUE(rejected(startup_bytes(2 << 16, "user\0u\0\0"sv)));  // protocol 2.0
  EXPECT_TRUE(rejected(startup_bytes(kProtocolV3, "")));           // no terminator
  EXPECT_TRUE(rejected(startup_bytes(kProtocolV3, "user\0u\0"sv)));  // no terminator
  EXPECT_TRUE(rejected(startup_bytes(kProtocolV3, "user\0u"sv)));    // value not NUL-terminated
  EXPECT_TRUE(rejected(startup_bytes(kProtocolV3, "user\0u\0\0x"sv)));  // bytes after the terminator
  EXPECT_TRUE(rejected(startup_bytes(kProtocolV3, "database\0d\0\0"sv)));  // no user
  EXPECT_TRUE(rejected(startup_bytes(kProtocolV3, "user\0\0\0"sv)));       // empty user
  EXPECT_TRUE(rejected(startup_bytes(kSslRequestCode, "x")));              // SSLRequest with a body
  EXPECT_TRUE(rejected(startup_bytes(kCancelRequestCode, "abcd")));        // short CancelRequest
  EXPECT_TRUE(rejected(startup_bytes(1234 << 16 | 9999, "")));             // unknown request code
}

TEST(Frames, DecodesBackToBackAndSplitFrames) {
  Writer w;
  encode(w, Query{"select 1"});
  encode(w, Sync{});
  Bytes b = w.take();

  auto first = next_frame(b, kMaxFrontendMessageLength);
  ASSERT_TRUE(first.ok());
  const Frame& q = std::get<Frame>(*first);
  EXPECT_EQ(q.type, 'Q');
  EXPECT_EQ(as_chars(q.body), std::string_view("select 1\0", 9));
  EXPECT_EQ(q.total_length, 14u);
  auto second = next_frame(ByteSpan(b).subspan(q.total_length), kMaxFrontendMessageLength);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(std::get<Frame>(*second).type, 'S');
  EXPECT_TRUE(std::get<Frame>(*second).body.empty());

  for (size_t n = 0; n < q.total_length; ++n) {
    auto r = next_frame(ByteSpan(b).first(n), kMaxFrontendMessageLength);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(std::holds_alternative<NeedMoreData>(*r)) << n;
    EXPECT_EQ(std::get<NeedMoreData>(*r).bytes_needed, n < 5 ? 5 : q.total_length);
  }
}

TEST(Frames, RejectsBadLengths) {
  const Bytes short_len = {'Q', 0, 0, 0, 3};
  const Bytes negative = {'D', 0x80, 0, 0, 0};
  const Bytes big = {'D', 0x10, 0, 0, 0};  // 256 MB, rejected from the header alone
  EXPECT_FALSE(next_frame(short_len, kMaxFrontendMessageLength).ok());
  EXPECT_FALSE(next_frame(negative, kMaxBackendMessageLength).ok());
  EXPECT_FALSE(next_frame(big, kMaxSmallMessageLength).ok());
  EXPECT_TRUE(next_frame(big, kMaxFrontendMessageLength).ok());
}

TEST(Frames, PeekHeaderForStreaming) {
  const Bytes header = {'d', 0x20, 0, 0, 4};  // CopyData of 512 MB: only the header is buffered
  EXPECT_FALSE(peek_header(ByteSpan(header).first(4)));
  auto h = peek_header(header);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->type, 'd');
  EXPECT_EQ(h->body_length(), 0x20000000u);
  EXPECT_EQ(h->total_length(), 0x20000005u);
  EXPECT_TRUE(check_header(*h, kMaxFrontendMessageLength).ok());
  EXPECT_FALSE(check_header(*h, kMaxSmallMessageLength).ok());
  EXPECT_FALSE(check_header(FrameHeader{'d', 3}, kMaxFrontendMessageLength).ok());
}

TEST(MessageTypes, KnowsBothDirections) {
  for (char t : std::string_view("QPBEDCSHFXdcfp")) EXPECT_TRUE(is_known_frontend(t)) << t;
  for (char t : std::string_view("RKSZTDCENA123nstIGHWVvdc")) EXPECT_TRUE(is_known_backend(t)) << t;
  EXPECT_FALSE(is_known_frontend('Z'));
  EXPECT_FALSE(is_known_backend('Q'));
  EXPECT_FALSE(is_known_backend('\0'));
  EXPECT_EQ(frontend_message_name('P'), "Parse");
  EXPECT_EQ(backend_message_name('Z'), "ReadyForQuery");
  EXPECT_EQ(backend_message_name('?'), "Unknown");
  EXPECT_EQ(frontend_message_types().size(), 14u);
}

}  // namespace
}  // namespace pgfleet::protocol
