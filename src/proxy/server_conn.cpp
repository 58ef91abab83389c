// ServerConn: connect, log in as the client's user, then relay replies, dropping the ones that
// answer statements the proxy injected.
#include "proxy/server_conn.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "protocol/messages.hpp"
#include "proxy/client_conn.hpp"
#include "proxy/worker.hpp"
#include "util/log.hpp"
#include "util/ports.hpp"

namespace pgfleet::proxy {

std::string libpq_sslmode(const std::string& server_sslmode, const std::string& host) {
  if (server_sslmode == "prefer" && ports::is_loopback_host(host)) return "disable";
  return server_sslmode;  // disable | prefer | require | verify-ca | verify-full: libpq's names
}

bool verifies_server(const std::string& server_sslmode) { return server_sslmode.starts_with("verify-"); }

std::string server_ca_file(const cluster::ClusterConfig& config, const std::optional<cluster::Layout>& layout) {
  if (!config.proxy.server_tls_ca.empty()) return config.proxy.server_tls_ca;
  return layout ? layout->tls_trust() : std::string();
}

std::string libpq_tls_options(const std::string& server_sslmode, const std::string& host, const std::string& ca_file) {
  std::string out = "sslmode=" + libpq_sslmode(server_sslmode, host);
  if (verifies_server(server_sslmode)) out += " sslrootcert='" + ca_file + "'";
  return out;
}

namespace {
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kHighWater = 1024 * 1024;  // stop reading a side whose peer has this much unsent
}  // namespace

ServerConn::ServerConn(Worker& worker, Pool& pool, Backend backend, uint64_t topology_version, uint64_t id)
    : worker_(worker),
      pool_(pool),
      backend_(std::move(backend)),
      topology_version_(topology_version),
      id_(id),
      created_(worker.loop().now()),
      last_used_(worker.loop().now()) {}

ServerConn::~ServerConn() { worker_.send_batch().forget(this); }

bool ServerConn::start() {
  const auto& proxy_settings = worker_.settings().proxy;
  // No TLS on a Unix socket: a mode that requires it goes by TCP.
  if (proxy_settings.server_unix_socket && !backend_.socket_path.empty() &&
      (proxy_settings.server_sslmode == "disable" || proxy_settings.server_sslmode == "prefer")) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, backend_.socket_path.c_str(), backend_.socket_path.size() + 1);
    io_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    int rc = io_.fd() < 0 ? -1 : ::connect(io_.fd(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    if (io_.fd() < 0 || (rc != 0 && errno != EINPROGRESS)) {  // EAGAIN: backlog full, not connected
      fail_login(fmt::format("cannot connect to server socket {}: {}", backend_.socket_path, std::strerror(errno)),
                 "08001", nullptr);
      return false;
    }
    unix_socket_ = true;
    interest_ = EPOLLOUT;
    worker_.loop().add(io_.fd(), interest_, this);
    return true;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  // Node addresses are IPs in practice; a name is resolved here, once per connection.
  if (::getaddrinfo(backend_.host.c_str(), std::to_string(backend_.port).c_str(), &hints, &res) != 0 || !res) {
    fail_login("cannot resolve " + backend_.host, "08001", nullptr);
    return false;
  }
  io_.reset(::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int rc = io_.fd() < 0 ? -1 : ::connect(io_.fd(), res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  if (io_.fd() < 0 || (rc != 0 && errno != EINPROGRESS)) {
    fail_login(std::string("cannot connect to server: ") + std::strerror(errno), "08001", nullptr);
    return false;
  }
  int one = 1;
  ::setsockopt(io_.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // A server whose host vanished (partition, power loss) sends no reset: without these, a
  // connection waiting on it hangs for minutes and keeps its place in the pool after a failover.
  // Data unacknowledged for 5 s, or an idle connection failing 3 keepalive probes, ends it.
  int user_timeout_ms = 5000, idle_s = 5, interval_s = 1, probes = 3;
  ::setsockopt(io_.fd(), IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
  ::setsockopt(io_.fd(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  ::setsockopt(io_.fd(), IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
  ::setsockopt(io_.fd(), IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
  ::setsockopt(io_.fd(), IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
  interest_ = EPOLLOUT;
  worker_.loop().add(io_.fd(), interest_, this);
  return true;
}

void ServerConn::update_interest() {
  if (io_.fd() < 0) return;
  uint32_t want = (read_paused_ ? 0u : uint32_t{EPOLLIN}) | (out_.empty() && !io_.wants_write() ? 0u : uint32_t{EPOLLOUT});
  if (state_ == State::kConnecting) want = EPOLLOUT;
  if (want != interest_) {
    interest_ = want;
    worker_.loop().modify(io_.fd(), want, this);
  }
}

void ServerConn::pause_reading(bool paused) {
  if (read_paused_ == paused) return;
  read_paused_ = paused;
  update_interest();
  if (!paused) process_forwarding();
}

void ServerConn::send(std::span<const uint8_t> bytes) {
  out_.append(bytes);
}

void ServerConn::flush() {
  if (io_.fd() < 0 || phase_ == LoginPhase::kTlsHandshake) return;
  after_write(io_.write(out_));
}

void ServerConn::flush_soon() { worker_.send_batch().add(this); }

void ServerConn::after_write(Transport::Io result) {
  if (result == Transport::Io::kError) return close("write to server failed: " + io_.error());
  out_.shrink();
  update_interest();
  if (client_ != nullptr) client_->pause_reading(out_.size() > kHighWater);
}

void ServerConn::on_io(uint32_t events) {
  if (state_ == State::kClosed) return;
  if (state_ == State::kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(io_.fd(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
      fail_login(std::string("cannot connect to ") + backend_.host + ":" + std::to_string(backend_.port) + ": " +
                     std::strerror(err ? err : ECONNREFUSED),
                 "08001", nullptr);
      return;
    }
    on_connected();
    return;
  }
  if (phase_ == LoginPhase::kTlsHandshake) return continue_tls_handshake();
  if (events & EPOLLOUT) flush();
  if (state_ == State::kClosed) return;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    bool open = read_input();
    if (state_ == State::kLogin) process_login();
    else process_forwarding();
    if (!open && state_ != State::kClosed) close("server closed the connection");
  }
}

bool ServerConn::read_input() {
  auto result = io_.read(in_, 4 * kReadChunk);
  if (io_.wants_write()) update_interest();
  return result == Transport::Io::kOk;
}

void ServerConn::on_connected() {
  state_ = State::kLogin;
  interest_ = 0;
  // TLS to the server per proxy.server_sslmode; "prefer" skips it on loopback, where it would
  // only cost CPU.
  const std::string& mode = worker_.settings().proxy.server_sslmode;
  bool loopback = unix_socket_ || ports::is_loopback_host(backend_.host);
  if (worker_.shared().server_tls && (mode != "prefer" || !loopback)) {
    phase_ = LoginPhase::kSslAnswer;
    protocol::Writer w;
    protocol::encode_ssl_request(w);
    send(w.bytes());
  } else {
    send_startup();
  }
  update_interest();
  flush();
}

void ServerConn::continue_tls_handshake() {
  int rc = io_.handshake();
  update_interest();
  if (rc < 0) {
    return fail_login(fmt::format("TLS to the server at {}:{} failed: {}", backend_.host, backend_.port, io_.error()),
                      "08006", nullptr);
  }
  if (rc == 1) {
    phase_ = LoginPhase::kStartup;
    send_startup();
  }
}

void ServerConn::send_startup() {
  protocol::StartupMessage startup;
  startup.parameters = {{"user", pool_.user()}, {"database", pool_.database()}};
  send(protocol::encode(startup));
  flush();
}

void ServerConn::fail_login(const std::string& message, const std::string& sqlstate,
                            const protocol::ErrorFields* fields) {
  std::string text = fields ? std::string(protocol::field_value(*fields, protocol::field::kMessage)) : message;
  std::string code = fields ? std::string(protocol::field_value(*fields, protocol::field::kCode)) : sqlstate;
  State was = state_;
  state_ = State::kClosed;
  if (io_.fd() >= 0) {
    worker_.loop().remove(io_.fd());
    io_.close();
  }
  if (listener) {
    worker_.listener_closed(this);
  } else if (was == State::kConnecting || was == State::kLogin) {
    pool_.on_login_failed(this, code, text);
  }
  worker_.retire_server(this);
}

void ServerConn::process_login() {
  if (phase_ == LoginPhase::kSslAnswer) {
    if (in_.empty()) return;
    char answer = static_cast<char>(in_.view()[0]);
    in_.consume(1);
    if (answer == 'S') {
      phase_ = LoginPhase::kTlsHandshake;
      io_.start_tls(worker_.shared().server_tls.get(), false);
      // verify-full: the certificate must name the host the proxy was told to reach.
      if (worker_.settings().proxy.server_sslmode == "verify-full") io_.expect_host(backend_.host);
      return continue_tls_handshake();
    }
    const std::string& mode = worker_.settings().proxy.server_sslmode;
    if (answer != 'N' || mode != "prefer") {
      return fail_login("the server at " + backend_.host + ":" + std::to_string(backend_.port) +
                            " does not accept TLS (proxy.server_sslmode is " + mode + ")",
                        "08001", nullptr);
    }
    phase_ = LoginPhase::kStartup;
    send_startup();
    return;
  }
  while (state_ == State::kLogin) {
    auto frame = protocol::next_frame(in_.view(), protocol::kMaxSmallMessageLength * 100);
    if (!frame) return fail_login("invalid message from server: " + frame.error(), "08P01", nullptr);
    if (std::holds_alternative<protocol::NeedMoreData>(*frame)) return;
    auto f = std::get<protocol::Frame>(*frame);
    switch (f.type) {
      case 'R': {
        auto auth = protocol::decode_authentication(f.body);
        if (!auth) return fail_login("invalid authentication request: " + auth.error(), "08P01", nullptr);
        const auto& keys = pool_.auth();
        using protocol::AuthCode;
        if (auth->code == AuthCode::kOk) break;
        if (auth->code == AuthCode::kSASL) {
          if (!keys || !keys->client_key) {
            // An md5-stored password cannot pass a scram-sha-256 rule: the server would refuse it
            // with this message, so the client hears the same; the log says why.
            log::warn("pool {}@{}: the server wants SCRAM but {}'s password is stored as md5; set it again "
                      "with password_encryption = 'scram-sha-256' or add an md5 rule to pg_hba.conf",
                      pool_.user(), pool_.database(), pool_.user());
            return fail_login(fmt::format("password authentication failed for user \"{}\"", pool_.user()), "28P01",
                              nullptr);
          }
          scram_.emplace(protocol::ClientSession::from_keys(*keys->client_key, keys->server_key));
          auto first = scram_->client_first();
          if (!first) return fail_login(first.error(), "28000", nullptr);
          send(protocol::encode(protocol::SASLInitialResponse{std::string(scram_->mechanism()), *first}));
        } else if (auth->code == AuthCode::kSASLContinue && scram_) {
          auto final_msg = scram_->handle_server_first(auth->data);
          if (!final_msg) return fail_login(final_msg.error(), "28000", nullptr);
          send(protocol::encode(protocol::SASLResponse{*final_msg}));
        } else if (auth->code == AuthCode::kSASLFinal && scram_) {
          if (auto ok = scram_->handle_server_final(auth->data); !ok) return fail_login(ok.error(), "28000", nullptr);
        } else if (auth->code == AuthCode::kMD5Password && keys && !keys->md5.empty()) {
          auto answer = protocol::md5_response(keys->md5, auth->salt);
          if (!answer) return fail_login(answer.error(), "28000", nullptr);
          send(protocol::encode(protocol::PasswordMessage{*answer}));
        } else {
          return fail_login("the server asks for an authentication method the proxy cannot answer for user " +
                                pool_.user() + " (use SCRAM-SHA-256 or md5 passwords)",
                            "28000", nullptr);
        }
        flush();
        break;
      }
      case 'S': {
        auto ps = protocol::decode_parameter_status(f.body);
        if (ps) parameters_[ps->name] = ps->value;
        break;
      }
      case 'K': {
        auto key = protocol::decode_backend_key_data(f.body);
        if (key) backend_key_ = key->key;
        break;
      }
      case 'E': {
        auto err = protocol::decode_error_response(f.body);
        in_.consume(f.total_length);
        return fail_login("server refused the login", "08006", err ? &err->fields : nullptr);
      }
      case 'Z': {
        in_.consume(f.total_length);
        state_ = State::kIdle;
        scram_.reset();
        std::vector<std::pair<std::string, std::string>> params(parameters_.begin(), parameters_.end());
        if (listener) {
          state_ = State::kActive;
          worker_.listener_ready(this);
        } else {
          pool_.on_login_ok(this, std::move(params));
        }
        return;
      }
      default:
        break;  // NoticeResponse, NegotiateProtocolVersion: nothing to do
    }
    in_.consume(f.total_length);
  }
}

void ServerConn::attach(ClientConn* client) {
  if (client_ == nullptr && backend_.index >= 0) ++worker_.node_active[static_cast<size_t>(backend_.index)];
  client_ = client;
  state_ = State::kActive;
  last_used_ = worker_.loop().now();
  if (last_client_pid != client->pid()) {  // for SHOW SERVERS; not rebuilt on every attach
    last_client_pid = client->pid();
    last_client = client->user() + "@" + client->database();
  }
  // One Query each: a statement that fails here (a setting this server rejects) loses only itself.
  for (auto& [name, sql] : client->session_sync_statements(*this)) inject(std::move(sql), std::move(name));
}

bool ServerConn::peer_address(sockaddr_storage& address, socklen_t& length) const {
  length = sizeof address;
  return io_.fd() >= 0 && ::getpeername(io_.fd(), reinterpret_cast<sockaddr*>(&address), &length) == 0;
}

void ServerConn::inject(std::string sql, std::string restores) {
  send(protocol::encode(protocol::Query{std::move(sql)}));
  ++swallow_ready;
  injected_restores.push_back(std::move(restores));
}

void ServerConn::detach() {
  if (client_ != nullptr && backend_.index >= 0) --worker_.node_active[static_cast<size_t>(backend_.index)];
  // Sent ahead of the next client's statements (or now, by close()'s flush).
  if (listens) inject("UNLISTEN *");
  listens = false;
  client_ = nullptr;
  state_ = State::kIdle;
  last_used_ = worker_.loop().now();
  if (read_paused_) pause_reading(false);
}

bool ServerConn::reusable() const {
  return state_ != State::kClosed && outstanding <= 0 && !unsynced && tx_status == 'I' && stream_remaining_ == 0;
}

void ServerConn::process_forwarding() {
  // Not again from inside itself: handling a message can resume this connection's reading (a
  // notification's delivery lets the LISTEN connection go on), and a nested pass would handle the
  // message being handled a second time. The running pass goes on instead.
  if (forwarding_) return;
  forwarding_ = true;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{forwarding_};
  while (!in_.empty() && state_ != State::kClosed && !read_paused_) {
    bool dropping = (client_ == nullptr || swallow_ready > 0) && !listener;
    if (stream_remaining_ > 0) {
      size_t n = std::min(stream_remaining_, in_.size());
      if (!dropping) client_->send(in_.view().first(n));
      in_.consume(n);
      stream_remaining_ -= n;
      continue;
    }
    auto header = protocol::peek_header(in_.view());
    if (!header) break;
    if (auto ok = protocol::check_header(*header, protocol::kMaxBackendMessageLength); !ok) {
      close("invalid message from server: " + ok.error());
      return;
    }
    char t = header->type;
    bool inspect = t == 'Z' || t == 'S' || t == 'E' || t == '1' || t == '3' || dropping || listener ||
                   (t == 'T' && client_ != nullptr && client_->retry_armed() && header->total_length() <= 64 * 1024) ||
                   (t == 'C' && client_ != nullptr && client_->awaits_transaction_outcome()) ||
                   (t == 'A' && pool_.mode() != cluster::PoolMode::Session);
    if (!inspect || (dropping && header->total_length() > 64 * 1024)) {
      // Pass through by length, as much as is here; the rest follows as it arrives.
      size_t n = std::min(header->total_length(), in_.size());
      if (!dropping) client_->send(in_.view().first(n));
      in_.consume(n);
      stream_remaining_ = header->total_length() - n;
    } else {
      if (in_.size() < header->total_length()) break;
      auto whole = in_.view().first(header->total_length());
      handle_message(t, whole.subspan(protocol::kHeaderSize), whole);
      in_.consume(header->total_length());
    }
    if (client_ != nullptr && client_->output_size() > kHighWater) {
      pause_reading(true);  // resumed once the client drains
    }
  }
  if (client_ != nullptr) client_->flush_soon();
  in_.shrink();
}

void ServerConn::handle_message(char type, std::span<const uint8_t> body, std::span<const uint8_t> whole) {
  if (listener) {
    if (type == 'A') worker_.deliver_notification(pool_.database(), body, whole);
    if (type == 'Z') worker_.listener_statement_done(this);
    if (type == 'E') {
      auto err = protocol::decode_error_response(body);
      log::warn("LISTEN connection for {}: {}", pool_.database(),
                err ? std::string(protocol::field_value(err->fields, protocol::field::kMessage)) : "?");
    }
    return;
  }
  if (type == 'S') {
    if (auto ps = protocol::decode_parameter_status(body); ps) {
      parameters_[ps->name] = ps->value;
      if (client_ != nullptr && swallow_ready == 0) client_->server_parameter(ps->name, ps->value);
    }
  }
  if (swallow_ready > 0) {
    if (type == 'E') {
      state_fingerprint = 0;  // the session was not restored as intended
      auto err = protocol::decode_error_response(body);
      std::string message = err ? std::string(protocol::field_value(err->fields, protocol::field::kMessage)) : "?";
      std::string restores = injected_restores.empty() ? "" : injected_restores.front();
      log::warn("server {}: a statement restoring {}'s session failed: {}", id_, last_client, message);
      if (!restores.empty()) {
        applied_sets.erase(restores);
        // The client's statements run without its setting: say so rather than stay silent.
        if (client_ != nullptr) {
          protocol::NoticeResponse notice{
              protocol::error_response("WARNING", "01000",
                                       fmt::format("pgfleet could not apply this session's {} on the server "
                                                   "connection it got: {}",
                                                   restores, message))
                  .fields};
          client_->send(protocol::encode(notice));
        }
      }
    } else if (type == 'Z') {
      if (!injected_restores.empty()) injected_restores.pop_front();
      if (--swallow_ready == 0 && client_ == nullptr) pool_.release(this);  // a reset finished in the pool
    }
    return;
  }
  if (client_ == nullptr) {
    if (type == 'E') {
      auto err = protocol::decode_error_response(body);
      close("server error while idle: " +
            (err ? std::string(protocol::field_value(err->fields, protocol::field::kMessage)) : std::string("?")));
    }
    return;  // notices, notifications and parameter changes of an idle server
  }
  switch (type) {
    case 'Z':
      tx_status = body.empty() ? 'I' : static_cast<char>(body[0]);
      --outstanding;
      ++syncs_done;
      while (!expected.empty() && expected.front().batch < syncs_done) expected.pop_front();
      client_->ready_for_query_coming();
      client_->send(whole);
      client_->ready_for_query_seen(worker_.loop().now());
      return;
    case 'E': {
      client_->server_error_seen();
      if (client_->retry_armed() && pool_.is_replica()) {
        // A replica shutting down (FATAL 57P01...) before answering a read: the client hears
        // nothing of it, the read is retried once the connection closes.
        auto err = protocol::decode_error_response(body);
        if (err && protocol::field_value(err->fields, protocol::field::kSeverityRaw) == "FATAL") return;
      }
      if (!pool_.is_replica()) {
        // The primary ends the connection (fast shutdown, postmaster death): the closing that
        // follows decides what the client hears (ClientConn::on_server_lost).
        auto err = protocol::decode_error_response(body);
        if (err && protocol::field_value(err->fields, protocol::field::kSeverityRaw) == "FATAL") {
          held_fatal.assign(whole.begin(), whole.end());
          return;
        }
      }
      // PostgreSQL skips to the next Sync: the batch's pending Parse/Close get no reply and have
      // no effect. Undo their bookkeeping newest first, so a skipped Close+Parse pair leaves the
      // statement known as it was before the pair.
      std::vector<Expected> skipped;
      for (auto it = expected.begin(); it != expected.end();) {
        if (it->batch == syncs_done) {
          skipped.push_back(std::move(*it));
          it = expected.erase(it);
        } else {
          ++it;
        }
      }
      std::string duplicate;
      for (auto it = skipped.rbegin(); it != skipped.rend(); ++it) {
        if (it->type == '1' && !it->client_name.empty()) {
          if (it->statement.empty()) duplicate = it->client_name;
          else client_->forget_prepared(it->client_name);
        }
        if (it->statement.empty()) continue;
        if (it->type == '1') {
          std::erase(prepared, it->statement);
        } else if (std::find(prepared.begin(), prepared.end(), it->statement) == prepared.end()) {
          prepared.insert(prepared.begin(), it->statement);
        }
      }
      ++pool_.stats.errors;
      if (!duplicate.empty()) {
        auto err = protocol::decode_error_response(body);
        auto message = err ? protocol::field_value(err->fields, protocol::field::kMessage) : std::string_view();
        if (message.find(kDuplicateMarker) != std::string_view::npos) {
          client_->send(protocol::encode(protocol::error_response(
              "ERROR", "42P05", fmt::format("prepared statement \"{}\" already exists", duplicate))));
          return;
        }
      }
      break;
    }
    case '1':
    case '3':
      if (!expected.empty() && expected.front().type == type) {
        bool swallow = expected.front().swallow;
        expected.pop_front();
        if (swallow) return;
      }
      break;
    case 'T':
      if (client_->retry_armed()) return client_->send_row_description(whole);
      break;
    case 'C':
      if (client_->awaits_transaction_outcome()) client_->command_completed(body);
      break;
    case 'A':
      // A notification on a pooled server (a LISTEN run inside a transaction stays on it): it
      // belongs to no particular client; LISTEN connections deliver to subscribers.
      if (pool_.mode() != cluster::PoolMode::Session) return;
      break;
    default:
      break;
  }
  client_->send(whole);
}

void ServerConn::close(const std::string& reason) {
  if (state_ == State::kClosed) return;
  bool logging_in = state_ == State::kConnecting || state_ == State::kLogin;
  if (logging_in) return fail_login(reason, "08006", nullptr);
  log::debug("server {} ({}:{}) closed: {}", id_, backend_.host, backend_.port, reason);
  state_ = State::kClosed;
  if (io_.fd() >= 0) {
    // A polite Terminate when the server is healthy; harmless otherwise.
    if (reason.find("failed") == std::string::npos) {
      out_.clear();
      send(protocol::encode(protocol::Terminate{}));
      (void)io_.write(out_);
    }
    worker_.loop().remove(io_.fd());
    io_.close();
  }
  ClientConn* client = client_;
  if (client_ != nullptr && backend_.index >= 0) --worker_.node_active[static_cast<size_t>(backend_.index)];
  client_ = nullptr;
  if (listener) worker_.listener_closed(this);
  else pool_.on_server_closed(this);
  if (client != nullptr) client->on_server_lost(reason);
  worker_.retire_server(this);
}

}  // namespace pgfleet::proxy
