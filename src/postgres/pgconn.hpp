// PgConn: a small RAII wrapper over libpq for the control plane (status queries, setup SQL).
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "util/result.hpp"

namespace pgfleet::postgres {

using Row = std::vector<std::optional<std::string>>;  // nullopt = SQL NULL

class PgConn {
 public:
  // `conninfo` in libpq keyword form. Fails with libpq's message (trimmed).
  static Result<PgConn> connect(const std::string& conninfo);
  // A postgresql:// URI (the status's, which carry the password) with a connect timeout and the
  // application_name the server's pg_stat_activity shows.
  static Result<PgConn> connect_uri(const std::string& uri, const std::string& application_name,
                                    int timeout_seconds);

  // Runs one statement (no parameters); rows as text.
  Result<std::vector<Row>> query(const std::string& sql);
  // Runs a statement with text parameters $1..$n.
  Result<std::vector<Row>> query(const std::string& sql, const std::vector<std::string>& params);
  // Runs `sql` (no parameters) as a statement prepared on this connection the first time: for
  // the queries an agent repeats every loop, whose planning (views over the statistics) cost
  // the server about ten times their execution.
  Result<std::vector<Row>> query_prepared(const std::string& sql);
  // As query(), but gives up after `limit` ("no answer within N ms"): a hung server (a stopped
  // process, a frozen host, a paused proxy) accepts a query and never answers, while the kernel
  // still acknowledges the bytes. After that error the connection is unusable: drop it.
  Result<std::vector<Row>> query_within(std::chrono::milliseconds limit, const std::string& sql,
                                        const std::vector<std::string>& params = {});
  Status exec(const std::string& sql) {
    auto r = query(sql);
    if (!r) return Error{r.error()};
    return {};
  }
  // Single value of the first row/column, or an error when there is none.
  Result<std::optional<std::string>> scalar(const std::string& sql);

  // SCRAM verifier for `password` computed client-side, so the password never reaches the server log.
  Result<std::string> scram_verifier(const std::string& user, const std::string& password);

  [[nodiscard]] PGconn* raw() const { return conn_.get(); }

 private:
  struct Closer {
    void operator()(PGconn* c) const { PQfinish(c); }
  };
  explicit PgConn(PGconn* c) : conn_(c) {}
  Result<std::vector<Row>> rows_of(PGresult* res);
  std::unique_ptr<PGconn, Closer> conn_;
  std::map<std::string, std::string> prepared_;  // SQL text -> statement name on this connection
};

// Quotes an identifier ("node1") / literal ('x') for SQL text we build ourselves.
std::string quote_ident(const std::string& ident);
std::string quote_literal(const std::string& text);

}  // namespace pgfleet::postgres
