#include "bench/report.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace pgfleet::bench {
namespace {

std::optional<double> median_of(const std::vector<RunFigures>& runs, std::optional<double> RunFigures::*field) {
  std::vector<double> values;
  for (const auto& r : runs)
    if (r.ok && r.*field) values.push_back(*(r.*field));
  if (values.empty()) return std::nullopt;
  return median(values);
}

// "node1 20%, node2 41%, node3 39%", largest share first.
std::string shares_text(const std::map<std::string, int64_t>& served_by) {
  int64_t total = 0;
  for (const auto& [node, n] : served_by) total += n;
  if (total == 0) return "-";
  std::vector<std::pair<std::string, int64_t>> sorted(served_by.begin(), served_by.end());
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string out;
  for (const auto& [node, n] : sorted) {
    if (n == 0) continue;
    out += fmt::format("{}{} {:.0f}%", out.empty() ? "" : ", ", node, 100.0 * static_cast<double>(n) / static_cast<double>(total));
  }
  return out;
}

std::string ms_text(const std::optional<double>& ms) { return ms ? fmt::format("{:.3f}", *ms) : "-"; }

}  // namespace

TargetSummary summarize(const TargetResult& t) {
  TargetSummary s;
  std::vector<double> tps, latency;
  for (const auto& r : t.runs) {
    s.transactions += r.transactions;
    s.failed += r.failed;
    if (!r.ok) {
      if (s.error.empty()) s.error = r.error;
      continue;
    }
    ++s.rounds_ok;
    tps.push_back(r.tps);
    latency.push_back(r.latency_avg_ms);
  }
  s.tps = median(tps);
  s.latency_avg_ms = median(latency);
  s.p50_ms = median_of(t.runs, &RunFigures::p50_ms);
  s.p99_ms = median_of(t.runs, &RunFigures::p99_ms);
  return s;
}

bool report_ok(const Report& report) {
  return std::all_of(report.targets.begin(), report.targets.end(), [](const TargetResult& t) {
    return std::all_of(t.runs.begin(), t.runs.end(), [](const RunFigures& r) { return r.ok; });
  });
}

std::string render_report(const Report& report) {
  const Plan& p = report.plan;
  std::string out = fmt::format(
      "workload: {}, {} clients, {} threads, -M {}, {} s per run, {} round{}; database {} (scale {})\n\n",
      workload_text(p), p.clients, p.jobs, p.protocol, p.seconds, p.rounds, p.rounds == 1 ? "" : "s", report.database,
      report.scale);
  if (report.targets.empty()) return out;
  const std::string base = report.targets.front().name;
  const double base_tps = summarize(report.targets.front()).tps;
  size_t name_width = 6, address_width = 7;
  for (const auto& t : report.targets) {
    name_width = std::max(name_width, t.name.size());
    address_width = std::max(address_width, t.address.size());
  }
  const std::string ratio_title = "VS " + base;
  const size_t ratio_width = std::max<size_t>(ratio_title.size(), 5);
  out += fmt::format("{:<{}}  {:<{}}  {:>9}  {:>8}  {:>8}  {:>8}  {:>7}  {:>{}}  {}\n", "TARGET", name_width, "ADDRESS",
                     address_width, "TPS", "AVG MS", "P50 MS", "P99 MS", "FAILED", ratio_title, ratio_width,
                     "SERVED BY");
  std::string errors;
  for (const auto& t : report.targets) {
    auto s = summarize(t);
    std::string ratio = s.rounds_ok > 0 && base_tps > 0 ? fmt::format("{:.2f}x", s.tps / base_tps) : "-";
    std::string tps = s.rounds_ok > 0 ? fmt::format("{:.0f}", s.tps) : "-";
    std::string avg = s.rounds_ok > 0 ? fmt::format("{:.3f}", s.latency_avg_ms) : "-";
    out += fmt::format("{:<{}}  {:<{}}  {:>9}  {:>8}  {:>8}  {:>8}  {:>7}  {:>{}}  {}\n", t.name, name_width, t.address,
                       address_width, tps, avg, ms_text(s.p50_ms), ms_text(s.p99_ms), s.failed, ratio, ratio_width,
                       shares_text(t.served_by));
    if (!s.error.empty())
      errors += fmt::format("{}: {} of {} round{} failed: {}\n", t.name, t.runs.size() - static_cast<size_t>(s.rounds_ok),
                            t.runs.size(), t.runs.size() == 1 ? "" : "s", s.error);
  }
  if (!errors.empty()) out += "\n" + errors;
  return out;
}

nlohmann::json report_to_json(const Report& report) {
  const Plan& p = report.plan;
  nlohmann::json targets = nlohmann::json::array();
  for (const auto& t : report.targets) {
    auto s = summarize(t);
    nlohmann::json rounds = nlohmann::json::array();
    for (const auto& r : t.runs) {
      nlohmann::json round{{"ok", r.ok},
                           {"tps", r.tps},
                           {"latency_avg_ms", r.latency_avg_ms},
                           {"transactions", r.transactions},
                           {"failed", r.failed}};
      round["latency_p50_ms"] = r.p50_ms ? nlohmann::json(*r.p50_ms) : nlohmann::json(nullptr);
      round["latency_p99_ms"] = r.p99_ms ? nlohmann::json(*r.p99_ms) : nlohmann::json(nullptr);
      round["error"] = r.ok ? nlohmann::json(nullptr) : nlohmann::json(r.error);
      rounds.push_back(round);
    }
    nlohmann::json target{{"name", t.name},
                          {"address", t.address},
                          {"ok", s.error.empty()},
                          {"tps", s.tps},
                          {"latency_avg_ms", s.latency_avg_ms},
                          {"transactions", s.transactions},
                          {"failed", s.failed},
                          {"served_by", t.served_by},
                          {"rounds", rounds}};
    target["latency_p50_ms"] = s.p50_ms ? nlohmann::json(*s.p50_ms) : nlohmann::json(nullptr);
    target["latency_p99_ms"] = s.p99_ms ? nlohmann::json(*s.p99_ms) : nlohmann::json(nullptr);
    target["error"] = s.error.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.error);
    targets.push_back(target);
  }
  return {{"ok", report_ok(report)},
          {"started", report.started},
          {"workload", workload_name(p.workload)},
          {"description", workload_text(p)},
          {"read_percent", p.workload == Workload::Mixed ? nlohmann::json(p.read_percent) : nlohmann::json(nullptr)},
          {"clients", p.clients},
          {"jobs", p.jobs},
          {"protocol", p.protocol},
          {"seconds", p.seconds},
          {"rounds", p.rounds},
          {"database", report.database},
          {"scale", report.scale},
          {"targets", targets}};
}

}  // namespace pgfleet::bench
