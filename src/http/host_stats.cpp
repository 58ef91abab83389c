// /proc and /sys readers for the host statistics.
#include "http/host_stats.hpp"

#include <dirent.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace pgfleet::http {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::map<std::string, double> parse_proc_stat_cpu(const std::string& text, int& cpus) {
  static const char* modes[] = {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"};
  std::map<std::string, double> out;
  cpus = 0;
  double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  if (tick <= 0) tick = 100;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("cpu", 0) != 0) continue;
    if (line.size() > 3 && line[3] != ' ') {
      ++cpus;
      continue;
    }
    std::istringstream fields(line.substr(3));
    for (const char* mode : modes) {
      double ticks = 0;
      if (!(fields >> ticks)) break;
      out[mode] = ticks / tick;
    }
  }
  return out;
}

std::pair<uint64_t, uint64_t> parse_meminfo(const std::string& text) {
  uint64_t total = 0, available = 0;
  std::istringstream in(text);
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    if (!(f >> key >> kb)) continue;
    if (key == "MemTotal:") total = kb * 1024;
    if (key == "MemAvailable:") available = kb * 1024;
  }
  return {total, available};
}

std::map<std::string, std::pair<uint64_t, uint64_t>> parse_net_dev(const std::string& text) {
  std::map<std::string, std::pair<uint64_t, uint64_t>> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;  // the two header lines
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    std::istringstream f(line.substr(colon + 1));
    uint64_t v[9] = {};
    for (auto& x : v) f >> x;
    if (!f) continue;
    out[name] = {v[0], v[8]};  // receive bytes, transmit bytes
  }
  return out;
}

std::optional<double> cpu_percent(const std::map<std::string, double>& before, const std::map<std::string, double>& after) {
  double total = 0, idle = 0;
  for (const auto& [mode, v] : after) {
    auto it = before.find(mode);
    double d = v - (it == before.end() ? 0 : it->second);
    total += d;
    if (mode == "idle" || mode == "iowait") idle += d;
  }
  if (total <= 0) return std::nullopt;
  return 100.0 * (total - idle) / total;
}

HostStats read_host_stats(const std::string& data_dir, const std::string& sys_root) {
  HostStats s;
  s.cpu_seconds = parse_proc_stat_cpu(slurp("/proc/stat"), s.cpus);
  std::istringstream load(slurp("/proc/loadavg"));
  load >> s.load1 >> s.load5 >> s.load15;
  std::tie(s.memory_total_bytes, s.memory_available_bytes) = parse_meminfo(slurp("/proc/meminfo"));
  struct statvfs fs {};
  if (::statvfs(data_dir.c_str(), &fs) == 0) {
    s.disk_total_bytes = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
    s.disk_free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;  // what PostgreSQL may still use
  }
  s.network = parse_net_dev(slurp("/proc/net/dev"));
  std::string thermal = sys_root + "/class/thermal";
  if (DIR* d = ::opendir(thermal.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.rfind("thermal_zone", 0) != 0) continue;
      std::string temp = slurp(thermal + "/" + name + "/temp");
      std::string type = slurp(thermal + "/" + name + "/type");
      while (!type.empty() && (type.back() == '\n' || type.back() == ' ')) type.pop_back();
      if (temp.empty()) continue;
      try {
        s.temperatures_celsius.emplace_back(type.empty() ? name : name + ":" + type, std::stod(temp) / 1000.0);
      } catch (const std::exception&) {
      }
    }
    ::closedir(d);
  }
  return s;
}

}  // namespace pgfleet::http
