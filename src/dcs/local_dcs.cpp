// LocalDcs: the one-host DCS backend, a JSON file rewritten atomically under an flock.
#include "dcs/local_dcs.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgfleet::dcs {
namespace {

using nlohmann::json;

// Deletions are remembered for this many revisions so watchers see them; a watcher further
// behind than that is simply woken up (like etcd's compaction).
constexpr int64_t kDeleteHistory = 1000;
constexpr Millis kPollInterval{25};

struct Entry {
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  std::optional<int64_t> expires_ns;  // absolute CLOCK_MONOTONIC deadline
};

struct Store {
  int64_t revision = 0;
  std::string boot_id;
  std::map<std::string, Entry, std::less<>> keys;
  std::map<std::string, int64_t, std::less<>> deleted;  // key -> revision that deleted it
  int64_t now_ns = 0;  // clock reading for the current operation, not persisted
};

// Closes a descriptor (releasing its flock) on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_;
};

Error sys_error(std::string_view what, const std::string& path, int err) {
  return make_error(std::string(what) + " " + path + ": " + std::strerror(err));
}

template <class T>
Result<T> finish(const Status& status, T& value) {
  if (!status) return make_error(status.error());
  return std::move(value);
}

int64_t monotonic_now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::string read_boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

int64_t as_int(const json& v, std::string_view what) {
  if (!v.is_number_integer()) throw std::runtime_error(std::string(what) + " is not an integer");
  return v.get<int64_t>();
}

const json& as_object(const json& v, std::string_view what) {
  if (!v.is_object()) throw std::runtime_error(std::string(what) + " is not an object");
  return v;
}

Result<Store> load(const std::string& path) {
  Store s;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return s;  // nothing written yet: an empty store
    return sys_error("cannot open dcs store", path, errno);
  }
  Fd guard(fd);
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("cannot read dcs store", path, errno);
    text.append(buf, static_cast<size_t>(n));
  }
  try {
    const json j = as_object(json::parse(text), "the top level");
    s.revision = as_int(j.at("revision"), "revision");
    s.boot_id = j.at("boot_id").get<std::string>();
    for (const auto& item : as_object(j.at("keys"), "keys").items()) {
      const json& v = as_object(item.value(), "key " + item.key());
      Entry e{v.at("value").get<std::string>(), as_int(v.at("create_revision"), "create_revision"),
              as_int(v.at("mod_revision"), "mod_revision"), std::nullopt};
      if (v.contains("expires_ns")) e.expires_ns = as_int(v["expires_ns"], "expires_ns");
      s.keys.emplace(item.key(), std::move(e));
    }
    for (const auto& item : as_object(j.at("deleted"), "deleted").items())
      s.deleted.emplace(item.key(), as_int(item.value(), "deleted revision"));
  } catch (const std::exception& e) {
    return make_error("dcs store " + path + " is corrupt: " + e.what() +
                      "; move it away and restart the agents to rebuild it");
  }
  return s;
}

// Replaces store.json by write-temp + fsync + rename so readers and crashes never see half a file.
Status save(const std::string& dir, Store& s, const std::string& boot_id) {
  std::erase_if(s.deleted, [&](const auto& d) { return d.second <= s.revision - kDeleteHistory; });
  json keys = json::object();
  for (const auto& [key, e] : s.keys) {
    json& v = keys[key];
    v = {{"value", e.value},
         {"create_revision", e.create_revision},
         {"mod_revision", e.mod_revision}};
    if (e.expires_ns) v["expires_ns"] = *e.expires_ns;
  }
  json deleted = json::object();
  for (const auto& [key, rev] : s.deleted) deleted[key] = rev;
  const std::string path = dir + "/store.json";
  std::string text;
  try {
    text = json{{"revision", s.revision},
                {"boot_id", boot_id},
                {"keys", std::move(keys)},
                {"deleted", std::move(deleted)}}
               .dump(1) +
           "\n";
  } catch (const json::exception& e) {  // e.g. a value that is not valid UTF-8
    return make_error("cannot encode dcs store " + path + ": " + e.what());
  }

  const std::string tmp = path + ".tmp";  // one writer at a time (we hold LOCK_EX), so one name
  auto fail = [&](std::string_view what) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return sys_error(what, tmp, err);
  };
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (fd.get() < 0) return sys_error("cannot create", tmp, errno);
    for (size_t done = 0; done < text.size();) {
      const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail("cannot write");
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) return fail("cannot fsync");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("cannot rename into place");
  // Make the rename itself durable.
  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0 || ::fsync(dir_fd.get()) != 0) return sys_error("cannot fsync", dir, errno);
  return {};
}

Result<int> open_locked(const std::string& dir, bool exclusive) {
  const std::string path = dir + "/lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 && errno == ENOENT) {
    std::error_code ec;
    if (std::filesystem::create_directories(dir, ec))
      std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
    if (ec) return make_error("cannot create dcs directory " + dir + ": " + ec.message());
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  }
  if (fd < 0) return sys_error("cannot open dcs lock", path, errno);
  while (::flock(fd, exclusive ? LOCK_EX : LOCK_SH) != 0) {
    if (errno == EINTR) continue;
    const int err = errno;
    ::close(fd);
    return sys_error("cannot lock", path, err);
  }
  return fd;
}

// Drops keys whose TTL passed (all TTL keys after a reboot: their deadlines are on a dead clock).
// Expiry is a change, so it takes a revision of its own.
bool expire(Store& s, const std::string& boot_id) {
  const bool rebooted = s.boot_id != boot_id;
  std::vector<std::string> gone;
  for (const auto& [key, e] : s.keys)
    if (e.expires_ns && (rebooted || s.now_ns >= *e.expires_ns)) gone.push_back(key);
  if (gone.empty()) return false;
  const int64_t rev = ++s.revision;
  for (const auto& key : gone) {
    s.keys.erase(key);
    s.deleted[key] = rev;
  }
  return true;
}

// Runs `op` on a fresh copy of the store under the lock; `op` returns whether it changed it.
// Readers take a shared lock, and retake it exclusively only if expiry must be written back.
Status transact(const std::string& dir, const std::string& boot_id,
                const LocalDcs::MonotonicClock& clock, bool mutating,
                const std::function<bool(Store&)>& op) {
  for (bool exclusive = mutating;; exclusive = true) {
    auto fd = open_locked(dir, exclusive);
    if (!fd) return make_error(fd.error());
    Fd lock(*fd);
    auto store = load(dir + "/store.json");
    if (!store) return make_error(store.error());
    store->now_ns = clock();  // read under the lock so time never goes backwards between ops
    bool changed = expire(*store, boot_id);
    if (changed && !exclusive) continue;
    changed = op(*store) || changed;
    return changed ? save(dir, *store, boot_id) : Status{};
  }
}

int64_t write_key(Store& s, std::string_view key, std::string_view value,
                  std::optional<Millis> ttl) {
  const int64_t rev = ++s.revision;
  auto [it, created] = s.keys.try_emplace(std::string(key));
  Entry& e = it->second;
  if (created) e.create_revision = rev;
  e.value = value;
  e.mod_revision = rev;
  e.expires_ns.reset();
  if (ttl) e.expires_ns = s.now_ns + std::chrono::nanoseconds(*ttl).count();
  return rev;
}

void erase_key(Store& s, std::map<std::string, Entry, std::less<>>::iterator it) {
  s.deleted[it->first] = ++s.revision;
  s.keys.erase(it);
}

// Whether some entry of `m` whose key starts with `prefix` satisfies `pred`.
template <class Map, class Pred>
bool any_under(const Map& m, std::string_view prefix, Pred pred) {
  for (auto it = m.lower_bound(prefix); it != m.end() && it->first.starts_with(prefix); ++it)
    if (pred(it->second)) return true;
  return false;
}

KeyValue to_key_value(const std::string& key, const Entry& e, int64_t now_ns) {
  KeyValue kv{key, e.value, e.mod_revision, e.create_revision, std::nullopt};
  if (e.expires_ns)
    kv.ttl_remaining = std::chrono::ceil<Millis>(std::chrono::nanoseconds(*e.expires_ns - now_ns));
  return kv;
}

bool changed_since(const Store& s, std::string_view prefix, int64_t after) {
  // A watcher ahead of the store (it was rebuilt) or past the deletion history must re-read.
  if (after > s.revision || after < s.revision - kDeleteHistory) return true;
  return any_under(s.keys, prefix, [&](const Entry& e) { return e.mod_revision > after; }) ||
         any_under(s.deleted, prefix, [&](int64_t rev) { return rev > after; });
}

Status check_ttl(std::optional<Millis> ttl) {
  if (ttl && ttl->count() <= 0) return make_error("dcs ttl must be positive");
  return {};
}

}  // namespace

LocalDcs::LocalDcs(std::string directory, MonotonicClock clock)
    : directory_(std::move(directory)),
      clock_(clock ? std::move(clock) : MonotonicClock(monotonic_now_ns)),
      boot_id_(read_boot_id()) {}

Result<std::optional<KeyValue>> LocalDcs::get(std::string_view key) {
  std::optional<KeyValue> out;
  const Status st = transact(directory_, boot_id_, clock_, false, [&](Store& s) {
    if (auto it = s.keys.find(key); it != s.keys.end())
      out = to_key_value(it->first, it->second, s.now_ns);
    return false;
  });
  return finish(st, out);
}

Result<std::vector<KeyValue>> LocalDcs::list(std::string_view prefix) {
  std::vector<KeyValue> out;
  const Status st = transact(directory_, boot_id_, clock_, false, [&](Store& s) {
    for (auto it = s.keys.lower_bound(prefix); it != s.keys.end() && it->first.starts_with(prefix);
         ++it)
      out.push_back(to_key_value(it->first, it->second, s.now_ns));
    return false;
  });
  return finish(st, out);
}

Result<int64_t> LocalDcs::put(std::string_view key, std::string_view value,
                              std::optional<Millis> ttl) {
  if (Status st = check_ttl(ttl); !st) return make_error(st.error());
  int64_t rev = 0;
  const Status st = transact(directory_, boot_id_, clock_, true, [&](Store& s) {
    rev = write_key(s, key, value, ttl);
    return true;
  });
  return finish(st, rev);
}

Result<bool> LocalDcs::compare_and_set(std::string_view key, std::string_view value,
                                       int64_t expected_revision, std::optional<Millis> ttl) {
  if (Status st = check_ttl(ttl); !st) return make_error(st.error());
  bool wrote = false;
  const Status st = transact(directory_, boot_id_, clock_, true, [&](Store& s) {
    auto it = s.keys.find(key);
    const int64_t current = it == s.keys.end() ? 0 : it->second.mod_revision;
    if (current != expected_revision) return false;
    write_key(s, key, value, ttl);
    wrote = true;
    return true;
  });
  return finish(st, wrote);
}

Result<bool> LocalDcs::compare_and_delete(std::string_view key, int64_t expected_revision) {
  bool deleted = false;
  const Status st = transact(directory_, boot_id_, clock_, true, [&](Store& s) {
    auto it = s.keys.find(key);
    if (it == s.keys.end() || it->second.mod_revision != expected_revision) return false;
    erase_key(s, it);
    deleted = true;
    return true;
  });
  return finish(st, deleted);
}

Result<bool> LocalDcs::remove(std::string_view key) {
  bool deleted = false;
  const Status st = transact(directory_, boot_id_, clock_, true, [&](Store& s) {
    auto it = s.keys.find(key);
    if (it == s.keys.end()) return false;
    erase_key(s, it);
    deleted = true;
    return true;
  });
  return finish(st, deleted);
}

Result<int64_t> LocalDcs::wait_for_change(std::string_view prefix, int64_t after_revision,
                                          Millis timeout) {
  // Real time, not clock_: the injected clock only decides TTLs.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int64_t revision = 0;
    bool changed = false;
    const Status st = transact(directory_, boot_id_, clock_, false, [&](Store& s) {
      revision = s.revision;
      changed = changed_since(s, prefix, after_revision);
      return false;
    });
    if (!st) return make_error(st.error());
    const auto left = deadline - std::chrono::steady_clock::now();
    if (changed || left <= left.zero()) return revision;
    // Sleep with the lock released so writers are not held up.
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(left, kPollInterval));
  }
}

}  // namespace pgfleet::dcs
