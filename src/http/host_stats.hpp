// Host statistics an agent reports for its machine: CPU, load, memory, the data directory's
// disk, network bytes and temperatures (/sys/class/thermal, e.g. a Raspberry Pi's SoC).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pgfleet::http {

struct HostStats {
  std::map<std::string, double> cpu_seconds;  // by mode (user, system, idle, iowait, ...), all CPUs
  int cpus = 0;
  double load1 = 0, load5 = 0, load15 = 0;
  uint64_t memory_total_bytes = 0, memory_available_bytes = 0;
  std::optional<uint64_t> disk_total_bytes, disk_free_bytes;  // of the data directory's file system
  std::map<std::string, std::pair<uint64_t, uint64_t>> network;  // interface → (received, sent) bytes
  std::vector<std::pair<std::string, double>> temperatures_celsius;  // thermal zone type → °C
};

// Readers of the /proc formats (pure, for tests).
std::map<std::string, double> parse_proc_stat_cpu(const std::string& text, int& cpus);
std::pair<uint64_t, uint64_t> parse_meminfo(const std::string& text);  // total, available
std::map<std::string, std::pair<uint64_t, uint64_t>> parse_net_dev(const std::string& text);

// Reads everything from /proc, /sys and statvfs(data_dir); missing sources leave fields empty.
HostStats read_host_stats(const std::string& data_dir, const std::string& sys_root = "/sys");

// CPU busy percentage between two samples (0..100); nullopt when no time passed.
std::optional<double> cpu_percent(const std::map<std::string, double>& before, const std::map<std::string, double>& after);

}  // namespace pgfleet::http
