// An incremental base backup taken file by file from a running server's data directory (between
// pg_backup_start and pg_backup_stop): the files unchanged since the parent backup become hard
// links to the parent's copies, the others are copied. The backup gets a backup_manifest in
// pg_basebackup's format, so pg_verifybackup checks it like a full one. docs/backup.md.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace pgfleet::backup {

// One file of a backup_manifest. `mtime` is the source file's modification time (unix seconds;
// manifests keep whole seconds), `checksum` its CRC32C as the manifest writes it ("" = none).
struct ManifestFile {
  std::string path;  // relative to the data directory
  uint64_t size = 0;
  int64_t mtime = 0;
  std::string checksum;
  bool operator==(const ManifestFile&) const = default;
};

// The CRC-32C (Castagnoli) of `data` continuing from `crc` (0 to start), as a manifest
// checksum's value before hex encoding.
uint32_t crc32c(uint32_t crc, const void* data, size_t size);
// The same by table, what crc32c() uses where the CPU has no CRC instruction (tests compare them).
uint32_t crc32c_portable(uint32_t crc, const void* data, size_t size);
// A manifest's "Checksum": the CRC's 4 bytes in memory order (little-endian), in hex.
std::string crc32c_hex(uint32_t crc);

// What pg_basebackup leaves out of a backup (`path` relative to the data directory): the WAL
// (restore_command brings it back), server runtime state, temporary files, backup_label.
bool excluded_from_backup(std::string_view path);

// The files of a manifest (pg_basebackup's or ours), by path; throws UserError when unreadable.
std::map<std::string, ManifestFile> read_manifest_files(const std::string& manifest_path);

// backup_manifest text for `files` (sorted here), version 1 with CRC32C checksums and one WAL range,
// ending in the SHA-256 Manifest-Checksum that pg_verifybackup checks.
std::string render_manifest(std::vector<ManifestFile> files, int timeline, const std::string& start_lsn,
                            const std::string& end_lsn);

struct CopyStats {
  uint64_t bytes = 0, copied_bytes = 0;  // all files; those copied rather than linked
  size_t files = 0, copied_files = 0;
  std::vector<ManifestFile> manifest;    // every file written into the target
};

// Copies `source` (a data directory) into `target` (created). A file is linked to
// `parent_data`/<path> when its size and modification time equal the parent manifest's and that
// time is more than 2 s before `parent_started_unix_s` (a file written in the parent's copy
// window may have changed again within the same second). Throws UserError on an I/O error.
CopyStats copy_data_directory(const std::string& source, const std::string& target, const std::string& parent_data,
                              const std::map<std::string, ManifestFile>& parent_files, int64_t parent_started_unix_s);

// Adds a file the backup itself writes (backup_label) to `stats.manifest`.
void add_written_file(const std::string& data_dir, const std::string& path, CopyStats& stats);

}  // namespace pgfleet::backup
