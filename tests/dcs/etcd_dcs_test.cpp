// EtcdDcs against a real etcd: the Dcs contract LocalDcs is held to (revisions, CAS races between
// processes, TTL expiry and renewal, watch wake-ups), plus endpoint failover, auth and TLS.
#include "dcs/etcd_dcs.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "etcd_fixture.hpp"
#include "util/errors.hpp"
#include "util/tls.hpp"

namespace pgfleet::dcs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using etcdtest::EtcdCluster;

template <class T>
T must(Result<T> r) {
  if (!r) throw std::runtime_error(r.error());
  return std::move(r).value();
}

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

// One etcd for the suite; every test gets its own cluster name, hence its own key prefix.
class EtcdDcsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { etcd_ = new EtcdCluster(1); }
  static void TearDownTestSuite() {
    delete etcd_;
    etcd_ = nullptr;
  }
  void SetUp() override {
    cluster_ = std::string("t") + ::testing::UnitTest::GetInstance()->current_test_info()->name() +
               std::to_string(std::random_device{}() % 100000);
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << etcd_->logs();
  }
  EtcdOptions options() const {
    EtcdOptions o;
    o.endpoints = etcd_->endpoints();
    o.cluster = cluster_;
    return o;
  }
  std::unique_ptr<Dcs> open() const { return std::make_unique<EtcdDcs>(options()); }

  static EtcdCluster* etcd_;
  std::string cluster_;
};
EtcdCluster* EtcdDcsTest::etcd_ = nullptr;

TEST_F(EtcdDcsTest, GetPutListRemoveWithIncreasingRevisions) {
  auto dcs = open();
  EXPECT_FALSE(must(dcs->get("leader")).has_value());
  EXPECT_TRUE(must(dcs->list("")).empty());

  const int64_t r1 = must(dcs->put("members/b", "B"));
  EXPECT_EQ(must(dcs->put("membersX", "X")), r1 + 1);
  EXPECT_EQ(must(dcs->put("members/a", "A")), r1 + 2);
  EXPECT_EQ(must(dcs->put("leader", "node1")), r1 + 3);
  EXPECT_EQ(must(dcs->put("members/b", "B2")), r1 + 4);

  auto b = must(dcs->get("members/b"));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->key, "members/b");
  EXPECT_EQ(b->value, "B2");
  EXPECT_EQ(b->create_revision, r1);
  EXPECT_EQ(b->mod_revision, r1 + 4);
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

  // Keys live under /pgfleet/<cluster>/ in etcd, base64 on the wire, plain for etcdctl.
  std::string out;
  ASSERT_EQ(etcd_->etcdctl({"get", "/pgfleet/" + cluster_ + "/leader", "--print-value-only"}, &out), 0) << out;
  EXPECT_EQ(out, "node1\n");
  // Binary-safe values.
  const std::string odd("a\0b\xff\n{\"x\"}", 10);
  must(dcs->put("odd", odd));
  EXPECT_EQ(must(dcs->get("odd"))->value, odd);
  // Another cluster's keys are invisible.
  EtcdOptions other = options();
  other.cluster = cluster_ + "x";
  EXPECT_FALSE(must(EtcdDcs(other).get("leader")));
}

TEST_F(EtcdDcsTest, CompareAndSetAndDelete) {
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

TEST_F(EtcdDcsTest, TtlExpiresRenewsAndClears) {
  auto dcs = open();
  ASSERT_TRUE(must(dcs->compare_and_set("leader", "node1", 0, Millis(2000))));
  auto kv = must(dcs->get("leader"));
  ASSERT_TRUE(kv && kv->ttl_remaining);
  EXPECT_GE(*kv->ttl_remaining, Millis(1000));
  EXPECT_LE(*kv->ttl_remaining, Millis(2000));

  // Renewing (a write with the TTL again, CAS on its own revision) keeps it past the first TTL.
  int64_t rev = kv->mod_revision;
  const auto start = Clock::now();
  while (Clock::now() - start < 3500ms) {
    ASSERT_TRUE(must(dcs->compare_and_set("leader", "node1", rev, Millis(2000))));
    rev = must(dcs->get("leader"))->mod_revision;
    std::this_thread::sleep_for(500ms);
  }
  ASSERT_TRUE(must(dcs->get("leader")));

  // Left alone, it disappears within TTL (+ etcd's expiry check granularity), and watchers see it.
  const auto stopped = Clock::now();
  const int64_t woke = must(dcs->wait_for_change("leader", rev, Millis(6000)));
  EXPECT_GT(woke, rev);
  EXPECT_FALSE(must(dcs->get("leader")));
  const auto gone_after = Clock::now() - stopped;
  EXPECT_GE(gone_after, 1500ms);
  EXPECT_LE(gone_after, 4000ms);

  // An expired key is absent: its old revision no longer matches, 0 does.
  EXPECT_FALSE(must(dcs->compare_and_set("leader", "node2", rev, Millis(2000))));
  EXPECT_TRUE(must(dcs->compare_and_set("leader", "node2", 0, Millis(2000))));
  kv = must(dcs->get("leader"));
  EXPECT_EQ(kv->create_revision, kv->mod_revision);  // a new life

  // A write without a TTL makes the key permanent.
  must(dcs->put("leader", "node2"));
  EXPECT_FALSE(must(dcs->get("leader"))->ttl_remaining);
  std::this_thread::sleep_for(2500ms);
  EXPECT_TRUE(must(dcs->get("leader")));

  EXPECT_FALSE(dcs->put("x", "y", Millis(0)).ok());
}

TEST_F(EtcdDcsTest, ConcurrentIncrementsFromManyProcessesAreNotLost) {
  constexpr int kProcesses = 4;
  constexpr int kIncrements = 30;
  const EtcdOptions opts = options();
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    children.push_back(spawn([opts] {
      EtcdDcs dcs(opts);
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
}

TEST_F(EtcdDcsTest, LeaderRaceHasExactlyOneWinner) {
  constexpr int kProcesses = 6;
  int gate[2];
  ASSERT_EQ(::pipe(gate), 0);
  const EtcdOptions opts = options();
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    children.push_back(spawn([&, p] {
      ::close(gate[1]);
      EtcdDcs dcs(opts);
      char c;
      (void)!::read(gate[0], &c, 1);  // returns at EOF, when the parent opens the gate
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

TEST_F(EtcdDcsTest, WaitForChangeWakesOnWritesUnderThePrefixOnly) {
  auto dcs = open();
  const int64_t rev = must(dcs->put("members/a", "1"));

  // Quiet: returns at the timeout with a revision no older than the caller's.
  auto start = Clock::now();
  EXPECT_GE(must(dcs->wait_for_change("members/", rev, Millis(600))), rev);
  EXPECT_GE(Clock::now() - start, 500ms);

  // A timeout of zero (a caller's deadline that just passed) returns at once: curl would read a
  // zero timeout as "none", and an agent's loop waited on a quiet watch until its lease ran out.
  start = Clock::now();
  EXPECT_GE(must(dcs->wait_for_change("members/", rev, Millis(0))), rev);
  EXPECT_LT(Clock::now() - start, 400ms);

  // A write from another process wakes the watcher long before the timeout.
  const EtcdOptions opts = options();
  start = Clock::now();
  const pid_t child = spawn([opts] {
    std::this_thread::sleep_for(300ms);
    EtcdDcs other(opts);
    return other.put("leader", "x", std::nullopt).ok() && other.put("members/b", "2", std::nullopt).ok() ? 0 : 1;
  });
  const int64_t woke = must(dcs->wait_for_change("members/", rev, Millis(10000)));
  const auto waited = Clock::now() - start;
  EXPECT_EQ(wait_exit(child), 0);
  EXPECT_LT(waited, 5000ms);
  EXPECT_GE(waited, 250ms);  // "leader" is outside the prefix: it did not wake us
  EXPECT_EQ(woke, must(dcs->get("members/b"))->mod_revision);

  // A change already made before the call returns at once; deletions count.
  ASSERT_TRUE(must(dcs->remove("members/a")));
  start = Clock::now();
  EXPECT_GT(must(dcs->wait_for_change("members/", woke, Millis(10000))), woke);
  EXPECT_LT(Clock::now() - start, 2000ms);
}

TEST_F(EtcdDcsTest, UnreachableEndpointsAreAnErrorWithinTheTimeout) {
  EtcdOptions o = options();
  const int dead = etcdtest::free_port_pair();
  o.endpoints = {"http://127.0.0.1:" + std::to_string(dead), "http://127.0.0.1:" + std::to_string(dead + 1)};
  o.request_timeout = Millis(500);
  EtcdDcs dcs(o);
  const auto start = Clock::now();
  auto r = dcs.get("leader");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("etcd unreachable"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find(std::to_string(dead + 1)), std::string::npos) << r.error();
  EXPECT_LT(Clock::now() - start, 3000ms);
  EXPECT_FALSE(dcs.compare_and_set("leader", "n", 0, Millis(2000)).ok());
  EXPECT_FALSE(dcs.wait_for_change("", 0, Millis(100)).ok());

  // A dead endpoint listed first costs one attempt; the live one then answers.
  o.endpoints = {"http://127.0.0.1:" + std::to_string(dead), etcd_->endpoints()[0]};
  EtcdDcs mixed(o);
  EXPECT_TRUE(must(mixed.compare_and_set("leader", "n", 0, Millis(2000))));
  EXPECT_EQ(mixed.current_endpoint(), etcd_->endpoints()[0]);
}

TEST(EtcdEndpoints, ParsesEtcdUrlsAndRejectsOthers) {
  EXPECT_EQ(parse_etcd_endpoints("etcd://10.0.0.1:2379,10.0.0.2:2379"),
            (std::vector<std::string>{"http://10.0.0.1:2379", "http://10.0.0.2:2379"}));
  EXPECT_EQ(parse_etcd_endpoints("etcds://h:2379/"), (std::vector<std::string>{"https://h:2379"}));
  EXPECT_EQ(parse_etcd_endpoints("http://a:1,https://b:2"), (std::vector<std::string>{"http://a:1", "https://b:2"}));
  EXPECT_THROW(parse_etcd_endpoints("consul://h:8500"), UserError);
  EXPECT_THROW(parse_etcd_endpoints("etcd://"), UserError);
  EXPECT_THROW(parse_etcd_endpoints("etcd://hostonly"), UserError);
}

// An endpoint that accepts connections and never answers (a host cut off mid-request looks the
// same): the first call waits out its timeout, the calls right after it fail at once, and once a
// request timeout has passed the client tries again.
TEST(EtcdUnreachable, AfterEveryEndpointTimedOutCallsFailAtOnceForARequestTimeout) {
  const int hole = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(hole, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(hole, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(hole, 64), 0);  // never accepted: the kernel completes the handshakes
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(hole, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  EtcdOptions o;
  o.endpoints = {"http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port))};
  o.cluster = "hole";
  o.request_timeout = Millis(600);
  EtcdDcs dcs(o);
  auto start = Clock::now();
  EXPECT_FALSE(dcs.get("leader").ok());
  EXPECT_GE(Clock::now() - start, 550ms);
  start = Clock::now();
  auto fast = dcs.list("members/");
  ASSERT_FALSE(fast.ok());
  EXPECT_LT(Clock::now() - start, 100ms);
  EXPECT_NE(fast.error().find("not retried yet"), std::string::npos) << fast.error();
  std::this_thread::sleep_for(700ms);
  start = Clock::now();
  EXPECT_FALSE(dcs.get("leader").ok());
  EXPECT_GE(Clock::now() - start, 550ms);  // a real attempt again
  ::close(hole);
}

// Three members; the one the client talks to is killed: every operation carries on through the
// others, including a watch started afterwards and the TTL lease kept alive.
TEST(EtcdFailover, KilledMemberIsSkippedForTheNextEndpoints) {
  EtcdCluster etcd(3);
  EtcdOptions o;
  o.endpoints = etcd.endpoints();
  o.cluster = "failover";
  o.request_timeout = Millis(1000);
  EtcdDcs dcs(o);
  ASSERT_TRUE(must(dcs.compare_and_set("leader", "node1", 0, Millis(3000))));
  EXPECT_EQ(dcs.current_endpoint(), etcd.endpoints()[0]);

  etcd.kill_member(0);
  const auto start = Clock::now();
  // While the survivors elect a leader a read may fail everywhere ("leader changed", a timeout):
  // callers (the agents' loops) ask again, and within 3 s it is served by a surviving member.
  auto read = dcs.get("leader");
  while (!read && Clock::now() - start < 3000ms) {
    std::this_thread::sleep_for(100ms);
    read = dcs.get("leader");
  }
  ASSERT_TRUE(read) << read.error() << "\n" << etcd.logs();
  auto kv = *read;
  ASSERT_TRUE(kv) << etcd.logs();
  EXPECT_LT(Clock::now() - start, 3000ms);
  EXPECT_NE(dcs.current_endpoint(), etcd.endpoints()[0]);
  // The lease is renewed through a surviving member and the key outlives its first TTL.
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(must(dcs.compare_and_set("leader", "node1", kv->mod_revision, Millis(3000)))) << etcd.logs();
    kv = must(dcs.get("leader"));
    std::this_thread::sleep_for(500ms);
  }
  EXPECT_EQ(kv->value, "node1");

  EtcdDcs other(o);  // a fresh client whose first endpoint is the dead one
  const int64_t rev = kv->mod_revision;
  std::thread writer([&] {
    std::this_thread::sleep_for(300ms);
    (void)other.put("members/x", "1", std::nullopt);
  });
  EXPECT_GT(must(dcs.wait_for_change("members/", rev, Millis(8000))), rev);
  writer.join();
  EXPECT_TRUE(must(other.get("members/x")));
}

TEST(EtcdAuth, UserAndPasswordAreRequiredOnceAuthIsOn) {
  EtcdCluster etcd(1);
  std::string out;
  ASSERT_EQ(etcd.etcdctl({"user", "add", "root:rootpw"}, &out), 0) << out;
  ASSERT_EQ(etcd.etcdctl({"user", "add", "fleet:fleetpw"}, &out), 0) << out;
  ASSERT_EQ(etcd.etcdctl({"role", "add", "fleet"}, &out), 0) << out;
  ASSERT_EQ(etcd.etcdctl({"role", "grant-permission", "fleet", "--prefix=true", "readwrite", "/pgfleet/a/"}, &out), 0)
      << out;
  ASSERT_EQ(etcd.etcdctl({"user", "grant-role", "fleet", "fleet"}, &out), 0) << out;
  ASSERT_EQ(etcd.etcdctl({"auth", "enable"}, &out), 0) << out;

  EtcdOptions o;
  o.endpoints = etcd.endpoints();
  o.cluster = "a";
  EXPECT_FALSE(EtcdDcs(o).put("k", "v", std::nullopt).ok());  // anonymous: refused
  o.user = "fleet";
  o.password = "wrong";
  auto refused = EtcdDcs(o).get("k");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().find("authentication"), std::string::npos) << refused.error();
  o.password = "fleetpw";
  EtcdDcs dcs(o);
  ASSERT_TRUE(must(dcs.compare_and_set("k", "v", 0, Millis(5000))));
  EXPECT_EQ(must(dcs.get("k"))->value, "v");
  const int64_t rev = must(dcs.get("k"))->mod_revision;
  std::thread writer([&] {
    std::this_thread::sleep_for(200ms);
    EtcdDcs w(o);
    (void)w.put("k", "w", std::nullopt);
  });
  EXPECT_GT(must(dcs.wait_for_change("k", rev, Millis(5000))), rev);
  writer.join();
  o.cluster = "b";  // outside the role's permission
  EXPECT_FALSE(EtcdDcs(o).put("k", "v", std::nullopt).ok());
}

TEST(EtcdTls, HttpsWithTheClusterCaIsVerified) {
  char tmpl[] = "/tmp/pgfleet_etcd_tls.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  tls::generate_self_signed(dir + "/etcd.crt", dir + "/etcd.key", {"127.0.0.1", "localhost"});
  {
    EtcdCluster etcd(1, etcdtest::EtcdTls{dir + "/etcd.crt", dir + "/etcd.key"});
    EtcdOptions o;
    o.endpoints = etcd.endpoints();
    ASSERT_TRUE(o.endpoints[0].starts_with("https://"));
    o.cluster = "tls";
    auto unverified = EtcdDcs(o).get("k");  // the system store does not know this CA
    EXPECT_FALSE(unverified.ok());
    o.tls.ca_file = dir + "/etcd.crt";
    EtcdDcs dcs(o);
    EXPECT_TRUE(must(dcs.compare_and_set("k", "v", 0, Millis(3000))));
    EXPECT_EQ(must(dcs.get("k"))->value, "v");
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace pgfleet::dcs
