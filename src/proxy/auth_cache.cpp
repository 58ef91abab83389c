// The auth query runs on one thread with one connection, so workers never block on it.
#include "proxy/auth_cache.hpp"

#include "postgres/pgconn.hpp"
#include "util/log.hpp"

namespace pgfleet::proxy {

namespace {
constexpr const char* kAuthQuery =
    "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin "
    "AND (rolvaliduntil IS NULL OR rolvaliduntil > now())";
}

AuthCache::AuthCache(std::function<std::string()> conninfo, std::chrono::seconds max_age)
    : conninfo_(std::move(conninfo)), max_age_(max_age), thread_([this] { run(); }) {}

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
  {
    std::lock_guard lock(mutex_);
    auto it = cache_.find(user);
    if (it == cache_.end() || std::chrono::steady_clock::now() - it->second.fetched > max_age_) {
      queue_.emplace_back(user, std::move(done));
      wake_.notify_one();
      return;
    }
    auto secret = it->second.secret;
    done(secret);
  }
}

void AuthCache::run() {
  std::optional<postgres::PgConn> conn;
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
    std::shared_ptr<const UserSecret> result;
    for (int attempt = 0; attempt < 2 && !result; ++attempt) {
      if (!conn) {
        std::string info = conninfo_();
        if (info.empty()) break;
        auto c = postgres::PgConn::connect(info);
        if (!c) {
          log::warn("auth query: cannot connect to the primary: {}", c.error());
          break;
        }
        conn.emplace(std::move(c.value()));
      }
      auto rows = conn->query(kAuthQuery, {request.first});
      if (!rows) {
        log::warn("auth query failed: {}", rows.error());
        conn.reset();  // retry once on a fresh connection (the primary may have moved)
        continue;
      }
      auto secret = std::make_shared<UserSecret>();
      if (!rows->empty() && rows->front()[0]) {
        const std::string& stored = *rows->front()[0];
        secret->exists = true;
        if (auto v = protocol::parse_verifier(stored); v) secret->scram = *v;
        else if (stored.rfind("md5", 0) == 0) secret->md5 = stored;
      }
      result = secret;
    }
    if (result) {
      std::lock_guard lock(mutex_);
      cache_[request.first] = Entry{result, std::chrono::steady_clock::now()};
    }
    request.second(result);
  }
}

}  // namespace pgfleet::proxy
