#include "backup/wal_archive.hpp"

#include <sys/stat.h>
#include <zstd.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <stdexcept>

#include "util/clock.hpp"
#include "util/fs.hpp"

namespace pgfleet::backup {
namespace {

constexpr std::string_view kCompressed = ".zst";

// Segments (16 MB, and often mostly zeros or repeated pages) are kept compressed; the small
// history and backup files, and partial segments, as PostgreSQL wrote them.
bool kept_compressed(const std::string& wal_name) { return wal_name.size() == 24; }

// zstd at its default level (a 16 MB segment in some tens of ms), with a checksum of the content,
// so that a damaged copy is refused by restore-wal instead of reaching the server.
std::string compress(const std::string& plain) {
  std::string out(ZSTD_compressBound(plain.size()), '\0');
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (cctx == nullptr) throw std::runtime_error("zstd: out of memory");
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, ZSTD_CLEVEL_DEFAULT);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  const size_t n = ZSTD_compress2(cctx, out.data(), out.size(), plain.data(), plain.size());
  ZSTD_freeCCtx(cctx);
  if (ZSTD_isError(n)) throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

Result<std::string> decompress(const std::string& packed, const std::string& path) {
  const unsigned long long size = ZSTD_getFrameContentSize(packed.data(), packed.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > (1ULL << 30))
    return Error{path + " is damaged (not a zstd frame of a WAL file)"};
  std::string out(size, '\0');
  const size_t n = ZSTD_decompress(out.data(), out.size(), packed.data(), packed.size());
  if (ZSTD_isError(n) || n != size) return Error{path + " is damaged: " + ZSTD_getErrorName(n)};
  return out;
}

// What an archived file holds: decompressed if it is a compressed one.
Result<std::string> read_archived(const std::string& path) {
  auto content = fs::read_file(path);
  if (!content) return Error{"cannot read " + path};
  if (!path.ends_with(kCompressed)) return *content;
  return decompress(*content, path);
}

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

std::optional<std::string> wal_name_in_archive(const std::string& file_name) {
  std::string name = file_name;
  if (name.ends_with(kCompressed)) name.resize(name.size() - kCompressed.size());
  if (!is_wal_file_name(name) || (file_name != name && !kept_compressed(name))) return std::nullopt;
  return name;
}

namespace {
// Where the archive keeps `name`: plain (history files, and segments from before compression)
// or compressed; "" when it has neither.
std::string archived_path(const cluster::Layout& layout, const std::string& name) {
  std::string path = layout.archive_dir() + "/" + name;
  if (fs::exists(path)) return path;
  path += kCompressed;
  return kept_compressed(name) && fs::exists(path) ? path : "";
}
}  // namespace

bool is_archived(const cluster::Layout& layout, const std::string& name) { return !archived_path(layout, name).empty(); }

Result<Archived> archive_wal(const cluster::Layout& layout, const std::string& source, const std::string& name) {
  if (!is_wal_file_name(name)) return Error{"'" + name + "' is not a WAL file name"};
  if (!has_base_backup(layout)) return Archived::NotNeeded;
  auto content = fs::read_file(source);
  if (!content) return Error{"cannot read " + source};
  const std::string plain_target = layout.archive_dir() + "/" + name;
  const std::string target = kept_compressed(name) ? plain_target + std::string(kCompressed) : plain_target;
  try {
    fs::make_directories(layout.archive_dir(), 0700);
    // The same name from another node (or, uncompressed, from a pgfleet before compression).
    for (const std::string& path : {target, plain_target}) {
      if (!fs::exists(path)) continue;
      auto there = read_archived(path);
      if (!there) break;  // a damaged copy: replaced below by this good one
      if (*there == *content) return Archived::AlreadyThere;
      // Not expected (one name is one piece of WAL); keep both rather than fail: a failing
      // archive_command makes PostgreSQL keep every later segment until its disk is full.
      fs::write_file_atomic(plain_target + ".conflict-" + std::to_string(unix_ms()), *content, 0600);
      return Archived::KeptAside;
    }
    fs::write_file_atomic(target, target == plain_target ? *content : compress(*content), 0600);
  } catch (const std::exception& e) {
    return Error{e.what()};
  }
  return Archived::Copied;
}

Result<std::string> restore_wal(const cluster::Layout& layout, const std::string& name, const std::string& destination,
                                const std::vector<std::string>& fallback_data_dirs) {
  if (!is_wal_file_name(name)) return Error{"'" + name + "' is not a WAL file name"};
  std::string from = archived_path(layout, name);
  if (from.empty()) {
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
  auto content = read_archived(from);
  if (!content) return Error{content.error()};
  try {
    fs::write_file_atomic(destination, *content, 0600);
  } catch (const std::exception& e) {
    return Error{e.what()};
  }
  return from;
}

}  // namespace pgfleet::backup
