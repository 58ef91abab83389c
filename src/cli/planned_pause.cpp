#include "cli/planned_pause.hpp"

#include <fmt/format.h>

#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cluster/discovery.hpp"
#include "cluster/status.hpp"
#include "dcs/member.hpp"
#include "postgres/instance.hpp"
#include "util/clock.hpp"

namespace pgfleet::cli {
namespace {

using Clock = std::chrono::steady_clock;
// proxy_pause's lease: a command that dies holds the proxies' clients at most this long.
constexpr std::chrono::milliseconds kDcsPauseTtl{6000};

std::optional<postgres::PgConn> connect_to(const cluster::Cluster& c, const std::string& node, int timeout_seconds) {
  const auto* n = c.config.find_node(node);
  if (n == nullptr) return std::nullopt;
  // From another machine (--dcs) there is no passfile: the password comes from the DCS's secrets.
  auto conn = c.remote ? postgres::PgConn::connect_uri(
                             cluster::connection_uri(c.config, c.secrets,
                                                     {{n->host.empty() ? cluster::connect_host(c.config) : n->host, n->port}}, ""),
                             "pgfleet", timeout_seconds)
                       : postgres::PgConn::connect(postgres::tcp_conninfo(c.layout, c.config, *n, c.config.superuser,
                                                                          c.config.database) +
                                                   " connect_timeout=" + std::to_string(timeout_seconds));
  if (!conn) return std::nullopt;
  return std::move(conn.value());
}

std::string admin_conninfo(const cluster::Cluster& c) {
  return fmt::format("host={} port={} dbname=pgfleet user={} passfile={} connect_timeout=3 application_name=pgfleet-pause",
                     cluster::connect_host(c.config), c.config.ports.proxy, c.config.superuser, c.layout.passfile());
}

}  // namespace

void checkpoint_before_pause(const cluster::Cluster& c, const std::string& primary) {
  if (auto conn = connect_to(c, primary, 10)) (void)conn->exec("CHECKPOINT");
}

bool accepts_writes(const cluster::Cluster& c, const std::string& node) {
  auto conn = connect_to(c, node, 2);
  if (!conn) return false;
  auto r = conn->scalar("SELECT pg_is_in_recovery()");
  return r && r.value() == std::optional<std::string>("f");
}

ProxyPause::ProxyPause(const cluster::Cluster& c, std::string what)
    : what_(std::move(what)), conninfo_(admin_conninfo(c)) {
  if (c.remote) {
    hold_through_dcs(c);
    return;
  }
  if (!c.config.proxy.enabled || cluster::agent_pid(c.layout, "proxy") == 0) return;
  auto conn = postgres::PgConn::connect(conninfo_);
  if (!conn) {
    std::cerr << "note: cannot reach the proxy's admin console (" << conn.error() << "); " << what_
              << " without pausing it\n";
    return;
  }
  if (PQsendQuery(conn.value().raw(), "PAUSE") != 1) {
    std::cerr << "note: PAUSE failed: " << PQerrorMessage(conn.value().raw()) << "\n";
    return;
  }
  conn_.emplace(std::move(conn.value()));
}

void ProxyPause::hold_through_dcs(const cluster::Cluster& c) {
  const nlohmann::json value{{"reason", what_}, {"requested_ms", unix_ms()}};
  if (auto put = c.dcs->put(dcs::keys::kProxyPause, value.dump(), kDcsPauseTtl); !put) {
    std::cerr << "note: cannot ask the proxies through etcd to hold new transactions (" << put.error() << "); "
              << what_ << " without pausing them\n";
    return;
  }
  // The proxies watch etcd and see the key within milliseconds; drain() gives them this long.
  held_from_ = Clock::now() + std::chrono::milliseconds(200);
  // Renewed from a thread with its own connection to etcd (a Dcs serves one thread).
  renewer_ = std::thread([this, dcs = cluster::open_dcs(c.layout, c.config), text = value.dump()] {
    std::unique_lock lock(renewer_mutex_);
    while (!renewer_stop_.wait_for(lock, kDcsPauseTtl / 3, [&] { return stopping_; })) {
      if (auto r = dcs->put(dcs::keys::kProxyPause, text, kDcsPauseTtl); !r)
        std::cerr << "note: renewing proxy_pause in etcd failed: " << r.error() << "\n";
    }
    (void)dcs->remove(dcs::keys::kProxyPause);  // the proxies go on at once
  });
}

ProxyPause::~ProxyPause() {
  if (renewer_.joinable()) {
    {
      std::lock_guard lock(renewer_mutex_);
      stopping_ = true;
    }
    renewer_stop_.notify_all();
    renewer_.join();
  }
  if (!conn_) return;
  if (answered()) {
    (void)conn_->exec("RESUME");
    return;
  }
  // PAUSE is still waiting for a transaction: RESUME from a second session, which ends that wait.
  if (auto other = postgres::PgConn::connect(conninfo_); other) (void)other->exec("RESUME");
  while (PGresult* r = PQgetResult(conn_->raw())) PQclear(r);
}

void ProxyPause::drain(const cluster::Cluster& c, const std::string& primary, std::chrono::milliseconds limit) {
  if (!conn_ && !renewer_.joinable()) return;
  auto db = connect_to(c, primary, 3);
  if (!db) return;
  auto deadline = Clock::now() + limit;
  int quiet = 0;
  while (Clock::now() < deadline) {
    auto busy = db->scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
        "AND state IS DISTINCT FROM 'idle' AND application_name NOT LIKE 'pgfleet%'");
    if (!busy) return;
    quiet = busy.value() == std::optional<std::string>("0") ? quiet + 1 : 0;
    // The local proxy says when it holds everything (PAUSE answered); those following etcd, by then.
    const bool proxies_hold = conn_ ? answered() : Clock::now() >= held_from_;
    if (quiet >= 2 && proxies_hold) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::cerr << "note: transactions still running after " << limit.count() << " ms; " << what_ << " anyway\n";
}

bool ProxyPause::answered() {
  if (answered_) return true;
  if (PQconsumeInput(conn_->raw()) == 0) return answered_ = true;
  while (!PQisBusy(conn_->raw())) {
    PGresult* r = PQgetResult(conn_->raw());
    if (r == nullptr) return answered_ = true;
    PQclear(r);
  }
  return false;
}

}  // namespace pgfleet::cli
