// decide(): the HA rules (lease, fencing, election, rejoin, synchronous replication, switchover) as
// one pure function: each rule is a named helper below and each decision is taken in one place.
//
// What the agent (the imperative shell) must guarantee for the safety argument to hold:
//  * Actions run in list order; the first failure aborts the rest of the list.
//  * lease_renewed_at is the time, on the agent's monotonic clock, at which the agent *started* its
//    last successful AcquireLease/RenewLease (before sending the request): the DCS starts the TTL
//    later than that, so the key outlives lease_renewed_at + ttl on any clock running at the same
//    rate. decide() fences at lease_renewed_at + ttl - 2*loop_wait; the agent calls decide() at
//    least every loop_wait and bounds every DCS call well under loop_wait, and a watchdog (or a
//    timer independent of the loop) fences the primary at lease_renewed_at + ttl - loop_wait if the
//    loop is stuck. A stuck or dead agent cannot fence from inside decide().
//  * Fence stops acknowledgements too: sessions waiting for synchronous replication are terminated
//    (or the postmaster is stopped), so no commit is acknowledged after Fence returns. Fence is a
//    clean shutdown or read-only mode; `fenced` stays set until StartPostgres of primary data or
//    Promote of a primary lifts it (decide() emits those only to the lease holder), and a fenced,
//    stopped primary reports its final LSN (end of the shutdown checkpoint).
//  * PublishSync and ClearSwitchover are written only while holding the leader key (they follow a
//    successful RenewLease in the same list; better, a transaction comparing the key's revision).
//    PublishSync stores self as sync_leader in the same write as the constraints.
//  * leader_expired_at is no earlier than the moment the old leader stopped writing: the later of
//    the first read that found the key absent and the key's expiry as last read (a key deleted
//    early, by an operator or a DCS restore, does not stop a primary before its next loop or, cut
//    off from the DCS, before its fence deadline). Only a key released in a switchover (the
//    request names the last holder, which fenced before releasing) may count from its absence.
//    The agent must learn of every write of the key, even one between two of its reads (a key
//    taken and deleted within a loop: etcd watch or revisions), and an agent that never saw the
//    key adds a TTL to its first read (the simulation found both). 0 means unknown: no election.
//  * updated_at of a member is no later than the moment that member sampled the LSNs it published,
//    on this agent's clock. Then "updated_at >= leader_expired_at" means the LSNs were read after
//    the old primary stopped acknowledging. With several hosts this needs either clocks with
//    bounded skew subtracted from updated_at, or a direct status request sent at updated_at
//    (Patroni's fetch_nodes_statuses).
//  * sync_in_force_lsn is pg_current_wal_lsn() read the first time this node, as a running primary,
//    reports the current sync_in_force, after every backend and walsender uses it; it is read again
//    after every change, promotion or restart. A value kept from an earlier term as primary would
//    let the leader drop the constraint covering what it acknowledged since (the simulation
//    found this). timeline_diverged is computed against the leader's timeline history.
#include "ha/decide.hpp"

#include <algorithm>
#include <cstdio>
#include <tuple>
#include <utility>

namespace pgfleet::ha {

std::string to_string(ActionKind kind) {
  switch (kind) {
    case ActionKind::AcquireLease: return "AcquireLease";
    case ActionKind::RenewLease: return "RenewLease";
    case ActionKind::ReleaseLease: return "ReleaseLease";
    case ActionKind::Promote: return "Promote";
    case ActionKind::Fence: return "Fence";
    case ActionKind::Follow: return "Follow";
    case ActionKind::Rewind: return "Rewind";
    case ActionKind::Reinit: return "Reinit";
    case ActionKind::StartPostgres: return "StartPostgres";
    case ActionKind::PublishSync: return "PublishSync";
    case ActionKind::SetSyncStandbys: return "SetSyncStandbys";
    case ActionKind::ClearSwitchover: return "ClearSwitchover";
    case ActionKind::RecordHistory: return "RecordHistory";
    case ActionKind::StepDown: return "StepDown";
    case ActionKind::Wait: return "Wait";
  }
  return "Unknown";
}

namespace {

using Actions = std::vector<Action>;

// ---------------------------------------------------------------------------------------------
// Text for reasons.

std::string lsn_text(uint64_t lsn) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32),
                static_cast<unsigned>(lsn & 0xffffffffu));
  return buf;
}

std::string ms_text(TimeMs t) { return std::to_string(t) + " ms"; }

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i == 0 ? "" : separator) + parts[i];
  return out;
}

std::string names_text(const std::vector<std::string>& names) {
  return names.empty() ? "nobody" : join(names, ", ");
}

std::string constraint_text(const SyncConstraint& c) {
  std::string out = "{";
  for (size_t i = 0; i < c.members.size(); ++i) out += (i == 0 ? "" : ",") + c.members[i];
  return out + "} q=" + std::to_string(c.quorum);
}

std::string constraints_text(const std::vector<SyncConstraint>& list) {
  if (list.empty()) return "none";
  std::string out;
  for (size_t i = 0; i < list.size(); ++i) out += (i == 0 ? "" : " and ") + constraint_text(list[i]);
  return out;
}

Action make(ActionKind kind, std::string reason, std::string target = {}) {
  Action a;
  a.kind = kind;
  a.target = std::move(target);
  a.reason = std::move(reason);
  return a;
}

Action make_sync(ActionKind kind, std::vector<SyncConstraint> sync, std::string reason) {
  Action a = make(kind, std::move(reason));
  a.sync = std::move(sync);
  return a;
}

Action make_lease(ActionKind kind, int64_t revision, std::string reason) {
  Action a = make(kind, std::move(reason));
  a.revision = revision;
  return a;
}

// ---------------------------------------------------------------------------------------------
// The inputs and the facts every rule derives from them.

// Where a node's WAL is: later timelines first, then further positions.
struct Position {
  int timeline = 0;
  uint64_t lsn = 0;
  auto operator<=>(const Position&) const = default;
};

Position position(const MemberView& m) { return {m.timeline, m.received_lsn}; }

std::string position_text(Position p) {
  return lsn_text(p.lsn) + " (timeline " + std::to_string(p.timeline) + ")";
}

struct Inputs {
  const ClusterView& cluster;
  const NodeView& self;
  const Settings& settings;
  TimeMs now;

  const MemberView* member(const std::string& name) const {
    for (const auto& m : cluster.members)
      if (m.name == name) return &m;
    return nullptr;
  }
  bool holds_key() const { return cluster.leader && cluster.leader->holder == self.name; }
  bool other_holds_key() const { return cluster.leader && cluster.leader->holder != self.name; }
  bool sync_mode() const { return settings.mode != SyncMode::Off; }

  // Rule 2: the primary stops writing 2 loops before anyone else may take the key.
  TimeMs fence_deadline() const { return self.lease_renewed_at + settings.ttl - 2 * settings.loop_wait; }
  // A clock that went backwards says nothing about how old the lease is: treat it as expired.
  bool lease_valid() const { return now >= self.lease_renewed_at && now < fence_deadline(); }
  // Primary data only: the postmaster may be acknowledging writes.
  bool writable() const { return self.postmaster_running && !self.fenced; }

  // Rule 8, failsafe: every member confirmed (at failsafe_confirmed_at, when the round started)
  // that it follows this primary; each refuses the key for a TTL after it answered, so, as with
  // the lease, writes may go on until two loops before the earliest of those promises ends.
  TimeMs failsafe_deadline() const { return self.failsafe_confirmed_at + settings.ttl - 2 * settings.loop_wait; }
  bool failsafe_confirmed() const {
    return cluster.failsafe && self.failsafe_confirmed_at != 0 && now >= self.failsafe_confirmed_at &&
           now < failsafe_deadline();
  }
  // This node confirmed to another primary within a TTL: it must not take the key (whatever the
  // mode says now: the promise was given while it was on).
  bool failsafe_promised() const {
    return !self.failsafe_leader.empty() && self.failsafe_leader != self.name &&
           now < self.failsafe_heard_at + settings.ttl;
  }
  std::string failsafe_text() const {
    return "failsafe mode: every member confirmed over the API, in a round started at " +
           ms_text(self.failsafe_confirmed_at) + ", that it follows " + self.name + ", so writes may go on until " +
           ms_text(failsafe_deadline());
  }

  // Rule 9: a node that stepped down recently is the last choice of elections.
  bool sits_out() const { return ha::sits_out(self.stepped_down_at, settings, now); }
  bool last_choice(const MemberView& m) const { return m.stepped_down || (m.name == self.name && sits_out()); }

  // Rule 3: LSNs published after the leader key vanished are final (the old primary had fenced).
  bool fresh(const MemberView& m) const { return m.updated_at >= cluster.leader_expired_at; }
  bool stale_grace_over() const { return now >= cluster.leader_expired_at + settings.ttl; }

  std::string lease_text() const {
    if (now < self.lease_renewed_at)
      return "the clock went backwards (now " + ms_text(now) + " < last lease write at " +
             ms_text(self.lease_renewed_at) + "), so the lease age is unknown";
    return "the last successful lease write started at " + ms_text(self.lease_renewed_at) +
           ", so the lease is only safe until " + ms_text(fence_deadline()) + " (ttl " +
           ms_text(settings.ttl) + " - 2 x loop_wait); now is " + ms_text(now);
  }
};

bool contains(const std::vector<SyncConstraint>& list, const SyncConstraint& c) {
  return std::find(list.begin(), list.end(), c) != list.end();
}

bool listed(const std::vector<SyncConstraint>& list, const std::string& name) {
  for (const auto& c : list)
    if (std::find(c.members.begin(), c.members.end(), name) != c.members.end()) return true;
  return false;
}

// The DCS form of a PostgreSQL setting: "nobody needs to acknowledge" becomes "{leader} q=1".
SyncConstraint published_form(const SyncConstraint& setting, const std::string& leader) {
  if (setting.quorum > 0) return setting;
  return SyncConstraint{{leader}, 1};
}

// What a candidate must satisfy in a synchronous mode. Nothing published yet (new cluster, mode
// just switched on, DCS data lost): any single node may hold acknowledged commits.
std::vector<SyncConstraint> sync_to_satisfy(const ClusterView& cluster, const Settings& settings) {
  if (!cluster.sync.empty()) return cluster.sync;
  return {SyncConstraint{settings.nodes, 1}};
}

SyncConstraint setting_in_force(const NodeView& self) {
  return self.sync_in_force.value_or(SyncConstraint{});
}

// ---------------------------------------------------------------------------------------------
// Rule 3: elections. Everything here depends on the ClusterView only, so every agent reading the
// same view picks the same winner.

// Why candidate `cand` cannot satisfy constraint `c` ("" if it can): it must see at least
// |members| - quorum + 1 members with final LSNs (itself included) and have the most WAL of them.
// Any `quorum` members hold every acknowledged commit, so one of those it sees holds them all.
std::string constraint_problem(const Inputs& in, const SyncConstraint& c, const MemberView& cand) {
  std::vector<const MemberView*> seen;
  std::vector<std::string> unseen;
  for (const auto& name : c.members) {
    const MemberView* m = name == cand.name ? &cand : in.member(name);
    if (m != nullptr && (m == &cand || (m->running && in.fresh(*m))))
      seen.push_back(m);
    else
      unseen.push_back(name);
  }
  const int needed = std::max<int>(0, static_cast<int>(c.members.size()) - c.quorum + 1);
  if (static_cast<int>(seen.size()) < needed)
    return cand.name + " sees " + std::to_string(seen.size()) + " of " + constraint_text(c) +
           " with final LSNs but needs " + std::to_string(needed) + " (missing: " +
           names_text(unseen) + ")";
  for (const MemberView* m : seen)
    if (position(*m) > position(cand))
      return m->name + " has more WAL " + position_text(position(*m)) + " than " + cand.name + " " +
             position_text(position(cand)) + " in " + constraint_text(c);
  return "";
}

// Why member `m` may not take the leader key ("" if it may). `manual`: named by failover_to.
std::string candidate_problem(const Inputs& in, const MemberView& m, bool manual) {
  const bool primary = m.role == "primary";
  if (m.nofailover) return m.name + " is tagged nofailover";
  if (!primary && !(m.role == "replica" && m.running)) return m.name + " is not a running replica";
  if (!manual && !primary && in.cluster.paused) return "the cluster is paused (no automatic failover)";
  if (!in.sync_mode()) return "";
  const std::vector<SyncConstraint> sync = sync_to_satisfy(in.cluster, in.settings);
  // Only a member of the synchronous set, or the leader that published it, may take over.
  if (!manual && !listed(sync, m.name) && m.name != in.cluster.sync_leader)
    return m.name + " is not in the synchronous set " + constraints_text(sync) + " published by " +
           (in.cluster.sync_leader.empty() ? std::string("an unknown leader") : in.cluster.sync_leader);
  for (const auto& c : sync) {
    std::string why = constraint_problem(in, c, m);
    if (!why.empty()) return why;
  }
  return "";
}

enum class ElectionKind { Failover, Switchover, Manual };

struct Election {
  std::string winner;  // "" = nobody may take the leader key now
  std::string reason;  // why the winner wins, or what everybody waits for
  ElectionKind kind = ElectionKind::Failover;
};

Election nobody(std::string reason) { return Election{"", std::move(reason), ElectionKind::Failover}; }

// The member last seen as primary (for reasons and the async lag limit), other than `except`.
const MemberView* last_primary(const Inputs& in, const std::string& except) {
  const MemberView* best = nullptr;
  for (const auto& m : in.cluster.members)
    if (m.role == "primary" && m.name != except && (best == nullptr || position(m) > position(*best)))
      best = &m;
  return best;
}

std::string expiry_text(const Inputs& in) {
  std::string out = "the leader key vanished at " + ms_text(in.cluster.leader_expired_at);
  if (const MemberView* p = last_primary(in, "")) out += " (last primary: " + p->name + ")";
  return out;
}

// Async mode: why `candidate` is too far behind the position the old primary last published to
// take over ("" if it is not).
std::string too_far_behind(const Inputs& in, const MemberView& candidate) {
  if (in.sync_mode() || candidate.role != "replica") return "";
  const MemberView* old = last_primary(in, candidate.name);
  if (old == nullptr || old->timeline != candidate.timeline ||
      old->received_lsn <= candidate.received_lsn + in.settings.maximum_lag_on_failover)
    return "";
  return "the best candidate " + candidate.name + " at " + lsn_text(candidate.received_lsn) + " is " +
         std::to_string(old->received_lsn - candidate.received_lsn) + " bytes behind the last position of " +
         old->name + " " + lsn_text(old->received_lsn) + " (maximum_lag_on_failover " +
         std::to_string(in.settings.maximum_lag_on_failover) +
         "); waiting for it to return or for its member key to expire";
}

// Automatic failover (rule 3): the most advanced eligible member, ties to the node already
// primary (no promotion needed), then to the lowest name; members that stepped down (rule 9)
// come last. `excluded` may not win (the leader of a switchover in progress).
Election elect_automatically(const Inputs& in, const std::string& excluded, const std::string& context) {
  std::vector<std::string> stale;
  for (const auto& m : in.cluster.members)
    if (m.role == "replica" && m.name != excluded && !in.fresh(m)) stale.push_back(m.name);
  if (!stale.empty() && !in.stale_grace_over())
    return nobody(context + expiry_text(in) + "; waiting for status published after that from " +
                  names_text(stale) + " (ignored from " +
                  ms_text(in.cluster.leader_expired_at + in.settings.ttl) + ")");

  std::vector<const MemberView*> eligible;
  std::vector<std::string> problems;
  for (const auto& m : in.cluster.members) {
    if (m.name == excluded || !in.fresh(m)) continue;
    std::string why = candidate_problem(in, m, false);
    if (why.empty())
      eligible.push_back(&m);
    else if (m.role == "replica" || m.role == "primary")
      problems.push_back(why);
  }
  if (eligible.empty())
    return nobody(context + expiry_text(in) + "; no member may take it: " +
                  (problems.empty() ? "no member published fresh status" : join(problems, "; ")));

  // Members that stepped down recently (rule 9) come last, whatever their position.
  std::sort(eligible.begin(), eligible.end(), [&](const MemberView* a, const MemberView* b) {
    return std::make_tuple(in.last_choice(*a), position(*b), b->role == "primary", a->name) <
           std::make_tuple(in.last_choice(*b), position(*a), a->role == "primary", b->name);
  });
  std::vector<std::string> names, stepped_down;
  for (const MemberView* m : eligible) {
    names.push_back(m->name);
    if (in.last_choice(*m)) stepped_down.push_back(m->name);
  }

  // Async: the best candidate must not be too far behind what the old primary last published;
  // it waits until that primary comes back (and wins) or its member key expires. A member that
  // stepped down may then still be close enough: it is the last choice, not excluded.
  const MemberView* best = eligible.front();
  std::string lag = too_far_behind(in, *best);
  for (const MemberView* m : eligible)
    if (!lag.empty() && in.last_choice(*m) && too_far_behind(in, *m).empty()) {
      best = m;
      lag.clear();
    }
  if (!lag.empty()) return nobody(context + expiry_text(in) + "; " + lag);
  std::string reason = context + expiry_text(in) + "; " + best->name + " has the highest received LSN " +
                       position_text(position(*best)) + " among " + names_text(names);
  if (!stepped_down.empty() && !in.last_choice(*best))
    reason += " (" + names_text(stepped_down) + " stepped down recently: the last choice)";
  if (in.sync_mode())
    reason += " and satisfies the sync constraints " + constraints_text(sync_to_satisfy(in.cluster, in.settings)) +
              (in.cluster.sync.empty() ? " (none published: any node may hold acknowledged commits)" : "");
  return Election{best->name, reason, ElectionKind::Failover};
}

// Rule 6, target side: the leader fenced, waited for the target to have everything, and released.
Election elect_switchover_target(const Inputs& in, const SwitchoverRequest& sw) {
  const std::string context = "switchover from " + sw.from + " to " + sw.to + ": ";
  const MemberView* to = in.member(sw.to);
  const MemberView* from = in.member(sw.from);
  // The leader never hands over to such a target: its key vanished otherwise; elect normally.
  if (to != nullptr && to->nofailover)
    return elect_automatically(in, "", context + sw.to + " is tagged nofailover; ");
  if (to == nullptr || to->role != "replica" || !to->running || !in.fresh(*to))
    return nobody(context + "waiting for " + sw.to + " to publish its status as a running replica");
  if (from == nullptr || !in.fresh(*from))
    return nobody(context + "waiting for " + sw.from +
                  " to publish its final position after releasing the leader key");
  if (position(*to) < position(*from))
    return nobody(context + sw.to + " has received " + position_text(position(*to)) + " but " +
                  sw.from + " stopped at " + position_text(position(*from)));
  return Election{sw.to,
                  context + sw.to + " has received everything " + sw.from + " wrote (" +
                      position_text(position(*from)) + ")",
                  ElectionKind::Switchover};
}

// Rule 6: a manual failover names the node; the others wait while it is there.
std::optional<Election> elect_manually(const Inputs& in, const std::string& name) {
  const MemberView* m = in.member(name);
  if (m == nullptr || !(m->running || m->role == "primary")) return std::nullopt;  // gone: ignored
  const std::string context = "manual failover to " + name + ": ";
  if (!in.fresh(*m)) return nobody(context + "waiting for its status published after " + expiry_text(in));
  std::string why = candidate_problem(in, *m, true);
  if (!why.empty()) return nobody(context + "blocked: " + why);
  return Election{name, context + expiry_text(in) + "; " + name + " is at " + position_text(position(*m)),
                  ElectionKind::Manual};
}

// Who may take the absent leader key now (DCS reachable).
Election elect(const Inputs& in) {
  const ClusterView& c = in.cluster;
  if (c.leader_expired_at == 0)
    return nobody("the leader key is absent but the time it vanished is unknown");
  // Rule 8: a member that confirmed to a primary in failsafe mode lets that primary write on.
  for (const auto& m : c.members)
    if (!m.failsafe_for.empty() && m.name != in.self.name)
      return nobody("failsafe mode: " + m.name + " confirmed within a TTL that " + m.failsafe_for +
                    " still runs as primary (the DCS was unreachable for it); nobody takes the leader key meanwhile");
  // A switchover is in progress when its leader released the key (not before not_before) less
  // than a TTL ago; one whose leader vanished earlier, or that did not complete, is ignored.
  if (c.switchover && c.switchover->not_before <= c.leader_expired_at && !in.stale_grace_over()) {
    if (!c.switchover->to.empty()) return elect_switchover_target(in, *c.switchover);
    // Still a switchover (its old leader records it in the history), not a failover: the winner
    // must not record it a second time.
    Election e = elect_automatically(in, c.switchover->from, "switchover from " + c.switchover->from + ": ");
    if (!e.winner.empty()) e.kind = ElectionKind::Switchover;
    return e;
  }
  if (c.failover_to)
    if (auto e = elect_manually(in, *c.failover_to)) return *e;
  return elect_automatically(in, "", "");
}

// ---------------------------------------------------------------------------------------------
// Rule 5: synchronous replication, by the leader.

// Replicas that can acknowledge now: running, streaming, on our timeline; in config order.
// (nofailover members are included: the tag only prevents their promotion.)
std::vector<std::string> healthy_standbys(const Inputs& in) {
  std::vector<std::string> out;
  auto healthy = [&](const MemberView& m) {
    return m.name != in.self.name && m.role == "replica" && m.running && m.streaming &&
           m.timeline == in.self.timeline;
  };
  for (const auto& name : in.settings.nodes)
    if (const MemberView* m = in.member(name); m != nullptr && healthy(*m)) out.push_back(name);
  std::vector<std::string> unconfigured;
  for (const auto& m : in.cluster.members)
    if (healthy(m) && std::find(out.begin(), out.end(), m.name) == out.end()) unconfigured.push_back(m.name);
  std::sort(unconfigured.begin(), unconfigured.end());
  out.insert(out.end(), unconfigured.begin(), unconfigured.end());
  return out;
}

// Strict mode with too few healthy standbys: keep what is in force, or (nothing in force yet)
// wait for any configured standby.
SyncConstraint previous_constraint(const Inputs& in) {
  SyncConstraint in_force = setting_in_force(in.self);
  if (in_force.quorum > 0) return in_force;
  SyncConstraint all;
  for (const auto& name : in.settings.nodes)
    if (name != in.self.name) all.members.push_back(name);
  const int k = in.settings.mode == SyncMode::On ? 1 : std::max(1, in.settings.sync_count);
  all.quorum = std::min<int>(k, static_cast<int>(all.members.size()));
  return all;
}

SyncConstraint wanted_constraint(const Inputs& in, const std::vector<std::string>& healthy) {
  const SyncConstraint in_force = setting_in_force(in.self);
  if (in.settings.mode == SyncMode::On) {
    // The single standby must be able to take over: prefer members without nofailover. Keep the
    // current standby while it is healthy and as good as any (no flapping), else the first one.
    auto can_promote = [&](const std::string& name) {
      const MemberView* m = in.member(name);
      return m != nullptr && !m->nofailover;
    };
    std::vector<std::string> ranked;
    for (const auto& name : healthy)
      if (can_promote(name)) ranked.push_back(name);
    for (const auto& name : healthy)
      if (!can_promote(name)) ranked.push_back(name);
    if (in_force.quorum == 1 && in_force.members.size() == 1 && !ranked.empty() &&
        std::find(ranked.begin(), ranked.end(), in_force.members[0]) != ranked.end() &&
        can_promote(in_force.members[0]) == can_promote(ranked.front()))
      return in_force;
    if (!ranked.empty()) return SyncConstraint{{ranked.front()}, 1};
    return in.settings.strict ? previous_constraint(in) : SyncConstraint{};
  }
  const int k = std::max(1, in.settings.sync_count);
  const int count = static_cast<int>(healthy.size());
  if (count >= k || (!in.settings.strict && count > 0)) return SyncConstraint{healthy, std::min(k, count)};
  return in.settings.strict ? previous_constraint(in) : SyncConstraint{};
}

// Have `quorum` members of the setting in force received everything acknowledged before it took
// effect (sync_in_force_lsn)? Then they hold every acknowledged commit and it can stand alone.
bool caught_up(const Inputs& in, const SyncConstraint& in_force, std::string& detail) {
  int count = 0;
  std::vector<std::string> behind;
  for (const auto& name : in_force.members) {
    const MemberView* m = in.member(name);
    if (m != nullptr && m->timeline == in.self.timeline && m->received_lsn >= in.self.sync_in_force_lsn)
      ++count;
    else
      behind.push_back(name + (m == nullptr ? " (no status)" : " at " + position_text(position(*m))));
  }
  detail = names_text(behind);
  return count >= in_force.quorum;
}

void manage_async(const Inputs& in, Actions& out) {
  const SyncConstraint in_force = setting_in_force(in.self);
  if (!in_force.members.empty() || in_force.quorum > 0)
    out.push_back(make_sync(ActionKind::SetSyncStandbys, {SyncConstraint{}},
                            "asynchronous mode: clearing synchronous_standby_names " + constraint_text(in_force)));
  if (!in.cluster.sync.empty())
    out.push_back(make_sync(ActionKind::PublishSync, {},
                            "asynchronous mode: withdrawing the published sync constraints " +
                                constraints_text(in.cluster.sync)));
}

// Two-step change: publish old and new, apply the new one in PostgreSQL, and publish the new one
// alone once it covers every commit acknowledged under the old. At every moment each acknowledged
// commit is covered by some published constraint, and a candidate must satisfy them all.
void manage_sync(const Inputs& in, Actions& out) {
  if (!in.sync_mode()) return manage_async(in, out);
  const std::string& me = in.self.name;
  const std::vector<std::string> healthy = healthy_standbys(in);
  const SyncConstraint wanted = wanted_constraint(in, healthy);
  const SyncConstraint in_force = setting_in_force(in.self);
  const SyncConstraint wanted_pub = published_form(wanted, me);
  const SyncConstraint in_force_pub = published_form(in_force, me);
  const std::vector<SyncConstraint>& published = in.cluster.sync;
  const std::string why_wanted = "healthy streaming standbys: " + names_text(healthy) + "; wanted " +
                                 constraint_text(wanted) + (in.settings.strict ? " (strict)" : "");

  if (published == std::vector<SyncConstraint>{wanted_pub} && in_force == wanted) return;
  if (contains(published, wanted_pub) && contains(published, in_force_pub)) {
    if (in_force != wanted) {
      out.push_back(make_sync(ActionKind::SetSyncStandbys, {wanted},
                              "apply synchronous_standby_names " + constraint_text(wanted) + " (was " +
                                  constraint_text(in_force) + "; both are published): " + why_wanted));
      return;
    }
    std::string behind;
    if (caught_up(in, in_force, behind))
      out.push_back(make_sync(ActionKind::PublishSync, {wanted_pub},
                              "synchronous_standby_names " + constraint_text(wanted) + " is in force and " +
                                  std::to_string(wanted.quorum) + " of its members received everything up to " +
                                  lsn_text(in.self.sync_in_force_lsn) + ": publishing " +
                                  constraint_text(wanted_pub) + " alone instead of " +
                                  constraints_text(published)));
    else
      out.push_back(make(ActionKind::Wait, "keeping " + constraints_text(published) + " published until " +
                                               std::to_string(wanted.quorum) + " of " + constraint_text(wanted) +
                                               " received " + lsn_text(in.self.sync_in_force_lsn) +
                                               " (behind: " + behind + ")"));
    return;
  }
  std::vector<SyncConstraint> next = published;
  if (!contains(next, in_force_pub)) next.push_back(in_force_pub);
  if (!contains(next, wanted_pub)) next.push_back(wanted_pub);
  out.push_back(make_sync(ActionKind::PublishSync, next,
                          "publish " + constraints_text(next) + " before changing synchronous_standby_names from " +
                              constraint_text(in_force) + " to " + constraint_text(wanted) + ": " + why_wanted));
  if (in_force != wanted)
    out.push_back(make_sync(ActionKind::SetSyncStandbys, {wanted},
                            "apply synchronous_standby_names " + constraint_text(wanted) + " (was " +
                                constraint_text(in_force) + "): " + why_wanted));
}

// Before a node starts acknowledging writes as leader (promotion, lifting a fence, starting as
// primary), the published constraints must cover what it will acknowledge: "{self} q=1" does.
void cover_own_writes(const Inputs& in, Actions& out) {
  if (!in.sync_mode()) return;
  const SyncConstraint self_only{{in.self.name}, 1};
  const auto& published = in.cluster.sync;
  if (contains(published, self_only) ||
      contains(published, published_form(setting_in_force(in.self), in.self.name)))
    return;
  std::vector<SyncConstraint> next = published;
  next.push_back(self_only);
  out.push_back(make_sync(ActionKind::PublishSync, next,
                          "before " + in.self.name + " acknowledges writes: publish " + constraints_text(next) +
                              " so nobody else is promoted without what it acknowledges"));
}

// ---------------------------------------------------------------------------------------------
// Rule 6, leader side: switchover.

enum class SwitchoverStep { Continue, Busy, Release };

struct SwitchoverPlan {
  SwitchoverStep step = SwitchoverStep::Continue;
  Actions actions;
};

// Why `m` cannot take over in a switchover ("" if it can).
std::string switchover_target_problem(const Inputs& in, const MemberView& m) {
  // Once the leader has fenced (stopped) for the handover, the target's WAL receiver has lost
  // its upstream: running is enough then, its received position says the rest.
  if (m.role != "replica" || !m.running || (!m.streaming && !in.self.fenced))
    return m.name + " is not a running, streaming replica";
  if (m.nofailover) return m.name + " is tagged nofailover";
  if (m.timeline != in.self.timeline)
    return m.name + " is on timeline " + std::to_string(m.timeline) + ", the leader on " +
           std::to_string(in.self.timeline);
  if (in.sync_mode() && !listed(sync_to_satisfy(in.cluster, in.settings), m.name))
    return m.name + " is not in the synchronous set " + constraints_text(in.cluster.sync);
  return "";
}

// A replica that runs but does not yet stream on the leader's timeline (it restarted, or began
// following this leader a loop ago, and `pgfleet switchover` or the API saw it streaming) is
// likely ready in a moment. Until the leader fences, a request that such a member blocks waits for
// it up to a TTL from when the request was made or became due, and is dropped after that.
bool may_become_target(const Inputs& in, const MemberView& m) {
  return m.role == "replica" && m.running && !m.nofailover && m.timeline <= in.self.timeline &&
         (!in.sync_mode() || listed(sync_to_satisfy(in.cluster, in.settings), m.name));
}

bool switchover_target_grace(const Inputs& in, const SwitchoverRequest& sw) {
  const TimeMs due = std::max(sw.requested_at, sw.not_before);
  if (due == 0 || in.self.fenced || in.now >= due + in.settings.ttl) return false;
  if (!sw.to.empty()) {
    const MemberView* m = in.member(sw.to);
    return m != nullptr && m->name != in.self.name && may_become_target(in, *m);
  }
  return std::any_of(in.cluster.members.begin(), in.cluster.members.end(),
                     [&](const MemberView& m) { return m.name != in.self.name && may_become_target(in, m); });
}

const MemberView* switchover_target(const Inputs& in, const SwitchoverRequest& sw, std::string& problem) {
  if (!sw.to.empty()) {
    const MemberView* m = in.member(sw.to);
    if (sw.to == in.self.name) problem = sw.to + " is already the leader";
    else if (m == nullptr) problem = sw.to + " is not a member (no status in the DCS)";
    else problem = switchover_target_problem(in, *m);
    return problem.empty() ? m : nullptr;
  }
  // No target named: the healthy standby with the most WAL, ties to the lowest name.
  const MemberView* best = nullptr;
  for (const auto& m : in.cluster.members)
    if (m.name != in.self.name && switchover_target_problem(in, m).empty() &&
        (best == nullptr || std::make_tuple(m.received_lsn, best->name) > std::make_tuple(best->received_lsn, m.name)))
      best = &m;
  if (best == nullptr) problem = "no healthy streaming replica to hand over to";
  return best;
}

// Fence once the target has everything, then release once it still has everything we wrote.
SwitchoverPlan plan_switchover(const Inputs& in, const SwitchoverRequest& sw) {
  SwitchoverPlan plan;
  if (sw.from != in.self.name) {
    plan.actions.push_back(make(ActionKind::ClearSwitchover, "switchover requested from " + sw.from + " but " +
                                                                 in.self.name + " holds the leader key"));
    return plan;
  }
  if (in.now < sw.not_before) {
    plan.actions.push_back(make(ActionKind::Wait, "switchover from " + sw.from + " scheduled at " +
                                                      ms_text(sw.not_before)));
    return plan;
  }
  // Stopped by our Fence (a clean shutdown) its final position is known; after a crash it is only
  // known once it runs again.
  if (!in.self.postmaster_running && !in.self.fenced) {
    plan.actions.push_back(make(ActionKind::Wait, "switchover from " + sw.from + " waits for PostgreSQL to run"));
    return plan;
  }
  std::string problem;
  const MemberView* target = switchover_target(in, sw, problem);
  if (target == nullptr && switchover_target_grace(in, sw)) {
    const TimeMs due = std::max(sw.requested_at, sw.not_before);
    plan.actions.push_back(make(ActionKind::Wait, "switchover from " + sw.from + " waits until " +
                                                      ms_text(due + in.settings.ttl) + " for its target: " + problem));
    return plan;
  }
  if (target == nullptr) {
    plan.actions.push_back(
        make(ActionKind::ClearSwitchover, "switchover from " + sw.from + " impossible: " + problem));
    return plan;
  }
  const std::string context = "switchover from " + in.self.name + " to " + target->name + ": ";
  const bool has_everything = target->received_lsn >= in.self.lsn;
  const std::string positions = target->name + " has received " + lsn_text(target->received_lsn) +
                                ", the primary is at " + lsn_text(in.self.lsn);
  if (in.writable()) {
    if (has_everything) {
      plan.step = SwitchoverStep::Busy;
      plan.actions.push_back(make(ActionKind::Fence, context + positions + ": stopping writes to hand over"));
    } else {
      plan.actions.push_back(make(ActionKind::Wait, context + "waiting for it to catch up (" + positions + ")"));
    }
    return plan;
  }
  if (has_everything) {
    plan.step = SwitchoverStep::Release;
    plan.actions.push_back(make_lease(ActionKind::ReleaseLease, in.cluster.leader->revision,
                                      context + "writes stopped at " + lsn_text(in.self.lsn) + " and " +
                                          target->name + " has received them: releasing the leader key"));
    plan.actions.push_back(make(ActionKind::RecordHistory,
                                "switchover from " + in.self.name + " to " + target->name + " at " +
                                    position_text({in.self.timeline, in.self.lsn}),
                                target->name));
    plan.actions.back().lsn = in.self.lsn;
  } else {
    plan.step = SwitchoverStep::Busy;
    plan.actions.push_back(make(ActionKind::Wait, context + "writes stopped; waiting for " + positions));
  }
  return plan;
}

// ---------------------------------------------------------------------------------------------
// Taking the leader key after an election.

void claim_if_elected(const Inputs& in, const Election& e, Actions& out) {
  const NodeView& self = in.self;
  if (e.winner == self.name && in.failsafe_promised()) {
    out.push_back(make(ActionKind::Wait, "failsafe mode: " + self.name + " confirmed at " +
                                             ms_text(self.failsafe_heard_at) + " that it follows " +
                                             self.failsafe_leader + ", so it does not take the leader key before " +
                                             ms_text(self.failsafe_heard_at + in.settings.ttl) + " (" + e.reason + ")"));
    return;
  }
  if (e.winner != self.name) {
    std::string reason = e.reason;
    if (!e.winner.empty()) {
      reason = "not the candidate: " + reason;
      const MemberView* mine = in.member(self.name);
      if (std::string why = mine != nullptr ? candidate_problem(in, *mine, false) : ""; !why.empty())
        reason += " (" + why + ")";
    }
    out.push_back(make(ActionKind::Wait, reason));
    return;
  }
  const bool replica = self.in_recovery;
  if (replica && !(self.postmaster_running && self.accepting)) {
    out.push_back(make(ActionKind::Wait, "elected (" + e.reason + ") but the local PostgreSQL is not accepting connections"));
    return;
  }
  const std::string verb = replica ? "promote " : "take the leader key back: ";
  out.push_back(make(ActionKind::AcquireLease, verb + self.name + ": " + e.reason));
  if (replica) {
    cover_own_writes(in, out);
    out.push_back(make(ActionKind::Promote, "promote " + self.name + ": " + e.reason));
    if (e.kind != ElectionKind::Switchover) {
      const MemberView* old = last_primary(in, self.name);
      // A primary that hung or vanished has no member key left by now; this replica still
      // follows it.
      const std::string from = old != nullptr                                       ? old->name
                               : !self.following.empty() && self.following != self.name ? self.following
                                                                                        : "the lost primary";
      const MemberView* mine = in.member(self.name);
      const Position at = mine != nullptr ? position(*mine) : Position{self.timeline, self.lsn};
      out.push_back(make(ActionKind::RecordHistory,
                         std::string(e.kind == ElectionKind::Manual ? "manual failover" : "failover") + " from " +
                             from + " to " + self.name + " at " +
                             position_text(at) + ": " + e.reason,
                         self.name));
      out.back().lsn = at.lsn;
    }
  }
  if (in.cluster.switchover || in.cluster.failover_to)
    out.push_back(make(ActionKind::ClearSwitchover, self.name + " takes the leader key: " + e.reason));
}

// ---------------------------------------------------------------------------------------------
// Rule 4: rejoining the leader.

void rejoin(const Inputs& in, bool diverged, Actions& out) {
  const std::string& holder = in.cluster.leader->holder;
  const MemberView* leader = in.member(holder);
  const bool source_ready =
      leader != nullptr && leader->running && leader->role == "primary" && !leader->checkpoint_pending;
  if (in.self.rewind_failed || diverged) {
    const std::string why = in.self.rewind_failed
                                ? "the last pg_rewind failed: cloning " + holder + " again"
                                : (in.self.in_recovery ? "this node's WAL diverged from the leader " + holder
                                                       : "this node was a primary while " + holder +
                                                             " holds the leader key");
    if (!source_ready)
      out.push_back(make(ActionKind::Wait, why + "; waiting for " + holder + " to run as primary" +
                                               (leader != nullptr && leader->checkpoint_pending
                                                    ? " and finish its checkpoint after the promotion"
                                                    : "")));
    else
      out.push_back(make(in.self.rewind_failed ? ActionKind::Reinit : ActionKind::Rewind,
                         why + (in.self.rewind_failed ? "" : ": rewinding from " + holder), holder));
    return;
  }
  if (in.self.following != holder)
    out.push_back(make(ActionKind::Follow,
                       holder + " holds the leader key; following it instead of " +
                           (in.self.following.empty() ? std::string("nobody") : in.self.following),
                       holder));
}

// ---------------------------------------------------------------------------------------------
// Rules 1, 2 and 7 by the kind of data this node has.

void without_data(const Inputs& in, Actions& out) {
  if (!in.cluster.dcs_reachable) {
    out.push_back(make(ActionKind::Wait, "no data directory and the DCS is unreachable"));
  } else if (in.holds_key()) {
    out.push_back(make_lease(ActionKind::ReleaseLease, in.cluster.leader->revision,
                             "no data directory: " + in.self.name + " cannot lead"));
  } else if (in.other_holds_key()) {
    const std::string& holder = in.cluster.leader->holder;
    const MemberView* leader = in.member(holder);
    if (leader != nullptr && leader->running)
      out.push_back(make(ActionKind::Reinit, "no data directory: cloning the leader " + holder, holder));
    else
      out.push_back(make(ActionKind::Wait, "no data directory: waiting for the leader " + holder + " to run"));
  } else {
    out.push_back(make(ActionKind::Wait, "no data directory and no leader to clone from"));
  }
}

void primary_holding_key(const Inputs& in, Actions& out) {
  const ClusterView& c = in.cluster;
  const NodeView& self = in.self;
  if (!in.lease_valid() && in.writable() && in.failsafe_confirmed()) {
    if (c.dcs_reachable)
      out.push_back(make_lease(ActionKind::RenewLease, c.leader->revision,
                               "the DCS answers again; renewing the leader key (" + in.failsafe_text() + ")"));
    else
      out.push_back(make(ActionKind::Wait, "the DCS is unreachable and " + in.lease_text() + "; " + in.failsafe_text()));
    return;
  }
  if (!in.lease_valid()) {
    if (in.writable()) out.push_back(make(ActionKind::Fence, "stop writes: " + in.lease_text()));
    if (c.dcs_reachable)
      out.push_back(make_lease(ActionKind::RenewLease, c.leader->revision,
                               self.name + " holds the leader key: renewing it (writes resume on the next loop)"));
    else if (out.empty())
      out.push_back(make(ActionKind::Wait, "the DCS is unreachable; " + in.lease_text()));
    return;
  }
  if (!c.dcs_reachable) {
    out.push_back(make(ActionKind::Wait, "the DCS is unreachable; writes continue: " + in.lease_text()));
    return;
  }
  SwitchoverPlan plan;
  if (c.switchover) plan = plan_switchover(in, *c.switchover);
  if (plan.step == SwitchoverStep::Release) {
    out.insert(out.end(), plan.actions.begin(), plan.actions.end());
    return;
  }
  out.push_back(make_lease(ActionKind::RenewLease, c.leader->revision,
                           self.name + " holds the leader key and runs as primary"));
  out.insert(out.end(), plan.actions.begin(), plan.actions.end());
  if (plan.step == SwitchoverStep::Busy) return;
  if (c.failover_to)
    out.push_back(make(ActionKind::ClearSwitchover,
                       "manual failover to " + *c.failover_to + " ignored: " + self.name + " holds the leader key"));
  if (!self.postmaster_running) {
    cover_own_writes(in, out);
    out.push_back(make(ActionKind::StartPostgres,
                       "PostgreSQL is stopped and " + self.name + " holds the leader key: starting it as primary"));
    return;
  }
  if (self.fenced) {
    cover_own_writes(in, out);
    out.push_back(make(ActionKind::Promote, "lift the fence: " + self.name +
                                                " holds the leader key again with a lease safe until " +
                                                ms_text(in.fence_deadline())));
    return;
  }
  manage_sync(in, out);
}

void primary_without_key(const Inputs& in, Actions& out) {
  const ClusterView& c = in.cluster;
  // Rule 8: the key expired during a DCS outage that every member confirmed this primary through.
  if (in.writable() && in.failsafe_confirmed()) {
    if (c.dcs_reachable)
      out.push_back(make(ActionKind::AcquireLease, "the DCS answers again and the leader key expired meanwhile: " +
                                                       in.self.name + " takes it back (" + in.failsafe_text() + ")"));
    else
      out.push_back(make(ActionKind::Wait, "the DCS is unreachable; " + in.failsafe_text()));
    return;
  }
  if (in.writable()) {
    if (c.dcs_reachable)
      out.push_back(make(ActionKind::Fence, "stop writes: the leader key is absent (vanished at " +
                                                ms_text(c.leader_expired_at) + ")"));
    else if (!in.lease_valid())
      out.push_back(make(ActionKind::Fence, "stop writes: the DCS is unreachable and " + in.lease_text()));
  }
  if (!c.dcs_reachable) {
    if (out.empty()) out.push_back(make(ActionKind::Wait, "the DCS is unreachable; " + in.lease_text()));
    return;
  }
  const Election e = elect(in);
  // A stopped ex-primary not elected within a TTL starts read-only as a standby without upstream:
  // never as a primary, but running, so its final position is known to the others' elections.
  if (e.winner != in.self.name && !in.self.postmaster_running && !c.paused && c.leader_expired_at != 0 &&
      in.stale_grace_over()) {
    out.push_back(make(ActionKind::Follow,
                       "not elected within a TTL of the leader key vanishing (" + e.reason +
                           "): starting as a standby without upstream so that its position is known",
                       ""));
    return;
  }
  claim_if_elected(in, e, out);
}

void primary_with_other_leader(const Inputs& in, Actions& out) {
  const LeaderKey& key = *in.cluster.leader;
  if (in.writable())
    out.push_back(make(ActionKind::Fence, key.holder + " holds the leader key (revision " +
                                              std::to_string(key.revision) +
                                              "): stopping writes, there must not be a second primary"));
  if (!in.cluster.dcs_reachable) {
    if (out.empty()) out.push_back(make(ActionKind::Wait, "the DCS is unreachable; staying fenced"));
    return;
  }
  rejoin(in, /*diverged=*/true, out);
}

void as_primary(const Inputs& in, Actions& out) {
  if (in.other_holds_key()) return primary_with_other_leader(in, out);
  if (in.holds_key()) return primary_holding_key(in, out);
  primary_without_key(in, out);
}

void as_replica(const Inputs& in, Actions& out) {
  const ClusterView& c = in.cluster;
  const NodeView& self = in.self;
  if (!self.postmaster_running) {
    if (self.rewind_failed && in.other_holds_key() && c.dcs_reachable) return rejoin(in, false, out);
    out.push_back(make(ActionKind::StartPostgres, "PostgreSQL is stopped: starting it as a standby"));
    return;
  }
  if (!c.dcs_reachable) {
    out.push_back(make(ActionKind::Wait, "the DCS is unreachable: keep following " +
                                             (self.following.empty() ? std::string("nobody") : self.following)));
    return;
  }
  if (in.other_holds_key()) {
    const MemberView* leader = in.member(c.leader->holder);
    const bool diverged = self.timeline_diverged || (leader != nullptr && self.timeline > leader->timeline);
    return rejoin(in, diverged, out);
  }
  if (in.holds_key()) {
    out.push_back(make_lease(ActionKind::RenewLease, c.leader->revision,
                             self.name + " holds the leader key but is still in recovery"));
    if (!self.accepting) {
      out.push_back(make(ActionKind::Wait, "holding the leader key; waiting for PostgreSQL to accept connections"));
      return;
    }
    cover_own_writes(in, out);
    out.push_back(make(ActionKind::Promote, self.name + " holds the leader key but is still in recovery"));
    return;
  }
  claim_if_elected(in, elect(in), out);
}

// ---------------------------------------------------------------------------------------------
// Rule 9: a leader whose PostgreSQL does not run as primary within primary_start_timeout (a
// promotion that fails or never finishes, a primary that crashes on every start) gives the
// leadership up. Without it the key holder renews its lease forever and nobody else is elected.
// It sits out (is the last choice) for a while, so the next election picks another member if
// one may take over, and itself again if none may.

bool step_down_if_stuck(const Inputs& in, Actions& out) {
  const NodeView& self = in.self;
  const ClusterView& c = in.cluster;
  if (self.leading_down_since == 0 || c.paused || !c.dcs_reachable || in.other_holds_key() ||
      in.now < self.leading_down_since + in.settings.primary_start_timeout)
    return false;
  const TimeMs sit_out = std::max(in.settings.primary_start_timeout, in.settings.ttl);
  out.push_back(make(ActionKind::StepDown,
                     self.name + " has led since " + ms_text(self.leading_down_since) +
                         " without PostgreSQL running as primary (" +
                         (self.in_recovery ? "its promotion did not finish" : "it did not start") +
                         " within primary_start_timeout " + ms_text(in.settings.primary_start_timeout) +
                         "): giving the leadership up; elections take it last until " + ms_text(in.now + sit_out)));
  // Primary data whose postmaster runs (crash recovery that never ends) stops before the key goes.
  if (!self.in_recovery && in.writable()) out.push_back(make(ActionKind::Fence, "stop " + self.name + ": it steps down"));
  if (in.holds_key())
    out.push_back(make_lease(ActionKind::ReleaseLease, c.leader->revision, self.name + " steps down: releasing the leader key"));
  return true;
}

}  // namespace

LeadingClock next_leading_clock(const LeadingClock& previous, const ClusterView& cluster, const NodeView& self,
                                TimeMs now) {
  const bool serving = self.data_exists && !self.in_recovery && self.postmaster_running && self.accepting && !self.fenced;
  const bool other_leads = cluster.leader && cluster.leader->holder != self.name;
  if (serving || other_leads || !self.data_exists) return {};
  if (previous.down_since == 0) {
    const bool holds = cluster.dcs_reachable && cluster.leader && cluster.leader->holder == self.name;
    return holds ? LeadingClock{now, self.replayed_lsn} : LeadingClock{};
  }
  // A promotion still replaying WAL is slow, not stuck.
  if (self.in_recovery && self.accepting && self.replayed_lsn > previous.replayed_lsn) return {now, self.replayed_lsn};
  return previous;
}

bool sits_out(TimeMs stepped_down_at, const Settings& settings, TimeMs now) {
  return stepped_down_at != 0 && now >= stepped_down_at &&
         now < stepped_down_at + std::max(settings.primary_start_timeout, settings.ttl);
}

std::vector<Action> decide(const ClusterView& cluster, const NodeView& self, const Settings& settings, TimeMs now) {
  const Inputs in{cluster, self, settings, now};
  Actions out;
  if (self.data_exists && step_down_if_stuck(in, out)) return out;
  if (!self.data_exists)
    without_data(in, out);
  else if (!self.in_recovery)
    as_primary(in, out);
  else
    as_replica(in, out);
  return out;
}

}  // namespace pgfleet::ha
