// Unit tests for LocalDcs: key/revision semantics, TTLs on a fake clock, corruption handling,
// and atomicity across real processes sharing one store directory.
#include "dcs/local_dcs.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace pgfleet::dcs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

template <class T>
T must(Result<T> r) {
  if (!r) throw std::runtime_error(r.error());
  return std::move(r).value();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// Runs `body` in a forked child whose exit code is body's return value.
pid_t spawn(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    int code = 3;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);
  }
  if (pid < 0) throw std::runtime_error("fork failed");
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

class LocalDcsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pgfleet_local_dcs.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Through the Dcs interface, where the ttl default argument lives.
  std::unique_ptr<Dcs> open() { return std::make_unique<LocalDcs>(dir_); }
  std::unique_ptr<Dcs> open_fake_clock() {
    return std::make_unique<LocalDcs>(dir_, [this] { return now_ns_; });
  }
  void advance(Millis d) { now_ns_ += std::chrono::nanoseconds(d).count(); }
  // The store as it was before generations (read as generation 0).
  std::string legacy_store_path() const { return dir_ + "/store.json"; }
  // The newest committed generation's file.
  std::string newest_store_path() const {
    std::string newest;
    long best = -1;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      const std::string name = e.path().filename().string();
      if (name.starts_with("store-") && name.ends_with(".json") && std::stol(name.substr(6)) > best) {
        best = std::stol(name.substr(6));
        newest = e.path().string();
      }
    }
    return newest;
  }

  // Another process writes under members/ 100 ms from now: `dcs` waiting since `rev` must wake
  // then, with the new revision, within `within`.
  void expect_woken_by_a_write_from_another_process(Dcs& dcs, int64_t rev, Clock::duration within) {
    const auto start = Clock::now();
    const pid_t child = spawn([this] {
      std::this_thread::sleep_for(100ms);
      return LocalDcs(dir_).put("members/b", "2", std::nullopt).ok() ? 0 : 2;
    });
    const int64_t got = must(dcs.wait_for_change("members/", rev, Millis(5000)));
    const auto elapsed = Clock::now() - start;
    EXPECT_EQ(wait_exit(child), 0);
    EXPECT_EQ(got, rev + 1);
    EXPECT_GE(elapsed, 90ms);
    EXPECT_LT(elapsed, within);
  }

  std::string dir_;
  int64_t now_ns_ = 5'000'000'000;
};

TEST_F(LocalDcsTest, GetPutListRemoveWithIncreasingRevisions) {
  auto dcs = open();
  EXPECT_FALSE(must(dcs->get("leader")).has_value());
  EXPECT_TRUE(must(dcs->list("")).empty());

  EXPECT_EQ(must(dcs->put("members/b", "B")), 1);
  EXPECT_EQ(must(dcs->put("membersX", "X")), 2);
  EXPECT_EQ(must(dcs->put("members/a", "A")), 3);
  EXPECT_EQ(must(dcs->put("leader", "node1")), 4);
  EXPECT_EQ(must(dcs->put("members/b", "B2")), 5);

  auto b = must(dcs->get("members/b"));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->key, "members/b");
  EXPECT_EQ(b->value, "B2");
  EXPECT_EQ(b->create_revision, 1);
  EXPECT_EQ(b->mod_revision, 5);
  EXPECT_FALSE(b->ttl_remaining);

  auto members = must(dcs->list("members/"));
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(members[0].key, "members/a");
  EXPECT_EQ(members[1].key, "members/b");
  std::vector<std::string> all;
  for (const auto& kv : must(dcs->list(""))) all.push_back(kv.key);
  EXPECT_EQ(all, (std::vector<std::string>{"leader", "members/a", "members/b", "membersX"}));

  EXPECT_TRUE(must(dcs->remove("members/a")));
  EXPECT_FALSE(must(dcs->remove("members/a")));
  EXPECT_FALSE(must(dcs->get("members/a")));
  EXPECT_EQ(must(dcs->put("other", "o")), 7);  // the remove took revision 6

  // A second instance (another agent) sees the same store.
  auto again = must(open()->get("leader"));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->value, "node1");
}

TEST_F(LocalDcsTest, CompareAndSetAndDelete) {
  auto dcs = open();
  EXPECT_TRUE(must(dcs->compare_and_set("leader", "node1", 0)));
  EXPECT_FALSE(must(dcs->compare_and_set("leader", "node2", 0)));
  auto kv = must(dcs->get("leader"));
  ASSERT_TRUE(kv);
  EXPECT_EQ(kv->value, "node1");
  const int64_t rev = kv->mod_revision;

  EXPECT_TRUE(must(dcs->compare_and_set("leader", "node1b", rev)));
  EXPECT_FALSE(must(dcs->compare_and_set("leader", "node2", rev)));  // stale
  kv = must(dcs->get("leader"));
  EXPECT_EQ(kv->value, "node1b");
  EXPECT_EQ(kv->create_revision, rev);
  EXPECT_GT(kv->mod_revision, rev);

  EXPECT_FALSE(must(dcs->compare_and_delete("leader", rev)));  // stale
  EXPECT_TRUE(must(dcs->get("leader")));
  EXPECT_TRUE(must(dcs->compare_and_delete("leader", kv->mod_revision)));
  EXPECT_FALSE(must(dcs->get("leader")));
  EXPECT_FALSE(must(dcs->compare_and_delete("leader", kv->mod_revision)));
  EXPECT_FALSE(must(dcs->compare_and_delete("leader", 0)));
  EXPECT_FALSE(must(dcs->compare_and_set("leader", "x", kv->mod_revision)));  // gone
}

TEST_F(LocalDcsTest, TtlExpiresRenewsAndClears) {
  auto dcs = open_fake_clock();
  const int64_t r1 = must(dcs->put("leader", "node1", Millis(1000)));
  EXPECT_EQ(must(dcs->get("leader"))->ttl_remaining, Millis(1000));
  advance(400ms);
  EXPECT_EQ(must(dcs->get("leader"))->ttl_remaining, Millis(600));

  // Renewal restarts the TTL from now.
  ASSERT_TRUE(must(dcs->compare_and_set("leader", "node1", r1, Millis(1000))));
  const int64_t r2 = must(dcs->get("leader"))->mod_revision;
  EXPECT_EQ(must(dcs->get("leader"))->ttl_remaining, Millis(1000));
  advance(999ms);
  EXPECT_TRUE(must(dcs->get("leader")));
  advance(1ms);
  EXPECT_FALSE(must(dcs->get("leader")));
  EXPECT_TRUE(must(dcs->list("")).empty());

  // Expiry is a change watchers see.
  EXPECT_GT(must(dcs->wait_for_change("leader", r2, Millis(0))), r2);

  // An expired key is absent: its old revision no longer matches, 0 does.
  EXPECT_FALSE(must(dcs->compare_and_set("leader", "node2", r2, Millis(1000))));
  EXPECT_TRUE(must(dcs->compare_and_set("leader", "node2", 0, Millis(1000))));
  auto kv = must(dcs->get("leader"));
  EXPECT_EQ(kv->create_revision, kv->mod_revision);  // a new life

  // A write without a TTL makes the key permanent.
  must(dcs->put("leader", "node2"));
  EXPECT_FALSE(must(dcs->get("leader"))->ttl_remaining);
  advance(std::chrono::hours(24));
  EXPECT_TRUE(must(dcs->get("leader")));

  EXPECT_FALSE(dcs->put("x", "y", Millis(0)).ok());
}

TEST_F(LocalDcsTest, TtlKeysFromAnotherBootAreExpired) {
  write_text(legacy_store_path(), R"({"revision": 7, "boot_id": "00000000-0000-0000-0000-000000000000",
    "keys": {"leader": {"value": "node1", "create_revision": 6, "mod_revision": 7,
                        "expires_ns": 9000000000000000000},
             "config": {"value": "{}", "create_revision": 1, "mod_revision": 1}},
    "deleted": {}})");
  auto dcs = open_fake_clock();
  EXPECT_FALSE(must(dcs->get("leader")));
  EXPECT_TRUE(must(dcs->get("config")));
  EXPECT_EQ(must(dcs->wait_for_change("leader", 7, Millis(0))), 8);

  // The rewrite records this boot, so new TTL keys live normally.
  must(dcs->put("leader", "node2", Millis(1000)));
  EXPECT_TRUE(must(dcs->get("leader")));
  const std::string boot_id = read_text("/proc/sys/kernel/random/boot_id");
  EXPECT_NE(read_text(newest_store_path()).find(boot_id.substr(0, boot_id.find('\n'))), std::string::npos);
}

TEST_F(LocalDcsTest, CorruptStoreIsAnErrorAndLeftUntouched) {
  for (const std::string text :
       {R"({"revision": 3, "keys": {)", "[]",
        R"({"revision": "3", "boot_id": "", "keys": {}, "deleted": {}})",
        R"({"revision": 3, "boot_id": "", "keys": {"a": {"value": 1}}, "deleted": {}})"}) {
    SCOPED_TRACE(text);
    // Both the pre-generation file and a committed generation.
    for (const std::string& path : {legacy_store_path(), dir_ + "/store-3.json"}) {
      SCOPED_TRACE(path);
      write_text(path, text);
      auto dcs = open();
      auto got = dcs->get("leader");
      ASSERT_FALSE(got.ok());
      EXPECT_NE(got.error().find(path + " is corrupt"), std::string::npos) << got.error();
      EXPECT_NE(got.error().find("move it away"), std::string::npos) << got.error();
      EXPECT_FALSE(dcs->put("leader", "node1").ok());
      EXPECT_FALSE(dcs->compare_and_set("leader", "node1", 0).ok());
      EXPECT_EQ(read_text(path), text);
      EXPECT_FALSE(std::filesystem::exists(dir_ + "/store-4.json"));  // nothing committed on top
    }
    std::filesystem::remove(dir_ + "/store-3.json");
  }
}

// store.json is what versions before generation files wrote; one of their agents still running
// after an upgrade would write there and never see the new files.
TEST_F(LocalDcsTest, AStoreStillWrittenByAnOlderVersionIsAnError) {
  auto dcs = open();
  write_text(legacy_store_path(),
             R"({"revision": 2, "boot_id": "", "keys": {"leader": {"value": "node1", "create_revision": 1,
                 "mod_revision": 2}}, "deleted": {}})");
  EXPECT_EQ(must(dcs->get("leader"))->value, "node1");  // the old store is carried over
  must(dcs->put("leader", "node2"));                     // revision 3, in store-1.json
  EXPECT_EQ(must(dcs->get("leader"))->value, "node2");   // store.json (revision 2) is older: ignored
  write_text(legacy_store_path(),
             R"({"revision": 7, "boot_id": "", "keys": {"leader": {"value": "node3", "create_revision": 1,
                 "mod_revision": 7}}, "deleted": {}})");
  auto got = dcs->get("leader");
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.error().find("older pgfleet that still runs this cluster"), std::string::npos) << got.error();
  EXPECT_FALSE(dcs->put("leader", "node4").ok());
}

TEST_F(LocalDcsTest, CreatesPrivateFilesAndReportsIoErrors) {
  const std::string nested = dir_ + "/cluster/dcs";
  LocalDcs dcs(nested);
  ASSERT_TRUE(dcs.put("k", "v", std::nullopt).ok());
  struct stat st {};
  ASSERT_EQ(::stat(nested.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((nested + "/store-1.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(nested), {}), 1);  // no temporaries left

  write_text(dir_ + "/file", "");
  LocalDcs broken(dir_ + "/file/dcs");
  auto r = broken.put("k", "v", std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find(dir_ + "/file/dcs"), std::string::npos) << r.error();
}

TEST_F(LocalDcsTest, ConcurrentIncrementsFromManyProcessesAreNotLost) {
  constexpr int kProcesses = 8;
  constexpr int kIncrements = 200;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    children.push_back(spawn([this] {
      LocalDcs dcs(dir_);
      for (int done = 0; done < kIncrements;) {
        auto cur = dcs.get("counter");
        if (!cur) return 2;
        const int64_t rev = *cur ? (*cur)->mod_revision : 0;
        const int value = *cur ? std::stoi((*cur)->value) : 0;
        auto wrote = dcs.compare_and_set("counter", std::to_string(value + 1), rev, std::nullopt);
        if (!wrote) return 2;
        done += *wrote ? 1 : 0;
      }
      return 0;
    }));
  }
  for (pid_t child : children) EXPECT_EQ(wait_exit(child), 0);
  auto kv = must(open()->get("counter"));
  ASSERT_TRUE(kv);
  EXPECT_EQ(kv->value, std::to_string(kProcesses * kIncrements));
  EXPECT_EQ(kv->mod_revision, kProcesses * kIncrements);  // one revision per successful CAS
}

// A writer frozen at any point (SIGSTOP: a paused VM, a stopped agent) must not hold up the
// others: with a lock, a writer stopped while holding it froze the whole cluster's DCS.
TEST_F(LocalDcsTest, AWriterStoppedAnywhereDoesNotBlockOthers) {
  const pid_t writer = spawn([this] {
    LocalDcs dcs(dir_);
    for (int i = 0;; ++i)
      if (!dcs.put("members/busy", std::to_string(i), Millis(10000)).ok()) return 2;
  });
  auto dcs = open();
  int blocked = 0;
  for (int round = 0; round < 150; ++round) {
    std::this_thread::sleep_for(std::chrono::microseconds(300 + (round * 7919) % 3000));
    ASSERT_EQ(::kill(writer, SIGSTOP), 0);
    auto done = std::async(std::launch::async, [&] { return dcs->put("leader", std::to_string(round)).ok(); });
    if (done.wait_for(3s) != std::future_status::ready) ++blocked;
    ASSERT_EQ(::kill(writer, SIGCONT), 0);
    EXPECT_TRUE(done.get());
  }
  ::kill(writer, SIGKILL);
  ::waitpid(writer, nullptr, 0);
  EXPECT_EQ(blocked, 0) << "operations blocked by a stopped writer";
  EXPECT_EQ(must(dcs->get("leader"))->value, "149");
  EXPECT_TRUE(must(dcs->get("members/busy")));
}

// A writer frozen between reading the store and committing, while others commit so much that
// the generation it was about to write had been written and removed: its change must not count.
TEST_F(LocalDcsTest, AWriterFrozenLongerThanTheKeptHistoryGetsAnErrorNotAStaleCommit) {
  auto others = open();
  must(others->put("leader", "node1"));
  bool frozen_once = false;
  // The clock is read after the store is loaded: the "freeze" happens there.
  LocalDcs stale(dir_, [&] {
    if (!frozen_once) {
      frozen_once = true;
      for (int i = 0; i < 100; ++i) must(others->put("members/n" + std::to_string(i % 3), std::to_string(i)));
    }
    return now_ns_;
  });
  auto r = stale.put("leader", "stale", std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("outcome of a dcs change is unknown"), std::string::npos) << r.error();
  EXPECT_EQ(must(others->get("leader"))->value, "node1");
  EXPECT_EQ(must(others->get("members/n0"))->value, "99");
  // The next attempt reads the current store and succeeds.
  EXPECT_TRUE(stale.put("leader", "node2", std::nullopt).ok());
  EXPECT_EQ(must(others->get("leader"))->value, "node2");
}

TEST_F(LocalDcsTest, OldGenerationsAndAbandonedTemporariesAreRemoved) {
  auto dcs = open();
  write_text(dir_ + "/.tmp-99999-0", "half a store");
  std::filesystem::last_write_time(dir_ + "/.tmp-99999-0",
                                   std::filesystem::file_time_type::clock::now() - 2h);
  write_text(dir_ + "/.tmp-99999-1", "a writer at work");
  for (int i = 0; i < 200; ++i) must(dcs->put("k", std::to_string(i)));
  size_t generations = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_))
    generations += e.path().filename().string().starts_with("store-");
  EXPECT_LE(generations, 65u);  // the 64 kept, and the newest
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/.tmp-99999-0"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/.tmp-99999-1"));  // recent: its writer may be alive
  EXPECT_EQ(must(dcs->get("k"))->value, "199");
}

TEST_F(LocalDcsTest, LeaderRaceHasExactlyOneWinner) {
  constexpr int kProcesses = 8;
  int gate[2];
  ASSERT_EQ(::pipe(gate), 0);
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    children.push_back(spawn([&, p] {
      ::close(gate[1]);
      char c;
      (void)!::read(gate[0], &c, 1);  // returns at EOF, when the parent opens the gate
      LocalDcs dcs(dir_);
      auto won = dcs.compare_and_set("leader", "node" + std::to_string(p), 0, Millis(10000));
      return !won ? 2 : *won ? 0 : 1;
    }));
  }
  ::close(gate[0]);
  ::close(gate[1]);
  int winner = -1;
  int winners = 0;
  for (int p = 0; p < kProcesses; ++p) {
    const int code = wait_exit(children[p]);
    EXPECT_TRUE(code == 0 || code == 1) << code;
    if (code == 0) {
      ++winners;
      winner = p;
    }
  }
  ASSERT_EQ(winners, 1);
  EXPECT_EQ(must(open()->get("leader"))->value, "node" + std::to_string(winner));
}

TEST_F(LocalDcsTest, WaitForChangeWakesOnWriteFromAnotherProcess) {
  auto dcs = open();
  const int64_t rev = must(dcs->put("members/a", "1"));
  expect_woken_by_a_write_from_another_process(*dcs, rev, 2s);
}

TEST_F(LocalDcsTest, WaitForChangeTimesOutWhenPrefixIsQuiet) {
  auto dcs = open();
  const int64_t rev = must(dcs->put("members/a", "1"));
  const auto start = Clock::now();
  const pid_t child = spawn([this] {
    std::this_thread::sleep_for(50ms);
    return LocalDcs(dir_).put("other", "x", std::nullopt).ok() ? 0 : 2;  // outside the prefix
  });
  const int64_t got = must(dcs->wait_for_change("members/", rev, Millis(300)));
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(wait_exit(child), 0);
  EXPECT_EQ(got, rev + 1);  // the store's revision, including the unrelated write
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 1s);
}

TEST_F(LocalDcsTest, WaitForChangeSeesDeletes) {
  auto dcs = open();
  const int64_t rev = must(dcs->put("members/a", "1"));
  must(dcs->put("other", "x"));
  const int64_t before_delete = must(dcs->put("more", "y"));
  EXPECT_TRUE(must(dcs->remove("members/a")));
  const auto start = Clock::now();
  EXPECT_EQ(must(dcs->wait_for_change("members/", rev, Millis(5000))), before_delete + 1);
  EXPECT_LT(Clock::now() - start, 1s);
  // Nothing under "other" changed after its write, so this one waits out its timeout.
  const auto quiet_start = Clock::now();
  EXPECT_EQ(must(dcs->wait_for_change("other", rev + 1, Millis(100))), before_delete + 1);
  EXPECT_GE(Clock::now() - quiet_start, 100ms);
}

// A waiter that read the store keeps its copy while nothing is committed (it does not read
// every 25 ms any more); a commit from another process must still end the next wait at once,
// not at the once-a-second re-read.
TEST_F(LocalDcsTest, WaitForChangeAfterAQuietWaitWakesOnTheNextCommit) {
  auto dcs = open();
  const int64_t rev = must(dcs->put("members/a", "1"));
  EXPECT_EQ(must(dcs->wait_for_change("members/", rev, Millis(150))), rev);  // quiet: times out
  expect_woken_by_a_write_from_another_process(*dcs, rev, 700ms);
}

// A TTL ends without any write: the wait ends at the deadline (reading the store then commits
// the expiry), so an agent waiting for the leader key to go sees it within moments.
TEST_F(LocalDcsTest, WaitForChangeWakesWhenAKeyExpires) {
  LocalDcs dcs(dir_);  // the real monotonic clock
  const auto start = Clock::now();  // before the put: on a loaded machine the put itself takes a while
  const int64_t rev = must(dcs.put("leader", "node1", Millis(300)));
  const int64_t got = must(dcs.wait_for_change("leader", rev, Millis(5000)));
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(got, rev + 1);
  EXPECT_FALSE(must(dcs.get("leader")).has_value());
  EXPECT_GE(elapsed, 290ms);  // the TTL runs from inside the put, after `start`
  EXPECT_LT(elapsed, 800ms);
}

// Two threads may wait on one instance: the second polls as before and sees the same commit.
TEST_F(LocalDcsTest, TwoWaitersOnOneInstanceBothWake) {
  LocalDcs dcs(dir_);
  const int64_t rev = must(dcs.put("members/a", "1", std::nullopt));
  int64_t first = 0;
  int64_t second = 0;
  auto wait = [&](int64_t& out) {
    auto woke = dcs.wait_for_change("members/", rev, Millis(5000));
    out = woke ? *woke : -1;
  };
  std::thread a([&] { wait(first); });
  std::thread b([&] { wait(second); });
  std::this_thread::sleep_for(100ms);
  const auto start = Clock::now();
  ASSERT_TRUE(LocalDcs(dir_).put("members/b", "2", std::nullopt).ok());
  a.join();
  b.join();
  EXPECT_EQ(first, rev + 1);
  EXPECT_EQ(second, rev + 1);
  EXPECT_LT(Clock::now() - start, 700ms);
}

}  // namespace
}  // namespace pgfleet::dcs
