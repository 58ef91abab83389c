// Dashboard routes and the once-a-second sampler behind its charts and timeline.
#include "dashboard/routes.hpp"

#include <chrono>

#include "dashboard/assets.hpp"
#include "top/collector.hpp"
#include "util/log.hpp"

namespace pgfleet::dashboard {
namespace {

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<double> number(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

std::string text(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

top::Snapshot snapshot_of(const nlohmann::json& status, int64_t now_ms) {
  top::Snapshot s;
  s.taken_ms = now_ms;
  s.leader = text(status, "leader");
  for (const auto& n : status.value("nodes", nlohmann::json::array())) {
    top::NodeRow row;
    row.name = text(n, "name");
    row.role = text(n, "role");
    row.state = text(n, "state");
    s.nodes.push_back(row);
  }
  return s;
}

http::Response asset(const char* body, const char* type) {
  http::Response r;
  r.content_type = type;
  r.body = body;
  r.headers.emplace_back("Cache-Control", "no-cache");
  return r;
}

}  // namespace

void History::add(const nlohmann::json& status, int64_t now_ms) {
  Point p;
  p.t = now_ms;
  for (const auto& n : status.value("nodes", nlohmann::json::array())) {
    const auto stats = n.contains("stats") ? n["stats"] : nlohmann::json();
    p.nodes[text(n, "name")] = {number(stats, "tps"), number(n, "lag_bytes"), number(n, "lag_seconds")};
  }
  auto snap = snapshot_of(status, now_ms);
  std::lock_guard lock(mu_);
  if (previous_) {
    for (auto& e : top::diff_events(*previous_, snap)) observed_.push_back(std::move(e));
    constexpr size_t kKeepEvents = 200;
    if (observed_.size() > kKeepEvents) observed_.erase(observed_.begin(), observed_.end() - kKeepEvents);
  }
  previous_ = std::move(snap);
  points_.push_back(std::move(p));
  while (points_.size() > kCapacity) points_.pop_front();
}

nlohmann::json History::series_since(int64_t since_ms) const {
  std::lock_guard lock(mu_);
  nlohmann::json t = nlohmann::json::array();
  std::map<std::string, std::array<nlohmann::json, 3>> cols;
  size_t taken = 0;
  for (const auto& p : points_) {
    if (p.t <= since_ms) continue;
    for (const auto& [name, values] : p.nodes) {
      auto& c = cols[name];
      for (size_t k = 0; k < 3; ++k) {
        if (c[k].is_null()) c[k] = nlohmann::json::array();
        // A node added later is padded with nulls, so every column lines up with "t".
        while (c[k].size() < taken) c[k].push_back(nullptr);
        c[k].push_back(values[k] ? nlohmann::json(*values[k]) : nlohmann::json(nullptr));
      }
    }
    t.push_back(p.t);
    ++taken;
  }
  nlohmann::json nodes = nlohmann::json::object();
  for (auto& [name, c] : cols) {
    for (auto& col : c) {
      while (col.size() < taken) col.push_back(nullptr);
    }
    nodes[name] = {{"tps", c[0]}, {"lag_bytes", c[1]}, {"lag_seconds", c[2]}};
  }
  return {{"interval_seconds", 1}, {"t", t}, {"nodes", nodes}};
}

nlohmann::json History::events(const nlohmann::json& status) const {
  std::vector<top::Event> all;
  for (const auto& h : status.value("history", nlohmann::json::array())) {
    std::string reason = text(h, "reason");
    int64_t ms = h.value("time_ms", int64_t{0});
    if (ms == 0) {
      // status JSON carries ISO time; parse "YYYY-MM-DDTHH:MM:SSZ" as UTC.
      std::tm tm{};
      if (strptime(text(h, "time").c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm) != nullptr) ms = int64_t{timegm(&tm)} * 1000;
    }
    all.push_back({ms, top::history_kind(reason), reason.empty() ? text(h, "from") + " -> " + text(h, "to") : reason});
  }
  {
    std::lock_guard lock(mu_);
    all.insert(all.end(), observed_.begin(), observed_.end());
  }
  std::stable_sort(all.begin(), all.end(), [](const top::Event& a, const top::Event& b) { return a.time_ms < b.time_ms; });
  constexpr size_t kShown = 50;
  if (all.size() > kShown) all.erase(all.begin(), all.end() - kShown);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : all) out.push_back({{"time_ms", e.time_ms}, {"kind", e.kind}, {"text", e.text}});
  return out;
}

Sampler::Sampler(cluster::Layout layout) : thread_([this, layout] { run(layout); }) {}

Sampler::~Sampler() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Sampler::run(cluster::Layout layout) {
  http::ClusterReader reader(std::move(layout));
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    try {
      history_.add(reader.status_json(), unix_ms());
    } catch (const std::exception& e) {
      log::warn("dashboard: cannot sample the cluster: {}", e.what());
    }
    lock.lock();
    wake_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
  }
}

void add_routes(http::Router& router, std::shared_ptr<http::ClusterReader> reader, ProxyFigures proxy) {
  auto sampler = std::make_shared<Sampler>(reader->layout());
  router.add("GET", "/api/cluster", [reader, sampler, proxy](const http::Request& r) {
    auto j = reader->status_json();
    j["events"] = sampler->history().events(j);
    if (auto since = r.query_value("since"); !since.empty()) {
      int64_t ms = 0;
      try {
        ms = std::stoll(since);
      } catch (const std::exception&) {
        return http::Response::json(400, R"({"error": "since must be unix milliseconds"})");
      }
      j["series"] = sampler->history().series_since(ms);
    }
    if (proxy && j["proxy"].is_object()) {
      const nlohmann::json figures = proxy();  // kept alive: items() only views it
      for (const auto& [key, value] : figures.items()) j["proxy"][key] = value;
    }
    auto resp = http::Response::json(200, j.dump(2));
    resp.headers.emplace_back("Cache-Control", "no-store");
    return resp;
  });
  router.add("GET", "/display", [](const http::Request&) { return asset(kDisplayHtml, "text/html; charset=utf-8"); });
  router.add("GET", "/dashboard/common.js",
             [](const http::Request&) { return asset(kCommonJs, "text/javascript; charset=utf-8"); });
}

http::Response page() { return asset(kDashboardHtml, "text/html; charset=utf-8"); }

}  // namespace pgfleet::dashboard
