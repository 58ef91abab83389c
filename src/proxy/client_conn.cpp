// ClientConn: a client's startup, authentication and messages. Bodies pass through by length
// except the few messages that pooling must inspect (SET tracking, named prepared statements).
#include "proxy/client_conn.hpp"

#include <openssl/crypto.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "proxy/admin.hpp"
#include "proxy/health.hpp"
#include "proxy/server_conn.hpp"
#include "proxy/worker.hpp"
#include "sql/listen_statement.hpp"
#include "sql/session_change.hpp"
#include "util/tls.hpp"
#include "util/log.hpp"

namespace pgfleet::proxy {

namespace {
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kHighWater = 1024 * 1024;
constexpr size_t kMaxInspectedQuery = 64 * 1024;  // longer simple queries pass through untracked

// Parameters PostgreSQL reports with ParameterStatus; the proxy keeps each client's values.
constexpr std::string_view kTrackedParameters[] = {"client_encoding",  "DateStyle", "TimeZone",
                                                   "IntervalStyle",    "standard_conforming_strings",
                                                   "application_name"};
bool is_tracked(std::string_view name) {
  return std::find(std::begin(kTrackedParameters), std::end(kTrackedParameters), name) !=
         std::end(kTrackedParameters);
}

std::string quote_literal(std::string_view value) {
  std::string out = "'";
  for (char c : value) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string lower(std::string_view s) { return sql::lower_ascii(s); }
using sql::mentions_session_verb;
using sql::next_word;
using sql::parse_listen;
using sql::split_statements;

// For Parse/Bind/Describe/Close: whether the message names a prepared statement (then the
// proxy rewrites it and needs it whole). nullopt while too little of the body is buffered.
// Whether an extended-protocol message must be decoded: it names a statement, or (unnamed
// Parse) its text may change session state. nullopt: not enough of the message yet.
std::optional<bool> names_a_statement(char type, std::span<const uint8_t> body, size_t body_length) {
  switch (type) {
    case 'P': {
      if (body.empty()) return std::nullopt;
      if (body[0] != 0) return true;
      auto query = std::string_view(reinterpret_cast<const char*>(body.data()) + 1, body.size() - 1);
      return sql::may_mention_session_verb(query.substr(0, query.find('\0')), body.size() >= body_length);
    }
    case 'B': {
      auto portal_end = std::find(body.begin(), body.end(), uint8_t{0});
      if (portal_end == body.end() || portal_end + 1 == body.end()) return std::nullopt;
      return *(portal_end + 1) != 0;
    }
    default:  // 'D', 'C': 'S' or 'P', then the name
      if (body.size() < 2) return std::nullopt;
      return body[0] == 'S' && body[1] != 0;
  }
}

int32_t random_i32() {
  int32_t v = 0;
  if (::getrandom(&v, sizeof v, 0) != sizeof v) v = static_cast<int32_t>(::getpid()) ^ 0x5a5a5a5a;
  return v;
}

std::string statement_hash_name(const protocol::Parse& parse) {
  std::string key = parse.query;
  for (uint32_t t : parse.param_types) key += "," + std::to_string(t);
  return fmt::format("pgfleet_{:016x}_{}", std::hash<std::string>{}(key), parse.query.size());
}
}  // namespace

ClientConn::ClientConn(Worker& worker, int fd, int32_t pid, std::string address, ListenerKind kind, bool local)
    : worker_(worker),
      io_(fd),
      pid_(pid),
      secret_(random_i32()),
      address_(std::move(address)),
      kind_(kind),
      local_(local),
      connected_at_(worker.loop().now()),
      last_activity_(worker.loop().now()) {
  interest_ = EPOLLIN;
  worker_.loop().add(io_.fd(), interest_, this);
}

ClientConn::~ClientConn() { worker_.send_batch().forget(this); }

std::string ClientConn::application_name() const {
  auto it = wanted_params_.find("application_name");
  return it == wanted_params_.end() ? std::string() : it->second;
}

void ClientConn::update_interest() {
  if (io_.fd() < 0) return;
  uint32_t want = (server_backlogged_ || input_full_ ? 0u : uint32_t{EPOLLIN}) | (out_.empty() && !io_.wants_write() ? 0u : uint32_t{EPOLLOUT});
  if (want != interest_) {
    interest_ = want;
    worker_.loop().modify(io_.fd(), want, this);
  }
}

void ClientConn::continue_handshake() {
  int rc = io_.handshake();
  update_interest();
  if (rc < 0) return close(io_.error());
  if (rc == 0) return;
  state_ = State::kStartup;
  read_input();  // the startup packet may already be decrypted inside OpenSSL
  process_input();
}

void ClientConn::pause_reading(bool paused) {
  if (server_backlogged_ == paused || state_ == State::kClosed) return;
  server_backlogged_ = paused;
  update_interest();
  if (!paused) {
    worker_.loop().defer([w = &worker_, pid = pid_] {
      if (auto* c = w->client(pid)) c->continue_input();
    });
  }
}

void ClientConn::send(std::span<const uint8_t> bytes) {
  retry_armed_ = false;  // the client has seen part of the answer: no retry from here on
  emit(bytes);
}

void ClientConn::send_row_description(std::span<const uint8_t> bytes) {
  // PostgreSQL describes the rows before running the query: a retry sends this again, and the
  // copy below lets the proxy drop the repeat.
  retry_prefix_.insert(retry_prefix_.end(), bytes.begin(), bytes.end());
  emit(bytes);
}

void ClientConn::emit(std::span<const uint8_t> bytes) {
  if (skip_at_ < skip_.size()) {
    // A retried read: what the first server already sent must come again, and is dropped.
    size_t n = std::min(bytes.size(), skip_.size() - skip_at_);
    if (std::memcmp(bytes.data(), skip_.data() + skip_at_, n) != 0) {
      skip_.clear();
      skip_at_ = 0;
      fail("08006", "a read retried after its replica was lost answered differently on another server");
      return;
    }
    skip_at_ += n;
    if (skip_at_ == skip_.size()) {
      skip_.clear();
      skip_at_ = 0;
    }
    bytes = bytes.subspan(n);
    if (bytes.empty()) return;
  }
  if (holding_) {
    held_out_.insert(held_out_.end(), bytes.begin(), bytes.end());
  } else {
    out_.append(bytes);
  }
  if (pool_ != nullptr) pool_->stats.bytes_sent += bytes.size();
}

void ClientConn::flush() {
  if (io_.fd() < 0 || state_ == State::kTlsHandshake) return;
  after_write(io_.write(out_));
}

void ClientConn::flush_soon() { worker_.send_batch().add(this); }

void ClientConn::after_write(Transport::Io result) {
  if (result == Transport::Io::kError) return close("write to client failed: " + io_.error());
  if (out_.consumed() != consumed_at_last_write_) {
    consumed_at_last_write_ = out_.consumed();
    last_drained_ = worker_.loop().now();
  }
  out_.shrink();
  update_interest();
  // Backpressure: a slow reader stops its server's replies instead of growing our buffers.
  if (server_ != nullptr) server_->pause_reading(out_.size() > kHighWater);
  // ... and its notifications: the database's LISTEN connection waits until it has read them.
  if (holds_notifications_ && unsent_notifications() <= kHighWater) worker_.subscriber_caught_up(this);
}

size_t ClientConn::unsent_notifications() const { return out_.size() + pending_notifications_.size(); }

bool ClientConn::notifications_backed_up() const { return unsent_notifications() > kHighWater; }

void ClientConn::on_io(uint32_t events) {
  if (state_ == State::kClosed) return;
  if (state_ == State::kTlsHandshake) {
    if (events & (EPOLLHUP | EPOLLERR)) return close("client disconnected during the TLS handshake");
    return continue_handshake();
  }
  if (events & EPOLLOUT) flush();
  if (state_ == State::kClosed) return;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    bool open = read_input();
    process_input();
    if (!open && state_ != State::kClosed) close("client disconnected");
  }
}

bool ClientConn::read_input() {
  size_t before = in_.size();
  auto result = io_.read(in_, 4 * kReadChunk);
  if (in_.size() > before) {
    last_activity_ = worker_.loop().now();
    if (pool_ != nullptr) pool_->stats.bytes_received += in_.size() - before;
  }
  if (io_.wants_write()) update_interest();
  return result == Transport::Io::kOk;
}

void ClientConn::process_input() {
  while (state_ != State::kClosed && !in_.empty()) {
    bool progressed = false;
    switch (state_) {
      case State::kStartup: progressed = process_startup(); break;
      case State::kAuth: progressed = process_auth(); break;
      case State::kIdle:
      case State::kActive: progressed = forward_one(); break;
      default: break;  // waiting for the auth cache, the pool or a server: keep the bytes
    }
    if (!progressed) break;
  }
  if (state_ == State::kClosed) return;
  if (server_ != nullptr) server_->flush_soon();
  flush_soon();
  // Do not buffer without bound while waiting for a server. (A backlogged server is tracked
  // apart, in server_backlogged_: its drain must resume the input left here.)
  bool full = (server_ == nullptr || held_for_replica_) && in_.size() >= 4 * kReadChunk;
  if (full != input_full_) {
    input_full_ = full;
    update_interest();
  }
}

bool ClientConn::process_startup() {
  auto decoded = protocol::decode_startup(in_.view());
  if (!decoded) {
    // An old protocol version is a feature we lack (as PostgreSQL says), not a broken packet.
    if (decoded.error().starts_with("unsupported frontend protocol")) fail("0A000", decoded.error());
    else fail("08P01", "invalid startup packet: " + decoded.error());
    return false;
  }
  if (std::holds_alternative<protocol::NeedMoreData>(*decoded)) return false;
  auto packet = std::get<protocol::StartupPacket>(std::move(*decoded));
  in_.consume(packet.consumed);
  switch (packet.kind) {
    case protocol::StartupKind::kSslRequest:
      if (auto context = worker_.shared().tls.load(); context && !io_.tls() && in_.empty() && !local_) {
        const uint8_t yes = 'S';
        send({&yes, 1});
        flush();
        tls_context_ = std::move(context);  // a RELOAD may replace the shared one meanwhile
        io_.start_tls(tls_context_->ctx.get(), true);
        state_ = State::kTlsHandshake;
        continue_handshake();
        return false;
      }
      [[fallthrough]];
    case protocol::StartupKind::kGssEncRequest: {
      const uint8_t no = 'N';  // GSSAPI encryption is not supported; plain or TLS follows
      send({&no, 1});
      flush();
      return true;
    }
    case protocol::StartupKind::kCancelRequest: {
      if (Worker* owner = worker_.shared().cancels.find(packet.cancel.pid, packet.cancel.secret)) {
        auto key = packet.cancel;
        owner->loop().post([owner, key] { owner->cancel(key.pid, key.secret); });
      }
      close("cancel request handled");
      return false;
    }
    case protocol::StartupKind::kStartup: break;
  }
  if (worker_.shared().tls_required && !io_.tls() && !local_) {
    fail("28000", "the pgfleet proxy requires TLS: connect with sslmode=require");
    return false;
  }
  const auto& startup = packet.startup;
  user_ = std::string(startup.user());
  database_ = std::string(startup.database());
  for (const auto& [name, value] : startup.parameters) {
    if (name != "user" && name != "database" && name != "options" && name.rfind("_pq_.", 0) != 0) {
      startup_params_[name] = value;
    }
  }
  // "-c name=value" in options: applied like a SET on every server this client uses.
  std::string_view options = startup.options();
  for (size_t at = options.find("-c"); at != std::string_view::npos; at = options.find("-c", at + 2)) {
    auto rest = options.substr(at + 2);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    auto end = rest.find(' ');
    auto pair = rest.substr(0, end);
    auto eq = pair.find('=');
    if (eq != std::string_view::npos) set_vars_[lower(pair.substr(0, eq))] = quote_literal(pair.substr(eq + 1));
  }
  if (startup.minor_version() > 0 || !startup.protocol_options().empty()) {
    send(protocol::encode(protocol::NegotiateProtocolVersion{0, startup.protocol_options()}));
  }
  if (worker_.shared().clients.load() > worker_.settings().proxy.max_client_conn) {
    fail("53300", "sorry, too many clients already");
    return false;
  }
  admin_ = database_ == "pgfleet";
  state_ = State::kAuthLookup;
  worker_.shared().auth->lookup(user_, [w = &worker_, pid = pid_](std::shared_ptr<const UserSecret> secret) {
    w->loop().post([w, pid, secret] {
      if (auto* c = w->client(pid)) c->on_auth_result(secret);
    });
  });
  return false;
}

void ClientConn::on_auth_result(std::shared_ptr<const UserSecret> secret) {
  if (state_ != State::kAuthLookup) return;
  if (!secret) {
    fail("08006", "the proxy cannot verify passwords right now: the primary is not reachable");
    return;
  }
  secret_info_ = secret;
  state_ = State::kAuth;
  if (secret->exists && !secret->scram && !secret->md5.empty()) {
    md5_ = true;
    (void)::getrandom(md5_salt_.data(), md5_salt_.size(), 0);
    send(protocol::encode(protocol::auth_md5_password(md5_salt_)));
  } else {
    const auto& mock = worker_.shared().mock_secret;
    // Over TLS, SCRAM-SHA-256-PLUS binds the login to this TLS channel (no man in the middle).
    std::optional<protocol::Bytes> binding;
    if (io_.tls() && tls_context_) binding = tls_context_->end_point_hash;
    scram_.emplace(secret->exists && secret->scram
                       ? protocol::ServerSession(*secret->scram, protocol::random_nonce, binding)
                       : protocol::ServerSession::for_unknown_user(user_, mock, protocol::random_nonce, binding));
    send(protocol::encode(protocol::auth_sasl(scram_->mechanisms())));
  }
  flush();
  process_input();
}

bool ClientConn::process_auth() {
  auto decoded = protocol::next_frame(in_.view(), protocol::kMaxSmallMessageLength);
  if (!decoded) {
    fail("08P01", "invalid authentication message: " + decoded.error());
    return false;
  }
  if (std::holds_alternative<protocol::NeedMoreData>(*decoded)) return false;
  auto frame = std::get<protocol::Frame>(*decoded);
  if (frame.type != 'p') {
    fail("08P01", fmt::format("expected a password response, got message type '{}'", frame.type));
    return false;
  }
  const std::string denied = fmt::format("password authentication failed for user \"{}\"", user_);
  if (md5_) {
    auto answer = protocol::decode_password_message(frame.body);
    auto expected = protocol::md5_response(secret_info_->md5, md5_salt_);
    in_.consume(frame.total_length);
    bool ok = answer && expected && answer->password.size() == expected->size() &&
              CRYPTO_memcmp(answer->password.data(), expected->data(), expected->size()) == 0;
    if (!ok) {
      fail("28P01", denied);
      return false;
    }
    finish_login();
    return false;
  }
  if (scram_->state() == protocol::ScramState::kInitial) {
    auto initial = protocol::decode_sasl_initial_response(frame.body);
    in_.consume(frame.total_length);
    if (!initial) {
      fail("08P01", "invalid SASL initial response: " + initial.error());
      return false;
    }
    auto server_first = scram_->handle_client_first(initial->mechanism, initial->data.value_or(""));
    if (!server_first) {
      fail(std::string(protocol::sqlstate(scram_->failure())), server_first.error());
      return false;
    }
    send(protocol::encode(protocol::auth_sasl_continue(*server_first)));
    flush();
    return true;
  }
  auto response = protocol::decode_sasl_response(frame.body);
  in_.consume(frame.total_length);
  if (!response) {
    fail("08P01", "invalid SASL response: " + response.error());
    return false;
  }
  auto server_final = scram_->handle_client_final(response->data);
  if (!server_final) {
    auto failure = scram_->failure();
    fail(std::string(protocol::sqlstate(failure)), failure == protocol::ScramFailure::kPassword ? denied
                                                                                             : server_final.error());
    return false;
  }
  send(protocol::encode(protocol::auth_sasl_final(*server_final)));
  finish_login();
  return false;
}

void ClientConn::finish_login() {
  const auto* settings = &worker_.settings();
  if (admin_) {
    const auto& admins = settings->proxy.admin_users;
    bool allowed = admins.empty() ? user_ == settings->superuser
                                  : std::find(admins.begin(), admins.end(), user_) != admins.end();
    if (!allowed) {
      fail("28000", fmt::format("user \"{}\" may not use the pgfleet admin console", user_));
      return;
    }
    send(protocol::encode(protocol::auth_ok()));
    for (auto [name, value] : std::initializer_list<std::pair<const char*, const char*>>{
             {"server_version", "15.0 (pgfleet proxy)"}, {"server_encoding", "UTF8"}, {"client_encoding", "UTF8"},
             {"DateStyle", "ISO, MDY"}, {"integer_datetimes", "on"}, {"standard_conforming_strings", "on"}}) {
      send(protocol::encode(protocol::ParameterStatus{name, value}));
    }
    send(protocol::encode(protocol::BackendKeyData{{pid_, secret_}}));
    send(protocol::encode(protocol::ReadyForQuery{protocol::TransactionStatus::kIdle}));
    state_ = State::kIdle;
    flush();
    return;
  }
  if (worker_.shared().is_disabled(database_)) {
    fail("57P03", fmt::format("database \"{}\" is disabled: the proxy takes no new clients for it (ENABLE {} in the "
                              "admin console allows them again)",
                              database_, database_));
    return;
  }
  AuthKeys keys;
  if (md5_) {
    keys.md5 = secret_info_->md5;
  } else {
    keys.verifier = *secret_info_->scram;
    keys.server_key = secret_info_->scram->server_key;
    keys.client_key = scram_->client_key();
  }
  scram_.reset();
  pool_ = &worker_.pool(database_, user_);
  pool_->set_auth(std::move(keys));
  worker_.shared().cancels.add(pid_, secret_, &worker_);
  if (pool_->has_welcome()) {
    on_login_ready();
  } else {
    state_ = State::kLogin;
    pool_->wait_for_welcome(this);
  }
}

void ClientConn::on_login_ready() {
  send(protocol::encode(protocol::auth_ok()));
  for (const auto& [name, value] : pool_->welcome()) wanted_params_[name] = value;
  for (const auto& [name, value] : startup_params_) {
    if (is_tracked(name)) wanted_params_[name] = value;
    else set_vars_[lower(name)] = quote_literal(value);
  }
  for (const auto& [name, value] : wanted_params_) send(protocol::encode(protocol::ParameterStatus{name, value}));
  send(protocol::encode(protocol::BackendKeyData{{pid_, secret_}}));
  // Routing rules are matched once, at login.
  std::string app = application_name();
  for (const auto& rule : worker_.settings().proxy.routing_rules) {
    if ((rule.database.empty() || rule.database == database_) && (rule.user.empty() || rule.user == user_) &&
        (rule.application_name.empty() || rule.application_name == app)) {
      routing_.rule = rule.route == "primary" ? sql::Route::Primary : sql::Route::Replica;
      break;
    }
  }
  if (auto it = set_vars_.find("default_transaction_read_only"); it != set_vars_.end()) {
    auto v = lower(it->second);
    routing_.default_read_only = v == "'on'" || v == "'true'" || v == "'1'" || v == "'yes'";
  }
  send(protocol::encode(protocol::ReadyForQuery{protocol::TransactionStatus::kIdle}));
  state_ = State::kIdle;
  flush();
  process_input();
}

uint64_t ClientConn::session_fingerprint() {
  if (fingerprint_generation_ == session_generation_) return fingerprint_;
  std::string state;
  for (const auto& [name, value] : wanted_params_) {
    if (is_tracked(name)) state.append(name).append("=").append(value).append("\n");
  }
  state += "\f";
  for (const auto& [name, value] : set_vars_) {
    if (value != "DEFAULT") state.append(name).append("=").append(value).append("\n");
  }
  fingerprint_ = std::hash<std::string>{}(state) | 1;  // never 0, which means "unknown"
  fingerprint_generation_ = session_generation_;
  return fingerprint_;
}

std::vector<std::pair<std::string, std::string>> ClientConn::session_sync_statements(ServerConn& server) {
  std::vector<std::pair<std::string, std::string>> out;
  // Same client, nothing changed since it last used this server: nothing to do (the common case).
  if (server.synced_client == pid_ && server.synced_generation == session_generation_) return out;
  server.synced_client = pid_;
  server.synced_generation = session_generation_;
  // Left by a client whose session looked exactly like this one's (same startup parameters,
  // same SETs — most clients of an application): nothing to do either.
  uint64_t fingerprint = session_fingerprint();
  if (server.state_fingerprint == fingerprint) return out;
  server.state_fingerprint = fingerprint;  // true once the statements below have run
  for (const auto& [name, value] : wanted_params_) {
    if (!is_tracked(name)) continue;
    auto it = server.parameters().find(name);
    if (it == server.parameters().end() || it->second != value) {
      out.emplace_back("", fmt::format("SET {} = {}", name, quote_literal(value)));
    }
  }
  for (const auto& [name, value] : set_vars_) {
    auto it = server.applied_sets.find(name);
    if (value == "DEFAULT") {
      if (it != server.applied_sets.end()) {
        out.emplace_back("", "RESET " + name);
        server.applied_sets.erase(it);
      }
    } else if (it == server.applied_sets.end() || it->second != value) {
      out.emplace_back(name, fmt::format("SET {} = {}", name, value));
      server.applied_sets[name] = value;
    }
  }
  for (auto it = server.applied_sets.begin(); it != server.applied_sets.end();) {
    auto mine = set_vars_.find(it->first);
    if (mine == set_vars_.end() || mine->second == "DEFAULT") {
      out.emplace_back("", "RESET " + it->first);
      it = server.applied_sets.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

void ClientConn::server_parameter(const std::string& name, const std::string& value) {
  if (!is_tracked(name)) return;
  auto& wanted = wanted_params_[name];
  if (wanted != value) {
    wanted = value;
    ++session_generation_;
  }
}

// SET/RESET/DISCARD/DEALLOCATE: remembered so they follow the client to other server connections,
// once their transaction has committed. Reported parameters are tracked from ParameterStatus
// instead; SET LOCAL and transaction characteristics end with the transaction and need nothing.
void ClientConn::track_set(std::string_view sql, uint64_t batch) {
  if (auto change = sql::parse_session_change(sql)) pending_changes_.push_back({batch, std::move(*change)});
  // `sql` is one statement: its verb first, so that other statements (every unnamed Parse of a
  // JDBC client) are not split again.
  if (const std::string verb = next_word(sql).first; verb == "listen" || verb == "unlisten") {
    if (auto l = parse_listen(sql)) track_listen(l->listen, l->channel, batch);
  }
}

// LISTEN/UNLISTEN inside a transaction (or a multi-statement query): the pooled server connection
// runs it, but its notifications would reach no one once the connection serves others. The worker's
// LISTEN connection subscribes the client at once (a notification committed before the client's
// COMMIT may then arrive too: an extra one, never a missed one); a rolled-back LISTEN is undone
// and an UNLISTEN applies at commit, as on PostgreSQL. The server connection gets UNLISTEN * before
// another client uses it.
void ClientConn::track_listen(bool listen, const std::string& channel, uint64_t batch) {
  server_->listens = true;
  if (listen && !worker_.subscribed(this, channel)) {
    listening_ = true;
    // The server answers this LISTEN; its ReadyForQuery waits until the LISTEN connection's
    // is in force, so that a NOTIFY sent after the client's COMMIT reaches it.
    if (!worker_.subscribe(this, *pool_, channel)) ++early_acks_pending_;
    early_listens_.insert(channel);
  }
  sql::SessionChange change{listen ? sql::SessionChange::Kind::kListen : sql::SessionChange::Kind::kUnlisten,
                            channel, ""};
  pending_changes_.push_back({batch, std::move(change)});
}

void ClientConn::undo_early_listens() {
  for (const auto& change : tx_changes_) {
    if (change.kind == sql::SessionChange::Kind::kListen && early_listens_.erase(change.name) > 0)
      worker_.unsubscribe(this, change.name);
  }
}

void ClientConn::command_completed(std::span<const uint8_t> body) {
  std::string_view tag(reinterpret_cast<const char*>(body.data()), body.size());
  rolled_back_ = tag.starts_with("ROLLBACK");
}

void ClientConn::conclude_changes() {
  uint64_t done = server_->syncs_done;
  while (!pending_changes_.empty() && pending_changes_.front().batch <= done) {
    tx_changes_.push_back(std::move(pending_changes_.front().change));
    pending_changes_.pop_front();
  }
  if (server_->tx_status == 'E') {
    undo_early_listens();
    tx_changes_.clear();  // the transaction failed: PostgreSQL undoes its SETs
  } else if (server_->tx_status == 'I') {
    if (!transaction_failed_ && !rolled_back_) {
      for (const auto& change : tx_changes_) apply_change(change);
    } else {
      undo_early_listens();
    }
    tx_changes_.clear();
    transaction_failed_ = false;
    rolled_back_ = false;
  }
}

void ClientConn::apply_change(const sql::SessionChange& change) {
  using Kind = sql::SessionChange::Kind;
  const std::string& name = change.name;
  if (change.kind == Kind::kListen) {  // subscribed when it ran; committed, it stays
    early_listens_.erase(name);
    return;
  }
  if (change.kind == Kind::kUnlisten) {
    worker_.unsubscribe(this, name);
    if (name == sql::kAllChannels) early_listens_.clear();
    return;
  }
  ++session_generation_;
  switch (change.kind) {
    case Kind::kSet:
      if (is_tracked(name)) return;
      set_vars_[name] = change.value;
      server_->applied_sets[name] = change.value;
      if (name == "default_transaction_read_only") {
        auto v = lower(change.value);
        if (v.size() >= 2 && v.front() == '\'' && v.back() == '\'') v = v.substr(1, v.size() - 2);
        routing_.default_read_only = v == "on" || v == "true" || v == "1" || v == "yes";
      }
      return;
    case Kind::kReset:
      set_vars_[name] = "DEFAULT";
      server_->applied_sets.erase(name);
      if (name == "default_transaction_read_only") routing_.default_read_only = false;
      return;
    case Kind::kResetAll:
    case Kind::kDiscardAll:
      for (auto& [n, v] : set_vars_) v = "DEFAULT";
      server_->applied_sets.clear();
      routing_.default_read_only = false;
      if (change.kind == Kind::kResetAll) return;
      [[fallthrough]];
    case Kind::kDeallocateAll:
      // Gone on this server, for every client that prepared there, and for this client.
      server_->prepared.clear();
      prepared_.clear();
      return;
    case Kind::kListen:
    case Kind::kUnlisten: return;  // handled above
  }
}

bool ClientConn::forward_large_bind(const protocol::FrameHeader& header) {
  // A large Bind of a named statement (a big bytea parameter): only the statement's name is
  // rewritten, the parameters stream through as they arrive instead of being buffered whole.
  auto body = in_.view().subspan(protocol::kHeaderSize);
  auto portal_end = std::find(body.begin(), body.end(), uint8_t{0});
  auto statement_end = portal_end == body.end() ? body.end() : std::find(portal_end + 1, body.end(), uint8_t{0});
  if (statement_end == body.end()) {
    if (body.size() < kMaxInspectedQuery) return false;  // the names are not all here yet
    fail("08P01", "invalid Bind message: no end to its portal or statement name", true);
    return false;
  }
  std::string portal(body.begin(), portal_end);
  std::string statement(portal_end + 1, statement_end);
  std::string server_name = statement;
  if (auto it = prepared_.find(statement); it != prepared_.end()) {
    ensure_prepared(it->second);
    server_name = it->second.server_name;
  }
  size_t prefix = protocol::kHeaderSize + portal.size() + 1 + statement.size() + 1;
  size_t rest = header.total_length() - prefix;
  auto length = static_cast<uint32_t>(4 + portal.size() + 1 + server_name.size() + 1 + rest);
  protocol::Bytes start{'B', static_cast<uint8_t>(length >> 24), static_cast<uint8_t>(length >> 16),
                        static_cast<uint8_t>(length >> 8), static_cast<uint8_t>(length)};
  start.insert(start.end(), portal.begin(), portal.end());
  start.push_back(0);
  start.insert(start.end(), server_name.begin(), server_name.end());
  start.push_back(0);
  server_->send(start);
  in_.consume(prefix);
  stream_remaining_ = rest;
  return true;
}

void ClientConn::make_room_for_statement(ServerConn& server) {
  constexpr size_t kMaxPreparedPerServer = 256;
  auto& names = server.prepared;
  if (names.size() < kMaxPreparedPerServer) return;
  // Bounded cache: forget the oldest. A client still using it gets it prepared again.
  server.send(protocol::encode(protocol::Close{protocol::Target::kStatement, names.front()}));
  server.expected.push_back({'3', true, names.front(), server.syncs_sent, ""});
  names.erase(names.begin());
}

void ClientConn::ensure_prepared(const Prepared& statement) {
  auto& names = server_->prepared;
  if (std::find(names.begin(), names.end(), statement.server_name) != names.end()) return;
  make_room_for_statement(*server_);
  protocol::Parse parse = statement.parse;
  parse.statement = statement.server_name;
  server_->send(protocol::encode(parse));
  server_->expected.push_back({'1', true, statement.server_name, server_->syncs_sent, ""});
  names.push_back(statement.server_name);
}

void ClientConn::forward_inspected(char type, std::span<const uint8_t> body, std::span<const uint8_t> whole) {
  // Only reached in transaction and statement modes, for SET tracking and named statements.
  ServerConn& server = *server_;
  switch (type) {
    case 'Q':
      if (auto q = protocol::query_text(body); q && mentions_session_verb(*q)) {
        for (auto statement : split_statements(*q)) track_set(statement, server.syncs_sent);
      }
      break;
    case 'P': {
      auto parse = protocol::decode_parse(body);
      if (!parse || parse->statement.empty()) {
        // An unnamed SET/RESET (JDBC): tracked like a simple query's, so it follows the client.
        if (parse) {
          for (auto statement : split_statements(parse->query)) track_set(statement, server.syncs_sent + 1);
        }
        server.expected.push_back({'1', false, "", server.syncs_sent, ""});
        break;
      }
      if (mentions_session_verb(parse->query)) {
        for (auto statement : split_statements(parse->query)) track_set(statement, server.syncs_sent + 1);
      }
      if (prepared_.contains(parse->statement)) {
        protocol::Parse failing{"pgfleet_duplicate", std::string(kDuplicateMarker), {}};
        server.send(protocol::encode(failing));
        server.expected.push_back({'1', false, "", server.syncs_sent, parse->statement});
        return;
      }
      Prepared prepared{statement_hash_name(*parse), *parse,
                        kind_ == ListenerKind::kRwSplit ? route_sql(parse->query) : StatementRoute{}};
      auto& names = server.prepared;
      if (std::find(names.begin(), names.end(), prepared.server_name) != names.end()) {
        // Already there: the client still expects its own ParseComplete, so parse it afresh.
        server.send(protocol::encode(protocol::Close{protocol::Target::kStatement, prepared.server_name}));
        server.expected.push_back({'3', true, prepared.server_name, server.syncs_sent, ""});
        std::erase(names, prepared.server_name);
      }
      make_room_for_statement(server);
      protocol::Parse renamed = *parse;
      renamed.statement = prepared.server_name;
      server.send(protocol::encode(renamed));
      server.expected.push_back({'1', false, prepared.server_name, server.syncs_sent, parse->statement});
      names.push_back(prepared.server_name);
      prepared_[parse->statement] = std::move(prepared);
      return;
    }
    case 'B': {
      auto bind = protocol::decode_bind(body);
      if (!bind || bind->statement.empty()) break;
      auto it = prepared_.find(bind->statement);
      if (it == prepared_.end()) break;  // the server reports the unknown statement
      ensure_prepared(it->second);
      bind->statement = it->second.server_name;
      server.send(protocol::encode(*bind));
      return;
    }
    case 'D': {
      auto describe = protocol::decode_describe(body);
      if (!describe || describe->target != protocol::Target::kStatement || describe->name.empty()) break;
      auto it = prepared_.find(describe->name);
      if (it == prepared_.end()) break;
      ensure_prepared(it->second);
      describe->name = it->second.server_name;
      server.send(protocol::encode(*describe));
      return;
    }
    case 'C': {
      auto close_msg = protocol::decode_close(body);
      server.expected.push_back({'3', false, "", server.syncs_sent, ""});
      if (!close_msg || close_msg->target != protocol::Target::kStatement || close_msg->name.empty()) break;
      // The server-side statement may serve other clients: keep it, answer with a harmless Close.
      prepared_.erase(close_msg->name);
      server.send(protocol::encode(protocol::Close{protocol::Target::kPortal, "pgfleet.noop"}));
      return;
    }
    default:
      break;
  }
  server.send(whole);
}

bool ClientConn::forward_one() {
  if (stream_remaining_ > 0) {
    size_t n = std::min(stream_remaining_, in_.size());
    server_->send(in_.view().first(n));
    in_.consume(n);
    stream_remaining_ -= n;
    return true;
  }
  auto header = protocol::peek_header(in_.view());
  if (!header) return false;
  if (auto ok = protocol::check_header(*header, protocol::kMaxFrontendMessageLength); !ok) {
    fail("08P01", "invalid message: " + ok.error());
    return false;
  }
  char type = header->type;
  if (!protocol::is_known_frontend(type)) {
    fail("08P01", fmt::format("invalid frontend message type {}", static_cast<int>(type)));
    return false;
  }
  if (type == 'X') {
    close("client sent Terminate");
    return false;
  }
  if (admin_) {
    if (in_.size() < header->total_length()) return false;
    auto whole = in_.view().first(header->total_length());
    std::string sql;
    if (type == 'Q') {
      if (auto q = protocol::decode_query(whole.subspan(protocol::kHeaderSize)); q) sql = q->sql;
    }
    in_.consume(header->total_length());
    if (type == 'Q') {
      handle_admin_query(sql);
    } else if (type == 'S') {
      send(protocol::encode(protocol::ReadyForQuery{protocol::TransactionStatus::kIdle}));
    } else {
      send(protocol::encode(protocol::error_response(
          "ERROR", "0A000", "the pgfleet admin console accepts simple queries only (SHOW, PAUSE, RESUME, ...)")));
    }
    return true;
  }
  if (server_ == nullptr && type == 'Q' && pool_->mode() != cluster::PoolMode::Session &&
      header->total_length() <= kMaxInspectedQuery) {
    if (in_.size() < header->total_length()) return false;
    auto q = protocol::query_text(in_.view().subspan(protocol::kHeaderSize, header->body_length()));
    if (q && handle_listen(*q)) {
      in_.consume(header->total_length());
      return true;
    }
  }
  if (server_ == nullptr && type == 'P' && pool_->mode() != cluster::PoolMode::Session) {
    switch (handle_extended_listen()) {
      case Served::kYes: return true;
      case Served::kNeedMore: return false;
      case Served::kNo: break;
    }
  }
  if (server_ == nullptr && worker_.shutting_down() && !(worker_.handing_over() && !ran_transaction_)) {
    // Between transactions during a graceful shutdown: no new transaction may start. (After a
    // handover a client that has run nothing yet may run its first: it reached us, not the new
    // process, only because it connected just before the sockets changed hands.)
    fail("57P01", "terminating connection because the pgfleet proxy is shutting down");
    return false;
  }
  if (server_ == nullptr) {
    switch (choose_pool()) {
      case Routed::kYes: break;
      case Routed::kNeedMore:
      case Routed::kFailed: return false;
    }
    if (!cur_pool_->acquire(this)) {
      state_ = State::kWaiting;
      waiting_since_ = worker_.loop().now();
      return false;
    }
  } else if (kind_ == ListenerKind::kRwSplit && !batch_routed_ && !server_->unsynced && stream_remaining_ == 0 &&
             type != 'S' && pool_->mode() != cluster::PoolMode::Session) {
    retry_armed_ = false;  // more than the one batch is on the server now
    // A pipelined batch for a server still busy with the previous one: fine on the primary; on a
    // replica only if it reads (else wait until the replica is done and route afresh).
    auto route = route_batch();
    if (!route) return false;
    if (cur_pool_->is_replica()) {
      if (!sticky_ && server_->tx_status == 'I' && route->primary) {
        held_for_replica_ = true;  // routed afresh once the replica has answered
        return false;
      }
      if (route->reason == RouteReason::kReadOnlyTransaction) sticky_ = true;
    } else if (route->primary && route->may_write) {
      wrote_ = true;
    }
    batch_routed_ = true;
  }
  if (type == 'S' || type == 'Q' || type == 'H' || type == 'F') batch_routed_ = false;
  if (query_started_ == Clock::time_point{}) query_started_ = worker_.loop().now();
  ServerConn& server = *server_;
  switch (type) {
    case 'Q':
      ++pool_->stats.queries;
      [[fallthrough]];
    case 'F':
      note_commit_risk(server, type, header->total_length());
      ++server.outstanding;
      ++server.syncs_sent;
      break;
    case 'S':
      note_commit_risk(server, type, header->total_length());
      ++server.outstanding;
      ++server.syncs_sent;
      server.unsynced = false;
      break;
    case 'E':
      ++pool_->stats.queries;
      server.unsynced = true;
      break;
    case 'P':
    case 'B':
    case 'D':
    case 'C':
    case 'H':
      server.unsynced = true;
      break;
    default:
      break;
  }
  // Session mode needs no bookkeeping; otherwise only SET statements and named prepared
  // statements are looked at, everything else passes through by length.
  bool rewrite = pool_->mode() != cluster::PoolMode::Session;
  bool inspect = rewrite && type == 'Q' && header->total_length() <= kMaxInspectedQuery;
  if (rewrite && (type == 'P' || type == 'B' || type == 'D' || type == 'C')) {
    auto named = names_a_statement(type, in_.view().subspan(protocol::kHeaderSize), header->body_length());
    if (!named) return false;  // not enough of it yet
    inspect = *named;
    if (!inspect && type == 'P') server.expected.push_back({'1', false, "", server.syncs_sent, ""});
    if (!inspect && type == 'C') server.expected.push_back({'3', false, "", server.syncs_sent, ""});
  }
  if (inspect && type == 'B' && header->total_length() > kMaxInspectedQuery) return forward_large_bind(*header);
  if (inspect) {
    if (in_.size() < header->total_length()) {
      // Undo the counting: the message is handled again once complete.
      if (type == 'Q') {
        --pool_->stats.queries;
        --server.outstanding;
        --server.syncs_sent;
      }
      return false;
    }
    auto whole = in_.view().first(header->total_length());
    forward_inspected(type, whole.subspan(protocol::kHeaderSize), whole);
    in_.consume(header->total_length());
  } else {
    size_t n = std::min(header->total_length(), in_.size());
    server.send(in_.view().first(n));
    in_.consume(n);
    stream_remaining_ = header->total_length() - n;
  }
  if (server.output_size() > kHighWater) {
    server.flush();
    if (server.output_size() > kHighWater) return false;  // resumes when the server drains
  }
  return true;
}

void ClientConn::note_commit_risk(const ServerConn& server, char type, size_t total_length) {
  if (server.outstanding <= 0) may_commit_ = false;  // nothing else in flight
  if (may_commit_) return;
  // Outside a transaction block every statement commits. Inside one, only a query that ends it
  // can; an extended-protocol batch or a function call is not looked into and counts as one.
  if (server.tx_status == 'I' || type != 'Q' || in_.size() < total_length) {
    may_commit_ = true;
    return;
  }
  auto q = protocol::query_text(in_.view().subspan(protocol::kHeaderSize, total_length - protocol::kHeaderSize));
  may_commit_ = !q || sql::may_commit_transaction(*q);
}

void ClientConn::ready_for_query_seen(Clock::time_point now) {
  if (server_ == nullptr) return;
  if (!pending_changes_.empty() || !tx_changes_.empty() || transaction_failed_ || rolled_back_) conclude_changes();
  if (server_->tx_status == 'I' && server_->outstanding <= 0) {
    ++pool_->stats.transactions;
    if (query_started_ != Clock::time_point{}) {
      pool_->stats.add_query_time(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(now - query_started_).count()));
    }
    query_started_ = {};
  }
  detach_server_if_done();
}

void ClientConn::detach_server_if_done() {
  if (server_ == nullptr || pool_->mode() == cluster::PoolMode::Session || stream_remaining_ > 0) return;
  if (pool_->mode() == cluster::PoolMode::Statement && server_->tx_status != 'I') {
    flush();
    fail("25001", "transaction blocks are not allowed in statement pooling mode");
    return;
  }
  if (!server_->reusable()) return;
  ServerConn* server = server_;
  server_ = nullptr;
  server_backlogged_ = false;
  held_for_replica_ = false;
  state_ = State::kIdle;
  server->state_fingerprint = session_fingerprint();  // the server carries this session's state
  if (wrote_ && kind_ == ListenerKind::kRwSplit && !server->pool().is_replica()) note_write_committed(*server);
  deliver_pending_notifications();
  flush_soon();
  server->detach();
  server->pool().release(server);
  if (server->swallow_ready > 0) server->flush();  // detach() queued a reset (UNLISTEN *): the pool takes it back after
  if (!in_.empty()) {
    // More pipelined work: continue after the server's current batch of replies is handled.
    worker_.loop().defer([w = &worker_, pid = pid_] {
      if (auto* c = w->client(pid)) c->continue_input();
    });
  }
}

void ClientConn::on_server_assigned(ServerConn* server) {
  bool resume = state_ == State::kWaiting;
  server_ = server;
  state_ = State::kActive;
  ran_transaction_ = true;
  server->attach(this);
  if (waiting_since_ != Clock::time_point{}) {
    pool_->stats.add_wait_time(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(worker_.loop().now() - waiting_since_).count()));
    waiting_since_ = {};
  }
  if (resume) {
    worker_.loop().defer([w = &worker_, pid = pid_] {
      if (auto* c = w->client(pid)) c->continue_input();
    });
  }
}

void ClientConn::on_server_released() {
  server_ = nullptr;
  pause_reading(false);
  state_ = State::kIdle;
}

void ClientConn::on_server_lost(const std::string& message) {
  // SETs of a transaction the server did not finish died with it (a retried read re-tracks its own).
  pending_changes_.clear();
  tx_changes_.clear();
  transaction_failed_ = false;
  rolled_back_ = false;
  if (retry_armed_ && server_ != nullptr && server_->pool().is_replica() && !retry_.empty()) {
    // The replica died before answering an autocommit read: mark it down, send the read again
    // (to another replica or the primary), ahead of whatever the client sent after it.
    if (HealthPoller* health = worker_.shared().health; health != nullptr) health->mark_down(server_->backend().index);
    log::info("client {}: replica {} lost before answering ({}); the read is retried", pid_,
              server_->backend().name, message);
    retry_armed_ = false;
    skip_ = std::move(retry_prefix_);
    retry_prefix_.clear();
    skip_at_ = 0;
    server_ = nullptr;
    server_backlogged_ = false;
    stream_remaining_ = 0;
    held_for_replica_ = false;
    batch_routed_ = false;
    state_ = State::kIdle;
    std::vector<uint8_t> rest(in_.view().begin(), in_.view().end());
    in_.clear();
    in_.append(retry_);
    in_.append(rest);
    worker_.loop().defer([w = &worker_, pid = pid_] {
      if (auto* c = w->client(pid)) c->continue_input();
    });
    return;
  }
  HealthPoller* health = worker_.shared().health;
  if (server_ != nullptr && !server_->pool().is_replica() && health != nullptr && server_->backend().index >= 0 &&
      static_cast<size_t>(server_->backend().index) < kMaxNodes) {
    // The primary's connection died: a crash, a shutdown for a switchover, or just this backend.
    // The topology or the health poller (every 10 ms) tells which within a moment; the client
    // hears it then, with the failover named, rather than a bare "connection lost".
    const NodeHealth& h = health->node(server_->backend().index);
    LostPrimary l;
    l.node = server_->backend().name;
    l.index = server_->backend().index;
    l.reason = message;
    l.server_error = std::move(server_->held_fatal);
    l.in_transaction = server_->tx_status != 'I';
    l.in_flight = server_->outstanding > 0 && may_commit_;  // else the transaction surely rolled back
    l.planned = worker_.shared().is_paused(database_);
    l.polls_started = h.samples_started.load(std::memory_order_acquire);
    l.polls_failed = h.polls_failed.load(std::memory_order_acquire);
    l.since = worker_.loop().now();
    lost_ = std::move(l);
    health->want_fresh();  // the polls below tell what became of the node
    server_ = nullptr;
    server_backlogged_ = false;
    stream_remaining_ = 0;
    state_ = State::kLost;  // the client's further input waits in its buffer
    resolve_lost_primary();
    return;
  }
  std::vector<uint8_t> held = server_ != nullptr ? std::move(server_->held_fatal) : std::vector<uint8_t>();
  server_ = nullptr;
  server_backlogged_ = false;
  stream_remaining_ = 0;
  if (!held.empty()) {
    send(held);  // the server said why it ended the connection: pass that on
    flush();
    return close("server ended the connection: " + message);
  }
  fail("08006", "server connection lost: " + message);
}

void ClientConn::resolve_lost_primary() {
  using namespace std::chrono_literals;
  if (state_ != State::kLost || !lost_) return;
  const LostPrimary& l = *lost_;
  const Topology& t = worker_.topology();
  const NodeHealth& h = worker_.shared().health->node(l.index);
  LostPrimaryView view;
  view.node = l.node;
  view.primary = t.primary ? std::string_view(t.primary->name) : std::string_view();
  view.polls_failed = h.polls_failed.load(std::memory_order_acquire) > l.polls_failed;
  // Two good polls that began after the loss (a single one may race the node's own death).
  view.polled_after = h.samples_done.load(std::memory_order_acquire) > l.polls_started + 1;
  view.in_recovery = h.in_recovery.load(std::memory_order_relaxed);
  view.waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(worker_.loop().now() - l.since).count();
  // The proxy is paused during a planned switchover (pgfleet switchover sends PAUSE).
  bool planned = l.planned || worker_.shared().is_paused(database_);
  std::string cause;
  switch (lost_primary_cause(view)) {
    case LostPrimaryCause::kWait:
      worker_.shared().health->want_fresh();
      worker_.loop().after(20ms, [w = &worker_, pid = pid_] {
        if (auto* c = w->client(pid)) c->resolve_lost_primary();
      });
      return;
    case LostPrimaryCause::kMovedTo:
      cause = fmt::format("the primary {} {} to {}", l.node, planned ? "was switched over" : "failed over", view.primary);
      break;
    case LostPrimaryCause::kGone:
      cause = fmt::format("the primary {} went away ({})", l.node,
                          planned                ? "switchover in progress"
                          : view.primary.empty() ? "failover in progress"
                                                 : "failover or restart in progress");
      break;
    case LostPrimaryCause::kDemoted:
      cause = fmt::format("the primary {} became a replica (switchover or failover in progress)", l.node);
      break;
    case LostPrimaryCause::kConnectionOnly: break;  // only this connection ended
  }
  LostPrimary lost = std::move(*lost_);
  lost_.reset();
  if (cause.empty()) {
    log::info("client {}: its connection to the primary {} ended ({}); the node is still the primary ({} ms)", pid_,
              lost.node, lost.reason, view.waited_ms);
    if (!lost.server_error.empty()) {
      send(lost.server_error);  // the server said why it ended the connection: pass that on
      flush();
      return close("server ended the connection: " + lost.reason);
    }
    return fail("08006", "server connection lost: " + lost.reason);
  }
  std::string during = lost.in_transaction ? " while this transaction ran on it"
                       : lost.in_flight      ? " while this statement ran on it"
                                             : "";
  // A COMMIT in flight may have committed before the crash; an idle open transaction did not.
  std::string outcome = lost.in_flight        ? "; the statement in progress may or may not have taken effect"
                        : lost.in_transaction ? "; the transaction was rolled back"
                                              : "";
  log::info("client {}: {}{} ({})", pid_, cause, during, lost.reason);
  fail("08006", fmt::format("server connection lost: {}: {}{}{}; reconnect and retry", planned ? "switchover" : "failover",
                            cause, during, outcome));
}

void ClientConn::reroute_to_primary() {
  if (state_ != State::kWaiting) return;
  cur_pool_ = pool_;
  sticky_ = false;
  retry_armed_ = false;  // retries are for replicas
  count_route(RouteReason::kNoReplica, -1);
  if (pool_->acquire(this)) return;  // on_server_assigned resumes the input
}

void ClientConn::count_route(RouteReason reason, int node) {
  ++worker_.route_counts[static_cast<size_t>(reason)];
  if (node >= 0 && static_cast<size_t>(node) < kMaxNodes) ++worker_.node_statements[static_cast<size_t>(node)];
}

StatementRoute ClientConn::route_sql(std::string_view sql) {
  return route_statement(sql::classify(sql, worker_.classifier_options()), routing_, sql);
}

std::optional<StatementRoute> ClientConn::route_batch(size_t* batch_bytes) {
  // Everything up to the batch's Sync must be seen before choosing (PostgreSQL runs the batch as
  // one implicit transaction); a batch too large to look at, a Flush (the client waits before
  // its Sync) or anything unusual goes to the primary.
  constexpr size_t kMaxLookahead = 256 * 1024;
  constexpr StatementRoute kPrimary{true, RouteReason::kWrite};
  auto data = in_.view();
  size_t at = 0;
  std::optional<StatementRoute> result;
  bool executes = false;  // a batch that only parses changes no data
  auto add = [&](StatementRoute r) { result = result ? combine(*result, r) : r; };
  while (true) {
    if (at >= data.size()) return at >= kMaxLookahead ? std::optional(kPrimary) : std::nullopt;
    auto header = protocol::peek_header(data.subspan(at));
    if (!header) return std::nullopt;
    if (!protocol::check_header(*header, protocol::kMaxFrontendMessageLength)) return kPrimary;
    size_t total = header->total_length();
    bool whole = data.size() - at >= total;
    if (!whole && (total > kMaxLookahead || at + total > kMaxLookahead)) return kPrimary;
    auto body = data.subspan(at + protocol::kHeaderSize, std::min(header->body_length(), data.size() - at - protocol::kHeaderSize));
    auto text = [](std::span<const uint8_t> b) {
      std::string_view v(reinterpret_cast<const char*>(b.data()), b.size());
      return v.substr(0, v.find('\0'));
    };
    switch (header->type) {
      case 'Q':
        if (at > 0) return result.value_or(kPrimary);
        if (total > kMaxInspectedQuery) return kPrimary;
        if (!whole) return std::nullopt;
        if (batch_bytes != nullptr) *batch_bytes = total;
        return route_sql(text(body));
      case 'P': {
        if (total > kMaxInspectedQuery) return kPrimary;
        if (!whole) return std::nullopt;
        auto name = text(body);
        if (name.size() >= body.size()) return kPrimary;
        add(route_sql(text(body.subspan(name.size() + 1))));
        break;
      }
      case 'B': {
        if (!whole) return std::nullopt;
        auto portal = text(body);
        if (portal.size() >= body.size()) return kPrimary;
        auto statement = text(body.subspan(portal.size() + 1));
        if (!statement.empty()) {
          auto it = prepared_.find(statement);
          if (it == prepared_.end()) add(kPrimary);  // the server reports it; the primary will do
          else if (routing_.pinned_to_primary) add({true, RouteReason::kSession});
          else add(it->second.route);
        }
        break;
      }
      case 'E':
        executes = true;
        [[fallthrough]];
      case 'D':
      case 'C':
        if (!whole) return std::nullopt;
        break;
      case 'S': {
        StatementRoute r = result.value_or(StatementRoute{false, RouteReason::kRead});
        if (!executes) r.may_write = false;
        if (batch_bytes != nullptr && whole) *batch_bytes = at + total;
        return r;
      }
      case 'F':
        return StatementRoute{true, RouteReason::kFunction};
      default:  // Flush, COPY data, anything else
        return kPrimary;
    }
    at += total;
  }
}

std::optional<uint64_t> ClientConn::causal_requirement() {
  if (!causal_pending_ && causal_lsn_ == 0) return 0;
  if (!worker_.causal_reads()) return 0;
  HealthPoller* health = worker_.shared().health;
  const Topology& t = worker_.topology();
  if (health == nullptr || !t.primary || t.primary->index < 0) return std::nullopt;
  if (t.version != causal_topology_ || t.primary->index != causal_primary_) {
    // The primary changed: what it has now covers whatever of our writes survived.
    causal_primary_ = t.primary->index;
    causal_topology_ = t.version;
    causal_after_ = health->node(causal_primary_).samples_started.load(std::memory_order_acquire);
    causal_pending_ = true;
    causal_lsn_ = 0;
  }
  if (causal_pending_) {
    const NodeHealth& p = health->node(causal_primary_);
    if (p.samples_done.load(std::memory_order_acquire) <= causal_after_) return std::nullopt;
    causal_lsn_ = std::max<uint64_t>(1, p.lsn.load(std::memory_order_acquire));
    causal_pending_ = false;
  }
  return causal_lsn_;
}

void ClientConn::note_write_committed(const ServerConn& server) {
  HealthPoller* health = worker_.shared().health;
  int index = server.backend().index;
  if (health == nullptr || index < 0 || !worker_.causal_reads()) return;
  // The commit was acknowledged before now: a poll of the primary that starts after this moment
  // reads an insert position at or past the commit's end.
  causal_primary_ = index;
  causal_topology_ = worker_.topology().version;
  causal_after_ = health->node(index).samples_started.load(std::memory_order_acquire);
  causal_pending_ = true;
  causal_lsn_ = 0;
  health->want_fresh();  // that poll, and the replicas' catching up, should come soon
}

ClientConn::Routed ClientConn::choose_pool() {
  cur_pool_ = pool_;
  sticky_ = false;
  wrote_ = false;
  const Topology& topology = worker_.topology();
  int primary = topology.primary ? topology.primary->index : -1;
  bool session_mode = pool_->mode() == cluster::PoolMode::Session;
  if (kind_ == ListenerKind::kPrimary || (kind_ == ListenerKind::kRwSplit && session_mode)) {
    // Session pooling keeps one server for the whole session: on the rw-split port, the primary.
    wrote_ = true;
    count_route(kind_ == ListenerKind::kPrimary ? RouteReason::kPrimaryPort : RouteReason::kSession, primary);
    return Routed::kYes;
  }
  StatementRoute route{false, RouteReason::kReplicasPort};
  size_t batch_bytes = 0;
  retry_armed_ = false;
  if (kind_ == ListenerKind::kRwSplit) {
    auto r = route_batch(&batch_bytes);
    if (!r) return Routed::kNeedMore;
    route = *r;
    batch_routed_ = true;
  }
  if (route.primary) {
    wrote_ = route.may_write;
    count_route(route.reason, primary);
    return Routed::kYes;
  }
  sticky_ = route.reason == RouteReason::kReadOnlyTransaction;
  Choice choice{-1, RouteReason::kNoReplica};
  std::optional<uint64_t> causal = kind_ == ListenerKind::kRwSplit ? causal_requirement() : std::optional<uint64_t>(0);
  HealthPoller* health = worker_.shared().health;
  if (!causal) {
    choice.reason = RouteReason::kCausal;
  } else if (!topology.replicas.empty() && health != nullptr) {
    const auto& p = worker_.settings().proxy;
    // Most clusters have a handful of replicas: no per-read allocation below that.
    constexpr size_t kInline = 8;
    std::array<Candidate, kInline> inline_candidates;
    std::vector<Candidate> many;
    if (topology.replicas.size() > kInline) many.resize(topology.replicas.size());
    Candidate* candidates = many.empty() ? inline_candidates.data() : many.data();
    size_t n = 0;
    int64_t now = steady_ms();
    for (const auto& r : topology.replicas) {
      if (r.index < 0 || static_cast<size_t>(r.index) >= kMaxNodes) continue;
      const NodeHealth& h = health->node(r.index);
      Candidate& c = candidates[n++];
      c.node = r.index;
      c.weight = 1;
      if (!p.weights.empty()) {
        if (auto it = p.weights.find(r.name); it != p.weights.end()) c.weight = it->second;
      }
      c.healthy = h.usable_replica(now) && !worker_.shared().topology->member_excluded(r.index);
      c.lag_bytes = h.lag_bytes.load(std::memory_order_relaxed);
      c.lag_ms = h.lag_ms.load(std::memory_order_relaxed);
      c.replay_lsn = h.lsn.load(std::memory_order_acquire);
      c.outstanding = worker_.node_active[static_cast<size_t>(r.index)];
    }
    Candidate primary_candidate;
    primary_candidate.node = primary;
    primary_candidate.healthy = true;
    if (primary >= 0) primary_candidate.outstanding = worker_.node_active[static_cast<size_t>(primary)];
    BalanceLimits limits{p.max_replica_lag_bytes, int64_t{p.max_replica_lag_seconds} * 1000,
                         kind_ == ListenerKind::kRwSplit ? p.primary_read_weight : 0};
    choice = choose_replica(std::span(candidates, n), primary_candidate, limits, *causal, worker_.balancer);
  }
  if (choice.node >= 0) {
    for (const auto& r : topology.replicas) {
      if (r.index == choice.node) {
        cur_pool_ = &worker_.node_pool(*pool_, r);
        break;
      }
    }
    // An autocommit read can be sent again if its replica dies before answering.
    if (!sticky_ && batch_bytes > 0 && batch_bytes <= kMaxInspectedQuery && batch_bytes <= in_.size()) {
      auto batch = in_.view().first(batch_bytes);
      retry_.assign(batch.begin(), batch.end());
      retry_prefix_.clear();
      retry_armed_ = true;
    }
    count_route(route.reason, choice.node);
    return Routed::kYes;
  }
  if (choice.reason == RouteReason::kRead) {  // the primary's share of reads (primary_read_weight)
    count_route(route.reason, primary);
    return Routed::kYes;
  }
  if (kind_ == ListenerKind::kReplicas && !worker_.settings().proxy.replicas_fallback_to_primary) {
    fail("57P03", fmt::format("no replica can take reads now ({}); the replicas port uses the primary only with "
                              "proxy.replicas_fallback_to_primary: true",
                              choice.reason == RouteReason::kLag ? "every replica is beyond max_replica_lag"
                                                                 : "no replica is healthy"));
    return Routed::kFailed;
  }
  count_route(choice.reason, primary);
  if (choice.reason != RouteReason::kCausal && !topology.replicas.empty()) worker_.note_fallback(choice.reason);
  if (choice.reason == RouteReason::kCausal && health != nullptr) health->want_fresh();  // until a replica caught up
  return Routed::kYes;
}

void ClientConn::fail(const std::string& sqlstate, const std::string& message, bool fatal) {
  if (state_ == State::kClosed) return;
  ++worker_.error_counts[static_cast<size_t>(classify_error(sqlstate, message))];
  send(protocol::encode(protocol::error_response(fatal ? "FATAL" : "ERROR", sqlstate, message)));
  flush();
  if (fatal) close(message);
}

void ClientConn::close(const std::string& reason) {
  if (state_ == State::kClosed) return;
  log::debug("client {} ({}@{}, {}) closed: {}", pid_, user_, database_, address_, reason);
  state_ = State::kClosed;
  if (io_.fd() >= 0) {
    worker_.loop().remove(io_.fd());
    io_.close();
  }
  if (server_ != nullptr) {
    ServerConn* server = server_;
    server_ = nullptr;
    if (server->reusable() && stream_remaining_ == 0) {
      if (pool_->mode() == cluster::PoolMode::Session) {
        server->inject("DISCARD ALL");  // server_reset_query
        server->applied_sets.clear();
        server->prepared.clear();
        server->state_fingerprint = 0;
      } else {
        server->state_fingerprint = session_fingerprint();
      }
      server->detach();
      server->pool().release(server);
      server->flush();
    } else {
      server->close("client left in the middle of a transaction");
    }
  }
  if (pool_ != nullptr) pool_->forget_client(this);
  if (cur_pool_ != nullptr && cur_pool_ != pool_) cur_pool_->forget_client(this);
  if (listening_) worker_.unsubscribe(this, sql::kAllChannels);
  worker_.shared().cancels.remove(pid_);
  worker_.retire_client(this);
}

// LISTEN/UNLISTEN outside a transaction, in transaction and statement modes: served by the
// worker's LISTEN connection, so notifications reach the client whichever server it uses.
namespace {
void append_bare_message(protocol::Bytes& out, char type) {  // ParseComplete, BindComplete, NoData
  out.insert(out.end(), {static_cast<uint8_t>(type), 0, 0, 0, 4});
}
}  // namespace

bool ClientConn::handle_listen(std::string_view sql) {
  auto request = parse_listen(sql);
  if (!request) return false;
  protocol::Bytes reply = protocol::encode(protocol::CommandComplete{request->listen ? "LISTEN" : "UNLISTEN"});
  auto ready = protocol::encode(protocol::ReadyForQuery{protocol::TransactionStatus::kIdle});
  reply.insert(reply.end(), ready.begin(), ready.end());
  start_listen(request->listen, request->channel, std::move(reply));
  return true;
}

ClientConn::Served ClientConn::handle_extended_listen() {
  auto view = in_.view();
  // Cheap first: the unnamed statement (empty name), its text starting like LISTEN/UNLISTEN.
  if (view.size() < protocol::kHeaderSize + 2) return Served::kNeedMore;
  if (view[protocol::kHeaderSize] != 0) return Served::kNo;
  char first = static_cast<char>(view[protocol::kHeaderSize + 1]);
  if ((first | 0x20) != 'l' && (first | 0x20) != 'u' && first != ' ' && first != '\n' && first != '/' &&
      first != '-') {
    return Served::kNo;
  }
  std::optional<sql::ListenRequest> request;
  protocol::Bytes reply;
  bool executed = false;
  size_t at = 0;
  while (true) {
    auto header = protocol::peek_header(view.subspan(at));
    if (!header) return at + protocol::kHeaderSize > kMaxInspectedQuery ? Served::kNo : Served::kNeedMore;
    if (!protocol::check_header(*header, protocol::kMaxFrontendMessageLength)) return Served::kNo;
    if (at + header->total_length() > kMaxInspectedQuery) return Served::kNo;
    if (view.size() < at + header->total_length()) return Served::kNeedMore;
    auto body = view.subspan(at + protocol::kHeaderSize, header->body_length());
    switch (header->type) {
      case 'P': {
        if (at != 0) return Served::kNo;
        auto parse = protocol::decode_parse(body);
        if (!parse || !parse->statement.empty()) return Served::kNo;
        request = parse_listen(parse->query);
        if (!request) return Served::kNo;
        append_bare_message(reply, '1');
        break;
      }
      case 'B': {
        auto bind = protocol::decode_bind(body);
        if (!bind || !bind->statement.empty() || !bind->portal.empty()) return Served::kNo;
        append_bare_message(reply, '2');
        break;
      }
      case 'D': {
        auto describe = protocol::decode_describe(body);
        if (!describe || !describe->name.empty()) return Served::kNo;
        if (describe->target == protocol::Target::kStatement) {
          reply.insert(reply.end(), {'t', 0, 0, 0, 6, 0, 0});  // ParameterDescription: no parameters
        }
        append_bare_message(reply, 'n');
        break;
      }
      case 'E': {
        executed = true;
        auto done = protocol::encode(protocol::CommandComplete{request->listen ? "LISTEN" : "UNLISTEN"});
        reply.insert(reply.end(), done.begin(), done.end());
        break;
      }
      case 'H':
        return Served::kNo;  // the client waits for replies before its Sync: let the server give them
      case 'S': {
        // Parsed but not executed (PQprepare): the server keeps the statement for a later Bind.
        if (!executed) return Served::kNo;
        auto ready = protocol::encode(protocol::ReadyForQuery{protocol::TransactionStatus::kIdle});
        reply.insert(reply.end(), ready.begin(), ready.end());
        in_.consume(at + header->total_length());
        start_listen(request->listen, request->channel, std::move(reply));
        return Served::kYes;
      }
      default:
        return Served::kNo;
    }
    at += header->total_length();
  }
}

void ClientConn::start_listen(bool listen, const std::string& channel, protocol::Bytes reply) {
  if (listen) {
    listening_ = true;
    // Answered only once the LISTEN is in force on the server, so that a NOTIFY the client
    // sends right after cannot slip past it.
    if (!worker_.subscribe(this, *pool_, channel)) {
      listen_reply_ = std::move(reply);
      state_ = State::kListenAck;
      return;
    }
  } else {
    worker_.unsubscribe(this, channel);
  }
  send(reply);
}

void ClientConn::listen_acknowledged() {
  if (early_acks_pending_ > 0) {  // a LISTEN a server ran (acknowledged in order, before any later one)
    if (--early_acks_pending_ == 0 && holding_) {
      holding_ = false;
      out_.append(held_out_);
      held_out_.clear();
      flush();
    }
    return;
  }
  if (state_ != State::kListenAck) return;
  state_ = State::kIdle;
  send(listen_reply_);
  listen_reply_.clear();
  flush();
  process_input();
}

void ClientConn::notify(std::span<const uint8_t> notification) {
  if (state_ == State::kClosed) return;
  // Never in the middle of a message another server is streaming to this client.
  if (server_ != nullptr) {
    pending_notifications_.insert(pending_notifications_.end(), notification.begin(), notification.end());
    return;
  }
  send(notification);
  flush();
}

void ClientConn::deliver_pending_notifications() {
  if (pending_notifications_.empty()) return;
  send(pending_notifications_);
  pending_notifications_.clear();
}

void ClientConn::handle_admin_query(std::string_view sql) {
  auto reply = run_admin_command(worker_, sql);
  auto [verb, rest] = next_word(sql);
  bool paused_ok = verb == "pause" && !reply.empty() && reply.front() == 'C';
  if (paused_ok) {
    // As in PgBouncer, PAUSE returns once the running transactions have finished (bounded by
    // shutdown_timeout), so that whoever paused can rely on no server being in use.
    pause_reply_ = std::move(reply);
    pause_deadline_ = worker_.loop().now() + std::chrono::seconds(worker_.settings().proxy.shutdown_timeout_s);
    state_ = State::kPauseWait;
    wait_for_pause();
    return;
  }
  send(reply);
  send(protocol::encode(protocol::ReadyForQuery{protocol::TransactionStatus::kIdle}));
}

void ClientConn::wait_for_pause() {
  const auto& workers = worker_.shared().workers;
  pause_reports_missing_ = static_cast<int>(workers.size());
  pause_busy_ = 0;
  for (Worker* w : workers) {
    w->loop().post([w, home = &worker_, pid = pid_] {
      int busy = w->busy_paused_servers();
      home->loop().post([home, pid, busy] {
        if (auto* c = home->client(pid)) c->pause_report(busy);
      });
    });
  }
}

void ClientConn::pause_report(int busy) {
  if (state_ != State::kPauseWait) return;
  pause_busy_ += busy;
  if (--pause_reports_missing_ > 0) return;
  if (pause_busy_ > 0 && worker_.loop().now() < pause_deadline_) {
    worker_.loop().after(std::chrono::milliseconds(10), [w = &worker_, pid = pid_] {
      if (auto* c = w->client(pid)) c->wait_for_pause();
    });
    return;
  }
  if (pause_busy_ > 0) {
    send(protocol::encode(protocol::NoticeResponse{protocol::error_response(
        "WARNING", "01000",
        fmt::format("{} server connection(s) still in a transaction after shutdown_timeout; new transactions are "
                    "held, running ones continue",
                    pause_busy_)).fields}));
  }
  send(pause_reply_);
  pause_reply_.clear();
  send(protocol::encode(protocol::ReadyForQuery{protocol::TransactionStatus::kIdle}));
  state_ = State::kIdle;
  flush();
  process_input();
}

}  // namespace pgfleet::proxy
