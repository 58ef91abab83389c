// libpq calls with errors turned into Results; nothing here retries or sleeps.
#include "postgres/pgconn.hpp"

#include <poll.h>

namespace pgfleet::postgres {
namespace {
std::string trimmed(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}
}  // namespace

Result<PgConn> PgConn::connect_uri(const std::string& uri, const std::string& application_name,
                                   int timeout_seconds) {
  return connect(uri + (uri.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=" +
                 std::to_string(timeout_seconds) + "&application_name=" + application_name);
}

Result<PgConn> PgConn::connect(const std::string& conninfo) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  if (c == nullptr) return Error{"out of memory"};
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg = trimmed(PQerrorMessage(c));
    PQfinish(c);
    return Error{msg};
  }
  return PgConn(c);
}

Result<std::vector<Row>> PgConn::query(const std::string& sql) { return query(sql, {}); }

Result<std::vector<Row>> PgConn::query(const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.c_str());
  // Without parameters the simple protocol: it also works where only simple queries do
  // (the proxy's admin console, a replication connection).
  PGresult* res = params.empty() ? PQexec(conn_.get(), sql.c_str())
                                 : PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(params.size()), nullptr,
                                                values.data(), nullptr, nullptr, 0);
  return rows_of(res);
}

Result<std::vector<Row>> PgConn::query_within(std::chrono::milliseconds limit, const std::string& sql,
                                              const std::vector<std::string>& params) {
  PGconn* c = conn_.get();
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  const int sent = params.empty() ? PQsendQuery(c, sql.c_str())
                                  : PQsendQueryParams(c, sql.c_str(), static_cast<int>(params.size()), nullptr,
                                                      values.data(), nullptr, nullptr, 0);
  if (sent == 0) return Error{trimmed(PQerrorMessage(c))};
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (PQisBusy(c) != 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Error{"no answer within " + std::to_string(limit.count()) + " ms"};
    pollfd pfd{PQsocket(c), POLLIN, 0};
    if (pfd.fd < 0) return Error{trimmed(PQerrorMessage(c))};
    (void)::poll(&pfd, 1, static_cast<int>(left.count()));
    if (PQconsumeInput(c) == 0) return Error{trimmed(PQerrorMessage(c))};
  }
  // As PQexec: the last statement's rows, or the first error.
  Result<std::vector<Row>> out = std::vector<Row>{};
  while (PGresult* r = PQgetResult(c)) {
    auto rows = rows_of(r);
    if (out) out = std::move(rows);
  }
  return out;
}

Result<std::vector<Row>> PgConn::query_prepared(const std::string& sql) {
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    const std::string name = "pgfleet_" + std::to_string(prepared_.size() + 1);
    std::unique_ptr<PGresult, decltype(&PQclear)> prepared(PQprepare(conn_.get(), name.c_str(), sql.c_str(), 0, nullptr),
                                                           &PQclear);
    if (PQresultStatus(prepared.get()) != PGRES_COMMAND_OK)
      return Error{trimmed(prepared ? PQresultErrorMessage(prepared.get()) : PQerrorMessage(conn_.get()))};
    it = prepared_.emplace(sql, name).first;
  }
  return rows_of(PQexecPrepared(conn_.get(), it->second.c_str(), 0, nullptr, nullptr, nullptr, 0));
}

Result<std::vector<Row>> PgConn::rows_of(PGresult* res) {
  std::unique_ptr<PGresult, decltype(&PQclear)> guard(res, &PQclear);
  auto status = PQresultStatus(res);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    // A server that ends the session with a FATAL: libpq puts the FATAL in the connection's
    // message and only "server closed the connection unexpectedly" in the result's.
    if (res == nullptr || PQstatus(conn_.get()) == CONNECTION_BAD) return Error{trimmed(PQerrorMessage(conn_.get()))};
    return Error{trimmed(PQresultErrorMessage(res))};
  }
  std::vector<Row> rows;
  int n = PQntuples(res), cols = PQnfields(res);
  rows.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    Row row;
    for (int j = 0; j < cols; ++j) {
      if (PQgetisnull(res, i, j)) row.emplace_back(std::nullopt);
      else row.emplace_back(std::string(PQgetvalue(res, i, j), static_cast<size_t>(PQgetlength(res, i, j))));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

Result<std::optional<std::string>> PgConn::scalar(const std::string& sql) {
  auto rows = query(sql);
  if (!rows) return Error{rows.error()};
  if (rows->empty() || rows->front().empty()) return Error{"no result for: " + sql};
  return rows->front().front();
}

Result<std::string> PgConn::scram_verifier(const std::string& user, const std::string& password) {
  char* v = PQencryptPasswordConn(conn_.get(), password.c_str(), user.c_str(), "scram-sha-256");
  if (v == nullptr) return Error{trimmed(PQerrorMessage(conn_.get()))};
  std::string out = v;
  PQfreemem(v);
  return out;
}

std::string quote_ident(const std::string& ident) {
  std::string out = "\"";
  for (char c : ident) out += (c == '"') ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string quote_literal(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += (c == '\'') ? std::string("''") : std::string(1, c);
  return out + "'";
}

}  // namespace pgfleet::postgres
