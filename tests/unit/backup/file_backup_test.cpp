// Incremental backups, the pure parts: CRC-32C as manifests write it, what is left out, the
// manifest's round trip; and the copy-or-link rule on a directory of plain files.
#include "backup/file_backup.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <filesystem>
#include <fstream>

#include "util/fs.hpp"

namespace pgfleet::backup {
namespace {

TEST(FileBackup, crc32c_matches_the_castagnoli_check_value_and_continues_across_chunks) {
  const std::string check = "123456789";
  EXPECT_EQ(crc32c(0, check.data(), check.size()), 0xE3069283u);
  EXPECT_EQ(crc32c(crc32c(0, check.data(), 4), check.data() + 4, 5), 0xE3069283u);
  EXPECT_EQ(crc32c(0, nullptr, 0), 0u);
  // The CPU instruction and the table agree, on every length and alignment.
  std::string bytes;
  for (int i = 0; i < 1000; ++i) bytes += static_cast<char>(i * 7 + i / 13);
  for (size_t offset : {0, 1, 3})
    for (size_t length : {0, 1, 7, 8, 9, 63, 64, 500, 997})
      EXPECT_EQ(crc32c(5, bytes.data() + offset, length), crc32c_portable(5, bytes.data() + offset, length))
          << offset << " " << length;
  EXPECT_EQ(crc32c_portable(0, check.data(), check.size()), 0xE3069283u);
  EXPECT_EQ(crc32c_hex(0xE3069283u), "839206e3");  // the bytes in memory order, as pg_basebackup writes them
}

TEST(FileBackup, leaves_out_what_pg_basebackup_leaves_out) {
  for (const char* path : {"postmaster.pid", "postmaster.opts", "backup_label", "tablespace_map", "standby.signal",
                           "pg_wal/000000010000000000000003", "pg_wal/archive_status/000000010000000000000003.done",
                           "pg_replslot/node2/state", "pg_stat_tmp/global.stat", "pg_subtrans/0000",
                           "global/pg_internal.init", "base/5/pg_internal.init.1234", "base/pgsql_tmp/pgsql_tmp12.0",
                           "base/5/pgsql_tmp", "current_logfiles"})
    EXPECT_TRUE(excluded_from_backup(path)) << path;
  for (const char* path : {"pg_wal", "pg_wal/archive_status", "pg_replslot", "base/5/16384", "base/5/16384_fsm",
                           "global/pg_control", "pg_xact/0000", "postgresql.conf", "pgfleet.conf", "PG_VERSION",
                           "postgresql.auto.conf", "pg_stat/pgstat.stat"})
    EXPECT_FALSE(excluded_from_backup(path)) << path;
}

TEST(FileBackup, a_rendered_manifest_reads_back_with_its_files) {
  std::vector<ManifestFile> files{{"base/5/16384", 8192, 1765000000, "839206e3"}, {"PG_VERSION", 3, 1765000001, "0a0b0c0d"}};
  const std::string text = render_manifest(files, 2, "0/5000028", "0/5000100");
  // pg_verifybackup's rule: the last line is the checksum, of everything before it.
  EXPECT_TRUE(text.ends_with("\"}\n")) << text;
  EXPECT_NE(text.rfind("\n\"Manifest-Checksum\": \""), std::string::npos) << text;
  EXPECT_NE(text.find("{ \"Timeline\": 2, \"Start-LSN\": \"0/5000028\", \"End-LSN\": \"0/5000100\" }"), std::string::npos);
  EXPECT_LT(text.find("\"PG_VERSION\""), text.find("\"base/5/16384\""));  // sorted
  const std::string dir = ::testing::TempDir() + "/manifest-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/backup_manifest") << text;
  auto read = read_manifest_files(dir + "/backup_manifest");
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read.at("base/5/16384"), files[0]);
  EXPECT_EQ(read.at("PG_VERSION"), files[1]);
  std::ofstream(dir + "/backup_manifest") << "{ not json";
  EXPECT_THROW(read_manifest_files(dir + "/backup_manifest"), std::exception);
  std::filesystem::remove_all(dir);
}

void write_with_mtime(const std::string& path, const std::string& text, int64_t mtime) {
  std::ofstream(path) << text;
  struct utimbuf t {static_cast<time_t>(mtime), static_cast<time_t>(mtime)};
  ::utime(path.c_str(), &t);
}

TEST(FileBackup, links_files_unchanged_since_the_parent_and_copies_the_rest) {
  const std::string root = ::testing::TempDir() + "/filebackup-" + std::to_string(::getpid());
  std::filesystem::remove_all(root);
  const std::string src = root + "/src", parent = root + "/parent", next = root + "/next";
  std::filesystem::create_directories(src + "/base/5");
  std::filesystem::create_directories(src + "/global");
  std::filesystem::create_directories(src + "/pg_wal/archive_status");
  const int64_t old_time = 1765000000, parent_started = old_time + 100;
  write_with_mtime(src + "/global/pg_control", "control", old_time);
  write_with_mtime(src + "/global/1262", "catalog", old_time);
  write_with_mtime(src + "/base/5/same", "unchanged", old_time);
  write_with_mtime(src + "/base/5/rewritten", "version 1", old_time);
  write_with_mtime(src + "/base/5/in_window", "written while the parent copied", parent_started - 1);
  write_with_mtime(src + "/pg_wal/000000010000000000000001", "wal", old_time);
  write_with_mtime(src + "/postmaster.pid", "123", old_time);

  auto first = copy_data_directory(src, parent, "", {}, 0);  // nothing to link to: a full copy
  EXPECT_EQ(first.files, 5u);
  EXPECT_EQ(first.copied_files, 5u);
  // Read after every data file (a standby backup ends at its minRecoveryPoint).
  EXPECT_EQ(first.manifest.back().path, "global/pg_control");
  EXPECT_TRUE(std::filesystem::is_directory(parent + "/pg_wal/archive_status"));
  EXPECT_FALSE(std::filesystem::exists(parent + "/pg_wal/000000010000000000000001"));
  EXPECT_FALSE(std::filesystem::exists(parent + "/postmaster.pid"));
  std::map<std::string, ManifestFile> parent_files;
  for (const auto& f : first.manifest) parent_files[f.path] = f;

  // Same size, new contents, new time: copied. Same size and time: linked.
  write_with_mtime(src + "/base/5/rewritten", "version 2", old_time + 500);
  auto second = copy_data_directory(src, next, parent, parent_files, parent_started);
  EXPECT_EQ(second.files, 5u);
  EXPECT_EQ(second.copied_files, 2u) << "rewritten and in_window are copied";
  struct stat a {}, b {};
  ::stat((parent + "/base/5/same").c_str(), &a);
  ::stat((next + "/base/5/same").c_str(), &b);
  EXPECT_EQ(a.st_ino, b.st_ino) << "an unchanged file is a hard link to the parent's copy";
  ::stat((next + "/base/5/rewritten").c_str(), &b);
  EXPECT_NE(a.st_ino, b.st_ino);
  EXPECT_EQ(fs::read_file(next + "/base/5/rewritten").value_or(""), "version 2");
  for (const auto& f : second.manifest) {
    const std::string contents = fs::read_file(next + "/" + f.path).value_or("");
    EXPECT_EQ(f.checksum, crc32c_hex(crc32c(0, contents.data(), contents.size()))) << f.path;
    EXPECT_EQ(f.size, contents.size()) << f.path;
  }
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace pgfleet::backup
