// Member <-> JSON; field names here are part of the DCS format shared by agents of any version.
#include "dcs/member.hpp"

#include <algorithm>
#include <string_view>
#include <thread>

namespace pgfleet::dcs {

nlohmann::json to_json(const Member& m) {
  nlohmann::json peers = nlohmann::json::array();
  for (const auto& p : m.replication) {
    peers.push_back({{"application_name", p.application_name}, {"state", p.state},
                     {"sync_state", p.sync_state}, {"replay_lsn", p.replay_lsn},
                     {"replay_lag_seconds", p.replay_lag_seconds}});
  }
  return {{"name", m.name}, {"role", m.role}, {"state", m.state}, {"host", m.host}, {"port", m.port},
          {"api_port", m.api_port}, {"postmaster_pid", m.postmaster_pid}, {"agent_pid", m.agent_pid},
          {"postmaster_start", m.postmaster_start}, {"timeline", m.timeline},
          {"current_lsn", m.current_lsn}, {"received_lsn", m.received_lsn}, {"replayed_lsn", m.replayed_lsn},
          {"replay_delay_seconds", m.replay_delay_seconds}, {"upstream", m.upstream},
          {"wal_receiver_streaming", m.wal_receiver_streaming}, {"restarts", m.restarts}, {"rebuilt_at_ms", m.rebuilt_at_ms},
          {"last_error", m.last_error}, {"updated_at_ms", m.updated_at_ms},
          {"updated_mono_ms", m.updated_mono_ms}, {"sync_standby_names", m.sync_standby_names}, {"failsafe_for", m.failsafe_for},
          {"stepped_down", m.stepped_down}, {"checkpoint_pending", m.checkpoint_pending}, {"nofailover", m.nofailover}, {"noloadbalance", m.noloadbalance},
          {"pending_restart", m.pending_restart}, {"parameters_revision", m.parameters_revision}, {"slots", m.slots}, {"replication", peers},
          {"stats", to_json(m.stats)}};
}

namespace {
template <typename T>
nlohmann::json opt(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}
template <typename T>
void read_opt(const nlohmann::json& j, const char* key, std::optional<T>& field) {
  if (auto it = j.find(key); it != j.end() && it->is_number()) field = it->get<T>();
}
}  // namespace

nlohmann::json to_json(const NodeStats& s) {
  return {{"tps", opt(s.tps)},
          {"connections", opt(s.connections)},
          {"cpu_percent", opt(s.cpu_percent)},
          {"memory_percent", opt(s.memory_percent)},
          {"disk_used_percent", opt(s.disk_used_percent)},
          {"disk_free_bytes", opt(s.disk_free_bytes)},
          {"temperature_celsius", opt(s.temperature_celsius)},
          {"load1", opt(s.load1)}};
}

NodeStats node_stats_from_json(const nlohmann::json& j) {
  NodeStats s;
  if (!j.is_object()) return s;
  read_opt(j, "tps", s.tps);
  read_opt(j, "connections", s.connections);
  read_opt(j, "cpu_percent", s.cpu_percent);
  read_opt(j, "memory_percent", s.memory_percent);
  read_opt(j, "disk_used_percent", s.disk_used_percent);
  read_opt(j, "disk_free_bytes", s.disk_free_bytes);
  read_opt(j, "temperature_celsius", s.temperature_celsius);
  read_opt(j, "load1", s.load1);
  return s;
}

Member member_from_json(const nlohmann::json& j) {
  Member m;
  auto get = [&](const char* key, auto& field) {
    if (auto it = j.find(key); it != j.end() && !it->is_null()) {
      try {
        it->get_to(field);
      } catch (const nlohmann::json::exception&) {
      }
    }
  };
  get("name", m.name);
  get("role", m.role);
  get("state", m.state);
  get("host", m.host);
  get("port", m.port);
  get("api_port", m.api_port);
  get("postmaster_pid", m.postmaster_pid);
  get("agent_pid", m.agent_pid);
  get("postmaster_start", m.postmaster_start);
  get("timeline", m.timeline);
  get("current_lsn", m.current_lsn);
  get("received_lsn", m.received_lsn);
  get("replayed_lsn", m.replayed_lsn);
  get("replay_delay_seconds", m.replay_delay_seconds);
  get("upstream", m.upstream);
  get("wal_receiver_streaming", m.wal_receiver_streaming);
  get("restarts", m.restarts);
  get("rebuilt_at_ms", m.rebuilt_at_ms);
  get("checkpoint_pending", m.checkpoint_pending);
  get("last_error", m.last_error);
  get("updated_at_ms", m.updated_at_ms);
  get("updated_mono_ms", m.updated_mono_ms);
  get("sync_standby_names", m.sync_standby_names);
  get("failsafe_for", m.failsafe_for);
  get("stepped_down", m.stepped_down);
  get("nofailover", m.nofailover);
  get("noloadbalance", m.noloadbalance);
  get("parameters_revision", m.parameters_revision);
  if (auto it = j.find("slots"); it != j.end() && it->is_object())
    for (const auto& [name, lsn] : it->items())
      if (lsn.is_string()) m.slots[name] = lsn.get<std::string>();
  if (auto it = j.find("pending_restart"); it != j.end() && it->is_array())
    for (const auto& name : *it)
      if (name.is_string()) m.pending_restart.push_back(name.get<std::string>());
  if (auto it = j.find("replication"); it != j.end() && it->is_array()) {
    for (const auto& p : *it) {
      ReplicationPeer peer;
      peer.application_name = p.value("application_name", "");
      peer.state = p.value("state", "");
      peer.sync_state = p.value("sync_state", "");
      peer.replay_lsn = p.value("replay_lsn", "");
      peer.replay_lag_seconds = p.value("replay_lag_seconds", 0.0);
      m.replication.push_back(peer);
    }
  }
  if (auto it = j.find("stats"); it != j.end()) m.stats = node_stats_from_json(*it);
  return m;
}

std::vector<Member> read_members(Dcs& dcs) {
  std::vector<Member> out;
  auto list = dcs.list(keys::kMembersPrefix);
  if (!list) return out;
  for (const auto& kv : *list) {
    try {
      out.push_back(member_from_json(nlohmann::json::parse(kv.value)));
    } catch (const nlohmann::json::exception&) {
    }
  }
  return out;
}

bool is_running(const Member& m) { return m.state == "running" || m.state == "streaming"; }

std::vector<Member> wait_for_members(Dcs& dcs, std::chrono::seconds timeout, const std::function<bool(const Member&)>& done) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto members = read_members(dcs);
  while (!std::all_of(members.begin(), members.end(), done) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    members = read_members(dcs);
  }
  return members;
}

ClusterKeys::ClusterKeys(const std::vector<KeyValue>& all) {
  const std::string_view members_prefix = keys::kMembersPrefix, removed_prefix = keys::kRemovedPrefix;
  for (const auto& kv : all) {
    std::string_view key = kv.key;
    if (key.starts_with(members_prefix)) members.push_back(kv);
    else if (key.starts_with(keys::kRestartPrefix)) restarts.push_back(kv);
    else if (key.starts_with(keys::kReinitPrefix)) reinits.push_back(kv);
    else if (key.starts_with(keys::kHistoryPrefix)) history.push_back(kv);
    else if (key.starts_with(removed_prefix)) {
      if (key.size() > removed_prefix.size()) removed.emplace_back(key.substr(removed_prefix.size()));
    }
    else if (key == keys::kLeader) leader = &kv;
    else if (key == keys::kSync) sync = &kv;
    else if (key == keys::kPause) pause = &kv;
    else if (key == keys::kFailsafe) failsafe = &kv;
    else if (key == keys::kSwitchover) switchover = &kv;
    else if (key == keys::kFailover) failover = &kv;
    else if (key == keys::kParameters) parameters = &kv;
    else if (key == keys::kSlots) slots = &kv;
  }
}

}  // namespace pgfleet::dcs
