#include "backup/wal_archive.hpp"

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <regex>

#include "util/clock.hpp"
#include "util/fs.hpp"

namespace pgfleet::backup {
namespace {

bool has_base_backup(const cluster::Layout& layout) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(layout.backups_dir(), ec))
    if (entry.is_directory()) return true;  // a finished backup, or one being taken
  return false;
}

}  // namespace

bool is_wal_file_name(const std::string& name) {
  static const std::regex pattern(
      "[0-9A-F]{24}(\\.partial)?|[0-9A-F]{8}\\.history|[0-9A-F]{24}\\.[0-9A-F]{8}\\.backup");
  return std::regex_match(name, pattern);
}

Result<Archived> archive_wal(const cluster::Layout& layout, const std::string& source, const std::string& name) {
  if (!is_wal_file_name(name)) return Error{"'" + name + "' is not a WAL file name"};
  if (!has_base_backup(layout)) return Archived::NotNeeded;
  auto content = fs::read_file(source);
  if (!content) return Error{"cannot read " + source};
  const std::string target = layout.archive_dir() + "/" + name;
  try {
    fs::make_directories(layout.archive_dir(), 0700);
    if (auto there = fs::read_file(target)) {
      if (*there == *content) return Archived::AlreadyThere;
      // Not expected (one name is one piece of WAL); keep both rather than fail: a failing
      // archive_command makes PostgreSQL keep every later segment until its disk is full.
      fs::write_file_atomic(target + ".conflict-" + std::to_string(unix_ms()), *content, 0600);
      return Archived::KeptAside;
    }
    fs::write_file_atomic(target, *content, 0600);
  } catch (const std::exception& e) {
    return Error{e.what()};
  }
  return Archived::Copied;
}

Result<std::string> restore_wal(const cluster::Layout& layout, const std::string& name, const std::string& destination,
                                const std::vector<std::string>& fallback_data_dirs) {
  if (!is_wal_file_name(name)) return Error{"'" + name + "' is not a WAL file name"};
  std::string from = layout.archive_dir() + "/" + name;
  if (!fs::exists(from)) {
    from.clear();
    std::filesystem::file_time_type newest{};
    for (const auto& dir : fallback_data_dirs) {
      const std::string candidate = dir + "/pg_wal/" + name;
      std::error_code ec;
      auto modified = std::filesystem::last_write_time(candidate, ec);
      if (ec || (!from.empty() && modified <= newest)) continue;
      from = candidate;
      newest = modified;
    }
    if (from.empty()) return Error{name + " is not in the archive"};
  }
  auto content = fs::read_file(from);
  if (!content) return Error{"cannot read " + from};
  try {
    fs::write_file_atomic(destination, *content, 0600);
  } catch (const std::exception& e) {
    return Error{e.what()};
  }
  return from;
}

}  // namespace pgfleet::backup
