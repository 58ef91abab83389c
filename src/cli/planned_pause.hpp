// A planned interruption of the primary (a switchover, a restart): a checkpoint while clients
// still run, then the proxy paused while the primary is away, so that clients in transaction mode
// see a pause rather than an error.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "cluster/control.hpp"
#include "postgres/pgconn.hpp"

namespace pgfleet::cli {

// A CHECKPOINT on `primary` now leaves little for the shutdown checkpoint to write while clients
// are paused. Best effort: a primary that cannot be reached is interrupted anyway.
void checkpoint_before_pause(const cluster::Cluster& c, const std::string& primary);

// True when `node` answers as a primary (pg_is_in_recovery() false), asked directly.
bool accepts_writes(const cluster::Cluster& c, const std::string& node);

// The proxy's admin console, to hold new transactions while the primary is away; RESUME when this
// goes out of scope. `what` names the operation in the notes printed ("switching over").
// From another machine (--dcs) the proxies run on the hosts of their clients, wherever those are:
// the etcd key proxy_pause asks every proxy following etcd to hold them instead. It has a short
// TTL, renewed by a thread while this lives, so a command that dies does not hold clients for long.
class ProxyPause {
 public:
  // Sends PAUSE without waiting for its answer: the proxy answers once its running transactions
  // have ended (up to its shutdown_timeout), but the caller waits at most drain()'s limit.
  ProxyPause(const cluster::Cluster& c, std::string what);
  ProxyPause(const ProxyPause&) = delete;
  ProxyPause& operator=(const ProxyPause&) = delete;
  ~ProxyPause();
  // Waits until no transaction runs through the proxy (its PAUSE answered) or on the primary
  // (asked there, seen twice 20 ms apart: clients may bypass the proxy), up to `limit`.
  void drain(const cluster::Cluster& c, const std::string& primary, std::chrono::milliseconds limit);

 private:
  // True once PAUSE's answer has come (consumed here); a failed PAUSE counts as answered.
  bool answered();

  void hold_through_dcs(const cluster::Cluster& c);

  std::string what_;
  std::string conninfo_;
  std::optional<postgres::PgConn> conn_;
  bool answered_ = false;
  // --dcs: the thread renewing proxy_pause, and when the proxies have surely seen it.
  std::thread renewer_;
  std::mutex renewer_mutex_;
  std::condition_variable renewer_stop_;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point held_from_{};
};

}  // namespace pgfleet::cli
