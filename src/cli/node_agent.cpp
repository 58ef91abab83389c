// `pgfleet agent --config node.yaml`: one host of a multi-host cluster. Prepares this host's
// cluster directory, takes part in the one-time initialization through the DCS (the first agent
// to create the `initialize` key runs initdb; the others clone the leader), then runs the agent.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <iostream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cluster/binaries.hpp"
#include "cluster/control.hpp"
#include "cluster/node_file.hpp"
#include "dcs/member.hpp"
#include "ha/agent.hpp"
#include "postgres/instance.hpp"
#include "postgres/pgconn.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"
#include "util/log.hpp"
#include "util/process.hpp"
#include "util/tls.hpp"

namespace pgfleet::cli {
namespace {

using namespace std::chrono_literals;

// Root: the directory belongs to postgres.run_as and everything after runs as that user.
void prepare_directory(const cluster::NodeFile& nf) {
  if (::geteuid() != 0) {
    fs::make_directories(nf.data_dir, 0700);
    return;
  }
  auto user = process::lookup_user(nf.config.run_as);
  if (!user) throw UserError("user '" + nf.config.run_as + "' does not exist", "create it, or set postgres.run_as");
  fs::make_directories(nf.data_dir, 0700);
  if (::chown(nf.data_dir.c_str(), user->uid, user->gid) != 0)
    throw UserError("cannot give " + nf.data_dir + " to " + user->name);
  if (!process::user_can_access(*user, nf.data_dir))
    throw UserError(user->name + " cannot reach " + nf.data_dir, "let it traverse every parent directory");
  process::become(*user);
}

// pgfleet.yaml of this host: node.yaml's settings plus the other nodes learned so far.
cluster::ClusterConfig write_cluster_file(const cluster::NodeFile& nf, const cluster::Layout& layout) {
  cluster::ClusterConfig config = nf.config;
  if (fs::exists(layout.config_file())) {
    try {
      for (const auto& n : cluster::load_config(layout.config_file()).nodes)
        if (n.name != nf.node) config.nodes.push_back(n);
    } catch (const cluster::ConfigError& e) {
      log::warn("ignoring the nodes of {}: {}", layout.config_file(), e.what());
    }
  }
  cluster::validate_config(config, layout.config_file());
  fs::write_file_atomic(layout.config_file(), cluster::render_config(config), 0600);
  return config;
}

nlohmann::json secrets_json(const cluster::Secrets& s, const cluster::Layout& layout) {
  return {{"superuser_password", s.superuser_password},
          {"replication_password", s.replication_password},
          {"api_token", s.api_token},
          // The cluster CA travels with the passwords (the same trust: whoever reads etcd holds both).
          {"ca_cert", fs::read_file(layout.tls_ca_cert()).value_or("")},
          {"ca_key", fs::read_file(layout.tls_ca_key()).value_or("")}};
}

// This host's server certificate, issued by the cluster CA, for the names clients and the other
// hosts use: the node's address, this machine's name, and loopback. PostgreSQL serves TLS with it
// (ssl = on once it exists), the agent's API too when http.tls is on, and peers verify it with
// the CA (failsafe rounds; sslmode=verify-full for clients that copy ca.crt).
void ensure_host_certificate(const cluster::ClusterConfig& config, const cluster::Layout& layout,
                             const std::string& node) {
  if (!fs::exists(layout.tls_ca_cert()) || !fs::exists(layout.tls_ca_key()) || fs::exists(layout.tls_cert())) return;
  std::vector<std::string> hosts;
  const auto* self = config.find_node(node);
  if (self != nullptr && !self->host.empty() && self->host != "0.0.0.0" && self->host != "::") hosts.push_back(self->host);
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) == 0 && name[0] != '\0') hosts.emplace_back(name);
  hosts.insert(hosts.end(), {"localhost", "127.0.0.1"});
  tls::issue_certificate(layout.tls_ca_cert(), layout.tls_ca_key(), layout.tls_cert(), layout.tls_key(), hosts);
  log::info("TLS certificate for {} issued by the cluster CA ({})", fmt::join(hosts, ", "), layout.tls_cert());
}

// The settings every host may read (status from another machine): no nodes, no etcd password.
std::string shared_config(cluster::ClusterConfig config) {
  config.nodes.clear();
  config.etcd = {};
  return cluster::render_config(config);
}

void create_replication_role(const cluster::ClusterConfig& config, const cluster::Layout& layout,
                             const cluster::NodeConfig& node, const cluster::Secrets& secrets) {
  std::optional<postgres::PgConn> conn;
  for (auto deadline = std::chrono::steady_clock::now() + 60s; !conn;) {
    auto c = postgres::PgConn::connect(postgres::local_conninfo(layout, config, node));
    if (c) conn.emplace(std::move(c.value()));
    else if (std::chrono::steady_clock::now() > deadline)
      throw UserError("the new primary does not accept connections: " + c.error());
    else std::this_thread::sleep_for(100ms);
  }
  auto verifier = conn->scram_verifier(config.replication_user, secrets.replication_password);
  if (!verifier) throw UserError("cannot compute a SCRAM verifier: " + verifier.error());
  auto created = conn->exec("CREATE ROLE " + postgres::quote_ident(config.replication_user) +
                            " WITH REPLICATION LOGIN PASSWORD " + postgres::quote_literal(*verifier));
  if (!created) throw UserError("cannot create the replication role: " + created.error());
}

// initdb, replication role, then the secrets in the DCS: their presence means "initialized".
void initialize_cluster(const cluster::ClusterConfig& config, const cluster::Layout& layout, dcs::Dcs& dcs,
                        const std::string& node) {
  log::info("{} won the initialize key: creating the cluster", node);
  auto bins = cluster::find_binaries(config.bindir);
  cluster::Secrets secrets = cluster::generate_secrets();
  cluster::save_secrets(layout, config, secrets);
  fs::make_directories(layout.tls_dir(), 0700);
  tls::generate_ca(layout.tls_ca_cert(), layout.tls_ca_key(), "pgfleet cluster " + config.cluster);
  ::unlink(layout.tls_cert().c_str());  // an earlier attempt's, from another CA
  ensure_host_certificate(config, layout, node);  // before initdb: the server starts with TLS on
  fs::remove_all(layout.data_dir(node));
  fs::make_directories(layout.log_dir(node), 0700);
  fs::make_directories(layout.run_dir(), 0700);
  fs::make_directories(layout.socket_dir(), 0700);
  if (auto s = postgres::initdb(bins, layout, config, node, secrets.superuser_password); !s) throw UserError(s.error());
  const auto& self = *config.find_node(node);
  postgres::write_managed_files(layout, config, self, nullptr, "");
  pid_t pm = process::spawn({bins.path("postgres"), "-D", layout.data_dir(node)}, layout.postgres_log(node));
  if (pm <= 0) throw UserError("cannot start postgres for initialization");
  try {
    create_replication_role(config, layout, self, secrets);
  } catch (...) {
    ::kill(pm, SIGINT);
    process::wait_gone(pm, 60s);
    throw;
  }
  ::kill(pm, SIGINT);
  if (!process::wait_gone(pm, 60s)) ::kill(pm, SIGKILL);
  // Every commit so far is on this node alone: in a synchronous mode, the election rules (which
  // otherwise need every node's final LSN when nothing is published) let it take the leader key.
  nlohmann::json sync = {{"leader", node},
                         {"constraints", nlohmann::json::array({{{"members", {node}}, {"quorum", 1}}})}};
  if (auto r = dcs.put(dcs::keys::kSync, sync.dump()); !r) throw UserError(r.error());
  if (config.failsafe_mode)
    if (auto r = dcs.put(dcs::keys::kFailsafe, "1"); !r) throw UserError(r.error());
  if (auto r = dcs.put("config", shared_config(config)); !r) throw UserError(r.error());
  if (auto r = dcs.put("secrets", secrets_json(secrets, layout).dump()); !r) throw UserError(r.error());
  log::info("cluster initialized; {} starts as its first primary", node);
}

// Returns once this host has its secrets (and, for the initializer, its primary data).
void bootstrap(const cluster::ClusterConfig& config, const cluster::Layout& layout, const std::string& node) {
  if (fs::exists(layout.secrets_file())) return;  // initialized before: the agent takes it from here
  auto dcs = cluster::open_dcs(layout, config);
  std::string waiting_for;
  for (;;) {
    auto secrets = dcs->get("secrets");
    if (secrets && secrets.value()) {
      try {
        auto j = nlohmann::json::parse(secrets.value()->value);
        cluster::save_secrets(layout, config,
                              cluster::Secrets{j.at("superuser_password"), j.at("replication_password"),
                                               j.at("api_token")});
        // A cluster created by an older version has no CA: its hosts go on without TLS.
        if (std::string ca = j.value("ca_cert", ""), key = j.value("ca_key", ""); !ca.empty() && !key.empty()) {
          fs::make_directories(layout.tls_dir(), 0700);
          fs::write_file_atomic(layout.tls_ca_key(), key, 0600);
          fs::write_file_atomic(layout.tls_ca_cert(), ca, 0644);
          ::unlink(layout.tls_cert().c_str());  // one left in this directory by another cluster
        }
        log::info("joined cluster {}: cloning the leader once it runs", config.cluster);
        return;
      } catch (const nlohmann::json::exception& e) {
        throw UserError(std::string("the DCS key 'secrets' is unreadable: ") + e.what());
      }
    }
    auto init = dcs->get("initialize");
    if (secrets && init) {
      bool mine = init.value() && init.value()->value == node;  // a previous attempt of ours died midway
      auto won = [&] {
        auto r = dcs->compare_and_set("initialize", node, 0);
        return r.ok() && *r;
      };
      // A node tagged nofailover may never be primary: it leaves creating the cluster to another.
      const auto* self = config.find_node(node);
      const bool tagged = self != nullptr && self->nofailover;
      if (mine || (!init.value() && !tagged && won())) {
        try {
          initialize_cluster(config, layout, *dcs, node);
          return;
        } catch (...) {
          ::unlink(layout.secrets_file().c_str());
          (void)dcs->remove("initialize");  // let another host try
          throw;
        }
      }
      std::string holder = init.value() ? init.value()->value : "";
      if (holder != waiting_for)
        log::info("waiting for {} to initialize cluster {}", holder.empty() ? "a node not tagged nofailover" : holder,
                  config.cluster);
      waiting_for = holder;
    } else if (waiting_for != "\n") {
      log::warn("cannot read the DCS: {}", !secrets ? secrets.error() : init.error());
      waiting_for = "\n";
    }
    std::this_thread::sleep_for(1s);
  }
}

}  // namespace

int run_node_agent(const std::string& node_file) {
  auto nf = cluster::load_node_file(node_file);
  log::set_component("agent " + nf.node);
  prepare_directory(nf);
  cluster::Layout layout(nf.data_dir);
  fs::make_directories(layout.run_dir(), 0700);
  auto config = write_cluster_file(nf, layout);
  bootstrap(config, layout, nf.node);
  ensure_host_certificate(config, layout, nf.node);  // a joiner's, or one deleted to renew it
  return ha::run_agent(ha::AgentOptions{layout.root(), nf.node});
}

}  // namespace pgfleet::cli
