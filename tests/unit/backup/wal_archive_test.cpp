// archive_command and restore_command against a real directory: what is copied, compared, kept
// aside, skipped before the first backup, and found after a restore moved the data aside.
#include "backup/wal_archive.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "util/fs.hpp"

namespace {

using namespace pgfleet;
using backup::Archived;

class WalArchive : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/pgfleet-wal-archive-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
    fs::make_directories(root_ + "/cluster/nodes/node1/data/pg_wal");
  }
  void TearDown() override { fs::remove_all(root_); }
  cluster::Layout layout() const { return cluster::Layout(root_ + "/cluster"); }
  std::string wal(const std::string& name, const std::string& content) {
    const std::string path = root_ + "/cluster/nodes/node1/data/pg_wal/" + name;
    fs::write_file_atomic(path, content);
    return path;
  }
  void a_backup_exists() { fs::make_directories(layout().backups_dir() + "/20261207T021530Z"); }
  std::string root_;
};

constexpr const char* kSegment = "000000010000000000000005";

TEST_F(WalArchive, nothing_is_kept_before_the_first_backup) {
  EXPECT_EQ(*backup::archive_wal(layout(), wal(kSegment, "wal"), kSegment), Archived::NotNeeded);
  EXPECT_FALSE(fs::exists(layout().archive_dir() + "/" + kSegment));
}

TEST_F(WalArchive, copies_once_and_compares_the_copies_of_other_nodes) {
  a_backup_exists();
  const std::string source = wal(kSegment, "wal bytes");
  EXPECT_EQ(*backup::archive_wal(layout(), source, kSegment), Archived::Copied);
  EXPECT_EQ(fs::read_file(layout().archive_dir() + "/" + kSegment), "wal bytes");
  EXPECT_EQ(*backup::archive_wal(layout(), source, kSegment), Archived::AlreadyThere);
  // Different bytes under the same name: both kept, and PostgreSQL is not left retrying forever.
  EXPECT_EQ(*backup::archive_wal(layout(), wal(kSegment, "other bytes"), kSegment), Archived::KeptAside);
  EXPECT_EQ(fs::read_file(layout().archive_dir() + "/" + kSegment), "wal bytes");
  int conflicts = 0;
  for (const auto& e : std::filesystem::directory_iterator(layout().archive_dir()))
    conflicts += e.path().filename().string().starts_with(std::string(kSegment) + ".conflict-");
  EXPECT_EQ(conflicts, 1);
}

TEST_F(WalArchive, refuses_names_that_are_not_wal_files) {
  a_backup_exists();
  const std::string source = wal(kSegment, "x");
  EXPECT_FALSE(backup::archive_wal(layout(), source, "../../etc/passwd"));
  EXPECT_FALSE(backup::restore_wal(layout(), "../secrets.json", root_ + "/out", {}));
  EXPECT_FALSE(backup::archive_wal(layout(), root_ + "/missing", kSegment));
  for (const char* name : {"000000010000000000000005", "000000010000000000000005.partial", "00000002.history",
                           "000000010000000000000005.00000028.backup"})
    EXPECT_TRUE(backup::is_wal_file_name(name)) << name;
  for (const char* name : {"00000001000000000000005", "archive_status", "000000010000000000000005.tmp.12"})
    EXPECT_FALSE(backup::is_wal_file_name(name)) << name;
}

TEST_F(WalArchive, restores_from_the_archive_then_from_the_newest_data_set_aside) {
  a_backup_exists();
  EXPECT_EQ(*backup::archive_wal(layout(), wal(kSegment, "archived"), kSegment), Archived::Copied);
  const std::string out = root_ + "/restored";
  ASSERT_TRUE(backup::restore_wal(layout(), kSegment, out, {}));
  EXPECT_EQ(fs::read_file(out), "archived");

  // Not archived yet (the segment a primary was writing): the newest copy among the data set aside.
  const std::string next = "000000010000000000000006";
  const std::string older = root_ + "/aside-node2", newer = root_ + "/aside-node1";
  fs::make_directories(older + "/pg_wal");
  fs::make_directories(newer + "/pg_wal");
  fs::write_file_atomic(older + "/pg_wal/" + next, "replica's copy");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  fs::write_file_atomic(newer + "/pg_wal/" + next, "primary's copy");
  auto from = backup::restore_wal(layout(), next, out, {older, newer});
  ASSERT_TRUE(from) << from.error();
  EXPECT_EQ(*from, newer + "/pg_wal/" + next);
  EXPECT_EQ(fs::read_file(out), "primary's copy");
  EXPECT_FALSE(backup::restore_wal(layout(), "000000010000000000000007", out, {older, newer}));
}

}  // namespace
