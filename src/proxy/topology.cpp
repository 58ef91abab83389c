// Topology from the DCS leader key (as soon as the store changes) or from probes.
#include "proxy/topology.hpp"

#include <fmt/format.h>
#include <sys/un.h>

#include <nlohmann/json.hpp>

#include <stdexcept>

#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "dcs/local_dcs.hpp"
#include "dcs/member.hpp"
#include "postgres/pgconn.hpp"
#include "proxy/server_conn.hpp"
#include "util/log.hpp"

namespace pgfleet::proxy {

using namespace std::chrono_literals;

TopologyWatcher::TopologyWatcher(cluster::ClusterConfig config, std::optional<cluster::Layout> layout)
    : config_(std::move(config)), layout_(std::move(layout)) {
  current_.store(std::make_shared<const Topology>());
}

TopologyWatcher::~TopologyWatcher() { stop(); }

void TopologyWatcher::start() {
  if (!config_.etcd.endpoints.empty()) remote_ = cluster::open_dcs(cluster::Layout("/nonexistent"), config_);
  else if (layout_) local_ = std::make_unique<dcs::LocalDcs>(layout_->dcs_dir());
  try {
    publish(observe());
    apply_planned_pause();
  } catch (const std::exception& e) {
    log::warn("topology: {}", e.what());
  }
  thread_ = std::thread([this] { run(); });
}

void TopologyWatcher::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool TopologyWatcher::wait_for_primary(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return current()->primary.has_value() || stopping_; }) &&
         current()->primary.has_value();
}

Topology TopologyWatcher::observe() {
  Topology t;
  std::string host = cluster::connect_host(config_);
  auto backend_of = [&](const cluster::NodeConfig& n) {
    Backend b{n.name, n.host.empty() ? host : n.host, n.port, "", static_cast<int>(&n - config_.nodes.data())};
    if (layout_) {
      std::string path = fmt::format("{}/.s.PGSQL.{}", layout_->socket_dir(), n.port);
      if (path.size() < sizeof(sockaddr_un{}.sun_path)) b.socket_path = std::move(path);
    }
    return b;
  };
  if (remote_) {
    // Several hosts (etcd): the backends are the members that published themselves.
    auto leader = remote_->get(dcs::keys::kLeader);
    auto members = remote_->list(dcs::keys::kMembersPrefix);
    if (!leader || !members) throw std::runtime_error(!leader ? leader.error() : members.error());
    // Applied after the topology read with it is published (apply_planned_pause): held clients
    // that go on must find the new primary.
    if (auto pause = remote_->get(dcs::keys::kProxyPause); pause) {
      pause_seen_ = pause.value().has_value();
      pause_reason_.clear();
      if (pause_seen_) {
        try {
          pause_reason_ = nlohmann::json::parse(pause.value()->value).value("reason", "");
        } catch (const nlohmann::json::exception&) {
        }
      }
    }
    std::string primary = leader.value() ? leader.value()->value : "";
    std::vector<dcs::Member> parsed;
    for (const auto& kv : *members) parsed.push_back(dcs::member_from_json(nlohmann::json::parse(kv.value)));
    // No key at all (etcd back after an outage longer than the TTL, before any agent wrote again):
    // that says nothing new about the nodes, so the previous topology stands.
    if (primary.empty() && parsed.empty()) return *current();
    // Failsafe mode: no leader key (it expired while the primary could not reach etcd), but the
    // members confirmed over the agents' API that the primary still runs: keep sending it writes.
    std::string confirmed;
    if (primary.empty())
      for (const auto& m : parsed)
        if (!m.failsafe_for.empty()) confirmed = m.failsafe_for;
    for (const auto& m : parsed) {
      if (m.host.empty() || m.port == 0) continue;
      Backend b{m.name, m.host, m.port, "", -1};
      last_address_.insert_or_assign(m.name, b);
      if (m.state == "stopped") continue;
      // The new leader still says it is a replica: it took the key and is being promoted (writes
      // would fail as read-only); no primary until its agent says it is one, within a loop.
      if (m.name == primary && m.role == "replica") continue;
      if (m.name == primary || m.name == confirmed) t.primary = b;
      else if (!m.noloadbalance) t.replicas.push_back(b);
    }
    // Its own member key may have expired meanwhile (it cannot reach etcd): the address it
    // published last. (The previous topology is not enough: a poll that fell between the leader
    // key's expiry and the members' first confirmation had no primary, and lost the address.)
    if (!confirmed.empty() && !t.primary) {
      if (auto it = last_address_.find(confirmed); it != last_address_.end()) t.primary = it->second;
    }
    return t;
  }
  if (local_) {
    auto leader = local_->get(dcs::keys::kLeader);
    std::string primary = leader && leader.value() ? leader.value()->value : "";
    auto members = local_->list(dcs::keys::kMembersPrefix);
    // The new leader still says it is a replica: it took the key and is being promoted. Writes
    // sent now would fail as read-only, so there is no primary until its agent says it is one
    // (within a loop); clients wait, as during the rest of a failover.
    bool promoting = false;
    if (members) {
      for (const auto& kv : *members) {
        try {
          auto m = dcs::member_from_json(nlohmann::json::parse(kv.value));
          promoting = promoting || (m.name == primary && m.role == "replica");
        } catch (const std::exception&) {
        }
      }
    }
    for (const auto& n : config_.nodes) {
      if (n.name == primary && promoting) continue;
      if (n.name == primary) t.primary = backend_of(n);
      else t.replicas.push_back(backend_of(n));
    }
    // What each agent says about its node: a replica that crashed, is stopping, claims to be a
    // primary while another holds the leader key, or is tagged noloadbalance takes no reads.
    std::vector<bool> excluded(config_.nodes.size(), false);
    if (members) {
      for (const auto& kv : *members) {
        try {
          auto m = dcs::member_from_json(nlohmann::json::parse(kv.value));
          for (size_t i = 0; i < config_.nodes.size(); ++i) {
            if (config_.nodes[i].name != m.name || m.name == primary) continue;
            excluded[i] = m.role == "primary" || m.state == "crashed" || m.state == "stopping" || m.state == "stopped" ||
                          m.noloadbalance;
          }
        } catch (const std::exception&) {
          // an unreadable member key excludes nothing; the health poller still judges the node
        }
      }
    }
    for (size_t i = 0; i < excluded.size() && i < excluded_.size(); ++i) excluded_[i].store(excluded[i]);
    return t;
  }
  for (const auto& n : config_.nodes) {
    auto conn = postgres::PgConn::connect(
        fmt::format("host={} port={} user={} dbname={} connect_timeout=2 application_name=pgfleet-proxy {}",
                    n.host.empty() ? host : n.host, n.port,
                    config_.proxy.auth_user.empty() ? config_.superuser : config_.proxy.auth_user, config_.database,
                    libpq_tls_options(config_.proxy.server_sslmode, n.host.empty() ? host : n.host,
                                      server_ca_file(config_, layout_))));
    if (!conn) continue;
    auto standby = conn->scalar("SELECT pg_is_in_recovery()");
    if (standby && standby.value() == std::optional<std::string>("f") && !t.primary) t.primary = backend_of(n);
  }
  // Every other node is a replica candidate; the health poller says which can take reads now
  // (so a replica going down does not change the topology and its version).
  for (const auto& n : config_.nodes) {
    if ((!t.primary || t.primary->name != n.name) && !n.noloadbalance) t.replicas.push_back(backend_of(n));
  }
  return t;
}

void TopologyWatcher::publish(Topology next) {
  auto previous = current();
  if (previous->primary == next.primary && previous->replicas == next.replicas) return;
  next.version = previous->version + 1;
  log::info("topology: primary {}, {} replica(s)", next.primary ? fmt::format("{} ({}:{})", next.primary->name, next.primary->host,
                                                               next.primary->port)
                                                  : std::string("unknown"), next.replicas.size());
  {
    std::lock_guard lock(mutex_);
    current_.store(std::make_shared<const Topology>(std::move(next)), std::memory_order_release);
    version_.fetch_add(1, std::memory_order_acq_rel);
  }
  changed_.notify_all();
}

void TopologyWatcher::run() {
  // A watch on the DCS: woken by any change of the cluster's keys (etcd: at most a second late
  // for stop(), the local DCS: a quarter of one). Without a DCS the nodes are probed every second.
  dcs::Dcs* watched = remote_ ? remote_.get() : local_.get();
  const auto watch_timeout = remote_ ? 1000ms : 250ms;
  int64_t revision = 0;
  while (true) {
    if (watched != nullptr) {
      auto woke = watched->wait_for_change("", revision, watch_timeout);
      {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
      }
      if (!woke) {
        log::warn("topology: {}", woke.error());
        end_planned_pause();
        std::unique_lock lock(mutex_);
        if (changed_.wait_for(lock, 500ms, [&] { return stopping_; })) return;
        continue;
      }
      if (*woke == revision) continue;
      revision = *woke;
    } else {
      std::unique_lock lock(mutex_);
      if (changed_.wait_for(lock, 1000ms, [&] { return stopping_; })) return;
    }
    try {
      publish(observe());
      apply_planned_pause();
    } catch (const std::exception& e) {
      log::warn("topology: {}", e.what());
      end_planned_pause();
    }
  }
}

void TopologyWatcher::apply_planned_pause() {
  if (pause_seen_ == planned_pause_.exchange(pause_seen_)) return;
  if (pause_seen_)
    log::info("new transactions held: {} (etcd key proxy_pause)", pause_reason_.empty() ? "planned change" : pause_reason_);
  else
    log::info("new transactions go on (etcd key proxy_pause gone)");
}

void TopologyWatcher::end_planned_pause() {
  pause_seen_ = false;
  // Unable to see whether the key still exists (it has a TTL): clients are not held on a guess.
  if (planned_pause_.exchange(false)) log::warn("new transactions go on: etcd cannot be read to confirm proxy_pause");
}

}  // namespace pgfleet::proxy
