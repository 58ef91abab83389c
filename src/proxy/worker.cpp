// Worker and Pool: accepting clients, lending server connections, timeouts, snapshots for SHOW.
#include "proxy/worker.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "protocol/messages.hpp"
#include "sql/listen_statement.hpp"
#include "util/log.hpp"

namespace pgfleet::proxy {

using namespace std::chrono_literals;

namespace {
// How long a subscriber may leave more than the high-water mark of notifications unread.
constexpr auto kSlowSubscriberTimeout = 30s;         // backed up this long: disconnected
constexpr auto kStuckSubscriber = 500ms;              // read nothing this long: holds no one up
constexpr size_t kMaxUnsentNotifications = 8 << 20;   // kept for one stuck subscriber
constexpr size_t kMaxUnsentForStuck = 64 << 20;       // kept for all of a LISTEN connection's
}  // namespace

// ---- CancelRegistry ----

void CancelRegistry::add(int32_t pid, int32_t secret, Worker* worker) {
  std::lock_guard lock(mutex_);
  entries_[pid] = {secret, worker};
}

void CancelRegistry::remove(int32_t pid) {
  std::lock_guard lock(mutex_);
  entries_.erase(pid);
}

Worker* CancelRegistry::find(int32_t pid, int32_t secret) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(pid);
  return it != entries_.end() && it->second.first == secret ? it->second.second : nullptr;
}

// ---- Pool ----

Pool::Pool(Worker& worker, std::string database, std::string user, std::string node, Pool* home)
    : worker_(worker),
      database_(std::move(database)),
      user_(std::move(user)),
      node_(std::move(node)),
      home_(home),
      budget_(worker.shared().budget(database_, user_, node_)) {
  apply_settings();
}

void Pool::apply_settings() {
  const auto* settings = &worker_.settings();
  const auto& p = settings->proxy;
  mode_ = p.pool_mode;
  pool_size_ = p.default_pool_size;
  if (const auto* o = cluster::pool_override(p, database_, user_)) {
    if (o->pool_mode) mode_ = *o->pool_mode;
    if (o->pool_size) pool_size_ = *o->pool_size;
  }
}

int Pool::limit(Clock::time_point now) const {
  const auto* settings = &worker_.settings();
  int reserve = settings->proxy.reserve_pool_size;
  if (!waiting_.empty() && reserve > 0 &&
      now - waiting_.front()->waiting_since() >= std::chrono::milliseconds(settings->proxy.reserve_pool_timeout_ms)) {
    return std::max(1, pool_size_) + reserve;
  }
  return std::max(1, pool_size_);
}

bool Pool::open_server() {
  const Topology* topology = &worker_.topology();
  const Backend* backend = node_.empty() ? (topology->primary ? &*topology->primary : nullptr) : topology->replica(node_);
  if (backend == nullptr && !node_.empty()) {
    redirect_waiters("node " + node_ + " is no longer a replica");
    return false;
  }
  if (backend == nullptr || !auth()) return false;
  auto now = worker_.loop().now();
  if (budget_->servers.fetch_add(1) >= limit(now)) {
    budget_->servers.fetch_sub(1);
    // The budget is held by other workers: ask them for an idle one (at most every 50 ms).
    if (now - last_borrow_request_ >= 50ms) {
      last_borrow_request_ = now;
      for (Worker* other : worker_.shared().workers) {
        if (other == &worker_) continue;
        other->loop().post([other, db = database_, user = user_, node = node_] { other->give_back_idle(db, user, node); });
      }
    }
    return false;
  }
  ++connecting_;
  ServerConn* server = worker_.new_server(*this, *backend, topology->version);
  servers_.push_back(server);
  if (!server->start()) return false;  // on_login_failed already ran
  return true;
}

bool Pool::acquire(ClientConn* client) {
  auto now = worker_.loop().now();
  if (!worker_.shared().is_paused(database_)) {
    auto version = worker_.topology().version;
    while (!idle_.empty()) {
      ServerConn* server = idle_.back();
      idle_.pop_back();
      if (server->topology_version() != version) {  // built for an old primary
        server->close("the primary changed");
        continue;
      }
      hand_over(server, client);
      return true;
    }
  }
  client->set_waiting_since(now);
  waiting_.push_back(client);
  if (!worker_.shared().is_paused(database_) && connecting_ < static_cast<int>(waiting_.size())) open_server();
  return false;
}

void Pool::hand_over(ServerConn* server, ClientConn* client) {
  client->on_server_assigned(server);
}

void Pool::release(ServerConn* server) {
  const auto* settings = &worker_.settings();
  auto now = worker_.loop().now();
  bool expired = settings->proxy.server_lifetime_s > 0 &&
                 now - server->created() > std::chrono::seconds(settings->proxy.server_lifetime_s);
  bool reconnect = server->created() <= reconnect_before_;
  if (!server->reusable() || expired || reconnect ||
      server->topology_version() != worker_.topology().version) {
    server->close(expired ? "server_lifetime reached" : reconnect ? "RECONNECT" : "not reusable");
    return;
  }
  if (server->swallow_ready > 0) return;  // resetting; released again when done
  if (server->cancels_in_flight > 0) return;  // released again once the cancel request is taken
  if (!worker_.shared().is_paused(database_) && !waiting_.empty()) {
    ClientConn* client = waiting_.front();
    waiting_.pop_front();
    hand_over(server, client);
    return;
  }
  if (std::find(idle_.begin(), idle_.end(), server) == idle_.end()) idle_.push_back(server);
}

void Pool::on_login_ok(ServerConn* server, std::vector<std::pair<std::string, std::string>> params) {
  --connecting_;
  if (!welcome_) {
    {
      std::lock_guard lock(budget_->welcome_mutex);
      if (!budget_->welcome) budget_->welcome = params;
    }
    welcome_ = std::move(params);
    auto waiters = std::move(welcome_waiters_);
    welcome_waiters_.clear();
    for (ClientConn* c : waiters) c->on_login_ready();
  }
  release(server);
}

void Pool::on_login_failed(ServerConn* server, const std::string& sqlstate, const std::string& message) {
  --connecting_;
  server_gone(server);
  log::warn("pool {}@{}{}: server login failed: {}", user_, database_, node_.empty() ? "" : " on " + node_, message);
  last_login_failure_ = worker_.loop().now();
  if (!node_.empty()) {
    // A replica we cannot log in to takes no reads for a while; its clients go to the primary.
    if (worker_.shared().health != nullptr) worker_.shared().health->mark_down(server->backend().index);
    redirect_waiters("cannot log in to " + node_ + ": " + message);
    return;
  }
  // A server that is down, starting or shutting down (failover, switchover) is temporary:
  // clients keep waiting (up to query_wait_timeout) while new connections are retried.
  // Wrong credentials or a missing database are not: those clients get the server's error.
  bool permanent = sqlstate.rfind("28", 0) == 0 || sqlstate.rfind("3D", 0) == 0 || sqlstate.rfind("42", 0) == 0;
  if (!permanent) return;
  // Everyone waiting on this pool would hit the same wall (wrong database, server down).
  auto waiting = std::move(waiting_);
  waiting_.clear();
  auto welcome_waiters = std::move(welcome_waiters_);
  welcome_waiters_.clear();
  for (ClientConn* c : waiting) c->fail(sqlstate.empty() ? "08006" : sqlstate, message);
  for (ClientConn* c : welcome_waiters) c->fail(sqlstate.empty() ? "08006" : sqlstate, message);
}

void Pool::redirect_waiters(const std::string& why) {
  if (waiting_.empty()) return;
  log::info("pool {}@{} on {}: {}; its waiting clients go to the primary", user_, database_, node_, why);
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (ClientConn* c : waiting) c->reroute_to_primary();
}

void Pool::server_gone(ServerConn* server) {
  std::erase(idle_, server);
  auto before = servers_.size();
  std::erase(servers_, server);
  if (servers_.size() < before) budget_->servers.fetch_sub(1);
}

void Pool::on_server_closed(ServerConn* server) {
  server_gone(server);
  // A waiting client may now get a fresh connection (not while paused: the primary may be moving).
  if (!waiting_.empty() && !worker_.shared().is_paused(database_)) open_server();
}

int Pool::busy_servers() const {
  return static_cast<int>(std::count_if(servers_.begin(), servers_.end(),
                                        [](const ServerConn* s) { return s->client() != nullptr; }));
}

bool Pool::close_one_idle() {
  if (idle_.empty() || !waiting_.empty()) return false;
  idle_.front()->close("lent to another thread's waiting clients");  // the least recently used
  return true;
}

void Pool::abandon(const std::string& backend, const std::string& reason) {
  for (ServerConn* s : std::vector<ServerConn*>(servers_)) {
    if (s->backend().name != backend || s->client() != nullptr) continue;
    auto st = s->state();
    if (st == ServerConn::State::kConnecting || st == ServerConn::State::kLogin || st == ServerConn::State::kIdle)
      s->close(reason);
  }
  while (!waiting_.empty() && !worker_.shared().is_paused(database_) &&
         connecting_ < static_cast<int>(waiting_.size()) && open_server()) {
  }
  if (!welcome_waiters_.empty() && connecting_ == 0) open_server();
}

void Pool::forget_client(ClientConn* client) {
  std::erase(waiting_, client);
  std::erase(welcome_waiters_, client);
}

void Pool::wait_for_welcome(ClientConn* client) {
  {
    std::lock_guard lock(budget_->welcome_mutex);
    if (budget_->welcome) welcome_ = budget_->welcome;
  }
  if (welcome_) return client->on_login_ready();
  welcome_waiters_.push_back(client);
  if (connecting_ == 0) open_server();
}

void Pool::tick(Clock::time_point now) {
  const auto* settings = &worker_.settings();
  const auto& p = settings->proxy;
  apply_settings();
  // Clients that waited too long for a server.
  auto wait_limit = std::chrono::milliseconds(p.query_wait_timeout_ms);
  for (size_t i = 0; i < welcome_waiters_.size();) {
    ClientConn* c = welcome_waiters_[i];
    if (now - c->connected_at() > wait_limit) {
      welcome_waiters_.erase(welcome_waiters_.begin() + static_cast<long>(i));
      c->fail("08006", fmt::format("no server connection could be opened within {} ms for {}@{}",
                                   p.query_wait_timeout_ms, user_, database_));
    } else {
      ++i;
    }
  }
  // A server that accepts the connection but never answers (stopped, hung host) must not hold
  // its waiting clients until query_wait_timeout: give up on it after server_connect_timeout_ms.
  for (ServerConn* s : std::vector<ServerConn*>(servers_)) {
    auto st = s->state();
    if ((st == ServerConn::State::kConnecting || st == ServerConn::State::kLogin) &&
        now - s->created() > std::chrono::milliseconds(p.server_connect_timeout_ms))
      s->close(fmt::format("no answer from {} within server_connect_timeout_ms ({} ms)", s->backend().name,
                           p.server_connect_timeout_ms));
  }
  if (!welcome_waiters_.empty() && connecting_ == 0 && now - last_login_failure_ >= 200ms) open_server();
  while (!waiting_.empty() && now - waiting_.front()->waiting_since() > wait_limit) {
    ClientConn* c = waiting_.front();
    waiting_.pop_front();
    c->fail("08P01", fmt::format("no server connection available within {} ms (pool {}@{} has {} connections)",
                                 p.query_wait_timeout_ms, user_, database_, servers_.size()));
  }
  // After RESUME (or a server freed while paused), idle servers go to the waiters.
  while (!worker_.shared().is_paused(database_) && !waiting_.empty() && !idle_.empty()) {
    ServerConn* server = idle_.back();
    idle_.pop_back();
    ClientConn* client = waiting_.front();
    waiting_.pop_front();
    hand_over(server, client);
  }
  // Grow towards the waiters (reserve after reserve_pool_timeout), shrink idle ones; after a
  // failed login wait a little before the next attempt.
  if (!waiting_.empty() && !worker_.shared().is_paused(database_) && now - last_login_failure_ >= 200ms &&
      connecting_ < static_cast<int>(waiting_.size())) {
    open_server();
  }
  for (size_t i = 0; i < idle_.size();) {
    ServerConn* s = idle_[i];
    bool idle_long = p.server_idle_timeout_s > 0 && now - s->last_used() > std::chrono::seconds(p.server_idle_timeout_s);
    bool old = p.server_lifetime_s > 0 && now - s->created() > std::chrono::seconds(p.server_lifetime_s);
    bool min_kept = budget_->servers.load() <= p.min_pool_size;
    if ((idle_long && !min_kept) || old) {
      s->close(old ? "server_lifetime reached" : "server_idle_timeout reached");  // erases from idle_
    } else {
      ++i;
    }
  }
  if (auth() && budget_->servers.load() < p.min_pool_size && connecting_ == 0) open_server();
}

void Pool::close_all(const std::string& reason) {
  for (ClientConn* c : std::vector<ClientConn*>(waiting_.begin(), waiting_.end())) c->fail("57P01", reason);
  for (ClientConn* c : std::vector<ClientConn*>(welcome_waiters_)) c->fail("57P01", reason);
  for (ServerConn* s : std::vector<ServerConn*>(servers_)) {
    if (ClientConn* c = s->client()) c->fail("57P01", reason);
    s->close(reason);
  }
}

void Pool::reconnect(Clock::time_point now) {
  reconnect_before_ = now;
  for (ServerConn* s : std::vector<ServerConn*>(idle_.begin(), idle_.end())) s->close("RECONNECT");  // erases from idle_
}

void Pool::fill_row(PoolRow& row, Clock::time_point now) const {
  row.database = database_;
  row.user = user_;
  row.mode = cluster::to_string(mode_);
  row.clients_waiting = static_cast<int>(waiting_.size() + welcome_waiters_.size());
  for (ServerConn* s : servers_) {
    row.cancels_in_flight += s->cancels_in_flight;
    if (s->cancels_in_flight > 0 && s->client() == nullptr && !s->listener) {
      ++row.servers_being_canceled;
      continue;  // not idle: it serves nobody until the server has taken the request
    }
    switch (s->state()) {
      case ServerConn::State::kActive: ++row.servers_active; break;
      case ServerConn::State::kIdle: ++row.servers_idle; break;
      case ServerConn::State::kConnecting:
      case ServerConn::State::kLogin: ++row.servers_connecting; break;
      default: break;
    }
  }
  if (!waiting_.empty()) {
    row.max_wait_us = std::chrono::duration_cast<std::chrono::microseconds>(now - waiting_.front()->waiting_since()).count();
  }
  row.stats = stats;
}

// ---- Worker ----

Worker::Worker(int index, ProxyShared& shared) : index_(index), shared_(shared) {
  for (size_t i = 0; i < listeners_.size(); ++i) {
    for (Listener* l : {&listeners_[i], &local_listeners_[i]}) {
      l->worker = this;
      l->kind = static_cast<ListenerKind>(i);
      l->local = l == &local_listeners_[i];
    }
  }
  snapshot_.store(std::make_shared<const WorkerSnapshot>());
  loop_.every(100ms, [this] { tick(); });
  loop_.every(1000ms, [this] { publish_snapshot(); });
}

Worker::~Worker() {
  // Cancel threads post to this loop when done; each is bounded by its 2 s socket timeouts.
  for (int i = 0; i < 500 && cancel_threads_ > 0; ++i) std::this_thread::sleep_for(10ms);
  for (auto* l : all_listeners()) {
    if (l->fd >= 0) ::close(l->fd);
  }
}

std::vector<int> Worker::listener_fds() const {
  std::vector<int> out;
  for (const auto& set : {&listeners_, &local_listeners_}) {
    for (const auto& l : *set) {
      if (l.fd >= 0) out.push_back(l.fd);
    }
  }
  return out;
}

void Worker::listen(const std::string& address, int port, ListenerKind kind) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // One listener per worker on the same port: the kernel spreads connections, and a new proxy
  // process can bind beside an old one for a restart without refusing connections.
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, address == "*" || address == "0.0.0.0" ? "0.0.0.0" : address.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    throw std::runtime_error("invalid listen address '" + address + "' (an IPv4 address is expected)");
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 4096) != 0) {
    int err = errno;
    ::close(fd);
    throw std::runtime_error(fmt::format("cannot listen on {}:{}: {}", address, port, std::strerror(err)));
  }
  Listener& l = listeners_[static_cast<size_t>(kind)];
  l.fd = fd;
  loop_.add(fd, EPOLLIN, &l);
}

void Worker::adopt_listener(int fd, ListenerKind kind, bool local) {
  Listener& l = (local ? local_listeners_ : listeners_)[static_cast<size_t>(kind)];
  l.fd = fd;
  // A Unix socket is one socket for all workers: EPOLLEXCLUSIVE wakes one of them per connection.
  loop_.add(fd, local ? EPOLLIN | EPOLLEXCLUSIVE : EPOLLIN, &l);
}

std::array<Worker::Listener*, 6> Worker::all_listeners() {
  return {&listeners_[0], &listeners_[1], &listeners_[2], &local_listeners_[0], &local_listeners_[1], &local_listeners_[2]};
}

void Worker::start() {
  thread_ = std::thread([this] { loop_.run(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::Listener::on_io(uint32_t) { worker->accept_clients(*this); }

void Worker::accept_clients(Listener& listener) {
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    int fd = ::accept4(listener.fd, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) log::error("accept: {} (raise the file descriptor limit)", std::strerror(errno));
      return;
    }
    std::string address = "[local]";  // as PostgreSQL names Unix-socket clients
    if (!listener.local) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      char text[INET6_ADDRSTRLEN] = "?";
      int port = 0;
      if (addr.ss_family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&addr);
        ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
        port = ntohs(a->sin_port);
      }
      address = fmt::format("{}:{}", text, port);
    }
    int32_t pid = shared_.next_client_pid.fetch_add(1);
    shared_.clients.fetch_add(1);
    clients_[pid] = std::make_unique<ClientConn>(*this, fd, pid, std::move(address), listener.kind, listener.local);
  }
}

const cluster::ClusterConfig& Worker::settings() {
  uint64_t v = shared_.config_version.load(std::memory_order_acquire);
  if (v != settings_version_) {
    settings_ = shared_.settings();
    settings_version_ = v;
    const auto& p = settings_->proxy;
    classifier_options_.permissive_functions = p.function_routing == "permissive";
    classifier_options_.read_only_functions = p.read_only_functions;
    classifier_options_.writing_functions = p.writing_functions;
    causal_reads_ = p.causal_reads != "off";
  }
  return *settings_;
}

const Topology& Worker::topology() {
  uint64_t v = shared_.topology->version();
  if (v != topology_version_) {
    topology_ = shared_.topology->current();
    topology_version_ = v;
  }
  return *topology_;
}

ClientConn* Worker::client(int32_t pid) {
  auto it = clients_.find(pid);
  return it == clients_.end() || it->second->state() == ClientConn::State::kClosed ? nullptr : it->second.get();
}

Pool& Worker::pool(const std::string& database, const std::string& user) {
  auto& slot = pools_[{database, user, std::string()}];
  if (!slot) slot = std::make_unique<Pool>(*this, database, user);
  return *slot;
}

Pool& Worker::node_pool(Pool& home, const Backend& node) {
  // Pools live as long as the worker, so the home pool keeps a pointer per node index; the name
  // check covers a configuration whose nodes were renumbered.
  Pool*& cached = home.node_pools_[static_cast<size_t>(node.index)];
  if (cached != nullptr && cached->node() == node.name) return *cached;
  auto& slot = pools_[{home.database(), home.user(), node.name}];
  if (!slot) slot = std::make_unique<Pool>(*this, home.database(), home.user(), node.name, &home);
  cached = slot.get();
  return *slot;
}

void Worker::note_fallback(RouteReason reason) {
  auto now = loop_.now();
  ++fallbacks_unlogged_;
  if (now - last_fallback_log_ < 10s) return;
  last_fallback_log_ = now;
  log::warn("reads go to the primary: {} ({} read(s) since the last such line)",
            reason == RouteReason::kLag ? "every healthy replica is beyond max_replica_lag"
                                        : "no replica is healthy (or every weight is 0)",
            fallbacks_unlogged_);
  fallbacks_unlogged_ = 0;
}

ServerConn* Worker::new_server(Pool& pool, const Backend& backend, uint64_t topology_version) {
  uint64_t id = next_server_id_++;
  auto server = std::make_unique<ServerConn>(*this, pool, backend, topology_version, id);
  ServerConn* raw = server.get();
  servers_[id] = std::move(server);
  return raw;
}

void Worker::retire_server(ServerConn* server) {
  auto it = servers_.find(server->id());
  if (it == servers_.end()) return;
  loop_.retire(std::move(it->second));
  servers_.erase(it);
}

void Worker::retire_client(ClientConn* client) {
  auto it = clients_.find(client->pid());
  if (it == clients_.end()) return;
  shared_.clients.fetch_sub(1);
  loop_.retire(std::move(it->second));
  clients_.erase(it);
}

void Worker::cancel(int32_t pid, int32_t secret) {
  ClientConn* c = client(pid);
  if (c == nullptr || c->secret() != secret || c->server() == nullptr) return;
  // The way the server connection went (a name resolved, IPv6, the Unix socket): the same server.
  sockaddr_storage address{};
  socklen_t length = 0;
  if (!c->server()->peer_address(address, length)) return;
  protocol::CancelKey key = c->server()->backend_key();
  // Until the server has taken the request, this server connection serves no other client: a
  // cancel that arrived late would stop that client's query (PgBouncer's sv_being_canceled).
  ServerConn* server = c->server();
  ++server->cancels_in_flight;
  ++cancel_threads_;
  // Rare and short: a plain blocking connect on a helper thread keeps the loop free.
  try {
    std::thread([this, address, length, key, id = server->id()] {
      int fd = ::socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      timeval tv{2, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&address), length) == 0) {
        auto bytes = protocol::encode(key);
        (void)!::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        char buf[1];
        (void)!::recv(fd, buf, 1, 0);  // the server closes once it has read the request
      }
      if (fd >= 0) ::close(fd);
      loop_.post([this, id] { cancel_delivered(id); });  // always: the server connection waits for it
      --cancel_threads_;
    }).detach();
  } catch (const std::system_error& e) {  // no thread to be had: the request is dropped
    log::warn("cancel request not sent: {}", e.what());
    --server->cancels_in_flight;
    --cancel_threads_;
  }
}

void Worker::cancel_delivered(uint64_t server_id) {
  auto it = servers_.find(server_id);
  if (it == servers_.end()) return;  // closed meanwhile
  ServerConn* server = it->second.get();
  if (--server->cancels_in_flight == 0 && server->client() == nullptr) server->pool().release(server);
}

void Worker::begin_shutdown() {
  loop_.post([this] {
    shutting_down_ = true;
    shutdown_deadline_ = loop_.now() + std::chrono::seconds(shared_.settings()->proxy.shutdown_timeout_s);
    for (auto* l : all_listeners()) {
      if (l->fd >= 0) {
        loop_.remove(l->fd);
        ::close(l->fd);
        l->fd = -1;
      }
    }
  });
}

int Worker::busy_paused_servers() {
  int busy = 0;
  for (auto& [key, pool] : pools_) {
    if (shared_.is_paused(std::get<0>(key))) busy += pool->busy_servers();
  }
  return busy;
}

void Worker::give_back_idle(const std::string& database, const std::string& user, const std::string& node) {
  auto it = pools_.find({database, user, node});
  if (it != pools_.end()) it->second->close_one_idle();
}

void Worker::kill_database(const std::string& database) {
  const std::string reason = "the pool was killed by an administrator";
  for (auto& [key, pool] : pools_) {
    if (std::get<0>(key) == database) pool->close_all(reason);
  }
  // Clients between transactions hold no server in transaction mode: they go too, as in PgBouncer.
  std::vector<ClientConn*> idle;
  for (auto& [pid, c] : clients_) {
    if (!c->is_admin() && c->database() == database && c->state() != ClientConn::State::kClosed) idle.push_back(c.get());
  }
  for (ClientConn* c : idle) c->fail("57P01", reason);
}

void Worker::reconnect_database(const std::string& database) {
  for (auto& [key, pool] : pools_) {
    if (database.empty() || std::get<0>(key) == database) pool->reconnect(loop_.now());
  }
}

namespace {
std::string quote_ident(const std::string& name) {
  std::string out = "\"";
  for (char c : name) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}
}  // namespace

void Worker::send_listen(Listening& l, const std::string& sql, std::string channel, std::vector<int32_t> waiting) {
  if (l.conn == nullptr || !l.ready) return;  // sent for every channel once the connection is up
  l.conn->send(protocol::encode(protocol::Query{sql}));
  l.conn->flush();
  l.sent.push_back({std::move(channel), std::move(waiting)});
}

bool Worker::subscribe(ClientConn* client, Pool& pool, const std::string& channel, bool answer) {
  Listening& l = listening_[pool.database()];
  l.channels[channel].insert(client->pid());
  if (l.ready && l.in_force.contains(channel)) return true;
  if (l.conn == nullptr) {
    const Topology& topology = this->topology();
    if (!topology.primary) return true;  // listened to once the primary is known (tick)
    l.conn = new_server(pool, *topology.primary, topology.version);
    l.conn->listener = true;
    l.ready = false;
    l.conn->start();
  }
  if (!l.ready) {
    if (answer) l.waiting_for_connection.push_back(client->pid());
    return false;
  }
  // LISTEN is idempotent: sending it again is the simplest way to learn when it is in force.
  std::vector<int32_t> waiting;
  if (answer) waiting.push_back(client->pid());
  send_listen(l, "LISTEN " + quote_ident(channel), channel, std::move(waiting));
  return false;
}

bool Worker::subscribed(const ClientConn* client, const std::string& channel) const {
  if (client->pool() == nullptr) return false;
  auto l = listening_.find(client->pool()->database());
  if (l == listening_.end()) return false;
  auto it = l->second.channels.find(channel);
  return it != l->second.channels.end() && it->second.contains(client->pid());
}

void Worker::listener_statement_done(ServerConn* server) {
  for (auto& [db, l] : listening_) {
    if (l.conn != server || l.sent.empty()) continue;
    auto done = std::move(l.sent.front());
    l.sent.pop_front();
    if (!done.channel.empty()) l.in_force.insert(done.channel);
    for (int32_t pid : done.waiting) {
      if (ClientConn* c = client(pid)) c->listen_acknowledged();
    }
  }
}

void Worker::unsubscribe(ClientConn* client, const std::string& channel) {
  if (channel == sql::kAllChannels) subscriber_caught_up(client);  // gone or listening to nothing: holds nothing up
  for (auto& [db, l] : listening_) {
    for (auto it = l.channels.begin(); it != l.channels.end();) {
      if (channel == sql::kAllChannels || it->first == channel) {
        it->second.erase(client->pid());
        if (it->second.empty()) {
          send_listen(l, "UNLISTEN " + quote_ident(it->first));
          l.in_force.erase(it->first);
          it = l.channels.erase(it);
          continue;
        }
      }
      ++it;
    }
  }
}

void Worker::listener_ready(ServerConn* server) {
  for (auto& [db, l] : listening_) {
    if (l.conn != server) continue;
    l.ready = true;
    l.sent.clear();
    l.in_force.clear();
    auto waiting = std::move(l.waiting_for_connection);
    l.waiting_for_connection.clear();
    for (const auto& [channel, pids] : l.channels) send_listen(l, "LISTEN " + quote_ident(channel), channel);
    // Once every LISTEN above has run, the clients that asked meanwhile are answered.
    if (!waiting.empty()) send_listen(l, "SELECT 1", {}, std::move(waiting));
    update_hold(l);
  }
}

void Worker::listener_closed(ServerConn* server) {
  for (auto& [db, l] : listening_) {
    if (l.conn != server) continue;
    l.conn = nullptr;
    l.ready = false;
    l.in_force.clear();
    // Clients still waiting for their LISTEN are answered: the connection comes back in the
    // next tick and listens again for every channel (notifications meanwhile are lost, as on
    // a server restart).
    std::vector<int32_t> waiting = std::move(l.waiting_for_connection);
    l.waiting_for_connection.clear();
    for (auto& sent : l.sent) waiting.insert(waiting.end(), sent.waiting.begin(), sent.waiting.end());
    l.sent.clear();
    for (int32_t pid : waiting) {
      if (ClientConn* c = client(pid)) c->listen_acknowledged();
    }
  }
}

void Worker::deliver_notification(const std::string& database, std::span<const uint8_t> body,
                                  std::span<const uint8_t> whole) {
  auto n = protocol::decode_notification_response(body);
  if (!n) return;
  auto l = listening_.find(database);
  if (l == listening_.end()) return;
  auto subscribers = l->second.channels.find(n->channel);
  if (subscribers == l->second.channels.end()) return;
  // A copy: a client whose socket fails is closed inside notify(), and that unsubscribes it.
  const std::vector<int32_t> pids(subscribers->second.begin(), subscribers->second.end());
  for (int32_t pid : pids) {
    ClientConn* c = client(pid);
    if (c == nullptr) continue;
    c->notify(whole);
    if (c->state() == ClientConn::State::kClosed) continue;
    if (c->unsent_notifications() > kMaxUnsentNotifications) {
      // Stuck (else the hold below would have stopped the flow at the high-water mark).
      cut_off_subscriber(c, fmt::format("{} MB of notifications wait for it unread", kMaxUnsentNotifications >> 20));
      continue;
    }
    if (c->notifications_backed_up() && l->second.backed_up.emplace(pid, loop_.now()).second) {
      c->set_holds_notifications(true);
    }
  }
  update_hold(l->second);
}

// A backed-up subscriber that still reads holds the LISTEN connection: it stops being read, so
// notifications wait in PostgreSQL's queue (as for a direct client that reads slowly) instead of
// in our memory, and flow at that subscriber's pace. One that has read nothing for
// kStuckSubscriber, or is inside a transaction (its notifications wait for its end, as on
// PostgreSQL), no longer holds the others up: what arrives for it is kept, up to
// kMaxUnsentNotifications (then it is disconnected), unless the stuck ones of this connection
// together hold more than kMaxUnsentForStuck.
void Worker::update_hold(Listening& l) {
  const auto now = loop_.now();
  bool hold = false;
  size_t stuck_unsent = 0;
  for (const auto& [pid, since] : l.backed_up) {
    ClientConn* c = client(pid);
    if (c == nullptr) continue;
    if (c->server() == nullptr && now - std::max(since, c->last_drained()) < kStuckSubscriber) hold = true;
    else stuck_unsent += c->unsent_notifications();
  }
  if (stuck_unsent > kMaxUnsentForStuck) hold = true;
  if (l.conn != nullptr && l.ready) l.conn->pause_reading(hold);
}

void Worker::subscriber_caught_up(ClientConn* client) {
  client->set_holds_notifications(false);
  for (auto& [db, l] : listening_) {
    if (l.backed_up.erase(client->pid()) > 0) update_hold(l);
  }
}

void Worker::cut_off_subscriber(ClientConn* c, const std::string& reason) {
  const std::string why = fmt::format("terminating connection: it does not read its notifications ({})", reason);
  log::warn("client {} ({}) listening on database {}: {}", c->pid(), c->address(), c->database(), why);
  // The error goes after what is queued, unless that ends inside a message a server streams.
  if (c->server() == nullptr) {
    c->fail("54000", why);
  } else {
    ++error_counts[static_cast<size_t>(ErrorKind::kSlowSubscriber)];  // no error message: counted here
    c->close(why);
  }
}

void Worker::end_transactions_on_old_primary() {
  const Topology& t = topology();
  if (t.version == seen_topology_version_) return;
  seen_topology_version_ = t.version;
  if (!t.primary) return;  // no primary yet (a failover under way): wait for the new one
  std::string old = std::exchange(seen_primary_, t.primary->name);
  if (old.empty() || old == t.primary->name) return;
  std::vector<ClientConn*> stranded;
  for (auto& [id, s] : servers_) {
    if (s->listener || s->pool().is_replica() || s->client() == nullptr || s->backend().name == t.primary->name) continue;
    if (s->tx_status != 'I' || s->outstanding > 0) stranded.push_back(s->client());
  }
  for (ClientConn* c : stranded) {
    // Paused: a planned switchover (pgfleet switchover sends PAUSE).
    c->fail("57P01", fmt::format("terminating connection: {}: the primary moved from {} to {}; the open "
                                 "transaction did not commit",
                                 shared().is_paused(c->database()) ? "switchover" : "failover", old, t.primary->name));
  }
  if (!stranded.empty()) log::warn("failover from {} to {}: {} client(s) in a transaction disconnected", old, t.primary->name, stranded.size());
  // Connections still logging in to the old primary would hold the waiting clients until they
  // time out (forever on a hung host): new transactions go to the new primary now.
  const std::string why = fmt::format("the primary moved from {} to {}", old, t.primary->name);
  for (auto& [key, pool] : pools_)
    if (!pool->is_replica()) pool->abandon(old, why);
}

void Worker::tick() {
  auto now = loop_.now();
  end_transactions_on_old_primary();
  // A LISTEN connection that was lost comes back while anyone still listens.
  for (auto& [db, l] : listening_) {
    if (l.conn == nullptr && !l.channels.empty() && topology().primary) {
      for (const auto& [channel, pids] : l.channels) {
        for (int32_t pid : pids) {
          if (ClientConn* c = client(pid); c != nullptr && c->pool() != nullptr) {
            l.conn = new_server(*c->pool(), *topology().primary, topology().version);
            l.conn->listener = true;
            l.conn->start();
            break;
          }
        }
        if (l.conn != nullptr) break;
      }
    }
  }
  // Subscribers that stay behind for this long are cut off; the others' hold is re-decided (a
  // backed-up subscriber may have become stuck since the last notification).
  std::vector<ClientConn*> stalled;
  for (auto& [db, l] : listening_) {
    for (const auto& [pid, since] : l.backed_up) {
      if (now - since < kSlowSubscriberTimeout) continue;
      if (ClientConn* c = client(pid)) stalled.push_back(c);
    }
    if (!l.backed_up.empty()) update_hold(l);
  }
  for (ClientConn* c : stalled) {
    cut_off_subscriber(c, fmt::format("more than 1 MB of them waited for {} s",
                                      std::chrono::duration_cast<std::chrono::seconds>(kSlowSubscriberTimeout).count()));
  }
  for (auto& [key, pool] : pools_) pool->tick(now);
  const auto* settings = &this->settings();
  if (settings->proxy.client_idle_timeout_s > 0) {
    auto limit = std::chrono::seconds(settings->proxy.client_idle_timeout_s);
    std::vector<ClientConn*> idle;
    for (auto& [pid, c] : clients_) {
      if (c->state() == ClientConn::State::kIdle && now - c->last_activity() > limit) idle.push_back(c.get());
    }
    for (auto* c : idle) c->fail("57P05", "terminating connection due to idle timeout (client_idle_timeout)");
  }
  if (shutting_down_) {
    // Clients between transactions can go now; the others when their transaction ends or at the
    // deadline. After a handover, clients still logging in or that have run nothing yet get their
    // first transaction: they connected a moment before the new process took the sockets.
    std::vector<ClientConn*> done;
    for (auto& [pid, c] : clients_) {
      bool between = c->server() == nullptr && (!handing_over() || c->ran_transaction());
      if (between || now >= shutdown_deadline_) done.push_back(c.get());
    }
    for (auto* c : done) c->fail("57P01", "terminating connection because the pgfleet proxy is shutting down");
    if (clients_.empty()) {
      // close() retires the connection from servers_: not while iterating over it.
      std::vector<ServerConn*> open;
      for (auto& [id, s] : servers_) open.push_back(s.get());
      for (auto* s : open) s->close("shutdown");
      loop_.stop();
    }
  }
}

namespace {

// SHOW CLIENTS / SHOW SERVERS state names; a switch so that a new state cannot be forgotten.
const char* client_state_name(ClientConn::State state) {
  switch (state) {
    case ClientConn::State::kStartup: return "startup";
    case ClientConn::State::kTlsHandshake: return "tls";
    case ClientConn::State::kAuthLookup:
    case ClientConn::State::kAuth: return "auth";
    case ClientConn::State::kLogin: return "login";
    case ClientConn::State::kIdle: return "idle";
    case ClientConn::State::kWaiting: return "waiting";
    case ClientConn::State::kActive: return "active";
    case ClientConn::State::kListenAck: return "listen";
    case ClientConn::State::kPauseWait: return "pause";
    case ClientConn::State::kLost: return "lost";
    case ClientConn::State::kClosed: return "closed";
  }
  return "?";
}

const char* server_state_name(const ServerConn& server) {
  // Between clients: the LISTEN connection, and one kept from everyone until the server has
  // taken a cancel request for its backend (PgBouncer's sv_being_canceled).
  if (server.listener) return "listen";
  if (server.cancels_in_flight > 0 && server.client() == nullptr) return "canceling";
  switch (server.state()) {
    case ServerConn::State::kConnecting: return "connecting";
    case ServerConn::State::kLogin: return "login";
    case ServerConn::State::kIdle: return "idle";
    case ServerConn::State::kActive: return "active";
    case ServerConn::State::kClosed: return "closed";
  }
  return "?";
}

}  // namespace

void Worker::publish_snapshot() {
  auto now = loop_.now();
  for (auto& [pid, c] : clients_) {
    if (c->state() == ClientConn::State::kIdle && now - c->last_activity() > std::chrono::seconds(2)) {
      c->release_buffers();
    }
  }
  auto snap = std::make_shared<WorkerSnapshot>();
  snap->worker = index_;
  std::copy(route_counts.begin(), route_counts.end(), snap->route_counts.begin());
  snap->node_statements = node_statements;
  snap->errors = error_counts;
  std::map<const Pool*, size_t> row_of;
  for (auto& [key, pool] : pools_) {
    PoolRow row;
    pool->fill_row(row, now);
    row_of[pool.get()] = snap->pools.size();
    snap->pools.push_back(std::move(row));
  }
  // Clients by their pool: linked to a server connection, or logged in between transactions
  // (waiting ones are counted by the pool they wait on).
  for (auto& [pid, c] : clients_) {
    if (c->state() == ClientConn::State::kLogin) ++snap->clients_login;
    auto row = c->pool() != nullptr ? row_of.find(c->pool()) : row_of.end();
    if (row == row_of.end()) continue;
    if (c->server() != nullptr) ++snap->pools[row->second].clients_active;
    else if (c->state() == ClientConn::State::kIdle) ++snap->pools[row->second].clients_idle;
  }
  for (auto& [pid, c] : clients_) {
    if (snap->clients.size() >= WorkerSnapshot::kSnapshotRows) break;
    snap->clients.push_back(ClientRow{
        pid, c->user(), c->database(), client_state_name(c->state()), c->address(), c->application_name(),
        c->server() ? std::to_string(c->server()->id()) : "",
        std::chrono::duration_cast<std::chrono::seconds>(now - c->connected_at()).count()});
  }
  for (auto& [id, s] : servers_) {
    if (snap->servers.size() >= WorkerSnapshot::kSnapshotRows) break;
    // The pool's user and database: also for a connection no client has used yet (min_pool_size).
    snap->servers.push_back(ServerRow{
        id, s->pool().user(), s->pool().database(), server_state_name(*s),
        fmt::format("{} {}:{}", s->backend().name, s->backend().host, s->backend().port), s->backend_key().pid,
        std::chrono::duration_cast<std::chrono::seconds>(now - s->created()).count(),
        static_cast<int>(s->prepared.size())});
  }
  snapshot_.store(std::move(snap));
}

}  // namespace pgfleet::proxy
