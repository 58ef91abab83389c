// File-system helpers built on std::filesystem and POSIX calls where atomicity matters.
#include "util/fs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace pgfleet::fs {
namespace stdfs = std::filesystem;

namespace {
[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw std::runtime_error(what + " " + path + ": " + std::strerror(errno));
}
}  // namespace

bool exists(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  std::error_code ec;
  return stdfs::is_directory(path, ec);
}

bool is_empty_directory(const std::string& path) {
  std::error_code ec;
  if (!stdfs::exists(path, ec)) return true;
  return stdfs::is_directory(path, ec) && stdfs::is_empty(path, ec);
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_file_atomic(const std::string& path, const std::string& content, mode_t mode) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) fail("cannot create", tmp);
  ::fchmod(fd, mode);  // umask must not widen or narrow what the caller asked for
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      errno = saved;
      fail("cannot write", tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    fail("cannot write", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    fail("cannot replace", path);
  }
}

void append_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::app | std::ios::binary);
  if (!out) fail("cannot open", path);
  out << content;
  if (!out) fail("cannot write", path);
}

void make_directories(const std::string& path, mode_t mode) {
  std::string current;
  std::stringstream parts(path);
  std::string part;
  if (!path.empty() && path[0] == '/') current = "/";
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    current += (current.empty() || current.back() == '/') ? part : "/" + part;
    if (::mkdir(current.c_str(), mode) != 0 && errno != EEXIST) fail("cannot create directory", current);
  }
}

void remove_all(const std::string& path) {
  std::error_code ec;
  stdfs::remove_all(path, ec);
  if (ec) throw std::runtime_error("cannot remove " + path + ": " + ec.message());
}

void chown_recursive(const std::string& path, uid_t uid, gid_t gid) {
  if (::lchown(path.c_str(), uid, gid) != 0) fail("cannot chown", path);
  std::error_code ec;
  if (!stdfs::is_directory(stdfs::symlink_status(path, ec))) return;
  for (const auto& entry : stdfs::recursive_directory_iterator(path, ec)) {
    if (::lchown(entry.path().c_str(), uid, gid) != 0) fail("cannot chown", entry.path().string());
  }
}

std::string absolute(const std::string& path) {
  std::error_code ec;
  auto p = stdfs::absolute(path, ec);
  return (ec ? stdfs::path(path) : p).lexically_normal().string();
}

std::string parent(const std::string& path) {
  auto p = stdfs::path(path).lexically_normal();
  if (p.has_filename()) return p.parent_path().string();
  return p.parent_path().parent_path().string();
}

std::string tail(const std::string& path, int max_lines) {
  std::ifstream in(path);
  if (!in) return {};
  std::deque<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
    if (static_cast<int>(lines.size()) > max_lines) lines.pop_front();
  }
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

TempDir::TempDir(const std::string& prefix) {
  std::string pattern = "/tmp/" + prefix + "-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr)
    throw std::runtime_error("cannot create a directory in /tmp: " + std::string(std::strerror(errno)));
  path_ = pattern;
}

TempDir::~TempDir() {
  try {
    remove_all(path_);
  } catch (const std::exception&) {  // leaving a directory in /tmp is no reason to fail
  }
}

}  // namespace pgfleet::fs
