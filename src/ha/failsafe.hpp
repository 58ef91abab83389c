// Failsafe mode (Patroni's failsafe_mode): while the DCS is unreachable, a primary keeps writing
// as long as every member confirms over the agents' API (POST /failsafe) that it follows it, and a
// member that confirmed does not take the leader key for a TTL after its answer. decide() holds the
// rules (rule 8); this is the state the HA loop, the API thread and the primary's round thread
// share, and the round of requests itself.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "ha/decide.hpp"

namespace pgfleet::ha {

struct FailsafePeer {
  std::string name;
  std::string url;  // http(s)://host:api_port of its agent
};

class FailsafeState {
 public:
  // A new agent does not know what its predecessor confirmed: in failsafe mode it assumes a promise
  // given at its start, so it does not take the leader key during its first TTL.
  explicit FailsafeState(TimeMs started_at) : started_at_(started_at) {}

  // The HA loop, after each read of the DCS (unreachable: the values last read).
  void observed(bool mode, bool dcs_reachable, const std::string& leader, bool writable_primary,
                std::vector<FailsafePeer> peers);
  // The HA loop, before AcquireLease: false while this node's promise to another primary holds
  // (why says so). True marks the node as claiming the key until the next observed(), so that it
  // confirms to nobody meanwhile: the check and the claim are one step for the API thread.
  bool begin_claim(TimeMs now, TimeMs ttl, std::string& why);
  // The API thread, POST /failsafe from `leader`: "" = confirmed, and promised for a TTL; else why not.
  std::string answer(const std::string& self, const std::string& leader, TimeMs now);

  // The primary's round thread: whether to ask now, whom, and the start of a round everyone confirmed.
  // It asks once the loop read the DCS as unreachable, or while the loop is still stuck in a DCS call
  // near the end of its lease (`dcs_stuck`): waiting for the loop to notice can take longer than the
  // lease has left.
  bool should_ask(const std::string& self, bool dcs_stuck = false) const;
  std::vector<FailsafePeer> peers() const;
  void confirmed(TimeMs round_started);

  // For decide() and the member status.
  bool mode() const;
  TimeMs confirmed_at() const;
  // The primary this node promised not to replace before *heard_at + ttl ("" = none). With
  // `include_restart`, in failsafe mode the assumed promise at the agent's start counts too.
  std::string promised_to(TimeMs now, TimeMs ttl, TimeMs* heard_at = nullptr, bool include_restart = false) const;

 private:
  mutable std::mutex mutex_;
  bool mode_ = false;
  bool dcs_reachable_ = true;
  std::string leader_;            // the leader key's holder as last read ("" = none)
  bool writable_primary_ = false; // this node, as the loop last saw it
  bool claiming_ = false;
  std::vector<FailsafePeer> peers_;
  std::string heard_leader_;      // the last primary this node confirmed to
  TimeMs heard_at_ = 0;
  TimeMs confirmed_at_ = 0;       // primary: start of the last round every peer confirmed
  TimeMs started_at_ = 0;
};

// One round: POST /failsafe {"leader": self} to every peer at once (Bearer `token`; `ca_file` for
// HTTPS). Returns "" when every peer answered 200 within `timeout`, else who did not and why.
std::string ask_peers(const std::vector<FailsafePeer>& peers, const std::string& self, const std::string& token,
                      const std::string& ca_file, std::chrono::milliseconds timeout);

}  // namespace pgfleet::ha
