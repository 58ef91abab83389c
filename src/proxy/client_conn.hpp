// ClientConn: one client of the proxy — startup, authentication, then its messages forwarded to
// whichever server connection the pool lends it, with session state carried along.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "protocol/scram.hpp"
#include "proxy/auth_cache.hpp"
#include "proxy/byte_queue.hpp"
#include "proxy/event_loop.hpp"
#include "proxy/send_batch.hpp"
#include "proxy/routing.hpp"
#include "proxy/transport.hpp"
#include "sql/session_change.hpp"
#include "util/tls.hpp"

namespace pgfleet::proxy {

class Pool;
class ServerConn;
class Worker;

class ClientConn final : public IoHandler, public BatchedSender {
 public:
  enum class State {
    kStartup,     // waiting for the startup packet
    kTlsHandshake,  // answered an SSLRequest with 'S'; TLS handshake in progress
    kAuthLookup,  // fetching the user's verifier
    kAuth,        // SASL / md5 exchange
    kLogin,       // authenticated, waiting for the pool's server parameters
    kIdle,        // logged in, no server (transaction mode between transactions)
    kWaiting,     // queued for a server connection
    kActive,      // a server connection is attached
    kListenAck,   // LISTEN sent on the worker's LISTEN connection; answered once it is in force
    kPauseWait,   // admin PAUSE: answered once no server connection is lent to a client
    kLost,        // the primary's connection died; the error waits to name the cause (failover?)
    kClosed,
  };

  // local: came through a Unix socket (no TLS there, as with PostgreSQL; tls_mode require does not apply).
  ClientConn(Worker& worker, int fd, int32_t pid, std::string address, ListenerKind kind = ListenerKind::kPrimary,
             bool local = false);
  ~ClientConn() override;

  void on_io(uint32_t events) override;

  // Called by the pool.
  void on_server_assigned(ServerConn* server);
  void on_server_released();
  void on_server_lost(const std::string& message);
  void on_login_ready();  // the pool has server parameters for the welcome
  // The replica this client waits for cannot be reached: wait for the primary instead.
  void reroute_to_primary();
  void fail(const std::string& sqlstate, const std::string& message, bool fatal = true);
  void close(const std::string& reason);
  // Bytes for the client (already framed).
  void send(std::span<const uint8_t> bytes);
  void flush() override;
  // Flush once this loop iteration's events are handled, batched with the other connections'.
  void flush_soon();
  // Our server has more than the high-water mark unsent (true) or drained below it (false):
  // stop reading the client meanwhile, then resume the input left in the buffer.
  void pause_reading(bool paused);
  // A server reported a parameter while serving this client.
  void server_parameter(const std::string& name, const std::string& value);
  // Statements to run on `server` before this client's messages so its session matches (SET ...),
  // each with the SET name it restores ("" for a reported parameter or a RESET).
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> session_sync_statements(ServerConn& server);
  // The attached server's ErrorResponse and CommandComplete: whether the transaction that ran
  // this client's SETs committed (see pending_changes_).
  void server_error_seen() { transaction_failed_ = true; }
  [[nodiscard]] bool awaits_transaction_outcome() const { return !pending_changes_.empty() || !tx_changes_.empty(); }
  void command_completed(std::span<const uint8_t> body);
  // A hash of the session state above (tracked parameters and SETs), cached per generation.
  uint64_t session_fingerprint();
  // The auth keys that let the pool log in to servers as this client's user.
  void on_auth_result(std::shared_ptr<const UserSecret> secret);
  void ready_for_query_seen(Clock::time_point now);
  void continue_input() { process_input(); }
  // The worker's LISTEN connection has run this client's LISTEN: answer it, go on.
  void listen_acknowledged();
  // Admin PAUSE: the busy server connections counted by one worker (see wait_for_pause()).
  void pause_report(int busy);
  // A Parse of this client's was skipped by the server after an earlier error: the name is free.
  void forget_prepared(const std::string& name) { prepared_.erase(name); }
  // An autocommit read sent to a replica that has not answered anything yet: if the replica
  // dies now, the read is sent again elsewhere.
  [[nodiscard]] bool retry_armed() const { return retry_armed_; }
  // A RowDescription while retry_armed(): passed on, and remembered for a retry.
  void send_row_description(std::span<const uint8_t> bytes);
  // Drops empty buffers of a connection that has been quiet for a while.
  void release_buffers() {
    in_.release();
    out_.release();
    if (!retry_armed_) std::vector<uint8_t>().swap(retry_);
  }

  [[nodiscard]] State state() const { return state_; }
  [[nodiscard]] int32_t pid() const { return pid_; }
  [[nodiscard]] int32_t secret() const { return secret_; }
  [[nodiscard]] const std::string& user() const { return user_; }
  [[nodiscard]] const std::string& database() const { return database_; }
  [[nodiscard]] const std::string& address() const { return address_; }
  [[nodiscard]] std::string application_name() const;
  [[nodiscard]] ServerConn* server() const { return server_; }
  [[nodiscard]] bool ran_transaction() const { return ran_transaction_; }
  [[nodiscard]] Pool* pool() const { return pool_; }
  [[nodiscard]] ListenerKind kind() const { return kind_; }
  // A notification for a channel this client listens on (delivered between messages).
  void notify(std::span<const uint8_t> notification);
  // More unsent than the high-water mark: while such a client still reads, the worker stops
  // reading the LISTEN connection (the rest waits in PostgreSQL's queue) and sets `holds`, until
  // subscriber_caught_up().
  [[nodiscard]] bool notifications_backed_up() const;
  [[nodiscard]] size_t unsent_notifications() const;
  void set_holds_notifications(bool holds) { holds_notifications_ = holds; }
  // When its socket last took bytes from us.
  [[nodiscard]] Clock::time_point last_drained() const { return last_drained_; }
  [[nodiscard]] Clock::time_point connected_at() const { return connected_at_; }
  [[nodiscard]] Clock::time_point waiting_since() const { return waiting_since_; }
  [[nodiscard]] Clock::time_point last_activity() const { return last_activity_; }
  [[nodiscard]] size_t output_size() const { return out_.size() + held_out_.size(); }
  // The attached server's ReadyForQuery is next: held while a LISTEN it ran is not yet in force
  // on the worker's LISTEN connection.
  void ready_for_query_coming() { holding_ = holding_ || early_acks_pending_ > 0; }
  [[nodiscard]] bool is_admin() const { return admin_; }
  void set_waiting_since(Clock::time_point t) { waiting_since_ = t; }

 private:
  struct Prepared {
    std::string server_name;  // content-addressed, shared by clients with the same statement
    protocol::Parse parse;
    StatementRoute route;     // where a transaction it starts goes (rw-split port)
  };
  // Routing (rw-split and replicas ports): picks `cur_pool_` for the transaction or batch at the
  // front of the input.
  enum class Routed { kYes, kNeedMore, kFailed };
  Routed choose_pool();
  // Where the batch at the front of the input must go (up to its Sync, or one Query); nullopt
  // while it is not all here.
  std::optional<StatementRoute> route_batch(size_t* batch_bytes = nullptr);
  StatementRoute route_sql(std::string_view sql);
  [[nodiscard]] sql::ClassifierOptions classifier_options() const;
  void count_route(RouteReason reason, int node);
  // The client's last write must be visible: the LSN reads need (0 = none), or nullopt = not known yet.
  std::optional<uint64_t> causal_requirement();
  void note_write_committed(const ServerConn& server);
  void process_input();
  bool process_startup();
  bool process_auth();
  void start_auth();
  void finish_login();
  bool forward_one();  // false: stop processing for now
  void ensure_prepared(const Prepared& statement);
  void make_room_for_statement(ServerConn& server);  // at most 256 statements per server connection
  bool forward_large_bind(const protocol::FrameHeader& header);  // renamed, then streamed
  void forward_inspected(char type, std::span<const uint8_t> body, std::span<const uint8_t> whole);
  // A SET/RESET/DISCARD ALL/DEALLOCATE ALL in `sql`, concluded by the server's ReadyForQuery
  // number `batch` (ServerConn::syncs_done once it has answered it).
  void track_set(std::string_view sql, uint64_t batch);
  void track_listen(bool listen, const std::string& channel, uint64_t batch);  // sent to a pooled server
  void undo_early_listens();  // the LISTENs of a transaction that did not commit
  void apply_change(const sql::SessionChange& change);
  void conclude_changes();  // at each ReadyForQuery of the attached server
  void handle_admin_query(std::string_view sql);
  void wait_for_pause();
  protocol::Bytes pause_reply_;
  Clock::time_point pause_deadline_{};
  int pause_reports_missing_ = 0, pause_busy_ = 0;
  bool handle_listen(std::string_view sql);  // true if it was a LISTEN/UNLISTEN the proxy served
  // The same as an extended-protocol batch (psycopg 3, JDBC): Parse of the unnamed statement
  // with only LISTEN/UNLISTEN, then Bind, Describe, Execute, up to Sync, nothing else.
  enum class Served { kNo, kNeedMore, kYes };
  Served handle_extended_listen();
  // Subscribes or unsubscribes; `reply` goes to the client once the LISTEN is in force.
  void start_listen(bool listen, const std::string& channel, protocol::Bytes reply);
  protocol::Bytes listen_reply_;
  void deliver_pending_notifications();
  std::vector<uint8_t> pending_notifications_;
  uint64_t consumed_at_last_write_ = 0;
  Clock::time_point last_drained_{};  // when the socket last took bytes
  bool holds_notifications_ = false;  // the LISTEN connection waits for this client to read
  bool listening_ = false;
  bool read_input();
  void update_interest();
  Transport& transport() override { return io_; }
  ByteQueue& output() override { return out_; }
  void after_write(Transport::Io result) override;
  void detach_server_if_done();
  // Before a Query, Sync or FunctionCall goes to the server: whether the work in flight may commit.
  void note_commit_risk(const ServerConn& server, char type, size_t total_length);
  // The primary's connection of a client died: what the client is told waits until the
  // topology or the health poller says whether the primary moved, went away or is fine.
  struct LostPrimary {
    std::string node;                   // the primary whose connection died
    int index = -1;                     // its node index (HealthPoller::node)
    std::string reason;                 // why the connection ended
    std::vector<uint8_t> server_error;  // the FATAL it sent first, if any
    bool in_transaction = false;        // a transaction was open on it
    bool in_flight = false;             // work that may commit had not answered yet
    bool planned = false;               // the proxy was paused (a switchover) when it died
    uint64_t polls_started = 0, polls_failed = 0;
    Clock::time_point since;
  };
  std::optional<LostPrimary> lost_;
  void resolve_lost_primary();

  Worker& worker_;
  Transport io_;
  std::shared_ptr<const tls::ServerContext> tls_context_;  // the certificate this client's TLS uses
  int32_t pid_;
  int32_t secret_;
  std::string address_;
  State state_ = State::kStartup;
  ByteQueue in_, out_;
  size_t stream_remaining_ = 0;
  bool server_backlogged_ = false;  // our server has more than the high-water mark unsent
  bool input_full_ = false;         // waiting for a server with a full input buffer
  uint32_t interest_ = 0;
  bool admin_ = false;
  bool ran_transaction_ = false;  // a server was attached at least once
  void continue_handshake();

  std::string user_, database_;
  std::map<std::string, std::string> startup_params_;
  Pool* pool_ = nullptr;
  ServerConn* server_ = nullptr;
  std::optional<protocol::ServerSession> scram_;
  std::shared_ptr<const UserSecret> secret_info_;
  std::array<uint8_t, 4> md5_salt_{};
  bool md5_ = false;

  // Session state that follows the client across server connections.
  std::map<std::string, std::string> wanted_params_;  // reported parameters (ParameterStatus)
  std::map<std::string, std::string> set_vars_;       // SET name -> value text ("DEFAULT" = reset)
  uint64_t session_generation_ = 1;                   // bumped whenever the two maps above change
  // Changes the client sent, applied to the maps above only once their transaction committed:
  // a SET that failed, or ran in a transaction that failed or rolled back, does not follow the
  // client (PostgreSQL undid it). A ROLLBACK TO SAVEPOINT counts only if the transaction ends there.
  struct PendingChange {
    uint64_t batch;
    sql::SessionChange change;
  };
  std::deque<PendingChange> pending_changes_;   // sent, their batch not answered yet
  std::vector<sql::SessionChange> tx_changes_;  // answered inside a transaction still open
  bool transaction_failed_ = false;             // an error since the transaction began
  bool rolled_back_ = false;                    // the last command completed was a ROLLBACK
  std::set<std::string> early_listens_;         // subscribed by a LISTEN whose transaction is open
  int early_acks_pending_ = 0;                  // of those, not yet in force on the LISTEN connection
  bool holding_ = false;                        // output kept in held_out_ until they are
  std::vector<uint8_t> held_out_;
  uint64_t fingerprint_ = 0, fingerprint_generation_ = 0;
  std::map<std::string, Prepared, std::less<>> prepared_;

  // Routing state.
  ListenerKind kind_;
  bool local_ = false;  // through a Unix socket
  Pool* cur_pool_ = nullptr;     // the pool of server_ (or the one waited on): pool_ or a replica's
  SessionRouting routing_;
  bool sticky_ = false;          // the attached server holds a transaction that must stay on it
  bool wrote_ = false;           // the attached primary ran something that may write
  bool may_commit_ = false;      // what runs on the attached server may commit (see note_commit_risk)
  bool batch_routed_ = false;    // the current batch was looked at already
  bool held_for_replica_ = false;  // input waits for a replica to finish before going to the primary
  bool causal_pending_ = false;  // a write committed; waiting for a primary LSN read after it
  uint64_t causal_after_ = 0;    // ...a poll numbered above this one
  uint64_t causal_lsn_ = 0;      // replicas must have replayed this to serve our reads
  uint64_t causal_topology_ = 0;
  int causal_primary_ = -1;      // node index the requirement refers to
  std::vector<uint8_t> retry_;   // the read batch retry_armed_ would send again
  bool retry_armed_ = false;
  std::vector<uint8_t> retry_prefix_;  // RowDescription sent while armed
  std::vector<uint8_t> skip_;          // after a retry: bytes the client already has
  size_t skip_at_ = 0;
  void emit(std::span<const uint8_t> bytes);

  Clock::time_point connected_at_, waiting_since_, last_activity_, query_started_{};
};

}  // namespace pgfleet::proxy
