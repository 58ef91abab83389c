#include "ha/failsafe.hpp"

#include <future>

#include <nlohmann/json.hpp>

#include "dcs/http_client.hpp"

namespace pgfleet::ha {

void FailsafeState::observed(bool mode, bool dcs_reachable, const std::string& leader, bool writable_primary,
                             std::vector<FailsafePeer> peers) {
  std::lock_guard lock(mutex_);
  mode_ = mode;
  dcs_reachable_ = dcs_reachable;
  leader_ = leader;
  writable_primary_ = writable_primary;
  claiming_ = false;  // the read after a claim says whether this node holds the key (then leader_ is itself)
  if (dcs_reachable) peers_ = std::move(peers);  // unreachable: keep asking the members last read
}

bool FailsafeState::begin_claim(TimeMs now, TimeMs ttl, std::string& why) {
  std::lock_guard lock(mutex_);
  if (!heard_leader_.empty() && now < heard_at_ + ttl) {
    why = "failsafe mode: this node confirmed to " + heard_leader_ + " less than a TTL ago";
    return false;
  }
  if (mode_ && now < started_at_ + ttl) {
    why = "failsafe mode: this agent started less than a TTL ago and may have confirmed another primary before";
    return false;
  }
  claiming_ = true;
  return true;
}

std::string FailsafeState::answer(const std::string& self, const std::string& leader, TimeMs now) {
  std::lock_guard lock(mutex_);
  if (!mode_) return "failsafe mode is off (`pgfleet failsafe on` turns it on)";
  if (leader.empty() || leader == self) return "the request must name another node as leader";
  if (writable_primary_) return self + " runs as a writable primary itself";
  if (claiming_) return self + " is taking the leader key";
  if (!leader_.empty() && leader_ != leader) return leader_ + " holds the leader key, not " + leader;
  heard_leader_ = leader;
  heard_at_ = now;
  return "";
}

bool FailsafeState::should_ask(const std::string& self, bool dcs_stuck) const {
  std::lock_guard lock(mutex_);
  return mode_ && (!dcs_reachable_ || dcs_stuck) && writable_primary_ && (leader_.empty() || leader_ == self);
}

std::vector<FailsafePeer> FailsafeState::peers() const {
  std::lock_guard lock(mutex_);
  return peers_;
}

void FailsafeState::confirmed(TimeMs round_started) {
  std::lock_guard lock(mutex_);
  if (round_started > confirmed_at_) confirmed_at_ = round_started;
}

bool FailsafeState::mode() const {
  std::lock_guard lock(mutex_);
  return mode_;
}

TimeMs FailsafeState::confirmed_at() const {
  std::lock_guard lock(mutex_);
  return confirmed_at_;
}

std::string FailsafeState::promised_to(TimeMs now, TimeMs ttl, TimeMs* heard_at, bool include_restart) const {
  std::lock_guard lock(mutex_);
  if (heard_at != nullptr) *heard_at = heard_at_;
  if (!heard_leader_.empty() && now < heard_at_ + ttl) return heard_leader_;
  if (include_restart && mode_ && now < started_at_ + ttl) {
    if (heard_at != nullptr) *heard_at = started_at_;
    return "a primary confirmed before this agent started";
  }
  return "";
}

std::string ask_peers(const std::vector<FailsafePeer>& peers, const std::string& self, const std::string& token,
                      const std::string& ca_file, std::chrono::milliseconds timeout) {
  const std::string body = nlohmann::json{{"leader", self}}.dump();
  std::vector<std::future<std::string>> replies;
  for (const auto& peer : peers) {
    replies.push_back(std::async(std::launch::async, [&, peer] {
      dcs::HttpTls tls;
      tls.ca_file = ca_file;
      dcs::HttpClient client(std::move(tls));
      auto r = client.post(peer.url + "/failsafe", body,
                           {"Authorization: Bearer " + token, "Content-Type: application/json"}, timeout);
      if (!r) return peer.name + ": " + r.error();
      if (r->status == 200) return std::string();
      std::string why = r->body;
      try {
        why = nlohmann::json::parse(r->body).value("error", r->body);
      } catch (const nlohmann::json::exception&) {
      }
      return peer.name + " refused (HTTP " + std::to_string(r->status) + "): " + why;
    }));
  }
  std::string problems;
  for (auto& reply : replies)
    if (std::string why = reply.get(); !why.empty()) problems += (problems.empty() ? "" : "; ") + why;
  return problems;
}

}  // namespace pgfleet::ha
