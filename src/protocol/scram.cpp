// SCRAM-SHA-256 and MD5 authentication: message parsing, key derivation and proof checks through OpenSSL EVP.
#include "protocol/scram.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <climits>

namespace pgfleet::protocol {
namespace {

constexpr std::string_view kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kVerifierPrefix = "SCRAM-SHA-256$";
constexpr std::string_view kCbindType = "tls-server-end-point";
constexpr std::string_view kPasswordFailed = "password authentication failed";

ByteSpan span(const Digest& d) { return {d.data(), d.size()}; }
ByteSpan span(const Bytes& b) { return {b.data(), b.size()}; }

// Nonces: printable ASCII except ',' (RFC 5802 "printable").
bool is_printable(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < 0x21 || c > 0x7e || c == ',') return false;
  }
  return true;
}

// "1" .. "2147483647", digits only.
std::optional<int> parse_positive_int(std::string_view s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  long long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > INT_MAX) return std::nullopt;
  return static_cast<int>(v);
}

// One "x=value" attribute of a SCRAM message; values never contain ',' (SCRAM escapes it in names).
struct Attr {
  char name;
  std::string_view value;
};

std::optional<std::vector<Attr>> split_attrs(std::string_view s) {
  std::vector<Attr> attrs;
  while (true) {
    size_t comma = s.find(',');
    std::string_view part = s.substr(0, comma);
    bool letter = part.size() >= 2 && ((part[0] >= 'a' && part[0] <= 'z') || (part[0] >= 'A' && part[0] <= 'Z'));
    if (!letter || part[1] != '=') return std::nullopt;
    attrs.push_back({part[0], part.substr(2)});
    if (comma == std::string_view::npos) return attrs;
    s.remove_prefix(comma + 1);
  }
}

// RFC 5802 saslname: ',' and '=' escaped.
std::string saslname(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == ',') {
      out += "=2C";
    } else if (c == '=') {
      out += "=3D";
    } else {
      out += c;
    }
  }
  return out;
}

std::string concat(std::string_view a, std::string_view b) { return std::string(a) + std::string(b); }

std::string hex(ByteSpan data) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : data) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::optional<Bytes> md5(ByteSpan data) {
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_md5(), nullptr) != 1) return std::nullopt;
  out.resize(len);
  return out;
}

bool equal_ct(ByteSpan a, ByteSpan b) { return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0; }

// Keys derived from a verifier or a password (RFC 5802 section 3).
struct Keys {
  Digest client_key, stored_key, server_key;
};

std::optional<Keys> derive_keys(std::string_view password, ByteSpan salt, int iterations) {
  auto salted = salted_password(password, salt, iterations);
  if (!salted) return std::nullopt;
  auto client_key = hmac_sha256(span(*salted), as_bytes("Client Key"));
  auto server_key = hmac_sha256(span(*salted), as_bytes("Server Key"));
  if (!client_key || !server_key) return std::nullopt;
  auto stored_key = sha256(span(*client_key));
  if (!stored_key) return std::nullopt;
  return Keys{*client_key, *stored_key, *server_key};
}

}  // namespace

// --- Primitives ---

std::string base64_encode(ByteSpan data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  for (size_t i = 0; i < data.size(); i += 3) {
    uint32_t n = uint32_t{data[i]} << 16;
    if (i + 1 < data.size()) n |= uint32_t{data[i + 1]} << 8;
    if (i + 2 < data.size()) n |= data[i + 2];
    out += kB64[n >> 18];
    out += kB64[(n >> 12) & 63];
    out += i + 1 < data.size() ? kB64[(n >> 6) & 63] : '=';
    out += i + 2 < data.size() ? kB64[n & 63] : '=';
  }
  return out;
}

std::optional<Bytes> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  size_t pad = text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
  Bytes out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    uint32_t n = 0;
    for (size_t j = 0; j < 4; ++j) {
      size_t v = 0;  // padding counts as zero bits
      if (!(last && j >= 4 - pad)) {
        v = kB64.find(text[i + j]);  // '=' is not in the alphabet: padding elsewhere is rejected
        if (v == std::string_view::npos) return std::nullopt;
      }
      n = (n << 6) | static_cast<uint32_t>(v);
    }
    out.push_back(static_cast<uint8_t>(n >> 16));
    if (!last || pad < 2) out.push_back(static_cast<uint8_t>(n >> 8));
    if (!last || pad < 1) out.push_back(static_cast<uint8_t>(n));
    // Canonical form: the bits dropped with the padding must be zero.
    if (last && ((pad == 2 && (n & 0xffff) != 0) || (pad == 1 && (n & 0xff) != 0))) return std::nullopt;
  }
  return out;
}

std::optional<Digest> sha256(ByteSpan data) {
  Digest out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 || len != out.size()) {
    return std::nullopt;
  }
  return out;
}

std::optional<Digest> hmac_sha256(ByteSpan key, ByteSpan data) {
  Digest out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), out.data(), &len) ==
          nullptr ||
      len != out.size()) {
    return std::nullopt;
  }
  return out;
}

std::optional<Digest> salted_password(std::string_view password, ByteSpan salt, int iterations) {
  Digest out{};
  if (iterations < 1 || PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                                          static_cast<int>(salt.size()), iterations, EVP_sha256(),
                                          static_cast<int>(out.size()), out.data()) != 1) {
    return std::nullopt;
  }
  return out;
}

std::optional<Bytes> random_bytes(size_t n) {
  Bytes out(n);
  if (n > INT_MAX || RAND_bytes(out.data(), static_cast<int>(n)) != 1) return std::nullopt;
  return out;
}

std::string random_nonce() {
  auto raw = random_bytes(18);
  return raw ? base64_encode(span(*raw)) : std::string{};
}

// --- Verifiers ---

Result<ScramVerifier> parse_verifier(std::string_view text) {
  auto bad = [] { return make_error("invalid SCRAM-SHA-256 verifier"); };
  if (!text.starts_with(kVerifierPrefix)) return bad();
  text.remove_prefix(kVerifierPrefix.size());
  size_t colon1 = text.find(':'), dollar = text.find('$'), colon2 = text.rfind(':');
  if (colon1 == std::string_view::npos || dollar == std::string_view::npos || !(colon1 < dollar) ||
      !(dollar < colon2)) {
    return bad();
  }
  auto iterations = parse_positive_int(text.substr(0, colon1));
  auto salt = base64_decode(text.substr(colon1 + 1, dollar - colon1 - 1));
  auto stored = base64_decode(text.substr(dollar + 1, colon2 - dollar - 1));
  auto server = base64_decode(text.substr(colon2 + 1));
  if (!iterations || !salt || salt->empty() || !stored || stored->size() != 32 || !server || server->size() != 32) {
    return bad();
  }
  ScramVerifier v{*iterations, std::move(*salt), {}, {}};
  std::copy(stored->begin(), stored->end(), v.stored_key.begin());
  std::copy(server->begin(), server->end(), v.server_key.begin());
  return v;
}

std::string format_verifier(const ScramVerifier& v) {
  return std::string(kVerifierPrefix) + std::to_string(v.iterations) + ":" + base64_encode(span(v.salt)) + "$" +
         base64_encode(span(v.stored_key)) + ":" + base64_encode(span(v.server_key));
}

Result<ScramVerifier> make_verifier(std::string_view password, ByteSpan salt, int iterations) {
  if (salt.empty() || iterations < 1) return make_error("SCRAM verifier needs a salt and at least one iteration");
  auto keys = derive_keys(password, salt, iterations);
  if (!keys) return make_error("SCRAM key derivation failed in OpenSSL");
  return ScramVerifier{iterations, Bytes(salt.begin(), salt.end()), keys->stored_key, keys->server_key};
}

std::optional<ScramVerifier> mock_verifier(std::string_view user, ByteSpan secret, int iterations) {
  auto salt = hmac_sha256(secret, as_bytes(concat("salt:", user)));
  auto stored = hmac_sha256(secret, as_bytes(concat("stored:", user)));
  auto server = hmac_sha256(secret, as_bytes(concat("server:", user)));
  if (!salt || !stored || !server) return std::nullopt;
  return ScramVerifier{iterations, Bytes(salt->begin(), salt->begin() + kScramSaltLength), *stored, *server};
}

// --- States ---

std::string_view to_string(ScramState state) {
  switch (state) {
    case ScramState::kInitial: return "initial";
    case ScramState::kClientFirstSent: return "client-first-sent";
    case ScramState::kServerFirstSent: return "server-first-sent";
    case ScramState::kClientFinalSent: return "client-final-sent";
    case ScramState::kSucceeded: return "succeeded";
    case ScramState::kFailed: return "failed";
  }
  return "unknown";
}

std::string_view sqlstate(ScramFailure failure) {
  switch (failure) {
    case ScramFailure::kNone: return "00000";
    case ScramFailure::kProtocol: return "08P01";
    case ScramFailure::kPassword: return "28P01";
    case ScramFailure::kChannelBinding: return "28000";
    case ScramFailure::kInternal: return "58000";
  }
  return "XX000";
}

// --- Server ---

ServerSession::ServerSession(ScramVerifier verifier, NonceSource nonces, std::optional<Bytes> tls_server_end_point)
    : verifier_(std::move(verifier)), nonces_(std::move(nonces)), cbind_data_(std::move(tls_server_end_point)) {}

ServerSession ServerSession::for_unknown_user(std::string_view user, ByteSpan secret, NonceSource nonces,
                                              std::optional<Bytes> tls_server_end_point, int iterations) {
  auto mock = mock_verifier(user, secret, iterations);
  ServerSession session(mock ? std::move(*mock) : ScramVerifier{}, std::move(nonces),
                        std::move(tls_server_end_point));
  session.doomed_ = true;
  if (!mock) (void)session.fail(ScramFailure::kInternal, "SCRAM mock verifier failed in OpenSSL");
  return session;
}

std::vector<std::string> ServerSession::mechanisms() const {
  if (cbind_data_) return {std::string(kScramSha256Plus), std::string(kScramSha256)};
  return {std::string(kScramSha256)};
}

Error ServerSession::fail(ScramFailure failure, std::string message) {
  if (state_ != ScramState::kFailed) failure_ = failure;  // keep the first cause
  state_ = ScramState::kFailed;
  return make_error(std::move(message));
}

Result<std::string> ServerSession::handle_client_first(std::string_view mechanism, std::string_view message) {
  auto malformed = [this](std::string_view why) {
    return fail(ScramFailure::kProtocol, concat("malformed SCRAM client-first-message: ", why));
  };
  if (state_ != ScramState::kInitial) return fail(ScramFailure::kProtocol, "unexpected SCRAM client-first-message");
  if (mechanism == kScramSha256Plus && cbind_data_) {
    plus_ = true;
  } else if (mechanism != kScramSha256) {
    return fail(ScramFailure::kProtocol, concat("unsupported SASL mechanism ", mechanism));
  }

  // gs2 header: channel-binding flag, then an empty authzid.
  size_t comma = message.find(',');
  if (comma == std::string_view::npos) return malformed("no GS2 header");
  std::string_view flag = message.substr(0, comma);
  if (flag == "n" || flag == "y") {
    if (plus_) return malformed("SCRAM-SHA-256-PLUS chosen without channel binding data");
    if (flag == "y" && cbind_data_) {
      return fail(ScramFailure::kChannelBinding,
                  "SCRAM channel binding negotiation error: the client thinks the server does not support it");
    }
  } else if (flag.starts_with("p=")) {
    if (!plus_) return malformed("channel binding requested with SCRAM-SHA-256");
    if (flag.substr(2) != kCbindType) return malformed("unsupported channel binding type");
  } else {
    return malformed("bad channel binding flag");
  }
  std::string_view rest = message.substr(comma + 1);
  if (rest.starts_with("a=")) return malformed("authorization identity is not supported");
  if (!rest.starts_with(',')) return malformed("bad GS2 header");
  gs2_header_ = std::string(message.substr(0, comma + 2));
  rest.remove_prefix(1);

  if (rest.starts_with("m=")) return malformed("unsupported mandatory extension");
  auto attrs = split_attrs(rest);
  if (!attrs || attrs->size() < 2 || (*attrs)[0].name != 'n' || (*attrs)[1].name != 'r') {
    return malformed("expected n= and r=");
  }
  std::string_view client_nonce = (*attrs)[1].value;  // extensions after r= are ignored
  if (!is_printable(client_nonce)) return malformed("invalid nonce");

  std::string server_nonce = nonces_ ? nonces_() : std::string{};
  if (!is_printable(server_nonce)) return fail(ScramFailure::kInternal, "could not generate a SCRAM nonce");
  client_first_bare_ = std::string(rest);
  nonce_ = concat(client_nonce, server_nonce);
  server_first_ = "r=" + nonce_ + ",s=" + base64_encode(span(verifier_.salt)) +
                  ",i=" + std::to_string(verifier_.iterations);
  state_ = ScramState::kServerFirstSent;
  return server_first_;
}

Result<std::string> ServerSession::handle_client_final(std::string_view message) {
  auto malformed = [this](std::string_view why) {
    return fail(ScramFailure::kProtocol, concat("malformed SCRAM client-final-message: ", why));
  };
  if (state_ != ScramState::kServerFirstSent) {
    return fail(ScramFailure::kProtocol, "unexpected SCRAM client-final-message");
  }
  auto attrs = split_attrs(message);
  size_t proof_at = message.rfind(",p=");
  if (!attrs || attrs->size() < 3 || (*attrs)[0].name != 'c' || (*attrs)[1].name != 'r' ||
      attrs->back().name != 'p' || proof_at == std::string_view::npos) {
    return malformed("expected c=, r= and p= last");
  }
  auto cbind = base64_decode((*attrs)[0].value);
  auto proof = base64_decode(attrs->back().value);
  if (!cbind) return malformed("invalid channel binding encoding");
  if (!proof || proof->size() != Digest{}.size()) return malformed("invalid proof");
  std::string expected_cbind = gs2_header_;
  if (plus_) expected_cbind.append(cbind_data_->begin(), cbind_data_->end());
  if (!equal_ct(span(*cbind), as_bytes(expected_cbind))) {
    return fail(ScramFailure::kChannelBinding, "SCRAM channel binding check failed");
  }
  if ((*attrs)[1].value != nonce_) return malformed("nonce mismatch");

  // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the proof holds iff H(ClientKey) == StoredKey.
  std::string auth_message = client_first_bare_ + "," + server_first_ + "," + std::string(message.substr(0, proof_at));
  auto client_signature = hmac_sha256(span(verifier_.stored_key), as_bytes(auth_message));
  auto server_signature = hmac_sha256(span(verifier_.server_key), as_bytes(auth_message));
  if (!client_signature || !server_signature) return fail(ScramFailure::kInternal, "HMAC failed in OpenSSL");
  Digest client_key{};
  for (size_t i = 0; i < client_key.size(); ++i) client_key[i] = (*proof)[i] ^ (*client_signature)[i];
  auto stored = sha256(span(client_key));
  if (!stored) return fail(ScramFailure::kInternal, "SHA-256 failed in OpenSSL");
  bool proof_ok = equal_ct(span(*stored), span(verifier_.stored_key));
  if (!proof_ok || doomed_) return fail(ScramFailure::kPassword, std::string(kPasswordFailed));
  client_key_ = client_key;
  state_ = ScramState::kSucceeded;
  return "v=" + base64_encode(span(*server_signature));
}

// --- Client ---

ClientSession::ClientSession(std::string password, NonceSource nonces, ClientOptions options)
    : password_(std::move(password)), nonces_(std::move(nonces)), options_(std::move(options)) {}

ClientSession ClientSession::from_keys(const Digest& client_key, const Digest& server_key, NonceSource nonces,
                                       ClientOptions options) {
  ClientSession session("", std::move(nonces), std::move(options));
  session.keys_ = {client_key, server_key};
  return session;
}

std::string_view ClientSession::mechanism() const {
  return options_.tls_server_end_point ? kScramSha256Plus : kScramSha256;
}

Error ClientSession::fail(std::string message) {
  state_ = ScramState::kFailed;
  return make_error(std::move(message));
}

Result<std::string> ClientSession::client_first() {
  if (state_ != ScramState::kInitial) return fail("SCRAM client-first-message already sent");
  nonce_ = nonces_ ? nonces_() : std::string{};
  if (!is_printable(nonce_)) return fail("could not generate a SCRAM nonce");
  gs2_header_ = options_.tls_server_end_point ? concat("p=", kCbindType) + ",," : "n,,";
  client_first_bare_ = "n=" + saslname(options_.username) + ",r=" + nonce_;
  state_ = ScramState::kClientFirstSent;
  return gs2_header_ + client_first_bare_;
}

Result<std::string> ClientSession::handle_server_first(std::string_view message) {
  auto malformed = [this](std::string_view why) {
    return fail(concat("invalid SCRAM server-first-message: ", why));
  };
  if (state_ != ScramState::kClientFirstSent) return fail("unexpected SCRAM server-first-message");
  auto attrs = split_attrs(message);
  if (!attrs || attrs->size() != 3 || (*attrs)[0].name != 'r' || (*attrs)[1].name != 's' ||
      (*attrs)[2].name != 'i') {
    return malformed("expected r=, s= and i=");
  }
  std::string_view nonce = (*attrs)[0].value;
  if (!nonce.starts_with(nonce_) || nonce.size() == nonce_.size() || !is_printable(nonce)) {
    return malformed("nonce does not extend ours");
  }
  auto salt = base64_decode((*attrs)[1].value);
  if (!salt || salt->empty()) return malformed("invalid salt");
  auto iterations = parse_positive_int((*attrs)[2].value);
  if (!iterations) return malformed("invalid iteration count");
  if (*iterations > options_.max_iterations) return malformed("iteration count above our limit");

  std::optional<Keys> keys;
  if (keys_) {
    // Pass-through: the keys stand for the password, valid for the verifier they came from.
    auto stored = sha256(span(keys_->first));
    if (stored) keys = Keys{keys_->first, *stored, keys_->second};
  } else {
    keys = derive_keys(password_, span(*salt), *iterations);
  }
  if (!keys) return fail("SCRAM key derivation failed in OpenSSL");
  std::string cbind = gs2_header_;
  if (options_.tls_server_end_point) {
    cbind.append(options_.tls_server_end_point->begin(), options_.tls_server_end_point->end());
  }
  std::string without_proof = "c=" + base64_encode(as_bytes(cbind)) + ",r=" + std::string(nonce);
  std::string auth_message = client_first_bare_ + "," + std::string(message) + "," + without_proof;
  auto client_signature = hmac_sha256(span(keys->stored_key), as_bytes(auth_message));
  auto server_signature = hmac_sha256(span(keys->server_key), as_bytes(auth_message));
  if (!client_signature || !server_signature) return fail("HMAC failed in OpenSSL");
  Digest proof{};
  for (size_t i = 0; i < proof.size(); ++i) proof[i] = keys->client_key[i] ^ (*client_signature)[i];
  server_signature_ = *server_signature;
  state_ = ScramState::kClientFinalSent;
  return without_proof + ",p=" + base64_encode(span(proof));
}

Status ClientSession::handle_server_final(std::string_view message) {
  if (state_ != ScramState::kClientFinalSent) return fail("unexpected SCRAM server-final-message");
  if (message.starts_with("e=")) return fail(concat("SCRAM authentication failed on the server: ", message.substr(2)));
  auto attrs = split_attrs(message);
  if (!attrs || attrs->size() != 1 || (*attrs)[0].name != 'v') {
    return fail("invalid SCRAM server-final-message");
  }
  auto signature = base64_decode((*attrs)[0].value);
  if (!signature || !equal_ct(span(*signature), span(server_signature_))) {
    return fail("SCRAM server signature mismatch: the server does not know the password");
  }
  state_ = ScramState::kSucceeded;
  return {};
}

// --- MD5 ---

Result<std::string> md5_stored(std::string_view user, std::string_view password) {
  auto digest = md5(as_bytes(concat(password, user)));
  if (!digest) return make_error("MD5 is not available in OpenSSL");
  return "md5" + hex(span(*digest));
}

Result<std::string> md5_response(std::string_view stored, std::array<uint8_t, 4> salt) {
  if (stored.size() != 35 || !stored.starts_with("md5")) return make_error("invalid MD5 password hash");
  std::string input(stored.substr(3));
  input.append(salt.begin(), salt.end());
  auto digest = md5(as_bytes(input));
  if (!digest) return make_error("MD5 is not available in OpenSSL");
  return "md5" + hex(span(*digest));
}

Result<std::string> md5_password(std::string_view user, std::string_view password, std::array<uint8_t, 4> salt) {
  auto stored = md5_stored(user, password);
  if (!stored) return stored;
  return md5_response(*stored, salt);
}

}  // namespace pgfleet::protocol
