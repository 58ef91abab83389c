// The HTTP request parser: framing, limits, and the answers to malformed input.
#include <gtest/gtest.h>

#include "http/request.hpp"
#include "http/response.hpp"

namespace pgfleet::http {
namespace {

ParseOutcome parse(const std::string& text, Request& r, const Limits& limits = {}) { return parse_request(text, r, limits); }

TEST(HttpRequest, ParsesPathQueryHeadersAndBody) {
  Request r;
  std::string text = "POST /replica%2Fx?lag=10MB&a=b+c&flag HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nX-Thing:  v \r\n\r\nbodyNEXT";
  auto o = parse(text, r);
  ASSERT_EQ(o.status, ParseStatus::Complete);
  EXPECT_EQ(o.consumed, text.size() - 4);
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/replica/x");
  EXPECT_EQ(r.query_value("lag"), "10MB");
  EXPECT_EQ(r.query_value("a"), "b c");
  EXPECT_TRUE(r.query.count("flag"));
  EXPECT_EQ(r.header("x-thing"), "v");
  EXPECT_EQ(r.body, "body");
  EXPECT_TRUE(r.keep_alive());
}

TEST(HttpRequest, AsksForMoreUntilHeadersAndBodyAreIn) {
  Request r;
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: h\r\n", r).status, ParseStatus::Incomplete);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12345", r).status, ParseStatus::Incomplete);
}

TEST(HttpRequest, KeepAliveFollowsVersionAndConnectionHeader) {
  Request r;
  ASSERT_EQ(parse("GET / HTTP/1.0\r\n\r\n", r).status, ParseStatus::Complete);
  EXPECT_FALSE(r.keep_alive());
  ASSERT_EQ(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", r).status, ParseStatus::Complete);
  EXPECT_TRUE(r.keep_alive());
  ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", r).status, ParseStatus::Complete);
  EXPECT_FALSE(r.keep_alive());
}

TEST(HttpRequest, RefusesMalformedRequestsWithTheRightStatus) {
  struct Case {
    std::string text;
    int status;
  };
  const Case cases[] = {
      {"GARBAGE\r\n\r\n", 400},
      {"GET /\r\n\r\n", 400},
      {"GET / HTTP/1.1 extra\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
      {"GET / FTP/1.0\r\n\r\n", 400},
      {"GET http://x/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n\r\n", 400},  // no Host
      {"GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400},
      {"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: x1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999\r\n\r\n", 413},
  };
  for (const auto& c : cases) {
    Request r;
    auto o = parse(c.text, r);
    EXPECT_EQ(o.status, ParseStatus::Invalid) << c.text;
    EXPECT_EQ(o.error_status, c.status) << c.text << " -> " << o.error;
    EXPECT_FALSE(o.error.empty());
  }
}

TEST(HttpRequest, HeaderLimitsApplyBeforeTheEndOfHeadersArrives) {
  Limits limits;
  limits.max_header_bytes = 64;
  Request r;
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(100, 'a'), r, limits).error_status, 431);
  limits.max_headers = 2;
  limits.max_header_bytes = 16384;
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", r, limits).error_status, 431);
}

TEST(HttpRouter, FindsRoutesFallsBackForHeadAndOptionsAndExplains405And404) {
  Router router;
  router.add("GET", "/primary", [](const Request&) { return Response::text(503, "no"); });
  router.add("POST", "/restart", [](const Request&) { return Response::text(202, "ok"); });
  router.add_prefix("GET", "/static/", [](const Request& r) { return Response::text(200, r.path); });
  router.add("GET", "/boom", [](const Request&) -> Response { throw std::runtime_error("broken"); });
  auto call = [&](const std::string& method, const std::string& path) {
    Request r;
    r.method = method;
    r.path = path;
    return router.dispatch(r);
  };
  EXPECT_EQ(call("GET", "/primary").status, 503);
  EXPECT_EQ(call("HEAD", "/primary").status, 503);
  EXPECT_EQ(call("OPTIONS", "/primary").status, 503);
  EXPECT_EQ(call("POST", "/restart").status, 202);
  auto r405 = call("GET", "/restart");
  EXPECT_EQ(r405.status, 405);
  ASSERT_FALSE(r405.headers.empty());
  EXPECT_EQ(r405.headers[0].second, "POST");
  EXPECT_EQ(call("GET", "/nothing").status, 404);
  EXPECT_EQ(call("GET", "/static/app.js").body, "/static/app.js\n");
  EXPECT_EQ(call("GET", "/boom").status, 500);
}

TEST(HttpResponse, SerializesLengthAndLeavesTheBodyOutForHead) {
  auto r = Response::json(200, "{}");
  std::string full = serialize(r, true, false);
  EXPECT_NE(full.find("HTTP/1.1 200 OK\r\n"), std::string::npos);
  EXPECT_NE(full.find("Content-Length: 2\r\n"), std::string::npos);
  EXPECT_NE(full.find("Connection: keep-alive"), std::string::npos);
  EXPECT_TRUE(full.ends_with("\r\n\r\n{}"));
  std::string head = serialize(r, false, true);
  EXPECT_NE(head.find("Content-Length: 2\r\n"), std::string::npos);
  EXPECT_TRUE(head.ends_with("\r\n\r\n"));
  EXPECT_NE(head.find("Connection: close"), std::string::npos);
}

}  // namespace
}  // namespace pgfleet::http
