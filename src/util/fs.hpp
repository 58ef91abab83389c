// Small file-system helpers: whole-file read/write, atomic replace, directory checks.
#pragma once

#include <optional>
#include <string>
#include <sys/types.h>

namespace pgfleet::fs {

bool exists(const std::string& path);
bool is_directory(const std::string& path);
// True if the path does not exist or is an empty directory.
bool is_empty_directory(const std::string& path);
std::optional<std::string> read_file(const std::string& path);
// Writes to a temporary file beside `path`, fsyncs and renames; throws std::runtime_error.
void write_file_atomic(const std::string& path, const std::string& content, mode_t mode = 0600);
void append_file(const std::string& path, const std::string& content);
// mkdir -p with `mode` for the directories it creates; throws std::runtime_error.
void make_directories(const std::string& path, mode_t mode = 0700);
// rm -rf; throws std::runtime_error on failure other than "does not exist".
void remove_all(const std::string& path);
void chown_recursive(const std::string& path, uid_t uid, gid_t gid);
std::string absolute(const std::string& path);
std::string parent(const std::string& path);
// The last `max_lines` lines of a file ("" if unreadable).
std::string tail(const std::string& path, int max_lines);

// A fresh directory /tmp/<prefix>-XXXXXX (0700), removed with its contents when destroyed;
// throws std::runtime_error when it cannot be made.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace pgfleet::fs
