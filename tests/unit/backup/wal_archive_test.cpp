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
  const std::string archived = layout().archive_dir() + "/" + kSegment + ".zst";
  EXPECT_EQ(*backup::archive_wal(layout(), source, kSegment), Archived::Copied);
  EXPECT_TRUE(fs::exists(archived));
  EXPECT_FALSE(fs::exists(layout().archive_dir() + "/" + kSegment));  // only the compressed copy
  EXPECT_EQ(*backup::archive_wal(layout(), source, kSegment), Archived::AlreadyThere);
  // Different bytes under the same name: both kept, and PostgreSQL is not left retrying forever.
  EXPECT_EQ(*backup::archive_wal(layout(), wal(kSegment, "other bytes"), kSegment), Archived::KeptAside);
  const std::string out = root_ + "/restored";
  ASSERT_TRUE(backup::restore_wal(layout(), kSegment, out, {}));
  EXPECT_EQ(fs::read_file(out), "wal bytes");
  int conflicts = 0;
  for (const auto& e : std::filesystem::directory_iterator(layout().archive_dir()))
    conflicts += e.path().filename().string().starts_with(std::string(kSegment) + ".conflict-");
  EXPECT_EQ(conflicts, 1);
}

// A segment is mostly zeros until it fills (pg_switch_wal, archive_timeout) and WAL repeats
// itself: the archive keeps a fraction of its size, and gives back every byte.
TEST_F(WalArchive, segments_are_kept_compressed_and_restored_exactly) {
  a_backup_exists();
  std::string segment(16 << 20, '\0');
  for (size_t i = 0; i < 3 << 20; ++i) segment[i] = static_cast<char>((i * 7919) % 251);  // 3 MB written
  EXPECT_EQ(*backup::archive_wal(layout(), wal(kSegment, segment), kSegment), Archived::Copied);
  const auto packed = fs::read_file(layout().archive_dir() + "/" + kSegment + ".zst");
  ASSERT_TRUE(packed);
  EXPECT_LT(packed->size(), segment.size() / 4);
  const std::string out = root_ + "/restored";
  ASSERT_TRUE(backup::restore_wal(layout(), kSegment, out, {}));
  EXPECT_EQ(fs::read_file(out), segment);
  // History files are small and read by people too: kept as they are.
  EXPECT_EQ(*backup::archive_wal(layout(), wal("00000002.history", "1\t0/3000000\tno recovery target\n"),
                                 "00000002.history"),
            Archived::Copied);
  EXPECT_TRUE(fs::exists(layout().archive_dir() + "/00000002.history"));
}

// An archive from a pgfleet before compression holds plain segments: still compared, still restored.
TEST_F(WalArchive, plain_segments_of_an_older_archive_still_count) {
  a_backup_exists();
  fs::make_directories(layout().archive_dir());
  fs::write_file_atomic(layout().archive_dir() + "/" + kSegment, "old wal");
  EXPECT_EQ(*backup::archive_wal(layout(), wal(kSegment, "old wal"), kSegment), Archived::AlreadyThere);
  EXPECT_FALSE(fs::exists(layout().archive_dir() + "/" + kSegment + ".zst"));
  const std::string out = root_ + "/restored";
  ASSERT_TRUE(backup::restore_wal(layout(), kSegment, out, {}));
  EXPECT_EQ(fs::read_file(out), "old wal");
}

// A damaged compressed copy is refused by restore (the checksum), and replaced by the next node
// that archives the same segment.
TEST_F(WalArchive, a_damaged_copy_is_refused_and_replaced) {
  a_backup_exists();
  const std::string source = wal(kSegment, std::string(100000, 'w'));
  ASSERT_EQ(*backup::archive_wal(layout(), source, kSegment), Archived::Copied);
  const std::string archived = layout().archive_dir() + "/" + kSegment + ".zst";
  auto packed = *fs::read_file(archived);
  packed[packed.size() / 2] ^= 0x55;
  fs::write_file_atomic(archived, packed);
  const std::string out = root_ + "/restored";
  auto restored = backup::restore_wal(layout(), kSegment, out, {});
  ASSERT_FALSE(restored);
  EXPECT_NE(restored.error().find("damaged"), std::string::npos) << restored.error();
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(*backup::archive_wal(layout(), source, kSegment), Archived::Copied);
  ASSERT_TRUE(backup::restore_wal(layout(), kSegment, out, {}));
  EXPECT_EQ(fs::read_file(out), std::string(100000, 'w'));
}

TEST_F(WalArchive, names_in_the_archive) {
  EXPECT_EQ(backup::wal_name_in_archive("000000010000000000000005.zst"), "000000010000000000000005");
  EXPECT_EQ(backup::wal_name_in_archive("000000010000000000000005"), "000000010000000000000005");
  EXPECT_EQ(backup::wal_name_in_archive("00000002.history"), "00000002.history");
  EXPECT_EQ(backup::wal_name_in_archive("00000002.history.zst"), std::nullopt);  // never written so
  EXPECT_EQ(backup::wal_name_in_archive("000000010000000000000005.conflict-17"), std::nullopt);
  EXPECT_EQ(backup::wal_name_in_archive(".tmp-000000010000000000000005.zst"), std::nullopt);
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
