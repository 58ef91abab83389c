// SCRAM-SHA-256 and MD5: RFC 7677 vector, client/server interop, rejected tampering, PostgreSQL-made verifiers.
#include "protocol/scram.hpp"

#include <gtest/gtest.h>

namespace pgfleet::protocol {
namespace {

NonceSource fixed(std::string nonce) {
  return [nonce = std::move(nonce)] { return nonce; };
}

ScramVerifier verifier_for(std::string_view password, std::string_view salt = "0123456789abcdef") {
  auto v = make_verifier(password, as_bytes(salt));
  EXPECT_TRUE(v.ok());
  return v.ok() ? *v : ScramVerifier{};
}

ClientOptions with_channel_binding(std::string_view hash) {
  ClientOptions o;
  o.tls_server_end_point = Bytes(hash.begin(), hash.end());
  return o;
}

// Runs a full exchange; returns the server's failure (kNone on success) and checks the client agrees.
ScramFailure exchange(ServerSession& server, ClientSession& client) {
  auto first = client.client_first();
  if (!first.ok()) return ScramFailure::kInternal;
  auto server_first = server.handle_client_first(client.mechanism(), *first);
  if (!server_first.ok()) return server.failure();
  auto final = client.handle_server_first(*server_first);
  if (!final.ok()) return ScramFailure::kInternal;
  auto server_final = server.handle_client_final(*final);
  if (!server_final.ok()) return server.failure();
  EXPECT_TRUE(client.handle_server_final(*server_final).ok());
  EXPECT_EQ(client.state(), ScramState::kSucceeded);
  EXPECT_EQ(server.state(), ScramState::kSucceeded);
  return ScramFailure::kNone;
}

TEST(Base64, Rfc4648Vectors) {
  const std::pair<std::string_view, std::string_view> vectors[] = {
      {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"}};
  for (auto [plain, encoded] : vectors) {
    EXPECT_EQ(base64_encode(as_bytes(plain)), encoded);
    auto decoded = base64_decode(encoded);
    ASSERT_TRUE(decoded) << encoded;
    EXPECT_EQ(as_chars(*decoded), plain);
  }
  for (std::string_view bad : {"Zg=", "Zh==", "Zm9=", "Z===", "====", "Zm=v", "Zm9v\n", "Zm 9", "Zm9v====", "Zg==Zg=="}) {
    EXPECT_FALSE(base64_decode(bad)) << bad;
  }
}

TEST(Scram, Rfc7677TestVector) {
  auto salt = base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  ASSERT_TRUE(salt);
  auto verifier = make_verifier("pencil", *salt, 4096);
  ASSERT_TRUE(verifier.ok());
  ClientOptions options;
  options.username = "user";
  ClientSession client("pencil", fixed("rOprNGfwEbeRWgbNEkqO"), options);
  ServerSession server(*verifier, fixed("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"));
  EXPECT_EQ(server.mechanisms(), std::vector<std::string>{"SCRAM-SHA-256"});

  auto first = client.client_first();
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
  auto server_first = server.handle_client_first("SCRAM-SHA-256", *first);
  ASSERT_TRUE(server_first.ok()) << server_first.error();
  EXPECT_EQ(*server_first, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  auto final = client.handle_server_first(*server_first);
  ASSERT_TRUE(final.ok()) << final.error();
  EXPECT_EQ(*final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  auto server_final = server.handle_client_final(*final);
  ASSERT_TRUE(server_final.ok()) << server_final.error();
  EXPECT_EQ(*server_final, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
  EXPECT_TRUE(client.handle_server_final(*server_final).ok());
  EXPECT_EQ(to_string(client.state()), "succeeded");
}

TEST(Scram, ClientAndServerInteroperateWithRandomNonces) {
  ServerSession server(verifier_for("correct horse"));
  ClientSession client("correct horse");
  EXPECT_EQ(exchange(server, client), ScramFailure::kNone);
  EXPECT_EQ(random_nonce().size(), 24u);
  EXPECT_NE(random_nonce(), random_nonce());
}

TEST(Scram, ClientSendsEmptyUserNameLikeLibpq) {
  ClientSession client("pw", fixed("abc"));
  EXPECT_EQ(*client.client_first(), "n,,n=,r=abc");
  ClientOptions options;
  options.username = "a=b,c";
  ClientSession escaped("pw", fixed("abc"), options);
  EXPECT_EQ(*escaped.client_first(), "n,,n=a=3Db=2Cc,r=abc");
}

TEST(Scram, WrongPasswordIsRejected) {
  ServerSession server(verifier_for("right"));
  ClientSession client("wrong");
  EXPECT_EQ(exchange(server, client), ScramFailure::kPassword);
  EXPECT_EQ(server.state(), ScramState::kFailed);
  EXPECT_EQ(sqlstate(server.failure()), "28P01");
}

TEST(Scram, UnknownUserLooksLikeAWrongPassword) {
  const std::string_view secret = "proxy-wide mock secret";
  auto run = [&](ServerSession server) {
    ClientSession client("anything", fixed("clientnonce"));
    auto first = client.client_first();
    auto server_first = server.handle_client_first(kScramSha256, *first);
    EXPECT_TRUE(server_first.ok());
    auto final = client.handle_server_first(*server_first);
    EXPECT_TRUE(final.ok());
    auto result = server.handle_client_final(*final);
    EXPECT_FALSE(result.ok());
    EXPECT_EQ(server.failure(), ScramFailure::kPassword);
    return std::make_pair(*server_first, result.error());
  };
  auto [ghost1, ghost_error] = run(ServerSession::for_unknown_user("ghost", as_bytes(secret), fixed("s")));
  auto [ghost2, ghost_error2] = run(ServerSession::for_unknown_user("ghost", as_bytes(secret), fixed("s")));
  auto [other, other_error] = run(ServerSession::for_unknown_user("other", as_bytes(secret), fixed("s")));
  auto [real, real_error] = run(ServerSession(verifier_for("secret"), fixed("s")));
  EXPECT_EQ(ghost1, ghost2);  // same salt and iterations every time for the same user
  EXPECT_NE(ghost1, other);
  EXPECT_EQ(ghost_error, real_error);
  EXPECT_EQ(ghost1.size(), real.size());  // 16-byte salt like a real verifier

  auto mock = mock_verifier("ghost", as_bytes(secret));
  ASSERT_TRUE(mock);
  EXPECT_EQ(mock->salt.size(), kScramSaltLength);
}

TEST(Scram, TamperedNoncesAreRejected) {
  {
    ServerSession server(verifier_for("pw"), fixed("SERVER"));
    ClientSession client("pw", fixed("client"));
    auto server_first = server.handle_client_first(kScramSha256, *client.client_first());
    auto final = client.handle_server_first(*server_first);
    ASSERT_TRUE(final.ok());
    std::string tampered = *final;
    tampered.replace(tampered.find("SERVER"), 6, "SERVEX");
    EXPECT_FALSE(server.handle_client_final(tampered).ok());
    EXPECT_EQ(server.failure(), ScramFailure::kProtocol);
  }
  {
    ClientSession client("pw", fixed("client"));
    ASSERT_TRUE(client.client_first().ok());
    EXPECT_FALSE(client.handle_server_first("r=clienX123,s=c2FsdA==,i=4096").ok());  // not our prefix
  }
  {
    ClientSession client("pw", fixed("client"));
    ASSERT_TRUE(client.client_first().ok());
    EXPECT_FALSE(client.handle_server_first("r=client,s=c2FsdA==,i=4096").ok());  // server added nothing
  }
}

TEST(Scram, TamperedProofAndSignatureAreRejected) {
  ServerSession server(verifier_for("pw"));
  ClientSession client("pw");
  auto server_first = server.handle_client_first(kScramSha256, *client.client_first());
  auto final = client.handle_server_first(*server_first);
  std::string tampered = *final;
  size_t p = tampered.find(",p=") + 3;
  tampered[p] = tampered[p] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(server.handle_client_final(tampered).ok());
  EXPECT_EQ(server.failure(), ScramFailure::kPassword);
  EXPECT_FALSE(server.handle_client_final(*final).ok()) << "a failed session stays failed";

  EXPECT_FALSE(client.handle_server_final("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").ok());
  EXPECT_EQ(client.state(), ScramState::kFailed);
}

TEST(Scram, ChannelBinding) {
  const std::string_view cert_hash = "0123456789abcdef0123456789abcdef";
  {
    ServerSession server(verifier_for("pw"), random_nonce, Bytes(cert_hash.begin(), cert_hash.end()));
    EXPECT_EQ(server.mechanisms(), (std::vector<std::string>{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}));
    ClientSession client("pw", random_nonce, with_channel_binding(cert_hash));
    EXPECT_EQ(client.mechanism(), kScramSha256Plus);
    EXPECT_EQ(exchange(server, client), ScramFailure::kNone);
  }
  {  // The client sees a different certificate (a man in the middle).
    ServerSession server(verifier_for("pw"), random_nonce, Bytes(cert_hash.begin(), cert_hash.end()));
    ClientSession client("pw", random_nonce, with_channel_binding("another certificate hash........"));
    EXPECT_EQ(exchange(server, client), ScramFailure::kChannelBinding);
  }
  {  // Without binding, over TLS: allowed, as in PostgreSQL.
    ServerSession server(verifier_for("pw"), random_nonce, Bytes(cert_hash.begin(), cert_hash.end()));
    ClientSession client("pw");
    EXPECT_EQ(exchange(server, client), ScramFailure::kNone);
  }
  {  // "y": the client thinks the server cannot bind, but it can: a downgrade.
    ServerSession server(verifier_for("pw"), random_nonce, Bytes(cert_hash.begin(), cert_hash.end()));
    EXPECT_FALSE(server.handle_client_first(kScramSha256, "y,,n=,r=abc").ok());
    EXPECT_EQ(server.failure(), ScramFailure::kChannelBinding);
  }
  {  // PLUS is not offered without a certificate.
    ServerSession server(verifier_for("pw"));
    ClientSession client("pw", random_nonce, with_channel_binding(cert_hash));
    EXPECT_EQ(exchange(server, client), ScramFailure::kProtocol);
  }
  {  // The client's c= must repeat its gs2 header.
    ServerSession server(verifier_for("pw"), fixed("S"));
    ASSERT_TRUE(server.handle_client_first(kScramSha256, "y,,n=,r=abc").ok());
    EXPECT_FALSE(server.handle_client_final("c=biws,r=abcS,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").ok());
    EXPECT_EQ(server.failure(), ScramFailure::kChannelBinding);
  }
}

TEST(Scram, MalformedClientMessagesAreRejected) {
  for (std::string_view bad :
       {"", "n", "x,,n=,r=abc", "n,a=admin,n=,r=abc", "n,,m=ext,n=,r=abc", "n,,r=abc", "n,,n=", "n,,n=,r=",
        "n,,n=,r=a\x01", "p=tls-unique,,n=,r=abc", "p=tls-server-end-point,,n=,r=abc", "n,x,n=,r=abc"}) {
    ServerSession server(verifier_for("pw"));
    EXPECT_FALSE(server.handle_client_first(kScramSha256, bad).ok()) << bad;
    EXPECT_EQ(server.failure(), ScramFailure::kProtocol) << bad;
  }
  ServerSession wrong_mech(verifier_for("pw"));
  EXPECT_FALSE(wrong_mech.handle_client_first("SCRAM-SHA-1", "n,,n=,r=abc").ok());

  for (std::string_view bad : {"", "c=biws", "c=biws,r=abcS", "r=abcS,c=biws,p=AAAA", "c=biws,r=abcS,p=AAAA",
                               "c=biws,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,r=abcS"}) {
    ServerSession server(verifier_for("pw"), fixed("S"));
    ASSERT_TRUE(server.handle_client_first(kScramSha256, "n,,n=,r=abc,x=extension").ok());
    EXPECT_FALSE(server.handle_client_final(bad).ok()) << bad;
    EXPECT_EQ(server.failure(), ScramFailure::kProtocol) << bad;
  }
}

TEST(Scram, MalformedServerMessagesAreRejected) {
  for (std::string_view bad : {"", "r=abcS,s=c2FsdA==", "r=abcS,s=c2FsdA==,i=0", "r=abcS,s=c2FsdA==,i=-1",
                               "r=abcS,s=c2FsdA==,i=99999999999", "r=abcS,s=,i=4096", "r=abcS,s=c2FsdA=,i=4096",
                               "r=abcS,s=c2FsdA==,i=4096,x=1", "m=x,r=abcS,s=c2FsdA==,i=4096",
                               "r=abcS,s=c2FsdA==,i=2000000"}) {
    ClientSession client("pw", fixed("abc"));
    ASSERT_TRUE(client.client_first().ok());
    EXPECT_FALSE(client.handle_server_first(bad).ok()) << bad;
    EXPECT_EQ(client.state(), ScramState::kFailed);
  }
  ClientSession client("pw", fixed("abc"));
  EXPECT_FALSE(client.handle_server_first("r=abcS,s=c2FsdA==,i=4096").ok()) << "before client-first";
}

TEST(Scram, ServerErrorAndStateOrder) {
  ServerSession server(verifier_for("pw"));
  ClientSession client("pw");
  auto final = client.handle_server_first(*server.handle_client_first(kScramSha256, *client.client_first()));
  ASSERT_TRUE(final.ok());
  auto e = client.handle_server_final("e=invalid-proof");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().find("invalid-proof"), std::string::npos);

  ServerSession fresh(verifier_for("pw"));
  EXPECT_FALSE(fresh.handle_client_final("c=biws,r=x,p=y").ok());
  EXPECT_EQ(fresh.failure(), ScramFailure::kProtocol);
  ServerSession no_nonce(verifier_for("pw"), fixed(""));
  EXPECT_FALSE(no_nonce.handle_client_first(kScramSha256, "n,,n=,r=abc").ok());
  EXPECT_EQ(no_nonce.failure(), ScramFailure::kInternal);
}

TEST(ScramVerifier, FormatRoundTripsAndMatchesAnIndependentComputation) {
  // Computed with Python's hashlib.pbkdf2_hmac / hmac / sha256 for password "hunter2", salt "0123456789abcdef".
  const std::string expected =
      "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$HJFePfOAb1GWwyOATbgkhasVp3hFg6hYYE7eNrTx7UA=:"
      "4t0aPsdm+OD8h/VVwxMjgry9wezSEEHf1L5kcG4VJsw=";
  ScramVerifier v = verifier_for("hunter2");
  EXPECT_EQ(format_verifier(v), expected);
  auto parsed = parse_verifier(expected);
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(*parsed, v);
  EXPECT_EQ(parsed->iterations, 4096);
}

TEST(ScramVerifier, AcceptsAVerifierMadeByPostgres) {
  // libpq 15's PQencryptPasswordConn(conn, "pencil", "user", "scram-sha-256"): PostgreSQL's own
  // src/common/scram-common.c, with a salt it drew at random.
  const std::string pg = "SCRAM-SHA-256$4096:V2DFng55RH0AqJ5U8q/ByQ==$HipTX05p7o6cZnIoQrb5FPB50jR3RhfXP2OmUFmHeEo=:"
                         "NLLQkdKUUv8MpOIJk3lvhsbI8mo+yFP3Jy9WXQT56Dw=";
  auto v = parse_verifier(pg);
  ASSERT_TRUE(v.ok()) << v.error();
  EXPECT_EQ(format_verifier(*v), pg);
  EXPECT_EQ(*make_verifier("pencil", v->salt, v->iterations), *v);
  ServerSession ok(*v);
  ClientSession right("pencil");
  EXPECT_EQ(exchange(ok, right), ScramFailure::kNone);
  ServerSession rejecting(*v);
  ClientSession wrong("pencil2");
  EXPECT_EQ(exchange(rejecting, wrong), ScramFailure::kPassword);
}

TEST(ScramVerifier, RejectsMalformedVerifiers) {
  const std::string good_keys = "HJFePfOAb1GWwyOATbgkhasVp3hFg6hYYE7eNrTx7UA=:4t0aPsdm+OD8h/VVwxMjgry9wezSEEHf1L5kcG4VJsw=";
  for (const std::string& bad : {
           std::string("md553f48b7c4b76a86ce72276c5755f217d"),
           std::string("SCRAM-SHA-256$"),
           "SCRAM-SHA-256$0:MDEy$" + good_keys,
           "SCRAM-SHA-256$-1:MDEy$" + good_keys,
           "SCRAM-SHA-256$x:MDEy$" + good_keys,
           "SCRAM-SHA-256$4096:$" + good_keys,
           "SCRAM-SHA-256$4096:MDE$" + good_keys,
           "SCRAM-SHA-256$4096:MDEy$" + good_keys.substr(4),
           "SCRAM-SHA-256$4096:MDEy:" + good_keys,
           "SCRAM-SHA-1$4096:MDEy$" + good_keys,
       }) {
    EXPECT_FALSE(parse_verifier(bad).ok()) << bad;
  }
  EXPECT_FALSE(make_verifier("pw", {}, 4096).ok());
  EXPECT_FALSE(make_verifier("pw", as_bytes("salt"), 0).ok());
}

TEST(Md5, MatchesPostgres) {
  // Both values checked with Python hashlib; md5_stored also equals libpq's PQencryptPasswordConn(..., "md5").
  auto stored = md5_stored("postgres", "secret");
  ASSERT_TRUE(stored.ok()) << stored.error();
  EXPECT_EQ(*stored, "md553f48b7c4b76a86ce72276c5755f217d");
  auto response = md5_password("postgres", "secret", {1, 2, 3, 4});
  ASSERT_TRUE(response.ok()) << response.error();
  EXPECT_EQ(*response, "md5bb41a296aab6baccb36ff243a562abff");
  EXPECT_EQ(*md5_response(*stored, {1, 2, 3, 4}), *response);
  EXPECT_FALSE(md5_response("53f48b7c4b76a86ce72276c5755f217d", {1, 2, 3, 4}).ok());
}

TEST(ScramPrimitives, Sha256AndHmacVectors) {
  EXPECT_EQ(base64_encode(*sha256(as_bytes("abc"))), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
  // RFC 4231 test case 2 (5bdcc146...64ec3843).
  EXPECT_EQ(base64_encode(*hmac_sha256(as_bytes("Jefe"), as_bytes("what do ya want for nothing?"))),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
}

}  // namespace
}  // namespace pgfleet::protocol

namespace pgfleet::protocol {
namespace {

// A proxy learns the ClientKey from a client's successful login and reuses it to log in to a
// server holding the same verifier, without ever seeing the password.
TEST(ScramPassThrough, KeysFromOneLoginAuthenticateAgainstTheSameVerifier) {
  Bytes salt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  auto verifier = make_verifier("s3cret", salt);
  ASSERT_TRUE(verifier.ok());

  ServerSession proxy_side(*verifier);
  ClientSession client("s3cret");
  auto first = client.client_first();
  auto server_first = proxy_side.handle_client_first("SCRAM-SHA-256", *first);
  auto client_final = client.handle_server_first(*server_first);
  auto server_final = proxy_side.handle_client_final(*client_final);
  ASSERT_TRUE(server_final.ok());
  ASSERT_TRUE(proxy_side.client_key().has_value());

  ServerSession real_server(*verifier);
  auto pass_through = ClientSession::from_keys(*proxy_side.client_key(), verifier->server_key);
  auto first2 = pass_through.client_first();
  auto server_first2 = real_server.handle_client_first("SCRAM-SHA-256", *first2);
  auto client_final2 = pass_through.handle_server_first(*server_first2);
  ASSERT_TRUE(client_final2.ok());
  auto server_final2 = real_server.handle_client_final(*client_final2);
  ASSERT_TRUE(server_final2.ok()) << server_final2.error();
  EXPECT_TRUE(pass_through.handle_server_final(*server_final2).ok());
}

TEST(ScramPassThrough, NoClientKeyAfterAFailedLogin) {
  Bytes salt = {9, 9, 9, 9};
  auto verifier = make_verifier("right", salt);
  ServerSession server(*verifier);
  ClientSession client("wrong");
  auto server_first = server.handle_client_first("SCRAM-SHA-256", *client.client_first());
  auto final_msg = server.handle_client_final(*client.handle_server_first(*server_first));
  EXPECT_FALSE(final_msg.ok());
  EXPECT_FALSE(server.client_key().has_value());
}

TEST(ScramPassThrough, KeysOfAnotherPasswordAreRejected) {
  Bytes salt = {4, 4, 4, 4};
  auto verifier = make_verifier("right", salt);
  auto other = make_verifier("other", salt);
  // The ClientKey of "other" (derived as a client would) does not match "right"'s verifier.
  ServerSession probe(*other);
  ClientSession c("other");
  auto sf = probe.handle_client_first("SCRAM-SHA-256", *c.client_first());
  ASSERT_TRUE(probe.handle_client_final(*c.handle_server_first(*sf)).ok());
  ServerSession server(*verifier);
  auto pass = ClientSession::from_keys(*probe.client_key(), verifier->server_key);
  auto sf2 = server.handle_client_first("SCRAM-SHA-256", *pass.client_first());
  EXPECT_FALSE(server.handle_client_final(*pass.handle_server_first(*sf2)).ok());
}

}  // namespace
}  // namespace pgfleet::protocol
