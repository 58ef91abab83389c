// The auth query runs on one thread with one connection, so workers never block on it.
#include "proxy/auth_cache.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <tuple>
#include <fstream>

#include "postgres/pgconn.hpp"
#include "util/log.hpp"

namespace pgfleet::proxy {

namespace {
constexpr const char* kDefaultAuthQuery =
    "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin "
    "AND (rolvaliduntil IS NULL OR rolvaliduntil > now())";
// A hung server (stopped process, frozen host) accepts the query and never answers, and the
// kernel still acknowledges the bytes (tcp_user_timeout does not fire): bound it ourselves.
constexpr auto kQueryDeadline = std::chrono::milliseconds(2000);

struct Fetched {
  bool ok = false;
  std::optional<std::string> stored;  // rolpassword; nullopt = no such login role (or NULL)
  std::string error;
};

Fetched fetch_with_deadline(postgres::PgConn& conn, const std::string& query, const std::string& user) {
  auto rows = conn.query_within(kQueryDeadline, query, {user});
  if (!rows) return {false, std::nullopt, rows.error()};
  Fetched out;
  out.ok = true;
  // The verifier: the only column, or passwd after usename.
  if (!rows->empty() && !rows->front().empty()) out.stored = rows->front().back();
  return out;
}
}

AuthCache::AuthCache(std::function<std::vector<std::string>()> conninfo, std::string auth_file,
                     std::function<std::string()> auth_query, std::chrono::seconds max_age)
    : conninfo_(std::move(conninfo)),
      auth_file_(std::move(auth_file)),
      auth_query_(std::move(auth_query)),
      max_age_(max_age),
      thread_([this] { run(); }) {}

namespace {
std::shared_ptr<const UserSecret> secret_from(const std::string& stored) {
  auto secret = std::make_shared<UserSecret>();
  secret->exists = true;
  if (auto v = protocol::parse_verifier(stored); v) secret->scram = *v;
  else if (stored.rfind("md5", 0) == 0 && stored.size() == 35) secret->md5 = stored;
  else secret->exists = false;  // a plaintext password cannot be used for pass-through logins
  return secret;
}

// One quoted field of a userlist line ("" escapes a quote).
std::optional<std::string> quoted(std::string_view line, size_t& at) {
  while (at < line.size() && std::isspace(static_cast<unsigned char>(line[at]))) ++at;
  if (at >= line.size() || line[at] != '"') return std::nullopt;
  std::string out;
  for (++at; at < line.size(); ++at) {
    if (line[at] == '"') {
      if (at + 1 < line.size() && line[at + 1] == '"') {
        out += '"';
        ++at;
      } else {
        ++at;
        return out;
      }
    } else {
      out += line[at];
    }
  }
  return std::nullopt;
}
}  // namespace

// Called on the auth thread only.
std::shared_ptr<const UserSecret> AuthCache::from_file(const std::string& user) {
  if (auth_file_.empty()) return nullptr;
  struct stat st{};
  if (::stat(auth_file_.c_str(), &st) != 0) return nullptr;
  if (st.st_mtime != file_mtime_) {
    file_mtime_ = st.st_mtime;
    file_users_.clear();
    std::ifstream in(auth_file_);
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
      ++number;
      size_t at = 0;
      auto name = quoted(line, at);
      auto stored = name ? quoted(line, at) : std::nullopt;
      if (!name || !stored) {
        if (line.find_first_not_of(" \t") != std::string::npos && line[line.find_first_not_of(" \t")] != ';' &&
            line[line.find_first_not_of(" \t")] != '#') {
          log::warn("{}:{}: expected \"user\" \"secret\"; line ignored", auth_file_, number);
        }
        continue;
      }
      auto secret = secret_from(*stored);
      if (!secret->exists) log::warn("{}:{}: the secret of {} is neither a SCRAM verifier nor an md5 hash; ignored",
                                     auth_file_, number, *name);
      else file_users_[*name] = secret;
    }
  }
  auto it = file_users_.find(user);
  return it == file_users_.end() ? nullptr : it->second;
}

std::vector<std::string> auth_cache_evictions(const std::map<std::string, CachedSecret>& cache, size_t cap) {
  if (cache.size() <= cap) return {};
  struct Candidate {
    bool role;
    std::chrono::steady_clock::time_point fetched;
    const std::string* name;
  };
  std::vector<Candidate> candidates;
  candidates.reserve(cache.size());
  for (const auto& [name, entry] : cache) {
    candidates.push_back({entry.secret != nullptr && entry.secret->exists, entry.fetched, &name});
  }
  const auto drop = static_cast<std::ptrdiff_t>(cache.size() - cap * 9 / 10);
  std::partial_sort(candidates.begin(), candidates.begin() + drop, candidates.end(), [](const auto& a, const auto& b) {
    return std::tie(a.role, a.fetched) < std::tie(b.role, b.fetched);
  });
  std::vector<std::string> out;
  for (auto it = candidates.begin(); it != candidates.begin() + drop; ++it) out.push_back(*it->name);
  return out;
}

AuthCache::~AuthCache() { stop(); }

void AuthCache::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void AuthCache::lookup(const std::string& user, Done done) {
  std::shared_ptr<const UserSecret> secret;
  {
    std::lock_guard lock(mutex_);
    auto it = cache_.find(user);
    if (it == cache_.end() || std::chrono::steady_clock::now() - it->second.fetched > max_age_) {
      queue_.emplace_back(user, std::move(done));
      wake_.notify_one();
      return;
    }
    secret = it->second.secret;
  }
  done(secret);
}

void AuthCache::run() {
  std::unique_ptr<postgres::PgConn> conn;  // (not std::optional: GCC 12 sees a maybe-uninitialized PGconn*)
  std::string conn_info;  // what `conn` was opened with: the primary it talks to
  // During a failover the primary cannot be asked for a while: logins use the verifier fetched
  // before (the server checks the password again when the proxy logs in with it), and requests
  // right after a failed fetch do not each wait for another connect timeout.
  std::chrono::steady_clock::time_point last_failure{};
  while (true) {
    std::pair<std::string, Done> request;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      request = std::move(queue_.front());
      queue_.pop_front();
      // Another request may have fetched it meanwhile.
      if (auto it = cache_.find(request.first);
          it != cache_.end() && std::chrono::steady_clock::now() - it->second.fetched <= max_age_) {
        auto secret = it->second.secret;
        lock.unlock();
        request.second(secret);
        continue;
      }
    }
    std::shared_ptr<const UserSecret> result = from_file(request.first);
    std::shared_ptr<const UserSecret> stale;
    {
      std::lock_guard lock(mutex_);
      if (auto it = cache_.find(request.first); it != cache_.end()) stale = it->second.secret;
    }
    if (!result && stale && std::chrono::steady_clock::now() - last_failure < std::chrono::seconds(1)) {
      request.second(stale);
      continue;
    }
    // The primary first; while it cannot answer (failover, hung host), a replica: pg_authid is
    // replicated, and the server checks the password again when the proxy logs in with it.
    auto candidates = conninfo_();
    std::string query = auth_query_ ? auth_query_() : std::string();
    if (query.empty()) query = kDefaultAuthQuery;
    for (size_t i = 0; i < candidates.size() * 2 && !result; ++i) {
      const std::string& info = candidates[i % candidates.size()];
      if (i >= candidates.size() && info != conn_info) continue;  // second try: the one that failed mid-query only
      if (conn && info != conn_info) conn.reset();
      if (!conn) {
        conn_info = info;
        auto c = postgres::PgConn::connect(info);
        if (!c) {
          log::warn("auth query: cannot connect: {}", c.error());
          conn_info.clear();
          continue;
        }
        conn = std::make_unique<postgres::PgConn>(std::move(c.value()));
      }
      auto fetched = fetch_with_deadline(*conn, query, request.first);
      if (!fetched.ok) {
        log::warn("auth query failed: {}", fetched.error);
        conn.reset();  // mid-query or broken: never reused
        continue;
      }
      result = fetched.stored ? secret_from(*fetched.stored) : std::make_shared<UserSecret>();
    }
    if (!result && stale) {
      last_failure = std::chrono::steady_clock::now();
      request.second(stale);
      continue;
    }
    if (result) {
      std::lock_guard lock(mutex_);
      cache_[request.first] = Entry{result, std::chrono::steady_clock::now()};
      for (const auto& name : auth_cache_evictions(cache_, kMaxCachedUsers)) cache_.erase(name);
    }
    request.second(result);
  }
}

}  // namespace pgfleet::proxy
