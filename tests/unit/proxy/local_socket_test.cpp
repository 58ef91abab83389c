// The proxy's Unix-socket listeners over real sockets in a temporary directory: a leftover socket
// file is replaced, a live one or a file that is not a socket is refused with the path named.
#include "proxy/local_socket.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace pgfleet::proxy {
namespace {

class LocalSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pgfleet-local-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  static bool accepts(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
  }
  std::string dir_;
};

TEST_F(LocalSocketTest, ListensUnderPostgresName) {
  std::string path = local_socket_path(dir_, 6432);
  EXPECT_EQ(path, dir_ + "/.s.PGSQL.6432");
  int fd = listen_local(path);
  EXPECT_TRUE(accepts(path));
  EXPECT_EQ(bound_local_path(fd), path);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0777u);  // the directory restricts access, as with PostgreSQL
  ::close(fd);
}

TEST_F(LocalSocketTest, ALeftoverSocketFileIsReplaced) {
  std::string path = local_socket_path(dir_, 6433);
  int dead = listen_local(path);
  ::close(dead);  // the file stays, nobody listens: what a killed proxy leaves
  ASSERT_TRUE(std::filesystem::exists(path));
  int fd = listen_local(path);
  EXPECT_TRUE(accepts(path));
  ::close(fd);
}

TEST_F(LocalSocketTest, ALiveSocketOrAnotherFileIsRefused) {
  std::string path = local_socket_path(dir_, 6434);
  int live = listen_local(path);
  try {
    listen_local(path);
    ADD_FAILURE() << "a second listener on a live socket";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("another process listens on " + path), std::string::npos) << e.what();
  }
  EXPECT_TRUE(accepts(path)) << "the live socket was disturbed";
  ::close(live);

  std::string file = local_socket_path(dir_, 6435);
  std::ofstream(file) << "not a socket";
  try {
    listen_local(file);
    ADD_FAILURE() << "a regular file was replaced";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a socket"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::filesystem::is_regular_file(file));
}

TEST_F(LocalSocketTest, ATcpSocketHasNoLocalPath) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_EQ(bound_local_path(fd), "");
  ::close(fd);
}

}  // namespace
}  // namespace pgfleet::proxy
