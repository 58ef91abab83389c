// AuthCache: the password verifiers of database users, fetched from the primary with an auth
// query (as PgBouncer's auth_query) on a background thread and cached for a short while.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "protocol/scram.hpp"

namespace pgfleet::proxy {

struct UserSecret {
  bool exists = false;                         // a role that may log in now
  std::optional<protocol::ScramVerifier> scram;  // SCRAM-SHA-256 verifier
  std::string md5;                             // "md5…" stored hash
};

struct CachedSecret {
  std::shared_ptr<const UserSecret> secret;
  std::chrono::steady_clock::time_point fetched;
};

// The names to drop from a cache holding more than `cap` users, leaving 90 % of `cap`: names
// that are not roles first (what a client guessing user names fills it with), oldest first, then
// the roles fetched longest ago. Verifiers of real roles otherwise stay, however old: logins use
// them while no server can be asked (a failover).
std::vector<std::string> auth_cache_evictions(const std::map<std::string, CachedSecret>& cache, size_t cap);

class AuthCache {
 public:
  static constexpr size_t kMaxCachedUsers = 10000;

  using Done = std::function<void(std::shared_ptr<const UserSecret>)>;
  // `conninfo` returns libpq conninfos as the auth user: the current primary's first (if known),
  // then the replicas', asked in order while one does not answer.
  // `auth_file` (may be empty): PgBouncer-style lines `"user" "secret"` where secret is a SCRAM
  // verifier or an md5 hash as pg_authid stores them; consulted first, re-read when it changes.
  // `auth_query` returns the query in force (read per lookup, so RELOAD applies it; "" = pg_authid).
  explicit AuthCache(std::function<std::vector<std::string>()> conninfo, std::string auth_file = {},
                     std::function<std::string()> auth_query = {},
                     std::chrono::seconds max_age = std::chrono::seconds(10));
  ~AuthCache();

  // Calls `done` with the user's secret from any thread (the AuthCache's or the caller's):
  // callers post it to their own loop. A lookup failure (primary unreachable) yields nullptr.
  void lookup(const std::string& user, Done done);
  void stop();

 private:
  void run();

  using Entry = CachedSecret;
  std::shared_ptr<const UserSecret> from_file(const std::string& user);
  std::function<std::vector<std::string>()> conninfo_;
  std::string auth_file_;
  std::function<std::string()> auth_query_;
  std::map<std::string, std::shared_ptr<const UserSecret>> file_users_;
  int64_t file_mtime_ = -1;
  std::chrono::seconds max_age_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::map<std::string, Entry> cache_;
  std::deque<std::pair<std::string, Done>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace pgfleet::proxy
