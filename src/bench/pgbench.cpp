#include "bench/pgbench.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace pgfleet::bench {
namespace {

// The number after `label` on the line that starts with it ("tps = 6200.1 (without ...)").
std::optional<double> number_after(const std::string& output, std::string_view label) {
  size_t at = 0;
  while ((at = output.find(label, at)) != std::string::npos) {
    if (at == 0 || output[at - 1] == '\n') {
      const char* begin = output.data() + at + label.size();
      const char* end = output.data() + output.size();
      double value = 0;
      auto [ptr, ec] = std::from_chars(begin, end, value);
      if (ec == std::errc()) return value;
    }
    at += label.size();
  }
  return std::nullopt;
}

std::string first_error_line(const std::string& output) {
  constexpr std::string_view kPrefix = "pgbench: error: ";
  std::string last;
  size_t start = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    if (end == std::string::npos) end = output.size();
    std::string line = output.substr(start, end - start);
    start = end + 1;
    if (line.rfind(kPrefix, 0) == 0) return line.substr(kPrefix.size());
    if (!line.empty()) last = line;
  }
  return last;
}

}  // namespace

std::optional<Workload> parse_workload(std::string_view name) {
  if (name == "read") return Workload::Read;
  if (name == "write") return Workload::Write;
  if (name == "mixed") return Workload::Mixed;
  if (name == "custom") return Workload::Custom;
  return std::nullopt;
}

std::string workload_name(Workload workload) {
  switch (workload) {
    case Workload::Read: return "read";
    case Workload::Write: return "write";
    case Workload::Mixed: return "mixed";
    case Workload::Custom: return "custom";
  }
  return "?";
}

std::string plan_error(const Plan& p) {
  if (p.clients < 1) return "--clients must be at least 1";
  if (p.jobs < 1) return "--jobs must be at least 1";
  if (p.jobs > p.clients) return fmt::format("--jobs ({}) cannot exceed --clients ({})", p.jobs, p.clients);
  if (p.seconds < 1) return "--time must be at least 1 (seconds)";
  if (p.rounds < 1) return "--rounds must be at least 1";
  if (p.read_percent < 0 || p.read_percent > 100) return "--read-percent must be between 0 and 100";
  if (p.protocol != "simple" && p.protocol != "extended" && p.protocol != "prepared")
    return "--protocol must be simple, extended or prepared";
  if (p.workload == Workload::Custom && p.scripts.empty()) return "the custom workload needs --file SCRIPT";
  if (p.workload != Workload::Custom && !p.scripts.empty())
    return "--file runs your own scripts: leave out --workload (or say --workload custom)";
  return "";
}

std::string workload_text(const Plan& p) {
  switch (p.workload) {
    case Workload::Read: return "read (pgbench select-only)";
    case Workload::Write: return "write (pgbench tpcb-like)";
    case Workload::Mixed:
      return fmt::format("mixed ({}% pgbench select-only, {}% tpcb-like)", p.read_percent, 100 - p.read_percent);
    case Workload::Custom: {
      std::string names;
      for (const auto& s : p.scripts) names += (names.empty() ? "" : ", ") + s;
      return "custom (" + names + ")";
    }
  }
  return "?";
}

std::vector<std::string> pgbench_args(const Plan& p, const std::string& pgbench, const std::string& conninfo,
                                      const std::string& log_prefix) {
  std::vector<std::string> args{pgbench,
                                "-n",
                                "-c", std::to_string(p.clients),
                                "-j", std::to_string(p.jobs),
                                "-T", std::to_string(p.seconds),
                                "-M", p.protocol,
                                "-l", "--log-prefix=" + log_prefix};
  if (p.seconds > 60) args.push_back(fmt::format("--sampling-rate={:.4f}", 60.0 / p.seconds));
  switch (p.workload) {
    case Workload::Read: args.insert(args.end(), {"-b", "select-only"}); break;
    case Workload::Write: args.insert(args.end(), {"-b", "tpcb-like"}); break;
    case Workload::Mixed:
      // pgbench refuses a weight of 0 for a script given alone, so the ends are plain.
      if (p.read_percent == 100) args.insert(args.end(), {"-b", "select-only"});
      else if (p.read_percent == 0) args.insert(args.end(), {"-b", "tpcb-like"});
      else
        args.insert(args.end(), {"-b", fmt::format("select-only@{}", p.read_percent), "-b",
                                 fmt::format("tpcb-like@{}", 100 - p.read_percent)});
      break;
    case Workload::Custom:
      for (const auto& s : p.scripts) args.insert(args.end(), {"-f", s});
      break;
  }
  args.push_back(conninfo);
  return args;
}

RunFigures parse_summary(const std::string& output, int exit_code) {
  RunFigures f;
  auto tps = number_after(output, "tps = ");
  auto latency = number_after(output, "latency average = ");
  auto done = number_after(output, "number of transactions actually processed: ");
  auto failed = number_after(output, "number of failed transactions: ");
  f.tps = tps.value_or(0);
  f.latency_avg_ms = latency.value_or(0);
  f.transactions = static_cast<int64_t>(done.value_or(0));
  f.failed = static_cast<int64_t>(failed.value_or(0));
  f.ok = exit_code == 0 && tps.has_value();
  if (!f.ok) {
    f.error = first_error_line(output);
    if (f.error.empty()) f.error = fmt::format("pgbench exited with code {}", exit_code);
  }
  return f;
}

void read_log_latencies(std::string_view log, std::vector<int64_t>& latencies_us) {
  size_t start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    if (end == std::string_view::npos) end = log.size();
    std::string_view line = log.substr(start, end - start);
    start = end + 1;
    // The third field; "failed" or "skipped" do not parse as a number and are left out.
    size_t field = 0, pos = 0;
    while (field < 2 && pos != std::string_view::npos) {
      pos = line.find(' ', pos);
      if (pos != std::string_view::npos) {
        ++pos;
        ++field;
      }
    }
    if (pos == std::string_view::npos || pos >= line.size()) continue;
    int64_t us = 0;
    auto [ptr, ec] = std::from_chars(line.data() + pos, line.data() + line.size(), us);
    if (ec == std::errc() && (ptr == line.data() + line.size() || *ptr == ' ')) latencies_us.push_back(us);
  }
}

std::optional<double> percentile(std::vector<int64_t>& values, double p) {
  if (values.empty()) return std::nullopt;
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  size_t index = rank == 0 ? 0 : std::min(rank - 1, values.size() - 1);
  std::nth_element(values.begin(), values.begin() + static_cast<ptrdiff_t>(index), values.end());
  return static_cast<double>(values[index]);
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

namespace {
// Where the authority ("user:pw@host:port") of a postgresql:// URI starts and ends.
std::pair<size_t, size_t> authority_of(const std::string& uri) {
  size_t scheme = uri.find("://");
  if (scheme == std::string::npos) return {std::string::npos, std::string::npos};
  size_t begin = scheme + 3;
  size_t end = uri.find_first_of("/?", begin);
  return {begin, end == std::string::npos ? uri.size() : end};
}
}  // namespace

std::string with_database(const std::string& uri, const std::string& database) {
  auto [begin, end] = authority_of(uri);
  if (begin == std::string::npos) return uri;
  size_t query = uri.find('?', end);
  std::string rest = query == std::string::npos ? "" : uri.substr(query);
  return uri.substr(0, end) + "/" + database + rest;
}

std::pair<std::string, std::string> split_password(const std::string& uri) {
  auto [begin, end] = authority_of(uri);
  if (begin == std::string::npos) return {uri, ""};
  size_t at = uri.rfind('@', end);
  if (at == std::string::npos || at < begin) return {uri, ""};
  size_t colon = uri.find(':', begin);
  if (colon == std::string::npos || colon > at) return {uri, ""};
  return {uri.substr(0, colon) + uri.substr(at), uri.substr(colon + 1, at - colon - 1)};
}

std::string address_of(const std::string& uri) {
  auto [begin, end] = authority_of(uri);
  if (begin == std::string::npos) return "";
  size_t at = uri.rfind('@', end);
  size_t host = at == std::string::npos || at < begin ? begin : at + 1;
  return uri.substr(host, end - host);
}

}  // namespace pgfleet::bench
