// The WAL archive of a cluster (<dir>/archive): PostgreSQL's archive_command and restore_command
// call `pgfleet archive-wal` and `pgfleet restore-wal`, which use these.
//
// Every node archives (archive_mode = always): a replica archives what it received, so the
// archive has every segment some node had, even one the primary wrote just before it died. The
// nodes of one host share the directory; the same name from two nodes is the same WAL, so the
// second copy is compared, not written. Nothing is kept before the first base backup exists:
// WAL older than every backup cannot be replayed by anything. Segments are kept compressed
// (<name>.zst, zstd with a content checksum); history and backup files as they are.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cluster/layout.hpp"
#include "util/result.hpp"

namespace pgfleet::backup {

// A name PostgreSQL gives a file it archives: a segment (24 hex digits), optionally ".partial",
// a timeline history file (8 hex digits ".history") or a backup history file.
bool is_wal_file_name(const std::string& name);

// The WAL file a file of the archive holds (its name without ".zst"), nullopt for anything else.
std::optional<std::string> wal_name_in_archive(const std::string& file_name);

// Whether the archive holds `name` (as it is or compressed).
bool is_archived(const cluster::Layout& layout, const std::string& name);

enum class Archived {
  Copied,        // written (compressed if a segment, fsynced, renamed into place)
  AlreadyThere,  // another node archived the same bytes
  NotNeeded,     // no base backup yet: nothing could replay it
  KeptAside,     // a different file of that name was there: this one is kept as <name>.conflict-<ms>
};

// archive_command: copies `source` (a path relative to the data directory, as %p) as `name` (%f).
Result<Archived> archive_wal(const cluster::Layout& layout, const std::string& source, const std::string& name);

// restore_command: copies `name` from the archive (decompressed) to `destination`, or, when the archive lacks it,
// from the pg_wal of one of `fallback_data_dirs` (the data directories a restore moved aside:
// the newest WAL a primary wrote was often not archived yet), the most recently modified copy.
// Returns where it came from; an error when no copy exists (PostgreSQL then tries other sources).
Result<std::string> restore_wal(const cluster::Layout& layout, const std::string& name, const std::string& destination,
                                const std::vector<std::string>& fallback_data_dirs);

}  // namespace pgfleet::backup
