// Mistakes a user makes: each must fail with a message the user understands, and leave nothing
// half-built behind (a new cluster's directory absent or empty, a running cluster unharmed).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "harness.hpp"
#include "util/process.hpp"

namespace pgfleet::itest {
namespace {

using BadInputTest = PgfleetTest;

#define EXPECT_MENTIONS(output, text) \
  EXPECT_NE((output).find(text), std::string::npos) << "expected the message to mention \"" << (text) << "\":\n" << (output)

// What every failed `up` of a new cluster must leave: nothing.
#define EXPECT_NOTHING_BUILT()                                                                      \
  EXPECT_TRUE(absent_or_empty(dir_)) << dir_ << " was left with: " << [&] {                        \
    std::string entries;                                                                            \
    for (const auto& e : list_dir(dir_)) entries += e + " ";                                        \
    return entries;                                                                                 \
  }()

TEST_F(BadInputTest, MissingPgBindirNamesTheBinariesAndHowToInstallThem) {
  auto r = up({"--pg-bindir", "/nonexistent"});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, "/nonexistent");
  EXPECT_MENTIONS(r.output, "initdb");
  EXPECT_MENTIONS(r.output, "postgres");
  EXPECT_MENTIONS(r.output, "apt-get install postgresql-15");
  EXPECT_NOTHING_BUILT();
}

TEST_F(BadInputTest, PgBindirEnvironmentPointingAtAnEmptyDirectory) {
  std::string empty = tmp_ + "/empty-bin";
  ASSERT_EQ(::mkdir(empty.c_str(), 0755), 0);
  auto r = pgfleet({"up", "--base-port", std::to_string(base_port_)}, 120s, {{"PG_BINDIR", empty}});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, empty);
  EXPECT_MENTIONS(r.output, "PG_BINDIR");
  EXPECT_MENTIONS(r.output, "initdb");
  EXPECT_MENTIONS(r.output, "apt-get install postgresql-15");
  EXPECT_NOTHING_BUILT();
}

TEST_F(BadInputTest, PortAlreadyInUseIsNamedWithItsHolder) {
  int port = node_port(1);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 4), 0);

  auto r = up();
  ::close(fd);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, std::to_string(port));
  EXPECT_MENTIONS(r.output, "in use");
  EXPECT_MENTIONS(r.output, "pid " + std::to_string(::getpid()));  // we hold it
  EXPECT_NOTHING_BUILT();
}

TEST_F(BadInputTest, NonEmptyDirectoryIsRefusedAndLeftUntouched) {
  ASSERT_EQ(::mkdir(dir_.c_str(), 0750), 0);
  write_text(dir_ + "/thesis.txt", "years of work\n");
  ASSERT_EQ(::mkdir((dir_ + "/photos").c_str(), 0700), 0);
  write_text(dir_ + "/photos/cat.jpg", "meow");

  auto r = up();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, dir_);
  EXPECT_MENTIONS(r.output, "not empty");
  EXPECT_EQ(list_dir(dir_), (std::set<std::string>{"thesis.txt", "photos"}));
  EXPECT_EQ(list_dir(dir_ + "/photos"), std::set<std::string>{"cat.jpg"});
  EXPECT_EQ(read_text(dir_ + "/thesis.txt"), "years of work\n");
  EXPECT_EQ(read_text(dir_ + "/photos/cat.jpg"), "meow");
  EXPECT_EQ(file_mode(dir_), 0750);
  struct stat st{};
  ASSERT_EQ(::stat((dir_ + "/thesis.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ::geteuid()) << "the user's file changed owner";
}

TEST_F(BadInputTest, NegativeReplicaCount) {
  auto r = up({"--replicas", "-1"});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, "--replicas");
  EXPECT_MENTIONS(r.output, "-1");
  EXPECT_NOTHING_BUILT();
}

TEST_F(BadInputTest, HugeReplicaCount) {
  auto r = up({"--replicas", "1000"});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, "--replicas");
  EXPECT_MENTIONS(r.output, "1000");
  EXPECT_NOTHING_BUILT();
}

TEST_F(BadInputTest, ConfigWithAnUnknownKeyNamesKeyAndLine) {
  std::string config = tmp_ + "/pgfleet-in.yaml";
  write_text(config,
             "cluster: shop\n"
             "replication:\n"
             "  sync: on\n"
             "replicaton_mode: quorum\n");
  auto r = up({"--config", config});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, "replicaton_mode");
  EXPECT_MENTIONS(r.output, config + ":4");
  EXPECT_NOTHING_BUILT();
}

TEST_F(BadInputTest, ConfigWithAWrongTypeNamesKeyAndLine) {
  std::string config = tmp_ + "/pgfleet-in.yaml";
  write_text(config,
             "cluster: shop\n"
             "replication:\n"
             "  sync: on\n"
             "  sync_count: many\n");
  auto r = up({"--config", config});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, "sync_count");
  EXPECT_MENTIONS(r.output, "integer");
  EXPECT_MENTIONS(r.output, config + ":4");
  EXPECT_NOTHING_BUILT();
}

TEST_F(BadInputTest, NodeThatCannotStartShowsTheServerLog) {
  // No --timeout: a server that exits at once with a FATAL error must be reported promptly,
  // not after the 180 s default wait.
  auto started = std::chrono::steady_clock::now();
  auto r = up({"--set", "shared_buffers=notasize"});
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_LT(took, 60s) << "up took " << std::chrono::duration_cast<std::chrono::seconds>(took).count()
                       << " s to give up on a server that cannot start";
  EXPECT_MENTIONS(r.output, "shared_buffers");
  EXPECT_MENTIONS(r.output, "invalid value for parameter");  // PostgreSQL's own log line
  EXPECT_NOTHING_BUILT();
}

TEST_F(BadInputTest, SecondUpOfARunningClusterSaysAlreadyRunning) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  auto before = status_json();
  auto r = up();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, "already running");
  // The running cluster is unharmed.
  auto after = status_json();
  for (const auto& n : before["nodes"]) {
    auto now = node_of(after, str(n, "name"));
    EXPECT_EQ(num(now, "pid"), num(n, "pid")) << after.dump(2);
    EXPECT_EQ(str(now, "state"), str(n, "state")) << after.dump(2);
  }
}

TEST_F(BadInputTest, DownWithoutAClusterSaysThereIsNone) {
  auto r = pgfleet({"down"});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, "no pgfleet cluster");
  EXPECT_MENTIONS(r.output, dir_);
  EXPECT_FALSE(path_exists(dir_)) << "down created " << dir_;
}

TEST_F(BadInputTest, DownPurgeOnADirectoryThatIsNoClusterDeletesNothing) {
  ASSERT_EQ(::mkdir(dir_.c_str(), 0755), 0);
  write_text(dir_ + "/thesis.txt", "years of work\n");
  auto r = pgfleet({"down", "--purge"});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, "no pgfleet cluster");
  EXPECT_EQ(list_dir(dir_), std::set<std::string>{"thesis.txt"});
  EXPECT_EQ(read_text(dir_ + "/thesis.txt"), "years of work\n");
}

TEST_F(BadInputTest, StatusWithoutAClusterSaysThereIsNone) {
  auto r = pgfleet({"status"});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, "no pgfleet cluster");
  EXPECT_MENTIONS(r.output, dir_);
  EXPECT_FALSE(path_exists(dir_)) << "status created " << dir_;
  auto json = pgfleet({"status", "--json"});
  EXPECT_NE(json.exit_code, 0) << json.output;
}

TEST_F(BadInputTest, ScaleBeyondTheLimitIsRefused) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  auto r = pgfleet({"scale", "--replicas", "40"});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, "40");
  EXPECT_MENTIONS(r.output, "32");
  auto s = status_json();
  EXPECT_EQ(s["nodes"].size(), 3u) << s.dump(2);
  EXPECT_EQ(list_dir(dir_ + "/nodes"), (std::set<std::string>{"node1", "node2", "node3"}));
}

TEST_F(BadInputTest, UrlOfAnUnknownNode) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  auto r = pgfleet({"url", "--node", "nosuch"});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, "nosuch");
  EXPECT_EQ(r.output.find("postgresql://"), std::string::npos) << r.output;
}

TEST_F(BadInputTest, DiskFullDuringBasebackupFailsCleanly) {
  ASSERT_EQ(::geteuid(), 0u) << "mounting a tmpfs needs root";
  std::string mnt = tmp_ + "/small-disk";
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  // ~40 MB after initdb: the primary fits, a replica's copy of it does not.
  auto mounted = process::run({"mount", "-t", "tmpfs", "-o", "size=80m,mode=0755", "tmpfs", mnt});
  ASSERT_EQ(mounted.exit_code, 0) << mounted.output;
  add_cleanup([mnt] {
    if (process::run({"umount", mnt}).exit_code != 0) (void)process::run({"umount", "-l", mnt});
  });
  set_cluster_dir(mnt + "/cluster");

  auto r = up({"--timeout", "60"});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_MENTIONS(r.output, "creating replica");  // the primary was built: the copy is what failed
  EXPECT_MENTIONS(r.output, "No space left on device");
  EXPECT_MENTIONS(r.output, "disk space");
  EXPECT_NOTHING_BUILT();
}

}  // namespace
}  // namespace pgfleet::itest
