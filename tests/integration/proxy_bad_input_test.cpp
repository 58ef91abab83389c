// Hostile and broken clients on the proxy port: garbage, oversized and truncated packets, an old
// protocol version, invalid messages after login, half-open sockets, a TLS handshake with junk and a
// client that does not read its results. After each, the proxy serves everyone else as before.
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

using Clock = std::chrono::steady_clock;
using Bytes = std::string;

Bytes be32(uint32_t v) {
  Bytes b(4, '\0');
  b[0] = static_cast<char>(v >> 24);
  b[1] = static_cast<char>(v >> 16);
  b[2] = static_cast<char>(v >> 8);
  b[3] = static_cast<char>(v);
  return b;
}

// A startup packet: length, protocol version, name/value pairs.
Bytes startup_packet(uint32_t version, const std::vector<std::pair<std::string, std::string>>& params) {
  Bytes body = be32(version);
  for (const auto& [k, v] : params) body += k + '\0' + v + '\0';
  body += '\0';
  return be32(static_cast<uint32_t>(body.size() + 4)) + body;
}

class RawSocket {
 public:
  explicit RawSocket(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error(std::string("connect to the proxy: ") + std::strerror(errno));
    }
  }
  ~RawSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  RawSocket(RawSocket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }

  bool send(const Bytes& bytes) { return send_all(fd_, bytes); }
  static bool send_all(int fd, const Bytes& bytes) {
    size_t at = 0;
    while (at < bytes.size()) {
      ssize_t n = ::send(fd, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
      if (n <= 0) return false;
      at += static_cast<size_t>(n);
    }
    return true;
  }
  // Everything the proxy sends until it closes the connection; `closed` false at the timeout.
  static Bytes read_until_closed(int fd, std::chrono::milliseconds timeout, bool& closed) {
    Bytes out;
    closed = false;
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, 50) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        closed = true;  // EOF or a reset
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  Bytes read_until_closed(std::chrono::milliseconds timeout, bool& closed) {
    return read_until_closed(fd_, timeout, closed);
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  [[nodiscard]] int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

// The SQLSTATE and message of the first ErrorResponse in `bytes` ("" when there is none).
std::pair<std::string, std::string> first_error(const Bytes& bytes) {
  size_t at = 0;
  while (at + 5 <= bytes.size()) {
    char type = bytes[at];
    uint32_t len = (static_cast<uint32_t>(static_cast<uint8_t>(bytes[at + 1])) << 24) |
                   (static_cast<uint32_t>(static_cast<uint8_t>(bytes[at + 2])) << 16) |
                   (static_cast<uint32_t>(static_cast<uint8_t>(bytes[at + 3])) << 8) |
                   static_cast<uint32_t>(static_cast<uint8_t>(bytes[at + 4]));
    if (len < 4 || at + 1 + len > bytes.size()) break;
    if (type == 'E') {
      std::string code, message;
      size_t f = at + 5, end = at + 1 + len;
      while (f < end && bytes[f] != '\0') {
        char field = bytes[f];
        size_t z = bytes.find('\0', f + 1);
        if (z == std::string::npos || z > end) break;
        if (field == 'C') code = bytes.substr(f + 1, z - f - 1);
        if (field == 'M') message = bytes.substr(f + 1, z - f - 1);
        f = z + 1;
      }
      return {code, message};
    }
    at += 1 + len;
  }
  return {"", ""};
}

// Rows of SHOW CLIENTS other than admin console connections (ours, at most a second old).
int non_admin_clients(const Table& t) {
  int n = 0;
  for (size_t i = 0; i < t.rows.size(); ++i) n += t.at(i, "database") != "pgfleet";
  return n;
}

class ProxyBadInputTest : public ClusterSuite<ProxyBadInputTest> {
 public:
  static std::string cluster_config() { return ""; }

 protected:
  void SetUp() override {
    ClusterSuite::SetUp();
    if (HasFatalFailure()) return;
    proxy_pid_ = cluster().proxy_pid();
    ASSERT_GT(proxy_pid_, 0);
  }
  // The same proxy process still serves a normal client.
  void expect_proxy_healthy() {
    EXPECT_TRUE(process_alive(proxy_pid_)) << "the proxy process died";
    EXPECT_EQ(cluster().proxy_pid(), proxy_pid_) << "the proxy was restarted";
    auto p = psql(cluster().proxy_uri(), {"-At", "-c", "SELECT 'still serving'"});
    EXPECT_EQ(p.exit_code, 0) << p.output;
    EXPECT_EQ(p.output, "still serving\n");
  }
  // A logged-in libpq connection without TLS, so raw bytes can be written on its socket.
  postgres::PgConn plain_login() {
    auto conn = connect_or_throw(with_param(cluster().proxy_uri(), "sslmode=disable"));
    PGresult* r = PQexec(conn.raw(), "SELECT 1");
    EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    return conn;
  }
  // Writes `bytes` after login; the proxy must answer with a protocol-violation error and close.
  void expect_rejected_after_login(const Bytes& bytes, const std::string& what) {
    SCOPED_TRACE(what);
    auto conn = plain_login();
    int fd = PQsocket(conn.raw());
    ASSERT_TRUE(RawSocket::send_all(fd, bytes));
    bool closed = false;
    Bytes reply = RawSocket::read_until_closed(fd, 5s, closed);
    EXPECT_TRUE(closed) << "the proxy kept the connection open after " << what;
    auto [code, message] = first_error(reply);
    EXPECT_EQ(code, "08P01") << "reply: '" << message << "' (" << reply.size() << " bytes)";
  }
  int64_t proxy_pid_ = 0;
};

TEST_F(ProxyBadInputTest, GarbageInsteadOfAStartupPacket) {
  for (const Bytes& garbage : {Bytes("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), Bytes(64, '\xff'), Bytes(3, '\0') + "\x01",
                               Bytes("\x00\x00\x00\x08\x12\x34\x56\x78", 8)}) {
    RawSocket s(cluster().proxy_port());
    ASSERT_TRUE(s.send(garbage));
    bool closed = false;
    Bytes reply = s.read_until_closed(5s, closed);
    EXPECT_TRUE(closed) << "the proxy kept a connection that sent " << garbage.size() << " bytes of garbage";
    if (!reply.empty()) {
      EXPECT_EQ(reply[0], 'E') << "reply to garbage is not an ErrorResponse";
    }
  }
  expect_proxy_healthy();
}

TEST_F(ProxyBadInputTest, OversizedStartupPacketIsRefusedWithoutWaitingForIt) {
  RawSocket s(cluster().proxy_port());
  Bytes packet = startup_packet(196608, {{"user", "postgres"}, {"database", "postgres"}});
  Bytes oversized = be32(100000) + packet.substr(4);
  ASSERT_TRUE(s.send(oversized));
  auto started = Clock::now();
  bool closed = false;
  Bytes reply = s.read_until_closed(5s, closed);
  EXPECT_TRUE(closed) << "the proxy waits for the rest of a 100000-byte startup packet";
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - started).count(), 3.0);
  auto [code, message] = first_error(reply);
  if (!reply.empty()) {
    EXPECT_EQ(code, "08P01") << message;
  }
  expect_proxy_healthy();
}

TEST_F(ProxyBadInputTest, ProtocolVersionTwoIsRefused) {
  for (int port : {cluster().proxy_port(), cluster().node_port(1)}) {
    SCOPED_TRACE(port == cluster().proxy_port() ? "proxy" : "PostgreSQL");
    RawSocket s(port);
    ASSERT_TRUE(s.send(startup_packet(2u << 16, {{"user", "postgres"}, {"database", "postgres"}})));
    bool closed = false;
    Bytes reply = s.read_until_closed(5s, closed);
    EXPECT_TRUE(closed);
    // PostgreSQL answers in the client's (version 2) format: 'E' and a bare string.
    EXPECT_NE(reply.find("unsupported frontend protocol 2.0"), std::string::npos) << reply;
    if (port == cluster().proxy_port()) {
      auto [code, message] = first_error(reply);
      EXPECT_EQ(code, "0A000") << message << " (PostgreSQL: feature_not_supported)";
    }
  }
  expect_proxy_healthy();
}

TEST_F(ProxyBadInputTest, TruncatedPacketsThenDisconnect) {
  Bytes packet = startup_packet(196608, {{"user", "postgres"}, {"database", "postgres"}});
  for (int i = 0; i < 30; ++i) {
    RawSocket s(cluster().proxy_port());
    ASSERT_TRUE(s.send(packet.substr(0, 1 + static_cast<size_t>(i) % (packet.size() - 1))));
  }
  // Half a SCRAM exchange, then gone.
  {
    RawSocket s(cluster().proxy_port());
    ASSERT_TRUE(s.send(packet));
    ASSERT_TRUE(s.send(Bytes("p") + be32(40) + "SCRAM-SHA-256"));
  }
  // A logged-in client that disconnects in the middle of a message, in and out of a transaction.
  for (bool in_transaction : {false, true}) {
    auto conn = plain_login();
    if (in_transaction) {
      PGresult* r = PQexec(conn.raw(), "BEGIN");
      ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK);
      PQclear(r);
      r = PQexec(conn.raw(), "CREATE TEMP TABLE half_done (v int)");
      ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK);
      PQclear(r);
    }
    int fd = PQsocket(conn.raw());
    ASSERT_TRUE(RawSocket::send_all(fd, Bytes("Q") + be32(1000) + "SELECT 'never fin"));
    ::shutdown(fd, SHUT_RDWR);
  }
  // A client that disconnects in the middle of COPY FROM STDIN.
  {
    auto conn = plain_login();
    PGresult* r = PQexec(conn.raw(), "CREATE TABLE IF NOT EXISTS copy_target (v text)");
    ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
    PQclear(r);
    r = PQexec(conn.raw(), "COPY copy_target FROM STDIN");
    ASSERT_EQ(PQresultStatus(r), PGRES_COPY_IN) << PQresultErrorMessage(r);
    PQclear(r);
    std::string rows;
    for (int i = 0; i < 20000; ++i) rows += "row " + std::to_string(i) + "\n";
    ASSERT_EQ(PQputCopyData(conn.raw(), rows.data(), static_cast<int>(rows.size())), 1);
    ASSERT_EQ(PQflush(conn.raw()), 0);
    ::shutdown(PQsocket(conn.raw()), SHUT_RDWR);
  }
  EXPECT_TRUE(eventually(
      [&] {
        return sql_value(cluster().primary_uri(),
                         "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY copy_target%'") == "0";
      },
      5s))
      << "the server is still in the abandoned COPY";
  EXPECT_EQ(sql_value(cluster().proxy_uri(), "SELECT count(*) FROM copy_target"), "0");
  // Nothing is left behind: no half-open client in SHOW CLIENTS, no server stuck in a transaction.
  Table t;
  EXPECT_TRUE(eventually(
      [&] {
        t = query_table(cluster().admin_uri(), "SHOW CLIENTS");
        return non_admin_clients(t) == 0;
      },
      5s))
      << t.dump();
  EXPECT_TRUE(eventually(
      [&] {
        return sql_value(cluster().primary_uri(),
                         "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'") == "0";
      },
      5s))
      << "a server connection was left in the disconnected client's transaction";
  expect_proxy_healthy();
}

TEST_F(ProxyBadInputTest, InvalidMessagesAfterLogin) {
  expect_rejected_after_login(Bytes("Q") + be32(2), "a message length below 4");
  expect_rejected_after_login(Bytes("Q") + be32(0), "a message length of 0");
  expect_rejected_after_login(Bytes("Q") + be32(0x7fffffff) + "SELECT 1", "a 2 GB message");
  expect_rejected_after_login(Bytes("z") + be32(4), "an unknown message type");
  expect_rejected_after_login(Bytes("\0\0\0\x08\x04\xd2\x16\x2f", 8), "a second startup packet (SSLRequest)");
  // The console checks its input too.
  {
    auto conn = connect_or_throw(with_param(cluster().admin_uri(), "sslmode=disable"));
    int fd = PQsocket(conn.raw());
    ASSERT_TRUE(RawSocket::send_all(fd, Bytes("Q") + be32(1)));
    bool closed = false;
    Bytes reply = RawSocket::read_until_closed(fd, 5s, closed);
    EXPECT_TRUE(closed) << "the admin console kept a connection that sent an invalid length";
    EXPECT_EQ(first_error(reply).first, "08P01");
  }
  // The pool is fine: every server connection is idle or serving someone.
  expect_proxy_healthy();
  EXPECT_EQ(sql_value(cluster().primary_uri(),
                      "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"),
            "0");
}

TEST_F(ProxyBadInputTest, JunkInsteadOfATlsHandshake) {
  RawSocket s(cluster().proxy_port());
  ASSERT_TRUE(s.send(be32(8) + be32(80877103)));  // SSLRequest
  char answer = 0;
  pollfd pfd{s.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 5000), 1);
  ASSERT_EQ(::recv(s.fd(), &answer, 1, 0), 1);
  EXPECT_TRUE(answer == 'S' || answer == 'N') << "answer to SSLRequest: " << static_cast<int>(answer);
  ASSERT_TRUE(s.send(Bytes(300, '\x16') + "not a client hello"));
  bool closed = false;
  s.read_until_closed(5s, closed);
  EXPECT_TRUE(closed) << "the proxy kept a connection with a broken TLS handshake";
  expect_proxy_healthy();
}

TEST_F(ProxyBadInputTest, ManyIdleSocketsDoNotBlockOthers) {
  std::vector<RawSocket> silent;
  for (int i = 0; i < 300; ++i) silent.emplace_back(cluster().proxy_port());
  expect_proxy_healthy();
  Table t;
  EXPECT_TRUE(eventually(
      [&] {
        t = query_table(cluster().admin_uri(), "SHOW CLIENTS");
        return non_admin_clients(t) >= 300;
      },
      5s))
      << "SHOW CLIENTS does not list the 300 silent sockets: " << non_admin_clients(t) << " rows";
  silent.clear();
  EXPECT_TRUE(eventually(
      [&] {
        t = query_table(cluster().admin_uri(), "SHOW CLIENTS");
        return non_admin_clients(t) == 0;
      },
      5s))
      << "closed sockets are still listed:\n" << t.dump();
}

// A named prepared statement bound with a large parameter (a 64 MB bytea, as an application
// storing files does): the proxy renames the statement and streams the rest, it does not buffer it.
TEST_F(ProxyBadInputTest, LargeParametersOfANamedStatementStreamThrough) {
  auto conn = connect_or_throw(cluster().proxy_uri() + std::string("?sslmode=disable"));
  PGconn* c = conn.raw();
  {
    PGresult* r = PQexec(c, "CREATE TABLE IF NOT EXISTS big_blobs (id int, data bytea)");
    ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
    PQclear(r);
    r = PQprepare(c, "put_blob", "INSERT INTO big_blobs VALUES ($1::int, $2::bytea) RETURNING length(data)", 2, nullptr);
    ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
    PQclear(r);
  }
  const std::string blob(64 * 1024 * 1024, 'b');
  int64_t before = rss_kb(proxy_pid_);
  ASSERT_GT(before, 0);
  std::atomic<bool> done{false};
  std::atomic<int64_t> peak{before};
  std::thread sampler([&] {
    while (!done) {
      int64_t now = rss_kb(proxy_pid_);
      if (now > peak) peak = now;
      std::this_thread::sleep_for(20ms);
    }
  });
  for (int i = 0; i < 3; ++i) {
    std::string id = std::to_string(i);
    const char* values[] = {id.c_str(), blob.data()};
    const int lengths[] = {0, static_cast<int>(blob.size())};
    const int formats[] = {0, 1};
    PGresult* r = PQexecPrepared(c, "put_blob", 2, values, lengths, formats, 0);
    EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      EXPECT_STREQ(PQgetvalue(r, 0, 0), "67108864");
    }
    PQclear(r);
  }
  done = true;
  sampler.join();
  RecordProperty("rss_growth_kb", static_cast<int>(peak - before));
  EXPECT_LT(peak - before, 32 * 1024) << "the proxy's RSS grew from " << before << " kB to " << peak.load()
                                      << " kB for 64 MB parameters";
  PQclear(PQexec(c, "DROP TABLE big_blobs"));
}

TEST_F(ProxyBadInputTest, ClientThatDoesNotReadIsThrottled) {
  for (const std::string sslmode : {"disable", "require"}) {
    SCOPED_TRACE("sslmode=" + sslmode);
    auto conn = connect_or_throw(with_param(cluster().proxy_uri(), "sslmode=" + sslmode + "&application_name=slow_reader"));
    PGconn* c = conn.raw();
    int64_t before = rss_kb(proxy_pid_);
    ASSERT_GT(before, 0);
    // 200 rows of 1 MB: 200 MB that the proxy must not buffer.
    ASSERT_EQ(PQsendQuery(c, "SELECT repeat('x', 1000000) FROM generate_series(1, 200)"), 1);
    ASSERT_EQ(PQsetSingleRowMode(c), 1);
    // Do not read for 2 s; the server must end up blocked writing.
    int64_t peak = before;
    bool server_blocked = false;
    auto until = Clock::now() + 2s;
    while (Clock::now() < until) {
      peak = std::max(peak, rss_kb(proxy_pid_));
      if (!server_blocked) {
        server_blocked = sql_value(cluster().primary_uri(),
                                   "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'slow_reader' "
                                   "AND wait_event = 'ClientWrite'") == "1";
      }
      std::this_thread::sleep_for(100ms);
    }
    RecordProperty("rss_growth_kb_" + sslmode, static_cast<int>(peak - before));
    EXPECT_TRUE(server_blocked) << "the server never waited to write: the proxy reads without limit";
    EXPECT_LT(peak - before, 100 * 1024) << "the proxy's RSS grew from " << before << " kB to " << peak << " kB";
    // Now read everything.
    int rows = 0;
    bool all_full = true;
    auto deadline = Clock::now() + 60s;
    while (true) {
      while (PQisBusy(c) != 0 && Clock::now() < deadline) {
        pollfd pfd{PQsocket(c), POLLIN, 0};
        ::poll(&pfd, 1, 100);
        ASSERT_EQ(PQconsumeInput(c), 1) << PQerrorMessage(c);
      }
      ASSERT_LT(Clock::now(), deadline) << "reading the result took over 60 s";
      PGresult* r = PQgetResult(c);
      if (r == nullptr) break;
      if (PQresultStatus(r) == PGRES_SINGLE_TUPLE) {
        ++rows;
        all_full = all_full && PQgetlength(r, 0, 0) == 1000000;
      } else {
        EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
      }
      PQclear(r);
    }
    EXPECT_EQ(rows, 200);
    EXPECT_TRUE(all_full);
    PGresult* r = PQexec(c, "SELECT 'after the big result'");
    EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
    PQclear(r);
  }
  expect_proxy_healthy();
}

}  // namespace
}  // namespace pgfleet::itest
