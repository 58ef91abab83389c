// The base backups of a cluster (<dir>/backups/<id>/): what each one holds, which one a restore
// starts from, which ones a --keep removes, and the timestamps users type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster/layout.hpp"

namespace pgfleet::backup {

// backups/<id>/backup.json; the data directory is backups/<id>/data.
struct BackupInfo {
  std::string id;            // UTC time it started, 20261207T021530Z (a suffix if taken twice that second)
  std::string node;          // copied from
  int64_t started_ms = 0;    // unix ms
  int64_t finished_ms = 0;   // unix ms: the earliest time a restore from it can stop at
  int timeline = 0;
  std::string start_lsn, stop_lsn;
  std::string start_wal;     // the first WAL segment it needs: older archived WAL is of no use to it
  uint64_t bytes = 0;
  // Incremental (`backup --incremental`): the backup its unchanged files are hard links into, and
  // the bytes this one copied. A full backup: "" and `bytes`.
  std::string parent;
  uint64_t copied_bytes = 0;
  bool operator==(const BackupInfo&) const = default;
};

nlohmann::json to_json(const BackupInfo& b);
BackupInfo backup_from_json(const nlohmann::json& j);  // throws nlohmann::json::exception

// Finished backups (those with backup.json), oldest first.
std::vector<BackupInfo> list_backups(const cluster::Layout& layout);
std::string backup_dir(const cluster::Layout& layout, const std::string& id);

// The backup a restore to `target_ms` starts from: the newest one finished at or before it
// (no target: the newest). nullopt when there is none.
std::optional<BackupInfo> backup_for(const std::vector<BackupInfo>& oldest_first, std::optional<int64_t> target_ms);

// The backups `--keep keep` removes: all but the `keep` newest (keep >= 1).
std::vector<BackupInfo> backups_to_remove(const std::vector<BackupInfo>& oldest_first, int keep);

// backup.interval: whether the primary's agent starts a backup now. `newest_finished_ms` is the
// newest backup's end (nullopt: none), `last_started_ms` this agent's last start (0: none), and
// `one_running` whether a backup is being taken. After a start it waits at least 10 minutes (or
// the interval, if shorter) before the next attempt, so a failing backup is not retried each loop.
bool backup_due(int64_t now_ms, std::optional<int64_t> newest_finished_ms, int64_t last_started_ms,
                int interval_seconds, bool one_running);
// backup.full_interval: whether the next scheduled backup is incremental, that is, whether the
// newest full backup finished less than `full_interval_seconds` ago (0: every backup is full).
bool next_backup_incremental(const std::vector<BackupInfo>& oldest_first, int64_t now_ms, int full_interval_seconds);
// A backup is being taken: a backups/<id>.partial directory changed within the last hour (an
// older one was abandoned).
bool backup_running(const cluster::Layout& layout);

// "2026-12-07 02:15:30", "2026-12-07T02:15:30.250Z", "2026-12-07 02:15:30+01:00" or unix seconds:
// unix ms. A time without a zone is local time, as in the other commands. nullopt when unreadable.
std::optional<int64_t> parse_timestamp(std::string_view text);
// "2026-12-07 02:15:30.250+00": what recovery_target_time gets (explicit UTC, no zone guessing).
std::string format_utc(int64_t unix_ms);
// "20261207T021530Z": the id of a backup started then, also a file-name-safe time stamp.
std::string compact_utc(int64_t unix_ms);

}  // namespace pgfleet::backup
