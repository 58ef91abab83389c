#include "backup/file_backup.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/errors.hpp"
#include "util/fs.hpp"

namespace pgfleet::backup {
namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected Castagnoli
    table[i] = c;
  }
  return table;
}
constexpr auto kCrc32cTable = make_crc32c_table();

uint32_t crc32c_table(uint32_t crc, const unsigned char* p, size_t size) {
  for (size_t i = 0; i < size; ++i) crc = kCrc32cTable[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
// SSE 4.2 has the Castagnoli CRC as an instruction: 8 bytes a cycle or so, against one byte for
// the table (a backup checksums every byte it copies).
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t crc, const unsigned char* p, size_t size) {
  uint64_t c = crc;
  for (; size >= 8; p += 8, size -= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = __builtin_ia32_crc32di(c, word);
  }
  crc = static_cast<uint32_t>(c);
  for (; size > 0; ++p, --size) crc = __builtin_ia32_crc32qi(crc, *p);
  return crc;
}
// Asked on first use, not in a static initializer: the CPU detection must have run first.
bool have_sse42() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return yes;
}
#endif

// "2026-12-07 08:11:07 GMT", as pg_basebackup writes Last-Modified.
std::string gmt_text(int64_t unix_s) {
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S GMT", &tm);
  return buf;
}

int64_t parse_gmt(const std::string& text) {
  std::tm tm{};
  if (strptime(text.c_str(), "%Y-%m-%d %H:%M:%S", &tm) == nullptr) return -1;
  return static_cast<int64_t>(timegm(&tm));
}

std::string errno_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

// Copies one file, returning its CRC32C; the copy is written 0600.
uint32_t copy_file_with_crc(const std::string& from, const std::string& to, uint64_t& bytes) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) throw UserError(errno_text("cannot read", from));
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) {
    ::close(in);
    throw UserError(errno_text("cannot create", to));
  }
  std::vector<char> buf(1 << 20);
  uint32_t crc = 0;
  bytes = 0;
  while (true) {
    ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(in);
      ::close(out);
      throw UserError(errno_text("cannot read", from));
    }
    if (n == 0) break;
    crc = crc32c(crc, buf.data(), static_cast<size_t>(n));
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(out, buf.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        ::close(in);
        ::close(out);
        throw UserError(errno_text("cannot write", to));
      }
      done += w;
    }
    bytes += static_cast<uint64_t>(n);
  }
  ::close(in);
  if (::close(out) != 0) throw UserError(errno_text("cannot write", to));
  return crc;
}

uint32_t crc_of_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UserError(errno_text("cannot read", path));
  std::vector<char> buf(1 << 20);
  uint32_t crc = 0;
  ssize_t n;
  while ((n = ::read(fd, buf.data(), buf.size())) > 0) crc = crc32c(crc, buf.data(), static_cast<size_t>(n));
  ::close(fd);
  if (n < 0) throw UserError(errno_text("cannot read", path));
  return crc;
}

}  // namespace

uint32_t crc32c(uint32_t crc, const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
#if defined(__x86_64__)
  if (have_sse42()) return ~crc32c_sse42(~crc, p, size);
#endif
  return crc32c_portable(crc, p, size);
}

uint32_t crc32c_portable(uint32_t crc, const void* data, size_t size) {
  return ~crc32c_table(~crc, static_cast<const unsigned char*>(data), size);
}

std::string crc32c_hex(uint32_t crc) {
  return fmt::format("{:02x}{:02x}{:02x}{:02x}", crc & 0xFF, (crc >> 8) & 0xFF, (crc >> 16) & 0xFF, crc >> 24);
}

bool excluded_from_backup(std::string_view path) {
  const auto slash = path.find('/');
  const std::string_view top = path.substr(0, slash);
  const std::string_view name = path.substr(path.rfind('/') == std::string_view::npos ? 0 : path.rfind('/') + 1);
  // Directories kept empty: runtime state a server rebuilds, and the WAL.
  static constexpr std::string_view kEmptied[] = {"pg_wal",      "pg_stat_tmp", "pg_replslot", "pg_dynshmem",
                                                  "pg_notify",   "pg_serial",   "pg_snapshots", "pg_subtrans"};
  if (slash != std::string_view::npos &&
      std::find(std::begin(kEmptied), std::end(kEmptied), top) != std::end(kEmptied)) {
    return !(top == "pg_wal" && path == "pg_wal/archive_status");  // the one directory pg_wal needs
  }
  static constexpr std::string_view kTopFiles[] = {"postmaster.pid",  "postmaster.opts", "backup_label",
                                                   "tablespace_map",  "current_logfiles", "postgresql.auto.conf.tmp",
                                                   "standby.signal",  "recovery.signal", "backup_manifest"};
  if (slash == std::string_view::npos &&
      std::find(std::begin(kTopFiles), std::end(kTopFiles), path) != std::end(kTopFiles))
    return true;
  if (name.starts_with("pg_internal.init")) return true;  // relation cache, rebuilt at start
  for (size_t at = 0; at <= path.size();) {  // temporary files and directories, anywhere
    size_t end = path.find('/', at);
    if (end == std::string_view::npos) end = path.size();
    if (path.substr(at, end - at).starts_with("pgsql_tmp")) return true;
    at = end + 1;
  }
  return false;
}

std::map<std::string, ManifestFile> read_manifest_files(const std::string& manifest_path) {
  auto text = fs::read_file(manifest_path);
  if (!text) throw UserError("cannot read " + manifest_path);
  std::map<std::string, ManifestFile> out;
  try {
    const auto manifest = nlohmann::json::parse(*text);  // named: the loop walks a part of it
    for (const auto& f : manifest.at("Files")) {
      if (!f.contains("Path")) continue;  // an Encoded-Path (not UTF-8): compared as changed
      ManifestFile m;
      m.path = f.at("Path").get<std::string>();
      m.size = f.at("Size").get<uint64_t>();
      m.mtime = parse_gmt(f.value("Last-Modified", ""));
      if (f.value("Checksum-Algorithm", "") == "CRC32C") m.checksum = f.value("Checksum", "");
      out[m.path] = m;
    }
  } catch (const nlohmann::json::exception& e) {
    throw UserError("cannot read " + manifest_path + ": " + e.what());
  }
  return out;
}

std::string render_manifest(std::vector<ManifestFile> files, int timeline, const std::string& start_lsn,
                            const std::string& end_lsn) {
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  std::string text = "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n";
  for (size_t i = 0; i < files.size(); ++i) {
    const auto& f = files[i];
    text += fmt::format("{{ \"Path\": {}, \"Size\": {}, \"Last-Modified\": \"{}\", \"Checksum-Algorithm\": \"CRC32C\", "
                        "\"Checksum\": \"{}\" }}{}\n",
                        nlohmann::json(f.path).dump(), f.size, gmt_text(f.mtime), f.checksum,
                        i + 1 < files.size() ? "," : "");
  }
  text += fmt::format("],\n\"WAL-Ranges\": [\n{{ \"Timeline\": {}, \"Start-LSN\": \"{}\", \"End-LSN\": \"{}\" }}\n],\n",
                      timeline, start_lsn, end_lsn);
  // The checksum covers everything up to here (pg_verifybackup: up to the last line's newline).
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
  return text + "\"Manifest-Checksum\": \"" + hex + "\"}\n";
}

CopyStats copy_data_directory(const std::string& source, const std::string& target, const std::string& parent_data,
                              const std::map<std::string, ManifestFile>& parent_files, int64_t parent_started_unix_s) {
  namespace stdfs = std::filesystem;
  CopyStats stats;
  fs::make_directories(target, 0700);
  // pg_control goes last, as pg_basebackup sends it: from a standby its minRecoveryPoint is where
  // the backup ends, so it must be read after every data file (it is then at least as new).
  std::vector<stdfs::path> last;
  // Links `rel` to the parent's copy when unchanged since (see the header), copies it otherwise.
  auto copy_or_link = [&](const std::string& from, const std::string& rel, const struct stat& st) {
    const std::string to = target + "/" + rel;
    ManifestFile m;
    m.path = rel;
    m.mtime = static_cast<int64_t>(st.st_mtim.tv_sec);
    auto parent = parent_files.find(rel);
    const bool unchanged = parent != parent_files.end() && parent->second.size == static_cast<uint64_t>(st.st_size) &&
                           parent->second.mtime == m.mtime && m.mtime + 2 < parent_started_unix_s;
    if (unchanged && ::link((parent_data + "/" + rel).c_str(), to.c_str()) == 0) {
      m.size = parent->second.size;
      m.checksum = !parent->second.checksum.empty() ? parent->second.checksum : crc32c_hex(crc_of_file(to));
    } else {
      uint64_t bytes = 0;
      try {
        m.checksum = crc32c_hex(copy_file_with_crc(from, to, bytes));
      } catch (const UserError&) {
        if (!fs::exists(from)) {  // removed while being copied
          ::unlink(to.c_str());
          return;
        }
        throw;
      }
      m.size = bytes;
      stats.copied_bytes += bytes;
      ++stats.copied_files;
    }
    stats.bytes += m.size;
    ++stats.files;
    stats.manifest.push_back(std::move(m));
  };
  std::error_code ec;
  stdfs::recursive_directory_iterator it(source, stdfs::directory_options::none, ec), end;
  if (ec) throw UserError("cannot list " + source + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw UserError("cannot list " + source + ": " + ec.message());
    const std::string rel = stdfs::relative(it->path(), source).string();
    const std::string to = target + "/" + rel;
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) {
      if (errno == ENOENT) continue;  // removed meanwhile (a dropped table): WAL replay drops it too
      throw UserError(errno_text("cannot read", it->path().string()));
    }
    if (S_ISLNK(st.st_mode)) {
      throw UserError("the data directory holds a symbolic link (" + rel + ", a tablespace?)",
                      "take a full backup (`pgfleet backup` without --incremental)");
    }
    if (S_ISDIR(st.st_mode)) {
      if (excluded_from_backup(rel)) {
        it.disable_recursion_pending();
        continue;
      }
      fs::make_directories(to, 0700);
      continue;
    }
    if (!S_ISREG(st.st_mode) || excluded_from_backup(rel)) continue;
    if (rel == "global/pg_control") {
      last.push_back(it->path());
      continue;
    }
    copy_or_link(it->path().string(), rel, st);
  }
  for (const auto& p : last) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) throw UserError(errno_text("cannot read", p.string()));
    copy_or_link(p.string(), stdfs::relative(p, source).string(), st);
  }
  return stats;
}

void add_written_file(const std::string& data_dir, const std::string& path, CopyStats& stats) {
  const std::string full = data_dir + "/" + path;
  struct stat st {};
  if (::stat(full.c_str(), &st) != 0) throw UserError(errno_text("cannot read", full));
  stats.manifest.push_back({path, static_cast<uint64_t>(st.st_size), static_cast<int64_t>(st.st_mtim.tv_sec),
                            crc32c_hex(crc_of_file(full))});
  stats.bytes += static_cast<uint64_t>(st.st_size);
  stats.copied_bytes += static_cast<uint64_t>(st.st_size);
  ++stats.files;
  ++stats.copied_files;
}

}  // namespace pgfleet::backup
