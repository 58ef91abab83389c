// The HTTP server on a loopback socket: keep-alive, pipelining, bad requests, TLS.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "http/server.hpp"
#include "util/tls.hpp"

namespace pgfleet::http {
namespace {

int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads until `count` responses are complete (by Content-Length) or the peer closes.
std::string read_responses(int fd, int count, bool* closed = nullptr) {
  std::string in;
  char buf[4096];
  auto complete = [&] {
    int seen = 0;
    size_t pos = 0;
    while (seen < count) {
      size_t end = in.find("\r\n\r\n", pos);
      if (end == std::string::npos) return false;
      size_t cl = in.find("Content-Length: ", pos);
      size_t len = cl != std::string::npos && cl < end ? std::stoul(in.substr(cl + 16)) : 0;
      if (in.size() < end + 4 + len) return false;
      pos = end + 4 + len;
      ++seen;
    }
    return true;
  };
  while (!complete()) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (closed) *closed = true;
      break;
    }
    in.append(buf, static_cast<size_t>(n));
  }
  if (closed && !*closed) {
    // Is the connection closed right after? Peek without waiting long.
    timeval tv{0, 300000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    *closed = ::recv(fd, buf, sizeof buf, MSG_PEEK) == 0;
  }
  return in;
}

Router test_router() {
  Router r;
  r.add("GET", "/ping", [](const Request&) { return Response::text(200, "pong"); });
  r.add("POST", "/echo", [](const Request& q) { return Response::text(200, q.body); });
  return r;
}

TEST(HttpServer, KeepsConnectionsAliveAndAnswersPipelinedRequestsInOrder) {
  Server server(ServerOptions{}, test_router());
  server.start();
  ASSERT_GT(server.port(), 0);
  int fd = connect_to(server.port());
  ASSERT_GE(fd, 0);
  std::string two = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
  ASSERT_EQ(::send(fd, two.data(), two.size(), 0), static_cast<ssize_t>(two.size()));
  bool closed = false;
  std::string out = read_responses(fd, 2, &closed);
  EXPECT_FALSE(closed);
  size_t first = out.find("pong"), second = out.find("hello");
  ASSERT_NE(first, std::string::npos) << out;
  ASSERT_NE(second, std::string::npos) << out;
  EXPECT_LT(first, second);
  // The same connection serves a third request, then closes on "Connection: close".
  std::string third = "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ::send(fd, third.data(), third.size(), 0);
  closed = false;
  out = read_responses(fd, 1, &closed);
  EXPECT_NE(out.find("200 OK"), std::string::npos);
  EXPECT_TRUE(closed);
  ::close(fd);
}

TEST(HttpServer, AnswersBadRequestsWith400AndCloses) {
  Server server(ServerOptions{}, test_router());
  server.start();
  int fd = connect_to(server.port());
  ASSERT_GE(fd, 0);
  std::string bad = "NOT HTTP AT ALL\r\n\r\n";
  ::send(fd, bad.data(), bad.size(), 0);
  bool closed = false;
  std::string out = read_responses(fd, 1, &closed);
  EXPECT_EQ(out.rfind("HTTP/1.1 400 Bad Request", 0), 0u) << out;
  EXPECT_TRUE(closed);
  ::close(fd);
  // The server goes on serving others.
  fd = connect_to(server.port());
  std::string ok = "GET /ping HTTP/1.0\r\n\r\n";
  ::send(fd, ok.data(), ok.size(), 0);
  EXPECT_NE(read_responses(fd, 1).find("pong"), std::string::npos);
  ::close(fd);
}

TEST(HttpServer, RefusesAPortInUseWithAClearError) {
  Server first(ServerOptions{}, test_router());
  first.start();
  ServerOptions same;
  same.port = first.port();
  Server second(same, test_router());
  try {
    second.start();
    FAIL() << "a second server bound port " << first.port();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(first.port())), std::string::npos) << e.what();
  }
}

TEST(HttpServer, ServesTlsWhenGivenAContext) {
  char dir_template[] = "/tmp/pgfleet-http-tls-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  std::string dir = dir_template;
  tls::generate_self_signed(dir + "/c.crt", dir + "/c.key", {"127.0.0.1"});
  auto ctx = tls::load_server_context(dir + "/c.crt", dir + "/c.key");
  ServerOptions options;
  options.tls = ctx.ctx.get();
  Server server(options, test_router());
  server.start();

  int fd = connect_to(server.port());
  ASSERT_GE(fd, 0);
  SSL_CTX* client_ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(client_ctx);
  SSL_set_fd(ssl, fd);
  ASSERT_EQ(SSL_connect(ssl), 1) << tls::last_error();
  std::string req = "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_GT(SSL_write(ssl, req.data(), static_cast<int>(req.size())), 0);
  std::string out;
  char buf[1024];
  int n;
  while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  EXPECT_NE(out.find("200 OK"), std::string::npos) << out;
  EXPECT_NE(out.find("pong"), std::string::npos) << out;
  SSL_free(ssl);
  SSL_CTX_free(client_ctx);
  ::close(fd);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace pgfleet::http
