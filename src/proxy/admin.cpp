// Admin commands in the row format psql prints, like PgBouncer's console.
#include "proxy/admin.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "protocol/messages.hpp"
#include "postgres/lsn.hpp"
#include "proxy/health.hpp"
#include "proxy/routing.hpp"
#include "proxy/worker.hpp"

namespace pgfleet::proxy {
namespace {

using Row = std::vector<std::optional<std::string>>;

protocol::Bytes table(const std::vector<std::string>& columns, const std::vector<Row>& rows, std::string_view tag = {}) {
  auto bytes = protocol::result_set(columns, rows, tag);
  if (!bytes) return protocol::encode(protocol::error_response("ERROR", "XX000", bytes.error()));
  return std::move(*bytes);
}

protocol::Bytes done(std::string_view tag) { return protocol::encode(protocol::CommandComplete{std::string(tag)}); }

protocol::Bytes error(std::string_view message) {
  return protocol::encode(protocol::error_response("ERROR", "42601", message));
}

std::vector<std::string> words(std::string_view sql) {
  std::vector<std::string> out;
  std::string w;
  for (char c : sql) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == ';') {
      if (!w.empty()) out.push_back(std::move(w));
      w.clear();
    } else {
      w += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
  }
  if (!w.empty()) out.push_back(std::move(w));
  return out;
}

std::string n(int64_t v) { return std::to_string(v); }

// The database a command names ("PAUSE app;"): database names are case-sensitive, so it is taken
// from the original text, not the upper-cased words.
std::string database_argument(std::string_view sql) {
  std::istringstream in{std::string(sql)};
  std::string ignored, db;
  in >> ignored >> db;
  while (!db.empty() && db.back() == ';') db.pop_back();
  return db;
}

std::vector<std::shared_ptr<const WorkerSnapshot>> snapshots(ProxyShared& shared) {
  std::vector<std::shared_ptr<const WorkerSnapshot>> out;
  for (Worker* w : shared.workers) out.push_back(w->snapshot());
  return out;
}

}  // namespace

std::map<std::pair<std::string, std::string>, PoolRow> merged_pools(ProxyShared& shared) {
  std::map<std::pair<std::string, std::string>, PoolRow> pools;
  for (const auto& snap : snapshots(shared)) {
    for (const auto& p : snap->pools) {
      auto& m = pools[{p.database, p.user}];
      m.database = p.database;
      m.user = p.user;
      m.mode = p.mode;
      m.clients_active += p.clients_active;
      m.clients_waiting += p.clients_waiting;
      m.clients_idle += p.clients_idle;
      m.servers_active += p.servers_active;
      m.servers_idle += p.servers_idle;
      m.servers_connecting += p.servers_connecting;
      m.cancels_in_flight += p.cancels_in_flight;
      m.servers_being_canceled += p.servers_being_canceled;
      m.max_wait_us = std::max(m.max_wait_us, p.max_wait_us);
      m.stats.add(p.stats);
    }
  }
  return pools;
}

namespace {

bool database_paused(ProxyShared& shared, const std::string& database) {
  if (shared.all_paused()) return true;
  const auto dbs = shared.paused_databases.load();
  return std::find(dbs->begin(), dbs->end(), database) != dbs->end();
}

// PgBouncer 1.18's columns. Databases are those clients have used (any database is served) and
// those named by PAUSE or DISABLE; host and port are the primary's, where writes go.
protocol::Bytes show_databases(ProxyShared& shared) {
  auto c = shared.settings();
  auto topo = shared.topology->current();
  struct Database {
    int servers = 0;
  };
  std::map<std::string, Database> databases;
  for (const auto& [key, p] : merged_pools(shared)) {
    databases[p.database].servers += p.servers_active + p.servers_idle + p.servers_connecting + p.servers_being_canceled;
  }
  // A database paused or disabled before any client used it is listed too.
  for (const auto& list : {shared.paused_databases.load(), shared.disabled_databases.load()}) {
    for (const auto& name : *list) databases[name];
  }
  std::vector<Row> rows;
  for (const auto& [name, d] : databases) {
    const auto* o = cluster::pool_override(c->proxy, name, "");
    Row row{name};
    row.push_back(topo->primary ? std::optional<std::string>(topo->primary->host) : std::nullopt);
    row.push_back(topo->primary ? std::optional<std::string>(n(topo->primary->port)) : std::nullopt);
    row.insert(row.end(), {name, std::nullopt,
                           n(o != nullptr && o->pool_size ? *o->pool_size : c->proxy.default_pool_size),
                           n(c->proxy.min_pool_size), n(c->proxy.reserve_pool_size)});
    row.push_back(o != nullptr && o->pool_mode ? std::optional<std::string>(cluster::to_string(*o->pool_mode))
                                               : std::nullopt);
    row.insert(row.end(), {"0", n(d.servers), database_paused(shared, name) ? "1" : "0",
                           shared.is_disabled(name) ? "1" : "0"});
    rows.push_back(std::move(row));
  }
  return table({"name", "host", "port", "database", "force_user", "pool_size", "min_pool_size", "reserve_pool",
                "pool_mode", "max_connections", "current_connections", "paused", "disabled"},
               rows, "SHOW");
}

// PgBouncer 1.18's columns: the users that logged in, with their own pool_mode if one is set.
protocol::Bytes show_users(ProxyShared& shared) {
  auto c = shared.settings();
  std::set<std::string> users;
  for (const auto& [key, p] : merged_pools(shared)) users.insert(p.user);
  std::vector<Row> rows;
  for (const auto& user : users) {
    const auto* o = cluster::pool_override(c->proxy, "", user);
    rows.push_back({user, o != nullptr && o->pool_mode ? std::optional<std::string>(cluster::to_string(*o->pool_mode))
                                                       : std::nullopt});
  }
  return table({"name", "pool_mode"}, rows, "SHOW");
}

// PgBouncer's internal lists, as its exporters read them. There are no free lists (a connection's
// memory is its own and returned when it closes) and no DNS cache (libc resolves).
protocol::Bytes show_lists(ProxyShared& shared) {
  std::set<std::string> databases, users;
  int64_t pools = 0, clients = 0, servers = 0, logging_in = 0;
  for (const auto& [key, p] : merged_pools(shared)) {
    databases.insert(p.database);
    users.insert(p.user);
    ++pools;
    clients += p.clients_active + p.clients_waiting + p.clients_idle;
    servers += p.servers_active + p.servers_idle + p.servers_connecting + p.servers_being_canceled;
  }
  for (const auto& snap : snapshots(shared)) logging_in += snap->clients_login;
  return table({"list", "items"},
               {{"databases", n(static_cast<int64_t>(databases.size()))},
                {"users", n(static_cast<int64_t>(users.size()))},
                {"pools", n(pools)},
                {"free_clients", "0"},
                {"used_clients", n(clients + logging_in)},
                {"login_clients", n(logging_in)},
                {"free_servers", "0"},
                {"used_servers", n(servers)},
                {"dns_names", "0"},
                {"dns_zones", "0"},
                {"dns_queries", "0"},
                {"dns_pending", "0"}},
               "SHOW");
}

protocol::Bytes show(Worker& worker, const std::string& what) {
  ProxyShared& shared = worker.shared();
  if (what == "POOLS") {
    std::vector<Row> rows;
    for (const auto& [key, p] : merged_pools(shared)) {
      // PgBouncer 1.18's columns, so its exporters and dashboards read ours: cl_active counts
      // clients linked to a server or idle between transactions; a cancel request is forwarded
      // at once over a connection of its own (none waits, no pool connection carries one), and
      // servers do no checks (sv_used, sv_tested); maxwait is in seconds, maxwait_us its rest.
      rows.push_back({p.database, p.user, n(p.clients_active + p.clients_idle), n(p.clients_waiting),
                      n(p.cancels_in_flight), "0", n(p.servers_active), "0", n(p.servers_being_canceled),
                      n(p.servers_idle), "0", "0", n(p.servers_connecting), n(p.max_wait_us / 1000000),
                      n(p.max_wait_us % 1000000), p.mode});
    }
    return table({"database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req",
                  "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested",
                  "sv_login", "maxwait", "maxwait_us", "pool_mode"},
                 rows, "SHOW");
  }
  if (what == "STATS") {
    std::vector<Row> rows;
    for (const auto& [key, p] : merged_pools(shared)) {
      const auto& s = p.stats;
      rows.push_back({p.database, p.user, n(static_cast<int64_t>(s.transactions)), n(static_cast<int64_t>(s.queries)),
                      n(static_cast<int64_t>(s.bytes_received)), n(static_cast<int64_t>(s.bytes_sent)),
                      n(static_cast<int64_t>(s.waits ? s.wait_us_total / s.waits : 0)),
                      n(static_cast<int64_t>(s.wait_p99_us())),
                      n(static_cast<int64_t>(s.transactions ? s.query_us_total / s.transactions : 0)),
                      n(static_cast<int64_t>(s.query_p99_us())), n(static_cast<int64_t>(s.errors)),
                      n(static_cast<int64_t>(s.query_us_total)), n(static_cast<int64_t>(s.wait_us_total))});
    }
    // total_query_time and total_wait_time (µs) as PgBouncer names them, for its exporters.
    return table({"database", "user", "total_xact_count", "total_query_count", "total_received", "total_sent",
                  "avg_wait_us", "p99_wait_us", "avg_xact_us", "p99_xact_us", "total_errors", "total_query_time",
                  "total_wait_time"},
                 rows, "SHOW");
  }
  if (what == "TOTALS") {
    PoolStats all;
    for (const auto& [key, p] : merged_pools(shared)) all.add(p.stats);
    auto u = [](uint64_t v) { return std::to_string(v); };
    return table({"name", "value"},
                 {{"total_xact_count", u(all.transactions)},
                  {"total_query_count", u(all.queries)},
                  {"total_received", u(all.bytes_received)},
                  {"total_sent", u(all.bytes_sent)},
                  {"total_query_time", u(all.query_us_total)},
                  {"total_wait_time", u(all.wait_us_total)},
                  {"total_errors", u(all.errors)}},
                 "SHOW");
  }
  if (what == "DATABASES") return show_databases(shared);
  if (what == "USERS") return show_users(shared);
  if (what == "LISTS") return show_lists(shared);
  if (what == "CLIENTS") {
    std::vector<Row> rows;
    for (const auto& snap : snapshots(shared)) {
      for (const auto& c : snap->clients) {
        rows.push_back({n(c.pid), c.user, c.database, c.state, c.address, c.application_name,
                        c.server.empty() ? std::nullopt : std::optional<std::string>(c.server), n(c.connected_seconds),
                        n(snap->worker)});
      }
    }
    return table({"pid", "user", "database", "state", "addr", "application_name", "server", "connect_seconds",
                  "worker"},
                 rows, "SHOW");
  }
  if (what == "SERVERS") {
    std::vector<Row> rows;
    for (const auto& snap : snapshots(shared)) {
      for (const auto& s : snap->servers) {
        rows.push_back({n(static_cast<int64_t>(s.id)), s.user, s.database, s.state, s.backend, n(s.backend_pid),
                        n(s.connected_seconds), n(s.prepared), n(snap->worker)});
      }
    }
    return table({"id", "user", "database", "state", "backend", "backend_pid", "connect_seconds",
                  "prepared_statements", "worker"},
                 rows, "SHOW");
  }
  if (what == "NODES") {
    auto topo = shared.topology->current();
    auto c = shared.settings();
    std::array<uint64_t, 64> statements{};
    for (const auto& snap : snapshots(shared)) {
      for (size_t i = 0; i < statements.size(); ++i) statements[i] += snap->node_statements[i];
    }
    int64_t now = steady_ms();
    std::vector<Row> rows;
    auto add = [&](const Backend& b, const char* role) {
      Row row{b.name, b.host, n(b.port), role};
      if (shared.health != nullptr && b.index >= 0) {
        const NodeHealth& h = shared.health->node(b.index);
        bool primary = std::string_view(role) == "primary";
        bool healthy = primary ? h.reachable.load() && !h.in_recovery.load()
                               : h.usable_replica(now) && !shared.topology->member_excluded(b.index);
        auto weight = c->proxy.weights.find(b.name);
        row.push_back(healthy ? "yes" : "no");
        row.push_back(postgres::format_lsn(h.lsn.load()));
        row.push_back(n(h.lag_bytes.load()));
        row.push_back(n(h.lag_ms.load()));
        row.push_back(primary ? n(c->proxy.primary_read_weight) : n(weight == c->proxy.weights.end() ? 1 : weight->second));
        row.push_back(n(static_cast<int64_t>(statements[static_cast<size_t>(b.index)])));
        row.push_back(n(static_cast<int64_t>(h.samples_done.load())));
      } else {
        row.insert(row.end(),
                   {std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt});
      }
      rows.push_back(std::move(row));
    };
    if (topo->primary) add(*topo->primary, "primary");
    for (const auto& r : topo->replicas) add(r, "replica");
    return table({"name", "host", "port", "role", "healthy", "lsn", "lag_bytes", "lag_ms", "read_weight", "statements",
                  "polls"},
                 rows, "SHOW");
  }
  if (what == "ROUTING") {
    std::array<uint64_t, 16> counts{};
    for (const auto& snap : snapshots(shared)) {
      for (size_t i = 0; i < counts.size(); ++i) counts[i] += snap->route_counts[i];
    }
    std::vector<Row> rows;
    for (size_t i = 0; i < kRouteReasons; ++i) {
      auto reason = static_cast<RouteReason>(i);
      rows.push_back({to_string(reason), routes_to_replica(reason) ? "replica" : "primary", n(static_cast<int64_t>(counts[i]))});
    }
    return table({"reason", "target", "statements"}, rows, "SHOW");
  }
  if (what == "CONFIG") {
    auto c = shared.settings();
    const auto& p = c->proxy;
    std::vector<Row> rows = {
        {"listen_address", c->listen_address},
        {"port", n(c->ports.proxy)},
        {"threads", n(static_cast<int64_t>(shared.workers.size()))},
        {"pool_mode", cluster::to_string(p.pool_mode)},
        {"default_pool_size", n(p.default_pool_size)},
        {"min_pool_size", n(p.min_pool_size)},
        {"reserve_pool_size", n(p.reserve_pool_size)},
        {"reserve_pool_timeout_ms", n(p.reserve_pool_timeout_ms)},
        {"max_client_conn", n(p.max_client_conn)},
        {"query_wait_timeout_ms", n(p.query_wait_timeout_ms)},
        {"server_connect_timeout_ms", n(p.server_connect_timeout_ms)},
        {"server_idle_timeout", n(p.server_idle_timeout_s)},
        {"server_lifetime", n(p.server_lifetime_s)},
        {"client_idle_timeout", n(p.client_idle_timeout_s)},
        {"shutdown_timeout", n(p.shutdown_timeout_s)},
        {"port_primary", n(c->ports.proxy_primary)},
        {"port_replicas", n(c->ports.proxy_replicas)},
        {"causal_reads", p.causal_reads},
        {"max_replica_lag_bytes", n(p.max_replica_lag_bytes)},
        {"max_replica_lag_seconds", n(p.max_replica_lag_seconds)},
        {"primary_read_weight", n(p.primary_read_weight)},
        {"function_routing", p.function_routing},
        {"replicas_fallback_to_primary", p.replicas_fallback_to_primary ? "true" : "false"},
        {"tls_mode", p.tls_mode},
        {"tls_cert", p.tls_cert.empty() ? "(the cluster's)" : p.tls_cert},
        {"server_sslmode", p.server_sslmode},
        {"server_tls_ca", p.server_tls_ca.empty() ? "(the cluster's)" : p.server_tls_ca},
        {"auth_file", p.auth_file},
        {"auth_query", p.auth_query.empty() ? "(pg_authid)" : p.auth_query},
        {"unix_socket_dir", p.unix_socket_dir},
    };
    return table({"key", "value"}, rows, "SHOW");
  }
  if (what == "VERSION") {  // as PgBouncer's, which monitoring tools ask first
    return table({"version"}, {{std::string("pgfleet ") + PGFLEET_VERSION}}, "SHOW");
  }
  return error(
      "unknown SHOW target; try SHOW POOLS, STATS, TOTALS, CLIENTS, SERVERS, DATABASES, USERS, LISTS, NODES, ROUTING, "
      "CONFIG, VERSION or HELP");
}

}  // namespace

protocol::Bytes run_admin_command(Worker& worker, std::string_view sql) {
  ProxyShared& shared = worker.shared();
  auto w = words(sql);
  if (w.empty()) return protocol::encode(protocol::EmptyQueryResponse{});
  const std::string& verb = w[0];
  if (verb == "SHOW" && w.size() == 2 && w[1] == "HELP") {
    return table({"command"}, {{"SHOW POOLS|STATS|TOTALS|CLIENTS|SERVERS|DATABASES|USERS|LISTS|NODES|ROUTING|CONFIG|VERSION"}, {"PAUSE [db]"}, {"RESUME [db]"},
                               {"RELOAD"}, {"KILL db"}, {"RECONNECT [db]"}, {"DISABLE db"}, {"ENABLE db"}, {"SHUTDOWN"}},
                 "SHOW");
  }
  if (verb == "SHOW" && w.size() == 2) return show(worker, w[1]);
  if (verb == "PAUSE" || verb == "RESUME") {
    bool pause = verb == "PAUSE";
    if (w.size() == 1) {
      shared.paused.store(pause);
      if (!pause) {
        shared.any_database_paused.store(false);
        shared.paused_databases.store(std::make_shared<const std::vector<std::string>>());
      }
    } else {
      const std::string db = database_argument(sql);
      auto dbs = std::make_shared<std::vector<std::string>>(*shared.paused_databases.load());
      std::erase(*dbs, db);
      if (pause) dbs->push_back(db);
      shared.any_database_paused.store(!dbs->empty());
      shared.paused_databases.store(std::move(dbs));
    }
    return done(verb);
  }
  if (verb == "RELOAD" && w.size() == 1) {
    auto outcome = shared.reload ? shared.reload() : ProxyShared::ReloadOutcome{"reload is not available", ""};
    if (!outcome.error.empty()) return protocol::encode(protocol::error_response("ERROR", "F0000", outcome.error));
    if (outcome.warning.empty()) return done("RELOAD");
    auto reply = protocol::encode(
        protocol::NoticeResponse{protocol::error_response("WARNING", "01000", outcome.warning).fields});
    auto rest = done("RELOAD");
    reply.insert(reply.end(), rest.begin(), rest.end());
    return reply;
  }
  if (verb == "KILL" && w.size() == 2) {
    const std::string db = database_argument(sql);
    for (Worker* other : shared.workers) {
      other->loop().post([other, db] { other->kill_database(db); });
    }
    return done("KILL");
  }
  if ((verb == "DISABLE" || verb == "ENABLE") && w.size() == 2) {
    const std::string db = database_argument(sql);
    auto dbs = std::make_shared<std::vector<std::string>>(*shared.disabled_databases.load());
    std::erase(*dbs, db);
    if (verb == "DISABLE") dbs->push_back(db);
    shared.disabled_databases.store(std::move(dbs));
    return done(verb);
  }
  if (verb == "RECONNECT" && w.size() <= 2) {
    const std::string db = w.size() == 2 ? database_argument(sql) : "";
    for (Worker* other : shared.workers) {
      other->loop().post([other, db] { other->reconnect_database(db); });
    }
    return done("RECONNECT");
  }
  if (verb == "SHUTDOWN" && w.size() == 1) {
    if (shared.request_shutdown) shared.request_shutdown();
    return done("SHUTDOWN");
  }
  return error(fmt::format("unknown admin command \"{}\"; SHOW HELP lists them", std::string(sql)));
}

}  // namespace pgfleet::proxy
