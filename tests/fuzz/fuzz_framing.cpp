// libFuzzer target: arbitrary bytes through the startup decoder, the framer, every message decoder and SCRAM.
//
// Build and run (from the repository root):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Isrc \
//       src/protocol/*.cpp tests/fuzz/fuzz_framing.cpp -lcrypto -o /tmp/fuzz_framing
//   /tmp/fuzz_framing -max_total_time=60 tests/fuzz/corpus/framing
// Properties beyond "no crash, no over-read": whatever decodes re-encodes to bytes that decode to the same value,
// and base64 decoding accepts only the canonical encoding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "protocol/scram.hpp"

using namespace pgfleet::protocol;

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

// If `body` decodes as M, its encoding must frame and decode back to an equal value.
template <class M, class Decode>
void round_trip(ByteSpan body, Decode decode) {
  auto m = decode(body);
  if (!m.ok()) return;
  Bytes b = encode(*m);
  auto r = next_frame(b, kMaxBackendMessageLength);
  check(r.ok());
  const Frame* f = std::get_if<Frame>(&*r);
  check(f != nullptr && f->type == M::kType && f->total_length == b.size());
  auto again = decode(f->body);
  check(again.ok() && *again == *m);
}

void decode_all(const Frame& f) {
  ByteSpan b = f.body;
  switch (f.type) {  // both directions: a type byte means different messages each way
    case 'R': round_trip<Authentication>(b, decode_authentication); break;
    case 'p':
      round_trip<PasswordMessage>(b, decode_password_message);
      round_trip<SASLInitialResponse>(b, decode_sasl_initial_response);
      round_trip<SASLResponse>(b, decode_sasl_response);
      break;
    case 'S':
      round_trip<ParameterStatus>(b, decode_parameter_status);
      round_trip<Sync>(b, decode_sync);
      break;
    case 'K': round_trip<BackendKeyData>(b, decode_backend_key_data); break;
    case 'Z': round_trip<ReadyForQuery>(b, decode_ready_for_query); break;
    case 'v': round_trip<NegotiateProtocolVersion>(b, decode_negotiate_protocol_version); break;
    case 'E':
      round_trip<ErrorResponse>(b, decode_error_response);
      round_trip<Execute>(b, decode_execute);
      break;
    case 'N': round_trip<NoticeResponse>(b, decode_notice_response); break;
    case 'Q': round_trip<Query>(b, decode_query); break;
    case 'P': round_trip<Parse>(b, decode_parse); break;
    case 'B': round_trip<Bind>(b, decode_bind); break;
    case 'C':
      round_trip<Close>(b, decode_close);
      round_trip<CommandComplete>(b, decode_command_complete);
      break;
    case 'D':
      round_trip<Describe>(b, decode_describe);
      round_trip<DataRow>(b, decode_data_row);
      break;
    case 'H': round_trip<Flush>(b, decode_flush); break;
    case 'X': round_trip<Terminate>(b, decode_terminate); break;
    case 'I': round_trip<EmptyQueryResponse>(b, decode_empty_query_response); break;
    case 'T': round_trip<RowDescription>(b, decode_row_description); break;
    case 'A': round_trip<NotificationResponse>(b, decode_notification_response); break;
    default: break;
  }
}

// SCRAM parsers on the same bytes: a server session over SASL payloads, a client session over the server's.
void scram(const Frame& f) {
  static const ScramVerifier verifier = *make_verifier("pw", as_bytes("salt"), 1);
  std::string_view text = as_chars(f.body);
  if (f.type == 'p') {
    ServerSession server(verifier, [] { return std::string("srv"); }, Bytes{1, 2, 3});
    std::string_view mechanism = kScramSha256;
    std::string_view first = text;
    auto init = decode_sasl_initial_response(f.body);  // outlives the views below
    if (init.ok() && init->data) {
      mechanism = init->mechanism;
      first = *init->data;
    }
    if (auto server_first = server.handle_client_first(mechanism, first); server_first.ok()) {
      (void)server.handle_client_final(text);
    }
  } else if (f.type == 'R') {
    ClientOptions options;
    options.max_iterations = 16;  // PBKDF2 cost is the server's choice: keep runs fast
    ClientSession client("pw", [] { return std::string("c"); }, options);
    (void)client.client_first();
    auto auth = decode_authentication(f.body);
    std::string_view server_first = auth.ok() ? std::string_view(auth->data) : text;
    if (client.handle_server_first(server_first).ok()) (void)client.handle_server_final(server_first);
  }
  if (auto decoded = base64_decode(text)) check(base64_encode(*decoded) == text);
  (void)parse_verifier(text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteSpan rest(data, size);

  // Startup phase: a packet may come first; whatever follows is a stream of typed messages.
  auto startup = decode_startup(rest);
  if (startup.ok()) {
    if (const auto* p = std::get_if<StartupPacket>(&*startup)) {
      check(p->consumed >= 8 && p->consumed <= rest.size());
      if (p->kind == StartupKind::kStartup) {
        check(!p->startup.user().empty());
        Bytes b = encode(p->startup);
        auto again = decode_startup(b);
        check(again.ok());
        const auto* q = std::get_if<StartupPacket>(&*again);
        check(q != nullptr && q->consumed == b.size() && q->startup.parameters == p->startup.parameters);
      }
      rest = rest.subspan(p->consumed);
    }
  }

  // Regular messages, read one frame at a time; a small limit too, to reach the too-large path.
  size_t limit = (size & 1) ? kMaxSmallMessageLength : kMaxBackendMessageLength;
  while (true) {
    auto r = next_frame(rest, limit);
    if (!r.ok()) break;
    const Frame* f = std::get_if<Frame>(&*r);
    if (f == nullptr) {
      check(std::get<NeedMoreData>(*r).bytes_needed > rest.size());
      break;
    }
    check(f->total_length == f->body.size() + kHeaderSize && f->total_length <= rest.size());
    (void)frontend_message_name(f->type);
    (void)backend_message_name(f->type);
    decode_all(*f);
    scram(*f);
    rest = rest.subspan(f->total_length);
  }
  return 0;
}
