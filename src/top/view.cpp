// Rendering of `pgfleet top`: sorting, key handling and the text of each view.
#include <fmt/format.h>

#include <algorithm>
#include <ctime>

#include "top/model.hpp"
#include "util/clock.hpp"

namespace pgfleet::top {

const char* to_string(View v) {
  switch (v) {
    case View::Overview: return "overview";
    case View::Pools: return "pools";
    case View::Events: return "events";
  }
  return "?";
}

const char* to_string(SortKey k) {
  switch (k) {
    case SortKey::Name: return "name";
    case SortKey::Role: return "role";
    case SortKey::Lag: return "lag";
    case SortKey::Tps: return "tps";
    case SortKey::Connections: return "conns";
  }
  return "?";
}

bool handle_key(ViewState& state, int key) {
  switch (key) {
    case 'q': case 'Q': case 3: return false;
    case '\t': state.view = static_cast<View>((static_cast<int>(state.view) + 1) % 3); break;
    case '1': state.view = View::Overview; break;
    case '2': state.view = View::Pools; break;
    case '3': state.view = View::Events; break;
    case 's': case 'S': state.sort = static_cast<SortKey>((static_cast<int>(state.sort) + 1) % 5); break;
    case 'r': case 'R': state.descending = !state.descending; break;
    default: break;
  }
  return true;
}

std::vector<NodeRow> sorted_nodes(const std::vector<NodeRow>& nodes, const ViewState& state) {
  auto rows = nodes;
  // Missing numbers sort as smallest, so unreachable nodes gather at one end.
  auto num = [](const auto& o) { return o ? static_cast<double>(*o) : -1.0; };
  auto role_rank = [](const std::string& r) { return r == "primary" ? 0 : r == "replica" ? 1 : 2; };
  std::stable_sort(rows.begin(), rows.end(), [&](const NodeRow& a, const NodeRow& b) {
    switch (state.sort) {
      case SortKey::Role:
        if (role_rank(a.role) != role_rank(b.role)) return role_rank(a.role) < role_rank(b.role);
        break;
      case SortKey::Lag:
        if (num(a.lag_bytes) != num(b.lag_bytes)) return num(a.lag_bytes) < num(b.lag_bytes);
        break;
      case SortKey::Tps:
        if (num(a.tps) != num(b.tps)) return num(a.tps) < num(b.tps);
        break;
      case SortKey::Connections:
        if (num(a.connections) != num(b.connections)) return num(a.connections) < num(b.connections);
        break;
      case SortKey::Name: break;
    }
    return a.name < b.name;
  });
  if (state.descending) std::reverse(rows.begin(), rows.end());
  return rows;
}

namespace {

constexpr const char* kReset = "\033[0m";

std::string paint(const std::string& text, const char* sgr, bool color) {
  if (!color || sgr == nullptr) return text;
  return std::string("\033[") + sgr + "m" + text + kReset;
}

const char* role_color(const std::string& role) {
  if (role == "primary") return "1;97;42";  // bold white on green
  if (role == "replica") return "1;36";
  return "1;33";
}

const char* state_color(const std::string& state) {
  if (state == "running" || state == "streaming") return "32";
  if (state == "starting" || state == "stopping") return "33";
  return "1;31";  // crashed, stopped, unsupervised
}

// Cuts `line` to `width` visible columns; ANSI escape sequences take no room.
std::string fit(const std::string& line, int width) {
  std::string out;
  int visible = 0;
  bool cut = false;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\033') {
      size_t end = line.find('m', i);
      if (end == std::string::npos) break;
      out.append(line, i, end - i + 1);
      i = end;
      continue;
    }
    if (visible >= width) {
      cut = true;
      continue;
    }
    // UTF-8 continuation bytes take no column of their own.
    if ((static_cast<unsigned char>(line[i]) & 0xC0) != 0x80) ++visible;
    out += line[i];
  }
  (void)cut;
  return out;
}

std::string opt_num(const std::optional<double>& v, const char* format) {
  return v ? fmt::format(fmt::runtime(format), *v) : "-";
}

std::string human_bytes(const std::optional<int64_t>& b) {
  if (!b) return "-";
  double v = static_cast<double>(*b);
  if (v < 1024) return fmt::format("{}B", *b);
  if (v < 1024.0 * 1024) return fmt::format("{:.1f}kB", v / 1024);
  if (v < 1024.0 * 1024 * 1024) return fmt::format("{:.1f}MB", v / 1024 / 1024);
  return fmt::format("{:.1f}GB", v / 1024 / 1024 / 1024);
}

std::string clock_time(int64_t unix_ms) {
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  localtime_r(&secs, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

const char* event_color(const std::string& kind) {
  if (kind == "failover" || kind == "down") return "1;31";
  if (kind == "switchover" || kind == "leader") return "1;33";
  if (kind == "up" || kind == "backup") return "32";
  return nullptr;
}

void node_table(const Snapshot& s, const ViewState& st, bool color, std::vector<std::string>& out) {
  std::string sort_mark = std::string(" (sorted by ") + to_string(st.sort) + (st.descending ? ", desc)" : ")");
  out.push_back(paint("NODES", "1", color) + sort_mark);
  out.push_back(paint(fmt::format("{:<10} {:<9} {:<10} {:<8} {:<9} {:>9} {:>7} {:>8} {:>6} {:>5} {:>5} {:>5} {:>6}",
                                  "NAME", "ROLE", "STATE", "UPSTREAM", "SYNC", "LAG", "LAG_S", "TPS", "CONNS",
                                  "CPU%", "MEM%", "DISK%", "TEMP"),
                      "7", color));
  for (const auto& n : sorted_nodes(s.nodes, st)) {
    std::string role = fmt::format("{:<9}", n.role == "primary" ? "PRIMARY" : n.role);
    std::string state = fmt::format("{:<10}", n.state);
    out.push_back(fmt::format(
        "{:<10} {} {} {:<8} {:<9} {:>9} {:>7} {:>8} {:>6} {:>5} {:>5} {:>5} {:>6}", n.name,
        paint(role, role_color(n.role), color), paint(state, state_color(n.state), color),
        n.upstream.empty() ? "-" : n.upstream, n.sync_state.empty() ? "-" : n.sync_state, human_bytes(n.lag_bytes),
        opt_num(n.lag_seconds, "{:.1f}"), opt_num(n.tps, "{:.1f}"),
        n.connections ? std::to_string(*n.connections) : "-", opt_num(n.cpu_percent, "{:.0f}"),
        opt_num(n.memory_percent, "{:.0f}"), opt_num(n.disk_percent, "{:.0f}"),
        n.temperature_c ? fmt::format("{:.0f}C", *n.temperature_c) : "-"));
  }
}

void pool_table(const Snapshot& s, bool color, std::vector<std::string>& out, size_t limit) {
  if (!s.proxy_enabled) {
    out.push_back(paint("PROXY", "1", color) + " disabled");
    return;
  }
  std::string split;
  for (const auto& [node, count] : s.servers_per_node) split += fmt::format("  {}:{}", node, count);
  out.push_back(paint("PROXY", "1", color) + " " + s.proxy_state +
                (split.empty() ? "" : "   server connections by node:" + split));
  out.push_back(paint(fmt::format("{:<16} {:<12} {:>9} {:>10} {:>9} {:>7} {:<11}", "DATABASE", "USER", "CL_ACTIVE",
                                  "CL_WAITING", "SV_ACTIVE", "SV_IDLE", "MODE"),
                      "7", color));
  size_t shown = 0;
  for (const auto& p : s.pools) {
    if (shown++ == limit) {
      out.push_back(fmt::format("... {} more pools (press 2)", s.pools.size() - limit));
      break;
    }
    out.push_back(fmt::format("{:<16} {:<12} {:>9} {:>10} {:>9} {:>7} {:<11}", p.database, p.user, p.cl_active,
                              p.cl_waiting, p.sv_active, p.sv_idle, p.mode));
  }
  if (s.pools.empty()) out.push_back("(no pools yet: no client has connected through the proxy)");
}

void event_list(const Snapshot& s, bool color, std::vector<std::string>& out, size_t limit) {
  out.push_back(paint("EVENTS", "1", color) + " (newest first)");
  size_t shown = 0;
  for (auto it = s.events.rbegin(); it != s.events.rend() && shown < limit; ++it, ++shown) {
    out.push_back(fmt::format("{}  {}", clock_time(it->time_ms),
                              paint(fmt::format("{:<10}", it->kind), event_color(it->kind), color)) +
                  " " + it->text);
  }
  if (s.events.empty()) out.push_back("(none yet)");
}

}  // namespace

std::vector<std::string> render(const Snapshot& s, const ViewState& st, int width, int height, bool color) {
  std::vector<std::string> out;
  std::string title = fmt::format("pgfleet top  cluster {}  primary {}  {}{}{}", s.cluster,
                                  s.leader.empty() ? "NONE" : s.leader, clock_time(s.taken_ms),
                                  s.paused ? "  PAUSED (no automatic failover)" : "",
                                  s.backups > 0 && s.newest_backup_ms > 0
                                      ? "  last backup " + human_duration((s.taken_ms - s.newest_backup_ms) / 1000) + " ago"
                                      : "");
  out.push_back(paint(fmt::format("{:<{}}", title, std::max(0, width)), s.leader.empty() ? "1;97;41" : "1;97;44", color));
  out.emplace_back();
  int body = std::max(3, height - 2);  // title and footer
  switch (st.view) {
    case View::Overview: {
      node_table(s, st, color, out);
      out.emplace_back();
      pool_table(s, color, out, 4);
      out.emplace_back();
      int left = body - static_cast<int>(out.size()) - 1;
      event_list(s, color, out, static_cast<size_t>(std::max(1, left)));
      break;
    }
    case View::Pools: pool_table(s, color, out, static_cast<size_t>(std::max(1, body - 4))); break;
    case View::Events: event_list(s, color, out, static_cast<size_t>(std::max(1, body - 3))); break;
  }
  if (static_cast<int>(out.size()) > height - 1) out.resize(static_cast<size_t>(std::max(0, height - 1)));
  while (static_cast<int>(out.size()) < height - 1) out.emplace_back();
  std::string footer = fmt::format("q quit  tab/1-3 view:{}  s sort:{}  r reverse", to_string(st.view),
                                   to_string(st.sort));
  out.push_back(paint(fmt::format("{:<{}}", footer, std::max(0, width)), "7", color));
  for (auto& line : out) line = fit(line, width);
  return out;
}

}  // namespace pgfleet::top
