// The proxy carries the PostgreSQL protocol as a client sees it: psql output, COPY both ways
// (\copy and 50 MB through libpq), rows larger than the proxy's buffers, pipeline mode, the
// extended protocol, notices, errors inside transactions and multi-statement queries.
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <poll.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

class Md5 {
 public:
  Md5() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_.get(), EVP_md5(), nullptr); }
  void update(std::string_view data) { EVP_DigestUpdate(ctx_.get(), data.data(), data.size()); }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &len);
    std::string out;
    char buf[3];
    for (unsigned int i = 0; i < len; ++i) {
      std::snprintf(buf, sizeof buf, "%02x", digest[i]);
      out += buf;
    }
    return out;
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

std::string md5_of(std::string_view data) {
  Md5 m;
  m.update(data);
  return m.hex();
}

// One result of a libpq call; frees it.
struct PgResult {
  explicit PgResult(PGresult* r) : res(r) {}
  ~PgResult() { PQclear(res); }
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  [[nodiscard]] ExecStatusType status() const { return PQresultStatus(res); }
  [[nodiscard]] std::string value(int row = 0, int col = 0) const {
    return std::string(PQgetvalue(res, row, col), static_cast<size_t>(PQgetlength(res, row, col)));
  }
  [[nodiscard]] std::string error() const { return PQresultErrorMessage(res); }
  [[nodiscard]] std::string sqlstate() const {
    const char* s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return s ? s : "";
  }
  PGresult* res;
};

// Notifications whose payloads start with their number, 000001 on ("channel:000001xxx..."): the
// first one out of place, or "" if all are in order.
std::string first_out_of_order(const std::vector<std::string>& got) {
  for (size_t i = 0; i < got.size(); ++i) {
    const auto number = got[i].substr(got[i].find(':') + 1, 6);
    if (number != fmt::format("{:06}", i + 1)) return fmt::format("notification {} arrived as number {}", number, i + 1);
  }
  return "";
}

class ProxyProtocolTest : public ClusterSuite<ProxyProtocolTest> {
 public:
  static std::string cluster_config() { return ""; }

 protected:
  std::string proxy() { return cluster().proxy_uri(); }
};

TEST_F(ProxyProtocolTest, PsqlQueryReturnsTheSameRowsAsThePrimary) {
  const std::string query =
      "SELECT g, md5(g::text), CASE WHEN g % 7 = 0 THEN NULL ELSE g * 1.5 END, now() IS NOT NULL "
      "FROM generate_series(1, 2000) g ORDER BY g";
  auto through_proxy = psql(proxy(), {"-At", "-c", query});
  ASSERT_EQ(through_proxy.exit_code, 0) << through_proxy.output;
  auto direct = psql(cluster().primary_uri(), {"-At", "-c", query});
  ASSERT_EQ(direct.exit_code, 0) << direct.output;
  EXPECT_EQ(through_proxy.output, direct.output);
  EXPECT_NE(through_proxy.output.find("1|c4ca4238a0b923820dcc509a6f75849b|1.5|t\n"), std::string::npos)
      << through_proxy.output.substr(0, 300);
  EXPECT_NE(through_proxy.output.find("7|8f14e45fceea167a5a36dedd4bea2543||t\n"), std::string::npos)
      << "a NULL must print as an empty field";

  auto aligned = psql(proxy(), {"-c", "SELECT 'hello' AS greeting, 42 AS answer"});
  ASSERT_EQ(aligned.exit_code, 0) << aligned.output;
  EXPECT_NE(aligned.output.find("greeting | answer"), std::string::npos) << aligned.output;
  EXPECT_NE(aligned.output.find(" hello    |     42"), std::string::npos) << aligned.output;
  EXPECT_NE(aligned.output.find("(1 row)"), std::string::npos) << aligned.output;
}

// server_sslmode prefer (the default) skips TLS on loopback, for the proxy's health polls too:
// they query every node every 10 ms, and encryption there would only cost CPU.
TEST_F(ProxyProtocolTest, HealthPollsOnLoopbackDoNotUseTls) {
  EXPECT_EQ(sql_value(cluster().primary_uri(),
                      "SELECT string_agg(DISTINCT s.ssl::text, ',') FROM pg_stat_ssl s JOIN pg_stat_activity a "
                      "USING (pid) WHERE a.application_name = 'pgfleet-proxy-health'"),
            "false");
}

TEST_F(ProxyProtocolTest, PsqlBackslashCopyInAndOutRoundTrips) {
  sql(proxy(), "CREATE TABLE copy_small (id int, name text, note text)");
  std::string in_file = cluster().dir() + "/../copy_in.tsv";
  std::string out_file = cluster().dir() + "/../copy_out.tsv";
  std::string data;
  for (int i = 1; i <= 5000; ++i) {
    data += std::to_string(i) + "\tname " + std::to_string(i) + "\t" + (i % 10 == 0 ? "\\N" : "tab\\there é") + "\n";
  }
  write_text(in_file, data);

  auto in = psql(proxy(), {"-c", "\\copy copy_small from '" + in_file + "'"});
  ASSERT_EQ(in.exit_code, 0) << in.output;
  EXPECT_NE(in.output.find("COPY 5000"), std::string::npos) << in.output;
  EXPECT_EQ(sql_value(proxy(), "SELECT count(*) FROM copy_small"), "5000");
  EXPECT_EQ(sql_value(proxy(), "SELECT count(*) FROM copy_small WHERE note IS NULL"), "500");
  EXPECT_EQ(sql_value(proxy(), "SELECT note FROM copy_small WHERE id = 1"), "tab\there é");

  auto out = psql(proxy(), {"-c", "\\copy (SELECT * FROM copy_small ORDER BY id) to '" + out_file + "'"});
  ASSERT_EQ(out.exit_code, 0) << out.output;
  EXPECT_NE(out.output.find("COPY 5000"), std::string::npos) << out.output;
  std::string back = read_text(out_file);
  EXPECT_EQ(back.size(), data.size());
  EXPECT_EQ(md5_of(back), md5_of(data)) << "\\copy out differs from what \\copy in loaded";

  // A bad row makes the COPY fail with PostgreSQL's message, and the session goes on.
  write_text(in_file, "1\tok\tok\nnot-a-number\tx\ty\n");
  auto bad = psql(proxy(), {"-c", "\\copy copy_small from '" + in_file + "'"});
  EXPECT_NE(bad.exit_code, 0) << bad.output;
  EXPECT_NE(bad.output.find("invalid input syntax for type integer"), std::string::npos) << bad.output;
  EXPECT_EQ(sql_value(proxy(), "SELECT count(*) FROM copy_small"), "5000");
  sql(proxy(), "DROP TABLE copy_small");
}

// Rows of about 100 bytes, different from each other, 50 MB in all.
std::string copy_payload(size_t target_bytes, int& rows) {
  std::string data;
  data.reserve(target_bytes + 256);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  rows = 0;
  char buf[160];
  while (data.size() < target_bytes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ++rows;
    int n = std::snprintf(buf, sizeof buf, "%d\t%016llx%016llx%016llx%016llx%016llx\t%llu\n", rows,
                          static_cast<unsigned long long>(x), static_cast<unsigned long long>(x * 3),
                          static_cast<unsigned long long>(x * 5), static_cast<unsigned long long>(x * 7),
                          static_cast<unsigned long long>(x * 11), static_cast<unsigned long long>(x % 1000003));
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

TEST_F(ProxyProtocolTest, FiftyMegabyteCopyFromStdinAndToStdoutRoundTrip) {
  sql(proxy(), "CREATE TABLE copy_big (id int, payload text, n bigint)");
  int rows = 0;
  const std::string data = copy_payload(50u << 20, rows);
  const std::string sent_md5 = md5_of(data);

  auto conn = connect_or_throw(proxy());
  PGconn* c = conn.raw();
  ConnectionWatchdog guard(c, 90s);  // a stuck proxy fails the test instead of hanging it
  auto started = std::chrono::steady_clock::now();
  {
    PgResult r(PQexec(c, "COPY copy_big FROM STDIN"));
    ASSERT_EQ(r.status(), PGRES_COPY_IN) << r.error();
  }
  constexpr size_t kChunk = 64 * 1024 + 17;  // chunks that do not line up with rows or buffers
  for (size_t at = 0; at < data.size(); at += kChunk) {
    size_t n = std::min(kChunk, data.size() - at);
    ASSERT_EQ(PQputCopyData(c, data.data() + at, static_cast<int>(n)), 1) << PQerrorMessage(c);
  }
  ASSERT_EQ(PQputCopyEnd(c, nullptr), 1) << PQerrorMessage(c);
  {
    PgResult r(PQgetResult(c));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
    EXPECT_EQ(std::string(PQcmdTuples(r.res)), std::to_string(rows));
  }
  while (PGresult* extra = PQgetResult(c)) PQclear(extra);

  // The server saw exactly the bytes we sent.
  {
    PgResult r(PQexec(c, "SELECT count(*), sum(length(payload)) FROM copy_big"));
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
    EXPECT_EQ(r.value(0, 0), std::to_string(rows));
    EXPECT_EQ(r.value(0, 1), std::to_string(int64_t{80} * rows));
  }

  {
    PgResult r(PQexec(c, "COPY (SELECT * FROM copy_big ORDER BY id) TO STDOUT"));
    ASSERT_EQ(r.status(), PGRES_COPY_OUT) << r.error();
  }
  Md5 received;
  size_t received_bytes = 0;
  int received_rows = 0;
  while (true) {
    char* buf = nullptr;
    int n = PQgetCopyData(c, &buf, 0);
    if (n == -1) break;
    ASSERT_GE(n, 0) << PQerrorMessage(c);
    received.update(std::string_view(buf, static_cast<size_t>(n)));
    received_bytes += static_cast<size_t>(n);
    ++received_rows;
    PQfreemem(buf);
  }
  {
    PgResult r(PQgetResult(c));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  while (PGresult* extra = PQgetResult(c)) PQclear(extra);
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(received_rows, rows);
  EXPECT_EQ(received_bytes, data.size());
  EXPECT_EQ(received.hex(), sent_md5) << "COPY TO STDOUT returned other bytes than COPY FROM STDIN loaded";
  EXPECT_LT(seconds, 60.0) << "a 50 MB round trip should take seconds";
  // A COPY the client abandons (CopyFail) ends with the server's error, and nothing is loaded.
  {
    PgResult r(PQexec(c, "COPY copy_big FROM STDIN"));
    ASSERT_EQ(r.status(), PGRES_COPY_IN) << r.error();
  }
  ASSERT_EQ(PQputCopyData(c, data.data(), 1 << 20), 1);
  ASSERT_EQ(PQputCopyEnd(c, "changed my mind"), 1);
  {
    PgResult r(PQgetResult(c));
    EXPECT_EQ(r.status(), PGRES_FATAL_ERROR);
    EXPECT_NE(r.error().find("changed my mind"), std::string::npos) << r.error();
  }
  while (PGresult* extra = PQgetResult(c)) PQclear(extra);
  // The connection is still in a clean state.
  PgResult after(PQexec(c, "SELECT 'after copy'"));
  ASSERT_EQ(after.status(), PGRES_TUPLES_OK) << after.error();
  EXPECT_EQ(after.value(), "after copy");
  sql(proxy(), "DROP TABLE copy_big");
}

TEST_F(ProxyProtocolTest, CopyIntoASlowTableFinishes) {
  // The server consumes COPY data slower than the client sends it, so the proxy's buffer towards
  // the server fills up (backpressure) while the client sends its last bytes.
  sql(proxy(),
      "CREATE TABLE copy_slow (id int, payload text, n bigint);"
      "CREATE FUNCTION copy_slow_work() RETURNS trigger LANGUAGE plpgsql AS $$"
      "BEGIN NEW.n := length(md5(repeat(NEW.payload, 20))); RETURN NEW; END $$;"
      "CREATE TRIGGER copy_slow_work BEFORE INSERT ON copy_slow FOR EACH ROW EXECUTE FUNCTION copy_slow_work()");
  int rows = 0;
  const std::string data = copy_payload(6u << 20, rows);
  int copies = 0;
  for (const std::string sslmode : {"disable", "require"}) {
    auto conn = connect_or_throw(with_param(proxy(), "sslmode=" + sslmode));
    PGconn* c = conn.raw();
    for (int round = 0; round < 3; ++round) {
      SCOPED_TRACE("sslmode=" + sslmode + ", round " + std::to_string(round));
      ConnectionWatchdog guard(c, 20s);  // each round takes about a second
      {
        PgResult r(PQexec(c, "COPY copy_slow FROM STDIN"));
        ASSERT_EQ(r.status(), PGRES_COPY_IN) << r.error();
      }
      for (size_t at = 0; at < data.size(); at += 256 * 1024) {
        size_t n = std::min<size_t>(256 * 1024, data.size() - at);
        ASSERT_EQ(PQputCopyData(c, data.data() + at, static_cast<int>(n)), 1) << PQerrorMessage(c);
      }
      ASSERT_EQ(PQputCopyEnd(c, nullptr), 1) << PQerrorMessage(c);
      PgResult r(PQgetResult(c));
      EXPECT_FALSE(guard.fired()) << "COPY FROM STDIN did not finish within 20 s: the proxy stopped forwarding";
      ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
      EXPECT_EQ(std::string(PQcmdTuples(r.res)), std::to_string(rows));
      while (PGresult* extra = PQgetResult(c)) PQclear(extra);
      ++copies;
    }
  }
  EXPECT_EQ(sql_value(proxy(), "SELECT count(*) FROM copy_slow"), std::to_string(copies * rows));
  sql(proxy(), "DROP TABLE copy_slow; DROP FUNCTION copy_slow_work()");
}

TEST_F(ProxyProtocolTest, RowsLargerThanOneMegabyteAreSelectedAndInserted) {
  auto conn = connect_or_throw(proxy());
  PGconn* c = conn.raw();
  ConnectionWatchdog guard(c, 90s);  // a stuck proxy fails the test instead of hanging it
  {
    PgResult r(PQexec(c, "SELECT repeat('x', 3000000) AS big, md5(repeat('x', 3000000)), 'tail'"));
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
    std::string big = r.value(0, 0);
    EXPECT_EQ(big.size(), 3000000u);
    EXPECT_EQ(big.find_first_not_of('x'), std::string::npos);
    EXPECT_EQ(md5_of(big), r.value(0, 1));
    EXPECT_EQ(r.value(0, 2), "tail");
  }
  // Several big rows in one result.
  {
    PgResult r(PQexec(c, "SELECT g, repeat(chr(64 + g), 1500000 + g) FROM generate_series(1, 5) g ORDER BY g"));
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
    ASSERT_EQ(PQntuples(r.res), 5);
    for (int i = 0; i < 5; ++i) {
      std::string v = r.value(i, 1);
      EXPECT_EQ(v.size(), 1500000u + static_cast<size_t>(i + 1)) << "row " << i;
      EXPECT_EQ(v.find_first_not_of(static_cast<char>('A' + i)), std::string::npos) << "row " << i;
    }
  }
  // A 3 MB parameter (Bind) and a 3 MB literal in a simple query (Query), both inserted.
  {
    PgResult r(PQexec(c, "CREATE TABLE big_rows (id int, body text)"));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  std::string body;
  body.reserve(3000000);
  for (int i = 0; body.size() < 3000000; ++i) body += "row-" + std::to_string(i) + ";";
  {
    const char* values[] = {body.c_str()};
    PgResult r(PQexecParams(c, "INSERT INTO big_rows VALUES (1, $1)", 1, nullptr, values, nullptr, nullptr, 0));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  {
    PgResult r(PQexec(c, ("INSERT INTO big_rows VALUES (2, '" + body + "')").c_str()));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  {
    PgResult r(PQexec(c, "SELECT id, length(body), md5(body), body FROM big_rows ORDER BY id"));
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
    ASSERT_EQ(PQntuples(r.res), 2);
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(r.value(i, 1), std::to_string(body.size())) << "row " << i;
      EXPECT_EQ(r.value(i, 2), md5_of(body)) << "row " << i;
      EXPECT_TRUE(r.value(i, 3) == body) << "row " << i << " came back different";
    }
  }
  PgResult drop(PQexec(c, "DROP TABLE big_rows"));
  EXPECT_EQ(drop.status(), PGRES_COMMAND_OK) << drop.error();
}

// Waits for the socket to be readable and reads what arrived; false on a broken connection.
bool pump(PGconn* c, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (PQisBusy(c) != 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (PQflush(c) < 0) return false;
    pollfd pfd{PQsocket(c), POLLIN, 0};
    ::poll(&pfd, 1, 100);
    if (PQconsumeInput(c) == 0) return false;
  }
  return true;
}

TEST_F(ProxyProtocolTest, PipelineModeReturnsResultsInOrder) {
  auto conn = connect_or_throw(proxy());
  PGconn* c = conn.raw();
  ConnectionWatchdog guard(c, 90s);  // a stuck proxy fails the test instead of hanging it
  ASSERT_EQ(PQenterPipelineMode(c), 1) << PQerrorMessage(c);
  ASSERT_EQ(PQsetnonblocking(c, 1), 0);

  // Batch 1: ten queries, one Sync. Batch 2: an error in the middle, then another Sync. Batch 3: after the error.
  constexpr int kFirst = 10;
  for (int i = 0; i < kFirst; ++i) {
    std::string v = std::to_string(i);
    const char* values[] = {v.c_str()};
    ASSERT_EQ(PQsendQueryParams(c, "SELECT $1::int * 2, pg_backend_pid()", 1, nullptr, values, nullptr, nullptr, 0), 1)
        << PQerrorMessage(c);
  }
  ASSERT_EQ(PQpipelineSync(c), 1);
  ASSERT_EQ(PQsendQueryParams(c, "SELECT 'before'", 0, nullptr, nullptr, nullptr, nullptr, 0), 1);
  ASSERT_EQ(PQsendQueryParams(c, "SELECT 1/0", 0, nullptr, nullptr, nullptr, nullptr, 0), 1);
  ASSERT_EQ(PQsendQueryParams(c, "SELECT 'skipped'", 0, nullptr, nullptr, nullptr, nullptr, 0), 1);
  ASSERT_EQ(PQpipelineSync(c), 1);
  ASSERT_EQ(PQsendQueryParams(c, "SELECT 'after error'", 0, nullptr, nullptr, nullptr, nullptr, 0), 1);
  ASSERT_EQ(PQpipelineSync(c), 1);
  ASSERT_EQ(PQflush(c), 0);

  // Reads the next result (nullptr marks the end of one query's results).
  auto next = [&]() -> PGresult* {
    if (!pump(c)) ADD_FAILURE() << "no result within 10 s: " << PQerrorMessage(c);
    return PQgetResult(c);
  };
  std::string backend;
  for (int i = 0; i < kFirst; ++i) {
    PgResult r(next());
    ASSERT_NE(r.res, nullptr) << "query " << i;
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << "query " << i << ": " << r.error();
    EXPECT_EQ(r.value(0, 0), std::to_string(i * 2)) << "results out of order";
    if (i == 0) backend = r.value(0, 1);
    EXPECT_EQ(r.value(0, 1), backend) << "one Sync batch must run on one server connection";
    EXPECT_EQ(next(), nullptr);
  }
  {
    PgResult sync(next());
    ASSERT_NE(sync.res, nullptr);
    EXPECT_EQ(sync.status(), PGRES_PIPELINE_SYNC);
  }
  {
    PgResult r(next());
    ASSERT_NE(r.res, nullptr);
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
    EXPECT_EQ(r.value(), "before");
    EXPECT_EQ(next(), nullptr);
  }
  {
    PgResult r(next());
    ASSERT_NE(r.res, nullptr);
    EXPECT_EQ(r.status(), PGRES_FATAL_ERROR);
    EXPECT_EQ(r.sqlstate(), "22012") << r.error();
    EXPECT_EQ(next(), nullptr);
  }
  {
    PgResult r(next());
    ASSERT_NE(r.res, nullptr);
    EXPECT_EQ(r.status(), PGRES_PIPELINE_ABORTED) << "the query after the error must be skipped";
    EXPECT_EQ(next(), nullptr);
  }
  {
    PgResult sync(next());
    ASSERT_NE(sync.res, nullptr);
    EXPECT_EQ(sync.status(), PGRES_PIPELINE_SYNC);
  }
  {
    PgResult r(next());
    ASSERT_NE(r.res, nullptr);
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
    EXPECT_EQ(r.value(), "after error");
    EXPECT_EQ(next(), nullptr);
  }
  {
    PgResult sync(next());
    ASSERT_NE(sync.res, nullptr);
    EXPECT_EQ(sync.status(), PGRES_PIPELINE_SYNC);
  }
  ASSERT_EQ(PQexitPipelineMode(c), 1) << PQerrorMessage(c);
  ASSERT_EQ(PQsetnonblocking(c, 0), 0);
  PgResult r(PQexec(c, "SELECT 'normal again'"));
  ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
  EXPECT_EQ(r.value(), "normal again");
}

TEST_F(ProxyProtocolTest, PipelineOfManySyncedTransactions) {
  // 200 separate transactions in flight at once: each Sync may go to another server connection.
  auto conn = connect_or_throw(proxy());
  PGconn* c = conn.raw();
  ConnectionWatchdog guard(c, 90s);  // a stuck proxy fails the test instead of hanging it
  ASSERT_EQ(PQenterPipelineMode(c), 1);
  constexpr int kCount = 200;
  for (int i = 0; i < kCount; ++i) {
    std::string v = std::to_string(i);
    const char* values[] = {v.c_str()};
    ASSERT_EQ(PQsendQueryParams(c, "SELECT $1::int + 1000", 1, nullptr, values, nullptr, nullptr, 0), 1);
    ASSERT_EQ(PQpipelineSync(c), 1);
  }
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(pump(c)) << "result " << i << " did not arrive: " << PQerrorMessage(c);
    PgResult r(PQgetResult(c));
    ASSERT_NE(r.res, nullptr) << i;
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << i << ": " << r.error();
    ASSERT_EQ(r.value(), std::to_string(i + 1000));
    ASSERT_TRUE(pump(c));
    ASSERT_EQ(PQgetResult(c), nullptr);
    ASSERT_TRUE(pump(c));
    PgResult sync(PQgetResult(c));
    ASSERT_NE(sync.res, nullptr);
    ASSERT_EQ(sync.status(), PGRES_PIPELINE_SYNC);
  }
  ASSERT_EQ(PQexitPipelineMode(c), 1) << PQerrorMessage(c);
}

TEST_F(ProxyProtocolTest, PipelineFlushRequestGetsResultsBeforeTheSync) {
  auto conn = connect_or_throw(proxy());
  PGconn* c = conn.raw();
  ConnectionWatchdog guard(c, 90s);  // a stuck proxy fails the test instead of hanging it
  ASSERT_EQ(PQenterPipelineMode(c), 1);
  ASSERT_EQ(PQsendQueryParams(c, "SELECT 'flushed'", 0, nullptr, nullptr, nullptr, nullptr, 0), 1);
  ASSERT_EQ(PQsendFlushRequest(c), 1);
  ASSERT_EQ(PQflush(c), 0);
  ASSERT_TRUE(pump(c)) << "no result for a Flush without Sync: " << PQerrorMessage(c);
  {
    PgResult r(PQgetResult(c));
    ASSERT_NE(r.res, nullptr);
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
    EXPECT_EQ(r.value(), "flushed");
  }
  ASSERT_TRUE(pump(c));
  EXPECT_EQ(PQgetResult(c), nullptr);
  ASSERT_EQ(PQpipelineSync(c), 1);
  ASSERT_TRUE(pump(c));
  PgResult sync(PQgetResult(c));
  ASSERT_NE(sync.res, nullptr);
  EXPECT_EQ(sync.status(), PGRES_PIPELINE_SYNC);
  ASSERT_EQ(PQexitPipelineMode(c), 1) << PQerrorMessage(c);
}

TEST_F(ProxyProtocolTest, LargeObjectsThroughTheFunctionCallProtocol) {
  // libpq's lo_* functions use the FunctionCall message inside a transaction.
  auto conn = connect_or_throw(proxy());
  PGconn* c = conn.raw();
  ConnectionWatchdog guard(c, 90s);  // a stuck proxy fails the test instead of hanging it
  std::string content;
  for (int i = 0; content.size() < 300000; ++i) content += "chunk " + std::to_string(i) + "\n";
  {
    PgResult r(PQexec(c, "BEGIN"));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  Oid oid = lo_creat(c, 0x20000 | 0x40000);  // INV_WRITE | INV_READ
  ASSERT_NE(oid, 0u) << PQerrorMessage(c);
  int fd = lo_open(c, oid, 0x20000);
  ASSERT_GE(fd, 0) << PQerrorMessage(c);
  for (size_t at = 0; at < content.size(); at += 8192) {
    size_t n = std::min<size_t>(8192, content.size() - at);
    ASSERT_EQ(lo_write(c, fd, content.data() + at, n), static_cast<int>(n)) << PQerrorMessage(c);
  }
  ASSERT_EQ(lo_close(c, fd), 0) << PQerrorMessage(c);
  {
    PgResult r(PQexec(c, "COMMIT"));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  {
    PgResult r(PQexec(c, "BEGIN"));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  fd = lo_open(c, oid, 0x40000);
  ASSERT_GE(fd, 0) << PQerrorMessage(c);
  std::string back(content.size() + 10, '\0');
  size_t got = 0;
  while (true) {
    int n = lo_read(c, fd, back.data() + got, std::min<size_t>(8192, back.size() - got));
    ASSERT_GE(n, 0) << PQerrorMessage(c);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  back.resize(got);
  EXPECT_TRUE(back == content) << "large object read back " << got << " bytes, wrote " << content.size();
  lo_close(c, fd);
  {
    PgResult r(PQexec(c, "COMMIT"));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  EXPECT_EQ(lo_unlink(c, oid), 1) << PQerrorMessage(c);
  EXPECT_EQ(sql_value(proxy(), "SELECT count(*) FROM pg_largeobject_metadata WHERE oid = " + std::to_string(oid)), "0");
}

// psycopg 3 and JDBC send LISTEN with the extended protocol (Parse/Bind/Describe/Execute/Sync):
// served by the proxy's LISTEN connection like the simple query, for every subscriber.
TEST_F(ProxyProtocolTest, ListenSentWithTheExtendedProtocolReachesEverySubscriber) {
  auto a = connect_or_throw(proxy());
  auto b = connect_or_throw(proxy());
  for (PGconn* c : {a.raw(), b.raw()}) {
    PgResult r(PQexecParams(c, "LISTEN extended_events", 0, nullptr, nullptr, nullptr, nullptr, 0));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  sql(proxy(), "NOTIFY extended_events, 'to both'");
  for (PGconn* c : {a.raw(), b.raw()}) {
    std::string got;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (got.empty() && std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{PQsocket(c), POLLIN, 0};
      ::poll(&pfd, 1, 100);
      ASSERT_EQ(PQconsumeInput(c), 1) << PQerrorMessage(c);
      while (PGnotify* n = PQnotifies(c)) {
        got += std::string(n->relname) + ":" + n->extra;
        PQfreemem(n);
      }
    }
    EXPECT_EQ(got, "extended_events:to both");
  }
  // Both go on with ordinary extended-protocol statements, and UNLISTEN works the same way.
  PgResult q(PQexecParams(a.raw(), "SELECT $1::text", 1, nullptr, std::array<const char*, 1>{"after"}.data(), nullptr,
                          nullptr, 0));
  ASSERT_EQ(q.status(), PGRES_TUPLES_OK) << q.error();
  PgResult u(PQexecParams(b.raw(), "UNLISTEN extended_events", 0, nullptr, nullptr, nullptr, nullptr, 0));
  EXPECT_EQ(u.status(), PGRES_COMMAND_OK) << u.error();
}

TEST_F(ProxyProtocolTest, ListenNotifyInTransactionMode) {
  auto listener = connect_or_throw(proxy());
  PGconn* l = listener.raw();
  ConnectionWatchdog guard(l, 90s);  // a stuck proxy fails the test instead of hanging it
  {
    PgResult r(PQexec(l, "LISTEN pgfleet_events"));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  // Notifications sent by other clients (a proxy client, then a direct one) arrive in order.
  sql(proxy(), "NOTIFY pgfleet_events, 'first'");
  sql(cluster().primary_uri(), "SELECT pg_notify('pgfleet_events', 'second')");
  sql(proxy(), "NOTIFY other_channel, 'not for us'");
  std::vector<std::string> got;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (got.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{PQsocket(l), POLLIN, 0};
    ::poll(&pfd, 1, 100);
    ASSERT_EQ(PQconsumeInput(l), 1) << PQerrorMessage(l);
    while (PGnotify* n = PQnotifies(l)) {
      got.push_back(std::string(n->relname) + ":" + n->extra);
      PQfreemem(n);
    }
  }
  std::string received;
  for (const auto& g : got) received += " " + g;
  ASSERT_EQ(got.size(), 2u) << "notifications received:" << received;
  EXPECT_EQ(got[0], "pgfleet_events:first");
  EXPECT_EQ(got[1], "pgfleet_events:second");
  // The listening client still runs queries, and UNLISTEN stops the notifications.
  {
    PgResult r(PQexec(l, "SELECT 'busy listener'"));
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
  }
  {
    PgResult r(PQexec(l, "UNLISTEN pgfleet_events"));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  sql(proxy(), "NOTIFY pgfleet_events, 'after unlisten'");
  PgResult r(PQexec(l, "SELECT pg_sleep(0.3)"));
  ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
  PQconsumeInput(l);
  PGnotify* late = PQnotifies(l);
  EXPECT_EQ(late, nullptr) << "a notification arrived after UNLISTEN: " << (late ? late->extra : "");
  if (late) PQfreemem(late);
}

// A subscriber that does not read its socket: the proxy stops reading the LISTEN connection it
// shares with the other clients of its thread, so a burst of 100 MB waits in PostgreSQL's queue,
// not in the proxy's memory. After 30 s without reading, that client is disconnected (the log
// says why), and everyone else gets every notification, in order.
// A subscriber that stops reading is cut off once 8 MB wait for it; until then the proxy keeps
// them (nothing held in PostgreSQL for it), and the subscriber that reads gets everything.
TEST_F(ProxyProtocolTest, ASubscriberThatDoesNotReadIsCutOffAndTheProxyStaysBounded) {
  auto slow = connect_or_throw(proxy());
  auto fast = connect_or_throw(proxy());
  for (PGconn* c : {slow.raw(), fast.raw()}) {
    PgResult r(PQexec(c, "LISTEN bulk_events"));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  const int64_t proxy_pid = cluster().proxy_pid();
  const int64_t rss_before = rss_kb(proxy_pid);
  ASSERT_GT(rss_before, 0);

  constexpr int kCount = 12500;  // ~8 kB each: 100 MB
  sql(cluster().primary_uri(),
      "SELECT count(pg_notify('bulk_events', lpad(i::text, 6, '0') || repeat('x', 7900))) "
      "FROM generate_series(1, " + std::to_string(kCount) + ") i");

  int64_t rss_peak = rss_before;
  const auto fast_got = receive_notifications(fast, kCount, 90s, [&] { rss_peak = std::max(rss_peak, rss_kb(proxy_pid)); });
  EXPECT_EQ(fast_got.size(), size_t{kCount}) << "the listener that reads got only part of the notifications";
  EXPECT_EQ(first_out_of_order(fast_got), "");
  // Kernel socket buffers take some of what the slow client does not read; the proxy holds at
  // most 8 MB more for it (without a bound, it buffered the ~90 MB left).
  EXPECT_LT(rss_peak - rss_before, 32 * 1024) << "proxy RSS grew from " << rss_before << " kB to " << rss_peak << " kB";

  // The slow client finds what was sent before it was cut off, then that it was disconnected
  // (the error message is queued behind what it did not read, so the log says why).
  int slow_got = 0;
  const auto slow_deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < slow_deadline) {
    pollfd pfd{PQsocket(slow.raw()), POLLIN, 0};
    ::poll(&pfd, 1, 200);
    const bool open = PQconsumeInput(slow.raw()) == 1;
    while (PGnotify* n = PQnotifies(slow.raw())) {
      ++slow_got;
      PQfreemem(n);
    }
    if (!open) break;
  }
  EXPECT_EQ(PQstatus(slow.raw()), CONNECTION_BAD) << "the client that did not read is still connected";
  EXPECT_GT(slow_got, 0);
  EXPECT_LT(slow_got, kCount);
  EXPECT_NE(read_text(cluster().proxy_log()).find("does not read its notifications (8 MB of notifications wait for it unread)"),
            std::string::npos);

  // The proxy goes on: a new listener gets a new notification.
  auto again = connect_or_throw(proxy());
  {
    PgResult r(PQexec(again.raw(), "LISTEN bulk_events"));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  sql(proxy(), "NOTIFY bulk_events, 'after'");
  EXPECT_EQ(receive_notifications(again, 1, 10s), std::vector<std::string>{"bulk_events:after"});
}

// A subscriber that reads nothing holds no one else up for long: other clients still LISTEN and
// get their notifications at once (before, the LISTEN connection stayed paused for 30 s), and the
// stuck one, once it reads, finds everything that waited for it (6 MB, under the 8 MB bound).
TEST_F(ProxyProtocolTest, AStuckSubscriberHoldsUpNoOneElse) {
  auto stuck = connect_or_throw(proxy());
  {
    PgResult r(PQexec(stuck.raw(), "LISTEN flood"));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  constexpr int kCount = 750;  // ~8 kB each: 6 MB
  sql(cluster().primary_uri(), "SELECT count(pg_notify('flood', lpad(i::text, 6, '0') || repeat('x', 7900))) "
                               "FROM generate_series(1, " + std::to_string(kCount) + ") i");
  std::this_thread::sleep_for(1500ms);  // the proxy sees that it reads nothing

  auto other = connect_or_throw(proxy());
  const auto asked = std::chrono::steady_clock::now();
  {
    PgResult r(PQexec(other.raw(), "LISTEN unrelated"));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  const auto listen_took = std::chrono::steady_clock::now() - asked;
  EXPECT_LT(listen_took, 3s) << "another client's LISTEN waited for the stuck subscriber";
  sql(cluster().primary_uri(), "NOTIFY unrelated, 'hello'");
  EXPECT_EQ(receive_notifications(other, 1, 3s), std::vector<std::string>{"unrelated:hello"})
      << "another client's notification waited for the stuck subscriber";

  const auto got = receive_notifications(stuck, kCount, 30s);
  EXPECT_EQ(got.size(), size_t{kCount}) << "the subscriber that read late lost notifications";
  EXPECT_EQ(first_out_of_order(got), "");
  EXPECT_EQ(PQstatus(stuck.raw()), CONNECTION_OK);
}

// A subscriber inside a long transaction gets its notifications when it ends (as on PostgreSQL);
// meanwhile the proxy keeps them, and other clients' LISTENs and notifications do not wait for it.
TEST_F(ProxyProtocolTest, ASubscriberInsideATransactionHoldsUpNoOneElse) {
  auto busy = connect_or_throw(proxy());
  {
    PgResult r(PQexec(busy.raw(), "LISTEN busy_events"));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  ASSERT_EQ(PQsendQuery(busy.raw(), "BEGIN; SELECT pg_sleep(4); COMMIT"), 1);
  std::this_thread::sleep_for(300ms);
  constexpr int kCount = 300;  // ~8 kB each: 2.4 MB, past the 1 MB mark
  sql(cluster().primary_uri(), "SELECT count(pg_notify('busy_events', lpad(i::text, 6, '0') || repeat('x', 7900))) "
                               "FROM generate_series(1, " + std::to_string(kCount) + ") i");
  std::this_thread::sleep_for(300ms);

  auto other = connect_or_throw(proxy());
  const auto asked = std::chrono::steady_clock::now();
  {
    PgResult r(PQexec(other.raw(), "LISTEN other_events"));
    ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 1500ms) << "another client's LISTEN waited for the transaction";

  // The transaction ends; every notification arrives after it, in order.
  while (PGresult* r = PQgetResult(busy.raw())) PQclear(r);
  const auto got = receive_notifications(busy, kCount, 20s);
  EXPECT_EQ(got.size(), size_t{kCount});
  EXPECT_EQ(first_out_of_order(got), "");
}

TEST_F(ProxyProtocolTest, ExtendedProtocolWithUnnamedStatements) {
  auto conn = connect_or_throw(proxy());
  PGconn* c = conn.raw();
  ConnectionWatchdog guard(c, 90s);  // a stuck proxy fails the test instead of hanging it
  // Text parameters, a NULL, an explicit type and a binary result column.
  {
    const char* values[] = {"abc", "41", nullptr};
    Oid types[] = {25, 0, 0};
    PgResult r(PQexecParams(c, "SELECT $1 || '!', $2::int + 1, $3::text IS NULL, $2::int4 AS bin", 3, types, values,
                            nullptr, nullptr, 0));
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
    EXPECT_EQ(r.value(0, 0), "abc!");
    EXPECT_EQ(r.value(0, 1), "42");
    EXPECT_EQ(r.value(0, 2), "t");
  }
  {
    const char* values[] = {"7"};
    PgResult r(PQexecParams(c, "SELECT $1::int4 * 6", 1, nullptr, values, nullptr, nullptr, 1));
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
    ASSERT_EQ(PQgetlength(r.res, 0, 0), 4);
    const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r.res, 0, 0));
    EXPECT_EQ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3], 42) << "binary int4 result";
  }
  // The unnamed statement through PQprepare/PQdescribePrepared/PQexecPrepared.
  {
    PgResult prep(PQprepare(c, "", "SELECT $1::int + $2::int AS total, 'u' AS tag", 2, nullptr));
    ASSERT_EQ(prep.status(), PGRES_COMMAND_OK) << prep.error();
    PgResult desc(PQdescribePrepared(c, ""));
    ASSERT_EQ(desc.status(), PGRES_COMMAND_OK) << desc.error();
    EXPECT_EQ(PQnparams(desc.res), 2);
    EXPECT_EQ(PQnfields(desc.res), 2);
    EXPECT_EQ(std::string(PQfname(desc.res, 0)), "total");
    const char* values[] = {"40", "2"};
    PgResult r(PQexecPrepared(c, "", 2, values, nullptr, nullptr, 0));
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
    EXPECT_EQ(r.value(0, 0), "42");
    EXPECT_EQ(r.value(0, 1), "u");
  }
  // An error in the extended protocol leaves the connection usable.
  {
    const char* values[] = {"not a number"};
    PgResult r(PQexecParams(c, "SELECT $1::int", 1, nullptr, values, nullptr, nullptr, 0));
    EXPECT_EQ(r.status(), PGRES_FATAL_ERROR);
    EXPECT_EQ(r.sqlstate(), "22P02") << r.error();
  }
  for (int i = 0; i < 50; ++i) {
    std::string v = std::to_string(i);
    const char* values[] = {v.c_str()};
    PgResult r(PQexecParams(c, "SELECT $1::text || '-' || $1::text", 1, nullptr, values, nullptr, nullptr, 0));
    ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
    ASSERT_EQ(r.value(), v + "-" + v);
  }
}

TEST_F(ProxyProtocolTest, NoticesReachTheClient) {
  auto conn = connect_or_throw(proxy());
  PGconn* c = conn.raw();
  ConnectionWatchdog guard(c, 90s);  // a stuck proxy fails the test instead of hanging it
  std::vector<std::string> notices;
  PQsetNoticeReceiver(
      c,
      [](void* arg, const PGresult* res) {
        auto field = [res](int code) {
          const char* v = PQresultErrorField(res, code);
          return std::string(v ? v : "");
        };
        static_cast<std::vector<std::string>*>(arg)->push_back(field(PG_DIAG_SEVERITY_NONLOCALIZED) + ":" +
                                                               field(PG_DIAG_MESSAGE_PRIMARY));
      },
      &notices);
  PgResult r(PQexec(c,
                    "DO $$BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful'; RAISE NOTICE 'bye'; END$$"));
  ASSERT_EQ(r.status(), PGRES_COMMAND_OK) << r.error();
  ASSERT_EQ(notices.size(), 3u);
  EXPECT_EQ(notices[0], "NOTICE:hello 42");
  EXPECT_EQ(notices[1], "WARNING:careful");
  EXPECT_EQ(notices[2], "NOTICE:bye");

  auto p = psql(proxy(), {"-c", "DO $$BEGIN RAISE NOTICE 'from psql %', 7; END$$"});
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_NE(p.output.find("NOTICE:  from psql 7"), std::string::npos) << p.output;
}

TEST_F(ProxyProtocolTest, ErrorInsideATransactionThenRollback) {
  sql(proxy(), "CREATE TABLE tx_items (id int PRIMARY KEY)");
  auto conn = connect_or_throw(proxy());
  PGconn* c = conn.raw();
  ConnectionWatchdog guard(c, 90s);  // a stuck proxy fails the test instead of hanging it
  auto exec = [&](const char* q) {
    PgResult r(PQexec(c, q));
    return std::make_pair(r.status(), r.sqlstate());
  };
  EXPECT_EQ(exec("BEGIN").first, PGRES_COMMAND_OK);
  EXPECT_EQ(PQtransactionStatus(c), PQTRANS_INTRANS);
  EXPECT_EQ(exec("INSERT INTO tx_items VALUES (1)").first, PGRES_COMMAND_OK);
  auto failed = exec("INSERT INTO tx_items VALUES (1)");
  EXPECT_EQ(failed.first, PGRES_FATAL_ERROR);
  EXPECT_EQ(failed.second, "23505");
  EXPECT_EQ(PQtransactionStatus(c), PQTRANS_INERROR);
  auto aborted = exec("SELECT 1");
  EXPECT_EQ(aborted.first, PGRES_FATAL_ERROR);
  EXPECT_EQ(aborted.second, "25P02") << "current transaction is aborted";
  EXPECT_EQ(exec("ROLLBACK").first, PGRES_COMMAND_OK);
  EXPECT_EQ(PQtransactionStatus(c), PQTRANS_IDLE);
  EXPECT_EQ(sql_value(proxy(), "SELECT count(*) FROM tx_items"), "0") << "the rolled back insert is visible";

  // The same connection goes on normally; a savepoint recovers from an error inside a transaction.
  EXPECT_EQ(exec("BEGIN").first, PGRES_COMMAND_OK);
  EXPECT_EQ(exec("INSERT INTO tx_items VALUES (2)").first, PGRES_COMMAND_OK);
  EXPECT_EQ(exec("SAVEPOINT s").first, PGRES_COMMAND_OK);
  EXPECT_EQ(exec("SELECT 1/0").second, "22012");
  EXPECT_EQ(exec("ROLLBACK TO SAVEPOINT s").first, PGRES_COMMAND_OK);
  EXPECT_EQ(exec("INSERT INTO tx_items VALUES (3)").first, PGRES_COMMAND_OK);
  EXPECT_EQ(exec("COMMIT").first, PGRES_COMMAND_OK);
  EXPECT_EQ(sql_value(proxy(), "SELECT string_agg(id::text, ',' ORDER BY id) FROM tx_items"), "2,3");

  // psql: the error is printed, ROLLBACK works.
  auto p = psql(proxy(), {"-v", "ON_ERROR_STOP=0", "-c", "BEGIN", "-c", "SELECT 1/0", "-c", "ROLLBACK", "-c",
                          "SELECT 'still here'"});
  EXPECT_NE(p.output.find("division by zero"), std::string::npos) << p.output;
  EXPECT_NE(p.output.find("ROLLBACK"), std::string::npos) << p.output;
  EXPECT_NE(p.output.find("still here"), std::string::npos) << p.output;
  sql(proxy(), "DROP TABLE tx_items");
}

TEST_F(ProxyProtocolTest, MultiStatementSimpleQuery) {
  auto conn = connect_or_throw(proxy());
  PGconn* c = conn.raw();
  ConnectionWatchdog guard(c, 90s);  // a stuck proxy fails the test instead of hanging it
  ASSERT_EQ(PQsendQuery(c, "SELECT 1 AS one; SELECT 'two', 2; VALUES (3), (33); SET application_name = 'multi'"), 1);
  ASSERT_TRUE(pump(c));
  std::vector<std::string> seen;
  while (PGresult* res = PQgetResult(c)) {
    PgResult r(res);
    if (r.status() == PGRES_TUPLES_OK) {
      std::string rows;
      for (int i = 0; i < PQntuples(res); ++i) rows += (i ? "," : "") + r.value(i, 0);
      seen.push_back(rows);
    } else {
      seen.push_back(std::string(PQresStatus(r.status())) + ":" + PQcmdStatus(res));
    }
    pump(c);
  }
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], "1");
  EXPECT_EQ(seen[1], "two");
  EXPECT_EQ(seen[2], "3,33");
  EXPECT_EQ(seen[3], "PGRES_COMMAND_OK:SET");

  // An error stops the rest of the string (one implicit transaction), and nothing of it is kept.
  sql(proxy(), "CREATE TABLE multi_items (id int)");
  ASSERT_EQ(PQsendQuery(c, "INSERT INTO multi_items VALUES (1); SELECT 1/0; INSERT INTO multi_items VALUES (2)"), 1);
  ASSERT_TRUE(pump(c));
  int errors = 0;
  while (PGresult* res = PQgetResult(c)) {
    errors += PQresultStatus(res) == PGRES_FATAL_ERROR;
    PQclear(res);
    pump(c);
  }
  EXPECT_EQ(errors, 1);
  EXPECT_EQ(sql_value(proxy(), "SELECT count(*) FROM multi_items"), "0");
  PgResult r(PQexec(c, "SELECT 'ok'"));
  ASSERT_EQ(r.status(), PGRES_TUPLES_OK) << r.error();
  EXPECT_EQ(r.value(), "ok");

  PgResult empty(PQexec(c, ""));
  EXPECT_EQ(empty.status(), PGRES_EMPTY_QUERY);
  PgResult comment(PQexec(c, "-- nothing but a comment"));
  EXPECT_EQ(comment.status(), PGRES_EMPTY_QUERY);

  auto p = psql(proxy(), {"-At", "-c", "SELECT 'a'; SELECT 'b'; SELECT 'c'"});
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_EQ(p.output, "a\nb\nc\n");
  sql(proxy(), "DROP TABLE multi_items");
}

}  // namespace
}  // namespace pgfleet::itest
