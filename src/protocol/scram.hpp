// SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks it, both sides as pure state machines; MD5 passwords.
//
// No I/O: a session takes the SASL payloads the caller extracted from SASLInitialResponse / SASLResponse /
// AuthenticationSASLContinue / AuthenticationSASLFinal (messages.hpp) and returns the payload to send back.
// Randomness (nonces) is injected. A session is single-threaded; create one per authentication exchange.
//
// Passwords are used as raw bytes. PostgreSQL first applies SASLprep, which changes only non-ASCII passwords
// (NFKC normalization, non-ASCII spaces); such a password matches PostgreSQL only if SASLprep leaves it unchanged.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/buffer.hpp"
#include "util/result.hpp"

namespace pgfleet::protocol {

inline constexpr std::string_view kScramSha256 = "SCRAM-SHA-256";
inline constexpr std::string_view kScramSha256Plus = "SCRAM-SHA-256-PLUS";
inline constexpr int kDefaultScramIterations = 4096;  // PostgreSQL's default scram_iterations
inline constexpr size_t kScramSaltLength = 16;        // as PostgreSQL

using Digest = std::array<uint8_t, 32>;

// --- Primitives. nullopt only when OpenSSL fails (out of memory, algorithm disabled by policy). ---

std::string base64_encode(ByteSpan data);
// Strict: padded, canonical, no whitespace; nullopt otherwise.
std::optional<Bytes> base64_decode(std::string_view text);
std::optional<Digest> sha256(ByteSpan data);
std::optional<Digest> hmac_sha256(ByteSpan key, ByteSpan data);
// Hi(password, salt, i) of RFC 5802: PBKDF2-HMAC-SHA-256 with one 32-byte block.
std::optional<Digest> salted_password(std::string_view password, ByteSpan salt, int iterations);
std::optional<Bytes> random_bytes(size_t n);  // OpenSSL's CSPRNG

// Returns a fresh nonce: printable ASCII except ','. An empty string means "no randomness" and fails the session.
using NonceSource = std::function<std::string()>;
// 18 random bytes, base64-encoded, as PostgreSQL and libpq generate.
std::string random_nonce();

// --- Verifiers: what pg_authid.rolpassword stores for a SCRAM password. ---

struct ScramVerifier {
  int iterations = kDefaultScramIterations;
  Bytes salt;
  Digest stored_key{};
  Digest server_key{};
  bool operator==(const ScramVerifier&) const = default;
};

// "SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>"
Result<ScramVerifier> parse_verifier(std::string_view text);
std::string format_verifier(const ScramVerifier& verifier);
Result<ScramVerifier> make_verifier(std::string_view password, ByteSpan salt,
                                    int iterations = kDefaultScramIterations);

// A verifier for a user that does not exist (or has no SCRAM secret), derived from the user name and a secret
// kept by the proxy: the same user always gets the same salt, so probing cannot tell it from a real user. Pass
// the iteration count the real verifiers use. nullopt only if OpenSSL fails.
std::optional<ScramVerifier> mock_verifier(std::string_view user, ByteSpan secret,
                                           int iterations = kDefaultScramIterations);

// --- Sessions ---

enum class ScramState {
  kInitial,          // nothing exchanged
  kClientFirstSent,  // client: waiting for server-first-message
  kServerFirstSent,  // server: waiting for client-final-message
  kClientFinalSent,  // client: waiting for server-final-message
  kSucceeded,
  kFailed,  // terminal: every further call fails
};
std::string_view to_string(ScramState state);

// Why a server session failed, and the SQLSTATE to report, as PostgreSQL does.
enum class ScramFailure {
  kNone,
  kProtocol,        // malformed or out-of-order message: 08P01
  kPassword,        // wrong password, or unknown user: 28P01 ("password authentication failed for user ...")
  kChannelBinding,  // channel-binding downgrade or mismatch: 28000
  kInternal,        // no randomness, OpenSSL failure: 58000
};
std::string_view sqlstate(ScramFailure failure);

class ServerSession {
 public:
  // `tls_server_end_point`: the hash of our TLS certificate (RFC 5929 tls-server-end-point) when the client
  // connection uses TLS; it enables SCRAM-SHA-256-PLUS. Without it only SCRAM-SHA-256 is offered.
  explicit ServerSession(ScramVerifier verifier, NonceSource nonces = random_nonce,
                         std::optional<Bytes> tls_server_end_point = std::nullopt);

  // The session to run when the user does not exist or has no SCRAM secret: it uses mock_verifier(user, secret)
  // and goes through every step exactly like a real session, then fails with kPassword and the same error text
  // as a wrong password. A wrong user and a wrong password thus cost the same work and look the same.
  static ServerSession for_unknown_user(std::string_view user, ByteSpan secret, NonceSource nonces = random_nonce,
                                        std::optional<Bytes> tls_server_end_point = std::nullopt,
                                        int iterations = kDefaultScramIterations);

  // The mechanisms for AuthenticationSASL, preferred first.
  [[nodiscard]] std::vector<std::string> mechanisms() const;
  // From SASLInitialResponse: the chosen mechanism and its data. Returns the server-first-message.
  // The user name in the message is ignored, as PostgreSQL does (the startup packet's user counts).
  Result<std::string> handle_client_first(std::string_view mechanism, std::string_view message);
  // From SASLResponse. Returns the server-final-message ("v=<ServerSignature>") on success.
  Result<std::string> handle_client_final(std::string_view message);

  [[nodiscard]] ScramState state() const { return state_; }
  [[nodiscard]] ScramFailure failure() const { return failure_; }
  // After success: the ClientKey the client proved it holds (ClientProof XOR ClientSignature).
  // With the verifier's ServerKey it lets a proxy log in to the server as this user without the
  // password (PgBouncer's SCRAM pass-through); keep it in memory only.
  [[nodiscard]] const std::optional<Digest>& client_key() const { return client_key_; }

 private:
  Error fail(ScramFailure failure, std::string message);

  ScramVerifier verifier_;
  NonceSource nonces_;
  std::optional<Bytes> cbind_data_;
  bool doomed_ = false;
  bool plus_ = false;  // the client chose SCRAM-SHA-256-PLUS
  ScramState state_ = ScramState::kInitial;
  ScramFailure failure_ = ScramFailure::kNone;
  std::string gs2_header_, client_first_bare_, server_first_, nonce_;
  std::optional<Digest> client_key_;
};

struct ClientOptions {
  std::string username;  // sent as n=; PostgreSQL ignores it and libpq sends it empty
  // The hash of the server's certificate (RFC 5929): binds the exchange to the TLS channel, with
  // SCRAM-SHA-256-PLUS. Use it only if the server offered that mechanism.
  std::optional<Bytes> tls_server_end_point;
  // PBKDF2 runs on the caller's thread: refuse a server asking for more work than this.
  int max_iterations = 1'000'000;
};

class ClientSession {
 public:
  explicit ClientSession(std::string password, NonceSource nonces = random_nonce, ClientOptions options = {});
  // A session that proves knowledge of the password with keys instead: the ClientKey a client
  // revealed to a ServerSession, and the ServerKey of the same verifier (to check the server).
  // Works against any server storing that verifier (same salt and iterations).
  static ClientSession from_keys(const Digest& client_key, const Digest& server_key, NonceSource nonces = random_nonce,
                                 ClientOptions options = {});

  // The mechanism to name in SASLInitialResponse.
  [[nodiscard]] std::string_view mechanism() const;
  // The client-first-message, for SASLInitialResponse.
  Result<std::string> client_first();
  // From AuthenticationSASLContinue; returns the client-final-message (for SASLResponse).
  Result<std::string> handle_server_first(std::string_view message);
  // From AuthenticationSASLFinal: checks the server's signature (proof that the server knows the verifier).
  Status handle_server_final(std::string_view message);

  [[nodiscard]] ScramState state() const { return state_; }

 private:
  Error fail(std::string message);

  std::string password_;
  std::optional<std::pair<Digest, Digest>> keys_;  // from_keys: ClientKey, ServerKey
  NonceSource nonces_;
  ClientOptions options_;
  ScramState state_ = ScramState::kInitial;
  std::string gs2_header_, client_first_bare_, nonce_;
  Digest server_signature_{};
};

// --- MD5 passwords ---

// "md5" + hex(md5(password + user)): what pg_authid stores for an MD5 password.
Result<std::string> md5_stored(std::string_view user, std::string_view password);
// The PasswordMessage answering AuthenticationMD5Password: "md5" + hex(md5(<32 hex digits of stored> + salt)).
// A proxy holding only the stored hash can check a client's answer with it.
Result<std::string> md5_response(std::string_view stored, std::array<uint8_t, 4> salt);
// md5_response(md5_stored(user, password), salt).
Result<std::string> md5_password(std::string_view user, std::string_view password, std::array<uint8_t, 4> salt);

}  // namespace pgfleet::protocol
