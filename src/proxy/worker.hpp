// Worker: one event-loop thread with its own listener (SO_REUSEPORT), pools and connections;
// nothing here is shared with other workers, so the data path takes no locks.
#pragma once

#include <atomic>
#include <array>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "cluster/config.hpp"
#include "protocol/scram.hpp"
#include "proxy/client_conn.hpp"
#include "proxy/event_loop.hpp"
#include "proxy/send_batch.hpp"
#include "proxy/routing.hpp"
#include "proxy/server_conn.hpp"
#include "proxy/shared.hpp"
#include "proxy/stats.hpp"

namespace pgfleet::proxy {

// How the pool logs in to servers as a user: the SCRAM keys a client proved it knows (pass-through),
// or the stored md5 hash.
struct AuthKeys {
  std::optional<protocol::Digest> client_key;
  protocol::Digest server_key{};
  protocol::ScramVerifier verifier;
  std::string md5;
};

// Server connections for one (database, user, node) on one worker. Node "" is the primary
// (whichever node it is now); a named node is a replica serving reads. A node's pool borrows
// the auth keys and client bookkeeping of its (database, user) primary pool, its `home`.
class Pool {
 public:
  Pool(Worker& worker, std::string database, std::string user, std::string node = {}, Pool* home = nullptr);

  // Gives `client` a server now or queues it. Returns true if assigned at once.
  bool acquire(ClientConn* client);
  // A server is done with its client (or finished logging in): reuse, hand to a waiter, or close.
  void release(ServerConn* server);
  void on_login_ok(ServerConn* server, std::vector<std::pair<std::string, std::string>> params);
  void on_login_failed(ServerConn* server, const std::string& sqlstate, const std::string& message);
  void on_server_closed(ServerConn* server);
  void forget_client(ClientConn* client);
  // Timeouts and pool sizes; called by the worker every 100 ms.
  void tick(Clock::time_point now);

  [[nodiscard]] cluster::PoolMode mode() const { return mode_; }
  [[nodiscard]] const std::string& database() const { return database_; }
  [[nodiscard]] const std::string& user() const { return user_; }
  [[nodiscard]] const std::string& node() const { return node_; }  // "" = the primary
  [[nodiscard]] bool is_replica() const { return !node_.empty(); }
  [[nodiscard]] bool has_welcome() const { return welcome_.has_value(); }
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& welcome() const { return *welcome_; }
  void set_auth(AuthKeys keys) { auth_ = std::move(keys); }
  [[nodiscard]] const std::optional<AuthKeys>& auth() const { return home_ != nullptr ? home_->auth_ : auth_; }
  // Clients logging in wait here for the first server's parameters.
  void wait_for_welcome(ClientConn* client);
  void fill_row(PoolRow& row, Clock::time_point now) const;
  PoolStats stats;
  void close_all(const std::string& reason);
  // RECONNECT: idle server connections close now, the others when their client releases them.
  void reconnect(Clock::time_point now);
  bool close_one_idle();
  // The primary moved away from `backend`: drop the connections still logging in to it or idle
  // there (a hung server never answers them) and open new ones for the waiting clients at once.
  void abandon(const std::string& backend, const std::string& reason);
  [[nodiscard]] int busy_servers() const;  // server connections lent to a client right now

 private:
  void apply_settings();
  // Opens a server connection if the proxy-wide budget allows; otherwise asks the other
  // workers to give back an idle one.
  bool open_server();
  [[nodiscard]] int limit(Clock::time_point now) const;
  [[nodiscard]] bool below_limit(Clock::time_point now) const { return budget_->servers.load() < limit(now); }
  void server_gone(ServerConn* server);
  void hand_over(ServerConn* server, ClientConn* client);

  // A replica that cannot be reached: its waiting clients go to the primary instead.
  void redirect_waiters(const std::string& why);

  Worker& worker_;
  std::string database_, user_, node_;
  Pool* home_ = nullptr;
  friend class Worker;
  std::array<Pool*, kMaxNodes> node_pools_{};  // home pool: its replicas' pools by node index
  cluster::PoolMode mode_ = cluster::PoolMode::Transaction;
  int pool_size_ = 20;
  std::optional<AuthKeys> auth_;
  std::optional<std::vector<std::pair<std::string, std::string>>> welcome_;
  std::vector<ServerConn*> idle_;  // most recently used last
  std::vector<ServerConn*> servers_;  // all of this pool's server connections
  std::deque<ClientConn*> waiting_;
  std::vector<ClientConn*> welcome_waiters_;
  std::vector<ClientConn*> clients_;
  int connecting_ = 0;
  Clock::time_point last_login_failure_{};
  Clock::time_point reconnect_before_{};  // RECONNECT: servers created before this are not reused
  PoolBudget* budget_;
  Clock::time_point last_borrow_request_{};
};

class Worker {
 public:
  Worker(int index, ProxyShared& shared);
  ~Worker();

  // Opens this worker's listener of a kind; throws on failure (port in use).
  void listen(const std::string& address, int port, ListenerKind kind);
  // Uses an already listening socket: handed over by a previous proxy process, or a Unix socket
  // (local = true) that every worker shares, each with its own descriptor.
  void adopt_listener(int fd, ListenerKind kind, bool local = false);
  [[nodiscard]] std::vector<int> listener_fds() const;
  void start();   // runs the loop on a new thread
  void join();
  EventLoop& loop() { return loop_; }
  SendBatch& send_batch() { return send_batch_; }
  // This thread's copies of the shared snapshots, refreshed when their version changes: the hot
  // path then touches no shared reference count.
  const cluster::ClusterConfig& settings();
  const Topology& topology();
  ProxyShared& shared() { return shared_; }
  // Derived from settings(), rebuilt when they change (no per-statement copies).
  const sql::ClassifierOptions& classifier_options() {
    settings();
    return classifier_options_;
  }
  bool causal_reads() {
    settings();
    return causal_reads_;
  }
  [[nodiscard]] int index() const { return index_; }

  Pool& pool(const std::string& database, const std::string& user);
  // The pool of a replica node for the clients of `home`.
  Pool& node_pool(Pool& home, const Backend& node);
  ServerConn* new_server(Pool& pool, const Backend& backend, uint64_t topology_version);
  void retire_server(ServerConn* server);
  void retire_client(ClientConn* client);
  void adopt_client(std::unique_ptr<ClientConn> client);
  void cancel(int32_t pid, int32_t secret);  // runs on this worker's thread
  void cancel_delivered(uint64_t server_id);  // the server took (or never got) a cancel request
  ClientConn* client(int32_t pid);
  // Graceful stop: close the listener, let clients finish their transactions.
  void begin_shutdown();
  [[nodiscard]] std::shared_ptr<const WorkerSnapshot> snapshot() const { return snapshot_.load(); }
  void kill_database(const std::string& database);
  void reconnect_database(const std::string& database);  // "" = every database
  [[nodiscard]] bool shutting_down() const { return shutting_down_; }
  // Shutting down because a new proxy process took the listening sockets over.
  [[nodiscard]] bool handing_over() const { return shutting_down_ && shared_.handed_over; }
  // Server connections lent to clients of paused databases (all of them when the whole proxy
  // is paused): PAUSE returns once this is 0 on every worker.
  [[nodiscard]] int busy_paused_servers();
  // Another worker's clients wait for this pool's budget: close one idle server if there is one.
  void give_back_idle(const std::string& database, const std::string& user, const std::string& node);

  // Routing: this worker's counters and balancer, and requests in flight per node.
  std::array<uint64_t, kRouteReasons> route_counts{};
  std::array<uint64_t, kMaxNodes> node_statements{};  // statements routed to each node
  std::array<int, kMaxNodes> node_active{};          // server connections lent out per node
  std::array<uint64_t, kErrorKinds> error_counts{};  // errors this worker's clients got from the proxy
  BalancerState balancer;
  // A rate-limited log line when reads go to the primary for want of a replica.
  void note_fallback(RouteReason reason);

  // LISTEN in transaction and statement modes: one connection per database on this worker holds
  // the LISTENs of all its clients and fans notifications out to the subscribers.
  // True when the LISTEN is already in force; otherwise the client hears listen_acknowledged().
  // `answer` false: the client is not told when it is in force (a LISTEN a server answered).
  bool subscribe(ClientConn* client, Pool& pool, const std::string& channel, bool answer = true);
  [[nodiscard]] bool subscribed(const ClientConn* client, const std::string& channel) const;
  void listener_statement_done(ServerConn* server);  // a ReadyForQuery on a LISTEN connection
  void unsubscribe(ClientConn* client, const std::string& channel);  // sql::kAllChannels = every channel
  void deliver_notification(const std::string& database, std::span<const uint8_t> body,
                            std::span<const uint8_t> whole);
  void listener_ready(ServerConn* server);
  void listener_closed(ServerConn* server);
  // A subscriber that held up its database's notifications has read enough of them.
  void subscriber_caught_up(ClientConn* client);

 private:
  struct Listener final : IoHandler {
    Worker* worker = nullptr;
    int fd = -1;
    ListenerKind kind = ListenerKind::kRwSplit;
    bool local = false;  // a Unix socket
    void on_io(uint32_t events) override;
  };
  void accept_clients(Listener& listener);
  std::array<Listener*, 6> all_listeners();
  Clock::time_point last_fallback_log_{};
  // The primary another node replaced: clients in a transaction there are told and disconnected.
  void end_transactions_on_old_primary();
  uint64_t seen_topology_version_ = 0;
  std::string seen_primary_;
  uint64_t fallbacks_unlogged_ = 0;
  void tick();
  void publish_snapshot();

  int index_;
  ProxyShared& shared_;
  // Before loop_: connections still in the loop's graveyard forget themselves here when it goes.
  SendBatch send_batch_{loop_};
  EventLoop loop_;
  std::array<Listener, 3> listeners_;  // by ListenerKind
  std::array<Listener, 3> local_listeners_;  // the Unix sockets, by ListenerKind
  std::thread thread_;
  std::map<std::tuple<std::string, std::string, std::string>, std::unique_ptr<Pool>> pools_;
  std::map<int32_t, std::unique_ptr<ClientConn>> clients_;
  std::map<uint64_t, std::unique_ptr<ServerConn>> servers_;
  struct Listening {
    ServerConn* conn = nullptr;
    bool ready = false;
    std::map<std::string, std::set<int32_t>> channels;  // channel -> client pids
    std::set<std::string> in_force;                     // channels whose LISTEN has completed
    // Statements sent on `conn`, oldest first: the channel a LISTEN puts in force ("" for
    // others) and the clients waiting for it.
    struct Sent {
      std::string channel;
      std::vector<int32_t> waiting;
    };
    std::deque<Sent> sent;
    std::vector<int32_t> waiting_for_connection;  // LISTENs asked before `conn` logged in
    // Subscribers with more than the high-water mark unsent, since when: while one of them still
    // reads, `conn` is not read (update_hold). One that stays so for kSlowSubscriberTimeout is
    // disconnected (tick()).
    std::map<int32_t, Clock::time_point> backed_up;
  };
  void update_hold(Listening& l);
  void cut_off_subscriber(ClientConn* c, const std::string& reason);
  std::map<std::string, Listening> listening_;  // by database
  void send_listen(Listening& l, const std::string& sql, std::string channel = {}, std::vector<int32_t> waiting = {});
  uint64_t next_server_id_ = 1;
  std::atomic<int> cancel_threads_{0};  // cancel requests being sent by helper threads
  bool shutting_down_ = false;
  Clock::time_point shutdown_deadline_{};
  std::atomic<std::shared_ptr<const WorkerSnapshot>> snapshot_;
  std::shared_ptr<const cluster::ClusterConfig> settings_;
  sql::ClassifierOptions classifier_options_;
  bool causal_reads_ = true;
  uint64_t settings_version_ = ~0ull;
  std::shared_ptr<const Topology> topology_;
  uint64_t topology_version_ = ~0ull;
};

}  // namespace pgfleet::proxy
