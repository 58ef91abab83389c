// Error kinds for the metrics: the SQLSTATEs the proxy's own errors use (client_conn.cpp, worker.cpp).
#include "proxy/stats.hpp"

namespace pgfleet::proxy {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kAuth: return "auth";
    case ErrorKind::kWaitTimeout: return "wait_timeout";
    case ErrorKind::kTooManyClients: return "too_many_clients";
    case ErrorKind::kProtocol: return "protocol";
    case ErrorKind::kServerLost: return "server_lost";
    case ErrorKind::kNoReplica: return "no_replica";
    case ErrorKind::kTerminated: return "terminated";
    case ErrorKind::kSlowSubscriber: return "slow_subscriber";
    case ErrorKind::kOther:
    case ErrorKind::kCount: break;
  }
  return "other";
}

ErrorKind classify_error(std::string_view sqlstate, std::string_view message) {
  if (sqlstate.starts_with("28")) return ErrorKind::kAuth;  // 28000, 28P01
  if (sqlstate == "53300") return ErrorKind::kTooManyClients;
  if (sqlstate == "57P03") return ErrorKind::kNoReplica;
  if (sqlstate == "57P01" || sqlstate == "57P05") return ErrorKind::kTerminated;
  if (sqlstate == "54000" && message.find("does not read its notifications") != std::string_view::npos) {
    return ErrorKind::kSlowSubscriber;
  }
  if (sqlstate == "08P01") {
    // The wait timeout shares 08P01 with PgBouncer's wording; the rest are protocol violations.
    return message.starts_with("no server connection available") ? ErrorKind::kWaitTimeout : ErrorKind::kProtocol;
  }
  if (sqlstate == "0A000") return ErrorKind::kProtocol;
  if (sqlstate.starts_with("08")) return ErrorKind::kServerLost;  // 08006, 08001
  return ErrorKind::kOther;
}

}  // namespace pgfleet::proxy
