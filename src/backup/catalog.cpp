#include "backup/catalog.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <regex>

#include "util/fs.hpp"

namespace pgfleet::backup {

nlohmann::json to_json(const BackupInfo& b) {
  return {{"id", b.id},
          {"node", b.node},
          {"started_ms", b.started_ms},
          {"finished_ms", b.finished_ms},
          {"timeline", b.timeline},
          {"start_lsn", b.start_lsn},
          {"stop_lsn", b.stop_lsn},
          {"start_wal", b.start_wal},
          {"bytes", b.bytes},
          {"parent", b.parent.empty() ? nlohmann::json(nullptr) : nlohmann::json(b.parent)},
          {"copied_bytes", b.copied_bytes}};
}

BackupInfo backup_from_json(const nlohmann::json& j) {
  BackupInfo b;
  b.id = j.at("id").get<std::string>();
  b.node = j.at("node").get<std::string>();
  b.started_ms = j.at("started_ms").get<int64_t>();
  b.finished_ms = j.at("finished_ms").get<int64_t>();
  b.timeline = j.at("timeline").get<int>();
  b.start_lsn = j.at("start_lsn").get<std::string>();
  b.stop_lsn = j.at("stop_lsn").get<std::string>();
  b.start_wal = j.at("start_wal").get<std::string>();
  b.bytes = j.at("bytes").get<uint64_t>();
  // Written before incremental backups existed: full ones.
  if (auto p = j.find("parent"); p != j.end() && p->is_string()) b.parent = p->get<std::string>();
  b.copied_bytes = j.value("copied_bytes", b.bytes);
  return b;
}

bool next_backup_incremental(const std::vector<BackupInfo>& oldest_first, int64_t now_ms, int full_interval_seconds) {
  if (full_interval_seconds <= 0) return false;
  for (auto it = oldest_first.rbegin(); it != oldest_first.rend(); ++it)
    if (it->parent.empty()) return now_ms - it->finished_ms < int64_t{full_interval_seconds} * 1000;
  return false;  // no full backup yet
}

std::string backup_dir(const cluster::Layout& layout, const std::string& id) { return layout.backups_dir() + "/" + id; }

std::vector<BackupInfo> list_backups(const cluster::Layout& layout) {
  std::vector<BackupInfo> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(layout.backups_dir(), ec)) {
    auto text = fs::read_file(entry.path().string() + "/backup.json");
    if (!text) continue;  // being taken, or abandoned half-way
    try {
      out.push_back(backup_from_json(nlohmann::json::parse(*text)));
    } catch (const nlohmann::json::exception&) {
      // An unreadable description: the backup cannot be trusted for a restore.
    }
  }
  std::sort(out.begin(), out.end(), [](const BackupInfo& a, const BackupInfo& b) {
    return std::tie(a.finished_ms, a.id) < std::tie(b.finished_ms, b.id);
  });
  return out;
}

std::optional<BackupInfo> backup_for(const std::vector<BackupInfo>& oldest_first, std::optional<int64_t> target_ms) {
  for (auto it = oldest_first.rbegin(); it != oldest_first.rend(); ++it)
    if (!target_ms || it->finished_ms <= *target_ms) return *it;
  return std::nullopt;
}

std::vector<BackupInfo> backups_to_remove(const std::vector<BackupInfo>& oldest_first, int keep) {
  const size_t kept = static_cast<size_t>(std::max(keep, 1));
  if (oldest_first.size() <= kept) return {};
  return {oldest_first.begin(), oldest_first.end() - static_cast<std::ptrdiff_t>(kept)};
}

bool backup_due(int64_t now_ms, std::optional<int64_t> newest_finished_ms, int64_t last_started_ms,
                int interval_seconds, bool one_running) {
  if (interval_seconds <= 0 || one_running) return false;
  const int64_t interval_ms = static_cast<int64_t>(interval_seconds) * 1000;
  if (last_started_ms != 0 && now_ms - last_started_ms < std::min<int64_t>(interval_ms, 600000)) return false;
  return !newest_finished_ms || now_ms - *newest_finished_ms >= interval_ms;
}

bool backup_running(const cluster::Layout& layout) {
  std::error_code ec;
  const auto hour_ago = std::filesystem::file_time_type::clock::now() - std::chrono::hours(1);
  for (const auto& entry : std::filesystem::directory_iterator(layout.backups_dir(), ec))
    if (entry.path().extension() == ".partial" && entry.last_write_time(ec) > hour_ago) return true;
  return false;
}

std::optional<int64_t> parse_timestamp(std::string_view text) {
  const std::string s(text);
  if (!s.empty() && s.size() <= 12 && s.find_first_not_of("0123456789") == std::string::npos)
    return std::stoll(s) * 1000;
  static const std::regex pattern(
      R"(\s*(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?\s*(Z|UTC|[+-]\d{2}(?::?\d{2})?)?\s*)",
      std::regex::icase);
  std::smatch m;
  if (!std::regex_match(s, m, pattern)) return std::nullopt;
  std::tm tm{};
  tm.tm_year = std::stoi(m[1]) - 1900;
  tm.tm_mon = std::stoi(m[2]) - 1;
  tm.tm_mday = std::stoi(m[3]);
  tm.tm_hour = std::stoi(m[4]);
  tm.tm_min = std::stoi(m[5]);
  tm.tm_sec = m[6].matched ? std::stoi(m[6]) : 0;
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
    return std::nullopt;
  int64_t millis = 0;
  if (m[7].matched) {
    std::string frac = m[7].str() + "00";
    millis = std::stoi(frac.substr(0, 3));
  }
  int64_t seconds = 0;
  if (!m[8].matched) {
    tm.tm_isdst = -1;
    seconds = static_cast<int64_t>(std::mktime(&tm));
  } else {
    seconds = static_cast<int64_t>(timegm(&tm));
    const std::string zone = m[8].str();
    if (zone[0] == '+' || zone[0] == '-') {
      std::string digits;
      for (char c : zone)
        if (c >= '0' && c <= '9') digits += c;
      const int hours = std::stoi(digits.substr(0, 2));
      const int minutes = digits.size() >= 4 ? std::stoi(digits.substr(2, 2)) : 0;
      if (hours > 15 || minutes > 59) return std::nullopt;
      const int64_t offset = hours * 3600 + minutes * 60;
      seconds -= zone[0] == '+' ? offset : -offset;
    }
  }
  return seconds * 1000 + millis;
}

namespace {
std::tm utc_fields(int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return tm;
}
}  // namespace

std::string format_utc(int64_t unix_ms) {
  const std::tm tm = utc_fields(unix_ms);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}+00", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, unix_ms % 1000);
}

std::string compact_utc(int64_t unix_ms) {
  const std::tm tm = utc_fields(unix_ms);
  return fmt::format("{:04}{:02}{:02}T{:02}{:02}{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

}  // namespace pgfleet::backup
