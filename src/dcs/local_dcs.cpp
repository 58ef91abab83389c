// LocalDcs: the one-host DCS backend, immutable JSON generation files committed without a lock.
#include "dcs/local_dcs.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace pgfleet::dcs {
namespace {

using nlohmann::json;

// Deletions are remembered for this many revisions so watchers see them; a watcher further
// behind than that is simply woken up (like etcd's compaction).
constexpr int64_t kDeleteHistory = 1000;
// How often a waiter without an inotify watch reads the store, and how long one with a watch
// trusts the store it read last (a safety net: the watch itself misses no commit).
constexpr Millis kPollInterval{25};
constexpr Millis kWatchRecheck{1000};

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

// Closes a descriptor on scope exit.
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

// The store is a sequence of immutable generation files, store-<generation>.json; a change is
// committed by hard-linking a fully written temporary file to the next generation's name, which
// fails if another process committed that generation first (then the change is redone on the
// newer store). No lock is held at any point, so a process frozen mid-operation (SIGSTOP, a
// paused VM) cannot hold up the others, as an flock-holder did. store.json is the format before
// generations, read as generation 0.
constexpr std::string_view kLegacyStore = "store.json";
// Older generations are removed; readers retry if theirs goes. A writer checks after its commit
// that fewer than this many came after it (else its name may have been free because removed):
// with 16, a busy host's other writers sometimes got there first, and a valid commit was
// reported as of unknown outcome.
constexpr int64_t kKeepGenerations = 64;
constexpr auto kStaleTempAge = std::chrono::minutes(1);

std::string generation_path(const std::string& dir, int64_t generation) {
  return generation == 0 ? dir + "/" + std::string(kLegacyStore)
                         : dir + "/store-" + std::to_string(generation) + ".json";
}

// The generation number in "store-<n>.json", or nullopt for any other name.
std::optional<int64_t> generation_of(std::string_view name) {
  if (!name.starts_with("store-") || !name.ends_with(".json")) return std::nullopt;
  name = name.substr(6, name.size() - 11);
  if (name.empty() || name.size() > 18 || !std::ranges::all_of(name, [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoll(std::string(name));
}

struct Listing {
  std::optional<int64_t> newest;  // nullopt: nothing committed yet (and no legacy store)
  std::vector<int64_t> generations;
  std::vector<std::string> temporaries;
  bool legacy = false;  // store.json exists
};

Result<Listing> list_store(const std::string& dir) {
  Listing out;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec == std::errc::no_such_file_or_directory) return out;
  if (ec) return make_error("cannot read dcs directory " + dir + ": " + ec.message());
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (auto g = generation_of(name)) {
      out.generations.push_back(*g);
      out.newest = std::max(out.newest.value_or(0), *g);
    } else if (name == kLegacyStore) {
      out.legacy = true;
      out.newest = std::max(out.newest.value_or(0), int64_t{0});
    } else if (name.starts_with(".tmp-")) {
      out.temporaries.push_back(name);
    }
  }
  if (ec) return make_error("cannot read dcs directory " + dir + ": " + ec.message());
  return out;
}

// Reads one generation; a file that vanished (removed as too old meanwhile) is reported as nullopt.
Result<std::optional<Store>> load(const std::string& path) {
  Store s;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<Store>();
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
  return std::optional<Store>(std::move(s));
}

// The newest committed store (an empty one before the first commit), and its generation.
Result<std::pair<Store, int64_t>> load_newest(const std::string& dir) {
  for (;;) {
    auto listing = list_store(dir);
    if (!listing) return make_error(listing.error());
    if (!listing->newest) return std::pair{Store{}, int64_t{0}};
    auto store = load(generation_path(dir, *listing->newest));
    if (!store) return make_error(store.error());
    if (*store && listing->legacy && *listing->newest > 0) {
      // An agent of a version before generation files rewrites store.json and never sees ours:
      // two stores would disagree, so refuse until it is gone.
      auto legacy = load(generation_path(dir, 0));
      if (legacy && *legacy && (*legacy)->revision > (*store)->revision)
        return make_error("dcs store " + generation_path(dir, 0) +
                          " is being written by an older pgfleet that still runs this cluster; stop it "
                          "(pgfleet down) and start the cluster again with this version (pgfleet up)");
    }
    if (!*store) continue;  // removed between the listing and the open: newer ones exist
    // Frozen between the listing and the read, this process may have read a name that was
    // removed as too old and reused by a writer frozen as long (see transact): a state that
    // never was. Whatever was read is only trusted if its generation is still among the kept.
    auto after = list_store(dir);
    if (!after) return make_error(after.error());
    if (after->newest.value_or(0) >= *listing->newest + kKeepGenerations) continue;
    return std::pair{std::move(**store), *listing->newest};
  }
}

std::string encode(Store& s, const std::string& boot_id) {
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
  return json{{"revision", s.revision},
              {"boot_id", boot_id},
              {"keys", std::move(keys)},
              {"deleted", std::move(deleted)}}
             .dump(1) +
         "\n";
}

Status ensure_directory(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::create_directories(dir, ec))
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  if (ec) return make_error("cannot create dcs directory " + dir + ": " + ec.message());
  return {};
}

// Removes generations too old for any reader still to want, and temporaries of writers that died.
void collect_garbage(const std::string& dir, const Listing& listing, int64_t committed) {
  for (int64_t g : listing.generations)
    if (g <= committed - kKeepGenerations) ::unlink(generation_path(dir, g).c_str());
  if (committed >= kKeepGenerations) ::unlink(generation_path(dir, 0).c_str());
  const auto now = std::filesystem::file_time_type::clock::now();
  for (const auto& name : listing.temporaries) {
    std::error_code ec;
    const auto mtime = std::filesystem::last_write_time(dir + "/" + name, ec);
    if (!ec && now - mtime > kStaleTempAge) ::unlink((dir + "/" + name).c_str());
  }
}

// Commits `text` as generation `generation`: false if another process committed it first.
Result<bool> commit(const std::string& dir, int64_t generation, const std::string& text) {
  static std::atomic<uint64_t> sequence{0};
  const std::string tmp = fmt::format("{}/.tmp-{}-{}", dir, ::getpid(), sequence++);
  auto fail = [&](std::string_view what, const std::string& path) -> Error {
    const int err = errno;
    ::unlink(tmp.c_str());
    return sys_error(what, path, err);
  };
  {
    const auto create = [&] { return ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600); };
    int raw = create();
    if (raw < 0 && errno == ENOENT) {  // the first commit creates the directory
      if (Status st = ensure_directory(dir); !st) return make_error(st.error());
      raw = create();
    }
    Fd fd(raw);
    if (fd.get() < 0) return sys_error("cannot create", tmp, errno);
    for (size_t done = 0; done < text.size();) {
      const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail("cannot write", tmp);
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) return fail("cannot fsync", tmp);
  }
  const std::string target = generation_path(dir, generation);
  const bool won = ::link(tmp.c_str(), target.c_str()) == 0;
  if (!won && errno != EEXIST) return fail("cannot link into place", target);
  ::unlink(tmp.c_str());
  if (!won) return false;
  // Make the new name itself durable.
  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0 || ::fsync(dir_fd.get()) != 0) return sys_error("cannot fsync", dir, errno);
  return true;
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

// Runs `op` on the newest store; `op` returns whether it changed it. A change (or an expiry a
// reader noticed) is committed as the next generation; if another process committed first, `op`
// runs again on the newer store, so every change applies to the store it was computed from.
Status transact(const std::string& dir, const std::string& boot_id,
                const LocalDcs::MonotonicClock& clock, const std::function<bool(Store&)>& op) {
  for (;;) {
    auto newest = load_newest(dir);
    if (!newest) return make_error(newest.error());
    auto& [store, base] = *newest;
    // Read after the newest commit was made, so time never goes backwards between commits.
    store.now_ns = clock();
    bool changed = expire(store, boot_id);
    changed = op(store) || changed;
    if (!changed) return {};
    const int64_t generation = base + 1;
    const auto won = commit(dir, generation, encode(store, boot_id));
    if (!won) return make_error(won.error());
    if (!*won) continue;
    auto listing = list_store(dir);
    if (!listing) return make_error(listing.error());
    // Our name was free, so no commit came between our base and ours -- unless the name was
    // free because it had been removed as too old: this process was frozen so long that at
    // least kKeepGenerations commits passed, and its change may rest on a stale store.
    if (listing->newest.value_or(0) >= generation + kKeepGenerations)
      return make_error("the outcome of a dcs change is unknown: this process was stopped while " +
                        std::string("making it and the store moved on; read the store again"));
    collect_garbage(dir, *listing, *listing->newest);
    return {};
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

// The next TTL deadline of the store (INT64_MAX if no key has one).
int64_t earliest_expiry(const Store& s) {
  int64_t earliest = std::numeric_limits<int64_t>::max();
  for (const auto& [key, e] : s.keys)
    if (e.expires_ns) earliest = std::min(earliest, *e.expires_ns);
  return earliest;
}

Status check_ttl(std::optional<Millis> ttl) {
  if (ttl && ttl->count() <= 0) return make_error("dcs ttl must be positive");
  return {};
}

}  // namespace

LocalDcs::LocalDcs(std::string directory, MonotonicClock clock)
    : directory_(std::move(directory)),
      clock_(clock ? std::move(clock) : MonotonicClock(monotonic_now_ns)),
      boot_id_(read_boot_id()),
      watch_(std::make_unique<Watch>()) {}

Result<std::optional<KeyValue>> LocalDcs::get(std::string_view key) {
  std::optional<KeyValue> out;
  const Status st = transact(directory_, boot_id_, clock_, [&](Store& s) {
    out.reset();  // (each lambda sets its results afresh: transact reruns it after a conflict)
    if (auto it = s.keys.find(key); it != s.keys.end())
      out = to_key_value(it->first, it->second, s.now_ns);
    return false;
  });
  return finish(st, out);
}

Result<std::vector<KeyValue>> LocalDcs::list(std::string_view prefix) {
  std::vector<KeyValue> out;
  const Status st = transact(directory_, boot_id_, clock_, [&](Store& s) {
    out.clear();
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
  const Status st = transact(directory_, boot_id_, clock_, [&](Store& s) {
    rev = write_key(s, key, value, ttl);
    return true;
  });
  return finish(st, rev);
}

Result<bool> LocalDcs::compare_and_set(std::string_view key, std::string_view value,
                                       int64_t expected_revision, std::optional<Millis> ttl) {
  if (Status st = check_ttl(ttl); !st) return make_error(st.error());
  bool wrote = false;
  const Status st = transact(directory_, boot_id_, clock_, [&](Store& s) {
    auto it = s.keys.find(key);
    const int64_t current = it == s.keys.end() ? 0 : it->second.mod_revision;
    wrote = current == expected_revision;
    if (wrote) write_key(s, key, value, ttl);
    return wrote;
  });
  return finish(st, wrote);
}

Result<bool> LocalDcs::compare_and_delete(std::string_view key, int64_t expected_revision) {
  bool deleted = false;
  const Status st = transact(directory_, boot_id_, clock_, [&](Store& s) {
    auto it = s.keys.find(key);
    deleted = it != s.keys.end() && it->second.mod_revision == expected_revision;
    if (deleted) erase_key(s, it);
    return deleted;
  });
  return finish(st, deleted);
}

Result<bool> LocalDcs::remove(std::string_view key) {
  bool deleted = false;
  const Status st = transact(directory_, boot_id_, clock_, [&](Store& s) {
    auto it = s.keys.find(key);
    deleted = it != s.keys.end();
    if (deleted) erase_key(s, it);
    return deleted;
  });
  return finish(st, deleted);
}

// Waiting without reading the store every 25 ms: link(2) queues an inotify event for the new
// generation's name before it returns, so while none is pending the store read last is still
// the newest. Only TTLs change it without a write, so the wait also ends at the next deadline,
// where reading the store commits the expiry. An idle agent or proxy reads it about once a
// second instead of 20 to 40 times.
struct LocalDcs::Watch {
  std::mutex mutex;  // one waiter uses the watch at a time; a second one polls as before
  int fd = -1;
  std::optional<Store> last;  // the store as read after the watch began, valid while no event is pending

  Watch() = default;
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
  ~Watch() { close(); }

  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
    last.reset();
  }

  // False when the directory cannot be watched (not created yet, or no inotify): poll then.
  bool open(const std::string& dir) {
    if (fd >= 0) return true;
    fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) return false;
    if (::inotify_add_watch(fd, dir.c_str(), IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR) < 0)
      close();
    return fd >= 0;
  }

  // Reads the pending events; forgets the store read last if one of them was a commit (or the
  // watch itself ended: the directory went, or the event queue overflowed).
  void drain() {
    alignas(inotify_event) char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) return;  // EAGAIN: nothing more pending
      for (ssize_t at = 0; at < n;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(buf + at);
        at += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        if ((ev->mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) != 0) {
          close();
          return;
        }
        const std::string_view name = ev->len > 0 ? std::string_view(ev->name) : std::string_view();
        if (generation_of(name) || name == kLegacyStore) last.reset();
      }
    }
  }
};

LocalDcs::LocalDcs(LocalDcs&&) noexcept = default;
LocalDcs& LocalDcs::operator=(LocalDcs&&) noexcept = default;
LocalDcs::~LocalDcs() = default;

Result<int64_t> LocalDcs::wait_for_change(std::string_view prefix, int64_t after_revision,
                                          Millis timeout) {
  // Real time, not clock_: the injected clock only decides TTLs.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock<std::mutex> lock;
  if (watch_) lock = std::unique_lock(watch_->mutex, std::try_to_lock);
  for (;;) {
    Watch* watch = lock.owns_lock() && watch_->open(directory_) ? watch_.get() : nullptr;
    std::optional<Store> read;
    if (watch != nullptr) {
      watch->drain();
      if (watch->fd < 0) continue;  // the watch ended: begin a new one before reading
      if (watch->last && earliest_expiry(*watch->last) <= clock_()) watch->last.reset();
    }
    if (watch == nullptr || !watch->last) {
      const Status st = transact(directory_, boot_id_, clock_, [&](Store& s) {
        read = s;
        return false;
      });
      if (!st) return make_error(st.error());
      if (watch != nullptr) watch->last = std::move(read);
    }
    const Store& store = watch != nullptr ? *watch->last : *read;
    const auto left = deadline - std::chrono::steady_clock::now();
    if (changed_since(store, prefix, after_revision) || left <= left.zero()) return store.revision;
    if (watch == nullptr) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(left, kPollInterval));
      continue;
    }
    auto nap = std::min<std::chrono::steady_clock::duration>(left, kWatchRecheck);
    const int64_t until_expiry = earliest_expiry(store) - clock_();
    nap = std::min<std::chrono::steady_clock::duration>(nap, std::chrono::nanoseconds(std::max<int64_t>(until_expiry, 0)));
    pollfd p{watch->fd, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(std::chrono::ceil<Millis>(nap).count()));
    if (p.revents == 0 && nap >= kWatchRecheck) watch->last.reset();  // the safety net's re-read
  }
}

}  // namespace pgfleet::dcs
