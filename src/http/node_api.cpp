// The agent's routes. Health checks combine the HA loop's last snapshot with the DCS read at
// request time (leader key, the leader's WAL position, the upstream's view of our sync state).
#include "http/node_api.hpp"

#include <openssl/crypto.h>
#include <time.h>

#include <fmt/format.h>

#include <mutex>

#include "cluster/control.hpp"
#include "cluster/secrets.hpp"
#include "http/cluster_api.hpp"
#include "http/health.hpp"
#include "http/node_metrics.hpp"
#include "postgres/lsn.hpp"
#include "util/clock.hpp"
#include "util/log.hpp"
#include "util/tls.hpp"

namespace pgfleet::http {
namespace {

int64_t mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

dcs::Member read_member(dcs::Dcs& store, const std::string& name) {
  if (name.empty()) return {};
  if (auto kv = store.get(dcs::keys::member(name)); kv && kv.value()) {
    try {
      return dcs::member_from_json(nlohmann::json::parse(kv.value()->value));
    } catch (const nlohmann::json::exception&) {
    }
  }
  return {};
}

Response error_json(int status, const std::string& message) {
  return Response::json(status, nlohmann::json{{"error", message}}.dump() + "\n");
}

}  // namespace

struct NodeApi::State {
  explicit State(cluster::Layout l) : layout(std::move(l)) {}
  cluster::Layout layout;
  cluster::ClusterConfig config;
  std::string node;
  NodeApiHooks hooks;
  std::string token;
  std::shared_ptr<SSL_CTX> tls;

  std::mutex mutex;  // guards the two snapshot fields below
  dcs::Member member;
  bool fenced = false;
  int64_t published_mono_ms = 0;

  // Server thread only.
  std::unique_ptr<dcs::Dcs> dcs;
  std::shared_ptr<ClusterReader> cluster;
  std::unique_ptr<NodeMetrics> metrics;

  NodeFacts facts() {
    NodeFacts f;
    {
      std::lock_guard lock(mutex);
      f.member = member;
      f.fenced = fenced;
      f.loop_age_ms = published_mono_ms == 0 ? INT64_MAX / 2 : mono_ms() - published_mono_ms;
    }
    if (f.member.name.empty()) f.member.name = node;
    f.ttl_ms = static_cast<int64_t>(config.dcs_ttl_seconds) * 1000;
    f.cluster = config.cluster;
    if (dcs::is_running(f.member)) f.server_version = metrics->server_version();
    if (auto l = dcs->get(dcs::keys::kLeader); l && l.value()) f.leader = l.value()->value;
    if (auto p = dcs->get(dcs::keys::kPause); p && p.value()) f.paused = true;
    if (f.member.role == "replica" && !f.leader.empty() && f.leader != node) {
      auto leader = read_member(*dcs, f.leader);
      auto primary_lsn = postgres::parse_lsn(leader.current_lsn);
      auto replayed = postgres::parse_lsn(f.member.replayed_lsn);
      if (primary_lsn && replayed) f.lag_bytes = *primary_lsn > *replayed ? static_cast<int64_t>(*primary_lsn - *replayed) : 0;
      // The sync state is what the node we stream from says about us; a cascaded one is async.
      const dcs::Member& upstream = f.member.upstream == f.leader ? leader : read_member(*dcs, f.member.upstream);
      for (const auto& p : upstream.replication) {
        if (p.application_name == node) f.sync_state = f.member.upstream == f.leader ? p.sync_state : "async";
      }
    }
    return f;
  }

  // Mutating requests carry "Authorization: Bearer <api_token from secrets.json>".
  std::optional<Response> refuse_unauthorized(const Request& r) const {
    auto auth = r.header("authorization");
    if (!auth) {
      auto resp = error_json(401, "this endpoint needs the cluster's API token (secrets.json api_token) as "
                                  "'Authorization: Bearer <token>'");
      resp.headers.emplace_back("WWW-Authenticate", "Bearer");
      return resp;
    }
    std::string given = auth->rfind("Bearer ", 0) == 0 ? auth->substr(7) : "";
    bool ok = !token.empty() && given.size() == token.size() &&
              CRYPTO_memcmp(given.data(), token.data(), token.size()) == 0;
    if (!ok) return error_json(403, "wrong API token");
    return std::nullopt;
  }

  Response switchover(const Request& r) {
    nlohmann::json body = nlohmann::json::object();
    if (!r.body.empty()) {
      try {
        body = nlohmann::json::parse(r.body);
      } catch (const nlohmann::json::exception&) {
        return error_json(400, "the body must be JSON like {\"leader\": \"node1\", \"candidate\": \"node2\"}");
      }
      if (!body.is_object()) return error_json(400, "the body must be a JSON object");
    }
    std::string leader, expected = body.value("leader", ""), candidate = body.value("candidate", "");
    if (auto l = dcs->get(dcs::keys::kLeader); l && l.value()) leader = l.value()->value;
    if (leader.empty()) return error_json(503, "no primary holds the leader key; use `pgfleet failover`");
    if (!expected.empty() && expected != leader) {
      return error_json(412, fmt::format("leader name does not match: {} is the primary", leader));
    }
    if (!candidate.empty()) {
      // On several hosts an agent's config names only its own node: the others are DCS members.
      auto m = read_member(*dcs, candidate);
      auto member_key = dcs->get(dcs::keys::member(candidate));
      if (!config.find_node(candidate) && !(member_key && member_key.value())) {
        return error_json(412, fmt::format("no node named '{}'", candidate));
      }
      if (candidate == leader) return error_json(412, candidate + " is already the primary");
      if (m.state != "streaming") {
        return error_json(412, fmt::format("{} is not streaming (state {})", candidate, m.state.empty() ? "unknown" : m.state));
      }
    }
    nlohmann::json request = {{"from", leader}, {"to", candidate}, {"not_before_ms", 0}, {"requested_ms", unix_ms()}};
    if (auto put = dcs->put(dcs::keys::kSwitchover, request.dump()); !put) return error_json(503, put.error());
    log::info("http: switchover from {} to {} requested", leader, candidate.empty() ? "(best replica)" : candidate);
    return Response::json(202, nlohmann::json{{"switchover", "requested"}, {"from", leader},
                                              {"to", candidate.empty() ? nlohmann::json(nullptr) : nlohmann::json(candidate)}}
                                   .dump() + "\n");
  }
};

NodeApi::NodeApi(cluster::Layout layout, const cluster::ClusterConfig& config, std::string node, NodeApiHooks hooks)
    : state_(std::make_shared<State>(std::move(layout))) {
  state_->config = config;
  state_->node = std::move(node);
  state_->hooks = std::move(hooks);
}

NodeApi::~NodeApi() { server_.reset(); }

int NodeApi::port() const { return server_ ? server_->port() : 0; }

void NodeApi::publish(const dcs::Member& member, bool fenced) {
  std::lock_guard lock(state_->mutex);
  state_->member = member;
  state_->fenced = fenced;
  state_->published_mono_ms = mono_ms();
}

std::shared_ptr<SSL_CTX> http_tls_context(const cluster::Layout& layout, const cluster::ClusterConfig& config) {
  if (!config.http_tls) return nullptr;
  auto ctx = tls::load_server_context(layout.tls_cert(), layout.tls_key());
  return std::shared_ptr<SSL_CTX>(ctx.ctx.release(), &SSL_CTX_free);
}

void NodeApi::start() {
  auto s = state_;
  const auto* n = s->config.find_node(s->node);
  if (!n) throw std::runtime_error("node " + s->node + " is not in the configuration");
  try {
    s->token = cluster::load_secrets(s->layout).api_token;
  } catch (const std::exception& e) {
    log::warn("http: no API token ({}); POST endpoints will refuse every request", e.what());
  }
  s->dcs = cluster::open_dcs(s->layout, s->config);
  s->cluster = std::make_shared<ClusterReader>(s->layout);
  s->metrics = std::make_unique<NodeMetrics>(s->layout, s->config, s->node);
  s->tls = http_tls_context(s->layout, s->config);

  Router router;
  auto check_route = [s](Check check) {
    return [s, check](const Request& r) {
      std::optional<LagLimit> lag;
      if (auto text = r.query_value("lag"); !text.empty()) {
        lag = parse_lag_limit(text);
        if (!lag) return error_json(400, "lag must be a size (10MB, 16384) or a duration (5s, 500ms), got '" + text + "'");
      }
      auto facts = s->facts();
      return Response::json(evaluate(check, facts, lag), node_document(facts).dump() + "\n");
    };
  };
  for (const char* path : {"/primary", "/master", "/read-write", "/leader", "/replica", "/standby", "/read-only", "/health",
                           "/liveness", "/readiness", "/sync", "/synchronous", "/async", "/asynchronous"}) {
    router.add("GET", path, check_route(*check_for_path(path)));
  }
  // GET / answers like /primary (Patroni), except to browsers when the dashboard has a page.
  router.add("GET", "/", [s, primary = check_route(Check::Primary)](const Request& r) {
    if (r.wants_html()) {
      if (auto page = browser_root(r, *s->cluster)) return *page;
    }
    return primary(r);
  });
  router.add("GET", "/patroni", [s](const Request&) { return Response::json(200, node_document(s->facts()).dump() + "\n"); });
  router.add("GET", "/node", [s](const Request&) { return Response::json(200, node_document(s->facts()).dump(2) + "\n"); });
  router.add("GET", "/metrics", [s](const Request&) {
    MetricsWriter out;
    auto facts = s->facts();
    s->metrics->write(out, facts);
    out.set_common_labels({{"cluster", s->config.cluster}});
    try {
      s->cluster->write_cluster_metrics(out);
    } catch (const std::exception& e) {
      log::warn("http: cluster metrics unavailable: {}", e.what());
    }
    Response r;
    r.content_type = kMetricsContentType;
    r.body = out.text();
    return r;
  });
  add_cluster_routes(router, s->cluster);
  router.add("POST", "/switchover", [s](const Request& r) {
    if (auto refused = s->refuse_unauthorized(r)) return *refused;
    return s->switchover(r);
  });
  router.add("POST", "/restart", [s](const Request& r) {
    if (auto refused = s->refuse_unauthorized(r)) return *refused;
    if (s->hooks.restart) s->hooks.restart();
    log::info("http: restart requested");
    return Response::json(202, nlohmann::json{{"restart", "requested"}, {"node", s->node}}.dump() + "\n");
  });
  router.add("POST", "/reinit", [s](const Request& r) {
    if (auto refused = s->refuse_unauthorized(r)) return *refused;
    auto facts = s->facts();
    if (facts.leader == s->node || facts.member.role == "primary") {
      return error_json(503, s->node + " is the primary; reinit rebuilds replicas only (switch over first)");
    }
    if (facts.leader.empty()) return error_json(503, "no primary holds the leader key, so there is nothing to copy from");
    if (s->hooks.reinit) s->hooks.reinit();
    log::info("http: reinit requested");
    return Response::json(202, nlohmann::json{{"reinit", "requested"}, {"node", s->node}, {"from", facts.leader}}.dump() + "\n");
  });

  // Failsafe mode: a primary that cannot reach the DCS asks every member whether it still follows it.
  router.add("POST", "/failsafe", [s](const Request& r) {
    if (auto refused = s->refuse_unauthorized(r)) return *refused;
    std::string leader;
    try {
      leader = nlohmann::json::parse(r.body).value("leader", "");
    } catch (const nlohmann::json::exception&) {
    }
    if (leader.empty()) return error_json(400, "the body must be JSON like {\"leader\": \"node1\"}");
    if (!s->hooks.failsafe) return error_json(503, s->node + " does not take part in failsafe mode");
    if (std::string why = s->hooks.failsafe(leader); !why.empty()) return error_json(409, why);
    return Response::json(200, nlohmann::json{{"failsafe", "confirmed"}, {"node", s->node}, {"leader", leader}}.dump() + "\n");
  });

  ServerOptions options;
  options.address = s->config.listen_address;
  options.port = n->api_port;
  options.tls = s->tls.get();
  server_ = std::make_unique<Server>(std::move(options), std::move(router));
  server_->start();
}

}  // namespace pgfleet::http
