// The backup catalog's pure parts: which backup a restore starts from, what --keep removes, and
// the timestamps users type.
#include "backup/catalog.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

namespace {

using namespace pgfleet::backup;

BackupInfo finished_at(const std::string& id, int64_t ms) {
  BackupInfo b;
  b.id = id;
  b.finished_ms = ms;
  return b;
}

TEST(BackupCatalog, a_restore_starts_from_the_newest_backup_finished_before_its_target) {
  const std::vector<BackupInfo> all{finished_at("a", 1000), finished_at("b", 2000), finished_at("c", 3000)};
  EXPECT_EQ(backup_for(all, 2500)->id, "b");
  EXPECT_EQ(backup_for(all, 2000)->id, "b");  // a restore may stop exactly at a backup's end
  EXPECT_EQ(backup_for(all, std::nullopt)->id, "c");
  EXPECT_FALSE(backup_for(all, 999));
  EXPECT_FALSE(backup_for({}, std::nullopt));
}

TEST(BackupCatalog, keep_removes_the_oldest_and_never_the_last) {
  const std::vector<BackupInfo> all{finished_at("a", 1000), finished_at("b", 2000), finished_at("c", 3000)};
  auto removed = backups_to_remove(all, 2);
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].id, "a");
  EXPECT_EQ(backups_to_remove(all, 1).size(), 2u);
  EXPECT_EQ(backups_to_remove(all, 0).size(), 2u);  // at least one stays
  EXPECT_TRUE(backups_to_remove(all, 5).empty());
}

TEST(BackupCatalog, describes_a_backup_in_json_and_back) {
  BackupInfo b{"20261207T021530Z", "node2", 1, 2, 3, "0/5000028", "0/5000100", "000000030000000000000005", 40u << 20,
               "", 40u << 20};
  EXPECT_EQ(backup_from_json(to_json(b)), b);
  EXPECT_TRUE(to_json(b)["parent"].is_null());
  BackupInfo incremental = b;
  incremental.parent = "20261206T021530Z";
  incremental.copied_bytes = 3u << 20;
  EXPECT_EQ(backup_from_json(to_json(incremental)), incremental);
  // Written before incremental backups: a full one, everything copied.
  auto older = to_json(b);
  older.erase("parent");
  older.erase("copied_bytes");
  EXPECT_EQ(backup_from_json(older), b);
  EXPECT_THROW(backup_from_json(nlohmann::json{{"id", "x"}}), nlohmann::json::exception);
}

TEST(BackupSchedule, due_when_the_newest_backup_is_as_old_as_the_interval) {
  const int day = 86400;
  const int64_t now = 100LL * day * 1000;
  EXPECT_FALSE(backup_due(now, std::nullopt, 0, 0, false));  // off
  EXPECT_TRUE(backup_due(now, std::nullopt, 0, day, false));  // none yet: at once
  EXPECT_FALSE(backup_due(now, now - day * 1000LL + 1, 0, day, false));
  EXPECT_TRUE(backup_due(now, now - day * 1000LL, 0, day, false));
  EXPECT_FALSE(backup_due(now, std::nullopt, 0, day, true));  // one is being taken
}

TEST(BackupSchedule, incremental_until_the_newest_full_backup_is_as_old_as_full_interval) {
  const int day = 86400;
  const int64_t now = 100LL * day * 1000;
  auto full = finished_at("full", now - 3LL * day * 1000);
  auto incremental = finished_at("incr", now - day * 1000LL);
  incremental.parent = "full";
  EXPECT_FALSE(next_backup_incremental({full, incremental}, now, 0));  // off: always full
  EXPECT_TRUE(next_backup_incremental({full, incremental}, now, 7 * day));
  EXPECT_FALSE(next_backup_incremental({full, incremental}, now, 3 * day));  // the full one is 3 days old
  EXPECT_FALSE(next_backup_incremental({}, now, 7 * day));  // nothing to build on
  EXPECT_FALSE(next_backup_incremental({incremental}, now, 7 * day));  // its full backup was pruned: a new one
}

TEST(BackupSchedule, a_failed_start_is_retried_after_ten_minutes_or_the_interval) {
  const int64_t now = 1'000'000'000;
  EXPECT_FALSE(backup_due(now, std::nullopt, now - 599'999, 86400, false));
  EXPECT_TRUE(backup_due(now, std::nullopt, now - 600'000, 86400, false));
  EXPECT_FALSE(backup_due(now, std::nullopt, now - 119'999, 120, false));  // a shorter interval is the wait
  EXPECT_TRUE(backup_due(now, std::nullopt, now - 120'000, 120, false));
}

TEST(BackupTimestamp, reads_what_users_type_with_a_zone) {
  EXPECT_EQ(parse_timestamp("2026-12-07 02:15:30Z"), 1796609730000);
  EXPECT_EQ(parse_timestamp("2026-12-07T02:15:30.25Z"), 1796609730250);
  EXPECT_EQ(parse_timestamp("2026-12-07 03:15:30+01:00"), 1796609730000);
  EXPECT_EQ(parse_timestamp("2026-12-07 03:15:30+01"), 1796609730000);
  EXPECT_EQ(parse_timestamp("2026-12-06 21:15:30-0500"), 1796609730000);
  EXPECT_EQ(parse_timestamp("2026-12-07 02:15 UTC"), 1796609700000);
  EXPECT_EQ(parse_timestamp("1796609730"), 1796609730000);  // unix seconds
}

TEST(BackupTimestamp, a_time_without_zone_is_local_time) {
  const char* saved = std::getenv("TZ");
  const std::string before = saved ? saved : "";
  ::setenv("TZ", "Europe/Berlin", 1);
  ::tzset();
  EXPECT_EQ(parse_timestamp("2026-12-07 03:15:30"), 1796609730000);  // CET = UTC+1 in December
  if (saved) ::setenv("TZ", before.c_str(), 1);
  else ::unsetenv("TZ");
  ::tzset();
}

TEST(BackupTimestamp, refuses_what_it_cannot_read) {
  for (const char* bad : {"", "yesterday", "2026-13-07 02:15:30", "2026-12-07", "2026-12-07 25:00:00",
                          "2026-12-07 02:15:30+16:00", "2026-12-07 02:15:30 CET"})
    EXPECT_FALSE(parse_timestamp(bad)) << bad;
}

TEST(BackupTimestamp, formats_recovery_targets_in_utc) {
  EXPECT_EQ(format_utc(1796609730250), "2026-12-07 02:15:30.250+00");
  EXPECT_EQ(parse_timestamp(format_utc(1796609730250)), 1796609730250);
}

}  // namespace
