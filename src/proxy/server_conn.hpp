// ServerConn: one connection from the proxy to a PostgreSQL server — login (SCRAM pass-through,
// md5), then forwarding between it and the client it is lent to.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "protocol/scram.hpp"
#include "proxy/byte_queue.hpp"
#include "proxy/event_loop.hpp"
#include "proxy/send_batch.hpp"
#include "proxy/topology.hpp"
#include "proxy/transport.hpp"

namespace pgfleet::proxy {

// Query text of a Parse the proxy sends so that the server fails and skips to Sync exactly as
// PostgreSQL does for a duplicate statement name; its syntax error is reworded as 42P05.
inline constexpr std::string_view kDuplicateMarker = "pgfleet_duplicate_prepared_statement";

// The libpq sslmode for the proxy's own connections to a server (health polls, auth queries),
// following proxy.server_sslmode: "prefer" skips TLS on loopback, where it only costs CPU.
std::string libpq_sslmode(const std::string& server_sslmode, const std::string& host);
// verify-ca / verify-full: the server's certificate is checked (and its name, for verify-full).
bool verifies_server(const std::string& server_sslmode);
// The CA that verifies servers: proxy.server_tls_ca, else the cluster's ("" when neither).
std::string server_ca_file(const cluster::ClusterConfig& config, const std::optional<cluster::Layout>& layout);
// libpq's sslmode for a connection of the proxy's own to `host` (the health poller, the auth
// query), with sslrootcert = `ca_file` when the mode verifies.
std::string libpq_tls_options(const std::string& server_sslmode, const std::string& host, const std::string& ca_file);

class ClientConn;
class Pool;
class Worker;

class ServerConn final : public IoHandler, public BatchedSender {
 public:
  enum class State { kConnecting, kLogin, kIdle, kActive, kClosed };

  ServerConn(Worker& worker, Pool& pool, Backend backend, uint64_t topology_version, uint64_t id);
  ~ServerConn() override;

  // Starts the non-blocking connect. False (and closed) on immediate failure.
  bool start();
  void on_io(uint32_t events) override;

  // Lending to a client. attach() queues the statements that make the server's session match the
  // client's (parameters, SET values); their replies are swallowed.
  void attach(ClientConn* client);
  void detach();
  // Bytes for the server (already framed).
  void send(std::span<const uint8_t> bytes);
  void flush() override;
  // Flush once this loop iteration's events are handled, batched with the other connections'.
  void flush_soon();
  // Client side closed or was killed: close unless it can go back to the pool.
  void close(const std::string& reason);
  void pause_reading(bool paused);

  // For the client's forwarding logic.
  [[nodiscard]] State state() const { return state_; }
  [[nodiscard]] bool reusable() const;  // idle, no reply outstanding
  [[nodiscard]] size_t output_size() const { return out_.size(); }
  [[nodiscard]] const Backend& backend() const { return backend_; }
  [[nodiscard]] Pool& pool() const { return pool_; }
  [[nodiscard]] uint64_t topology_version() const { return topology_version_; }
  [[nodiscard]] uint64_t id() const { return id_; }
  [[nodiscard]] ClientConn* client() const { return client_; }
  [[nodiscard]] Clock::time_point created() const { return created_; }
  [[nodiscard]] Clock::time_point last_used() const { return last_used_; }
  [[nodiscard]] protocol::CancelKey backend_key() const { return backend_key_; }
  [[nodiscard]] const std::map<std::string, std::string>& parameters() const { return parameters_; }

  // Protocol bookkeeping shared with ClientConn.
  int outstanding = 0;      // Sync/Query/FunctionCall sent whose ReadyForQuery has not arrived
  bool unsynced = false;    // extended-protocol messages sent after the last Sync
  char tx_status = 'I';
  // A primary's FATAL ErrorResponse (shutdown, postmaster death), held back: when the connection
  // then closes, the client hears why (a failover) instead, or this error if nothing moved.
  std::vector<uint8_t> held_fatal;
  int swallow_ready = 0;    // replies of injected queries to drop, counted in ReadyForQuery
  // Sends a statement of the proxy's own whose reply the client does not see. `restores`: the SET
  // name it applies for a client (an error then forgets it in applied_sets and warns the client).
  void inject(std::string sql, std::string restores = "");
  // The address this connection reached (TCP or Unix socket), for a CancelRequest to the same
  // server; false once closed.
  bool peer_address(sockaddr_storage& address, socklen_t& length) const;
  uint64_t syncs_sent = 0, syncs_done = 0;
  // Replies the client must not see (or must, in order) for Parse/Close we sent: '1' or '3'.
  struct Expected {
    char type;
    bool swallow;
    std::string statement;  // the server-side statement a Parse creates or a Close drops
    uint64_t batch;
    // Parse: the client's name for the statement, forgotten if the Parse is skipped; with no
    // `statement`, a deliberately failing Parse standing for a duplicate name (42P05).
    std::string client_name;
  };
  std::deque<Expected> expected;
  std::vector<std::string> prepared;              // server-side statement names, oldest first
  std::map<std::string, std::string> applied_sets;  // SET name -> value applied by clients
  bool listens = false;  // a client ran LISTEN here: UNLISTEN * before the next client
  int cancels_in_flight = 0;  // cancel requests for its backend not yet taken by the server
  std::deque<std::string> injected_restores;        // per injected statement not yet answered
  std::string last_client;  // user@db of the last client (for SHOW SERVERS)
  bool listener = false;    // the worker's LISTEN connection for a database, never lent to clients
  int32_t synced_client = 0;        // client whose session state this server carries...
  uint64_t synced_generation = 0;   // ...as of that client's session generation
  uint64_t state_fingerprint = 0;   // session_fingerprint() of the state it carries; 0 = unknown
  int32_t last_client_pid = 0;

 private:
  void on_connected();
  void process_login();
  void process_forwarding();
  void handle_message(char type, std::span<const uint8_t> body, std::span<const uint8_t> whole);
  bool read_input();
  void update_interest();
  Transport& transport() override { return io_; }
  ByteQueue& output() override { return out_; }
  void after_write(Transport::Io result) override;
  void fail_login(const std::string& message, const std::string& sqlstate, const protocol::ErrorFields* fields);

  Worker& worker_;
  Pool& pool_;
  Backend backend_;
  uint64_t topology_version_;
  uint64_t id_;
  Transport io_;
  State state_ = State::kConnecting;
  enum class LoginPhase { kSslAnswer, kTlsHandshake, kStartup };
  LoginPhase phase_ = LoginPhase::kStartup;
  void send_startup();
  void continue_tls_handshake();
  ClientConn* client_ = nullptr;
  ByteQueue in_, out_;
  size_t stream_remaining_ = 0;  // body bytes of a message being passed through unparsed
  bool read_paused_ = false;
  bool forwarding_ = false;  // inside process_forwarding()
  bool unix_socket_ = false;
  uint32_t interest_ = 0;
  std::optional<protocol::ClientSession> scram_;
  protocol::CancelKey backend_key_;
  std::map<std::string, std::string> parameters_;
  Clock::time_point created_, last_used_;
};

}  // namespace pgfleet::proxy
