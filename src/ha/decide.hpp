// decide(): the HA decisions as a pure function of what the DCS says, what the local PostgreSQL
// says, the settings and the time. No I/O: the agent executes the returned actions.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pgfleet::ha {

// Milliseconds on the agent's monotonic clock (CLOCK_MONOTONIC; simulated in tests).
using TimeMs = int64_t;

enum class SyncMode { Off, On, Quorum };

// "Every acknowledged commit is on at least `quorum` of `members`". The leader publishes the list
// of constraints in force; while it changes the synchronous configuration two constraints hold
// (old and new), and a candidate must satisfy all. The primary itself is listed in one case only:
// {leader} q=1 is the published form of "writes do not wait for any standby" (PostgreSQL's
// setting is then the empty constraint, q=0): every acknowledged commit is on the leader alone,
// so nobody else may be promoted while it may have acknowledged commits no standby has.
struct SyncConstraint {
  std::vector<std::string> members;
  int quorum = 0;
  bool operator==(const SyncConstraint&) const = default;
};

// What one member last published to the DCS (members/<name>), as read this loop.
struct MemberView {
  std::string name;
  std::string role;           // "primary" | "replica" | "unknown"
  bool running = false;       // its postmaster accepts connections
  bool streaming = false;     // replica: WAL receiver streaming
  int timeline = 0;
  uint64_t received_lsn = 0;  // replica: last received; primary: current write position
  uint64_t replayed_lsn = 0;
  TimeMs updated_at = 0;      // when the member published it (same clock as `now`)
  bool nofailover = false;    // never promote this member (config tag)
  // Failsafe mode: the leader this member confirmed, over the agents' API, within the last TTL that
  // it still follows ("" = none). While one does, nobody takes the leader key (see NodeView).
  std::string failsafe_for;
  // It gave the leadership up recently because its PostgreSQL did not run as primary within
  // primary_start_timeout (see NodeView::stepped_down_at): elections prefer every other member.
  bool stepped_down = false;
  // Just promoted, its checkpoint after the promotion still running: no pg_rewind from it yet.
  bool checkpoint_pending = false;
  bool operator==(const MemberView&) const = default;
};

struct LeaderKey {
  std::string holder;
  int64_t revision = 0;       // for compare-and-set renewals
  TimeMs expires_at = 0;      // as far as this agent knows (its last successful write + ttl, or TTL left)
};

// A requested planned switchover (written by `pgfleet switchover`).
struct SwitchoverRequest {
  std::string from;           // the current leader
  std::string to;             // "" = the best candidate
  TimeMs not_before = 0;      // --at
  TimeMs requested_at = 0;    // when it was written (0 = unknown)
};

struct ClusterView {
  bool dcs_reachable = true;              // false: every other field is from the last good read
  std::optional<LeaderKey> leader;        // absent: no leader key (expired or released)
  // When the leader key was last seen disappearing (0 = unknown: no election). Must be no earlier
  // than the end of the old lease as last read (the key may have been deleted under a writing
  // primary); only a key released in a switchover (by a fenced leader) may count from its absence.
  TimeMs leader_expired_at = 0;
  std::vector<MemberView> members;        // every member key present (fresh within the TTL)
  std::vector<SyncConstraint> sync;       // published by the leader (empty in async mode)
  std::string sync_leader;                // the leader that published `sync` (written with it, atomically)
  bool paused = false;                    // maintenance: no automatic failover
  // Failsafe mode (Patroni's failsafe_mode): while the DCS is unreachable a primary keeps writing
  // as long as every member confirms over the agents' API that it follows it. The last value read.
  bool failsafe = false;
  std::optional<SwitchoverRequest> switchover;
  std::optional<std::string> failover_to; // manual `pgfleet failover --to NODE`
};

// What this agent sees of its own PostgreSQL.
struct NodeView {
  std::string name;
  bool data_exists = true;                // PGDATA initialized
  bool postmaster_running = false;
  bool accepting = false;                 // answers queries
  bool in_recovery = false;               // standby.signal / pg_is_in_recovery()
  int timeline = 0;
  uint64_t lsn = 0;                       // primary: current; replica: received
  uint64_t replayed_lsn = 0;
  std::string following;                  // replica: node its primary_conninfo points to ("" = none)
  bool rewind_failed = false;             // last pg_rewind attempt failed (→ reinit)
  TimeMs lease_renewed_at = 0;            // start of this agent's last successful leader-key write
  bool fenced = false;                    // this agent has fenced its primary (read-only or stopped)
  // The synchronous_standby_names setting in force on this primary (as reported by PostgreSQL).
  std::optional<SyncConstraint> sync_in_force;
  // pg_current_wal_lsn() read the first time this node, running as a primary, reported the current
  // sync_in_force (read again after every change of the setting, promotion or restart; Patroni's
  // _primary_flush_lsn): every commit acknowledged before that setting applied is at or below it.
  uint64_t sync_in_force_lsn = 0;
  // Replica: the leader's timeline history forks before this node's position (its WAL diverged:
  // streaming from the leader cannot work, pg_rewind is needed). The agent computes it from the
  // leader's timeline history file, as Patroni's rewind check does.
  bool timeline_diverged = false;
  // Failsafe mode, primary: when this agent *started* the last round of POST /failsafe in which
  // every member it last read from the DCS answered yes (0 = none). Like lease_renewed_at: each
  // member that answered refuses the leader key for a TTL after it answered, which is later.
  TimeMs failsafe_confirmed_at = 0;
  // Failsafe mode, other nodes: the leader this node last confirmed to, and when (its clock).
  std::string failsafe_leader;
  TimeMs failsafe_heard_at = 0;
  // Since when this node leads (holds the leader key, or claimed it and still tries) without its
  // PostgreSQL running as an accepting primary: a promotion that does not finish, a primary that
  // does not start. 0 = it runs as primary, or another node leads. The agent keeps it between
  // loops with next_leading_clock(). Past primary_start_timeout the node steps down.
  TimeMs leading_down_since = 0;
  // When this agent last stepped down (0 = never). For a while after it, the node is the last
  // choice of every election (sits_out()).
  TimeMs stepped_down_at = 0;
};

struct Settings {
  std::vector<std::string> nodes;         // configured members, in config order
  SyncMode mode = SyncMode::Off;
  bool strict = false;                    // sync: never drop below the wanted number of standbys
  int sync_count = 1;                     // k of ANY k (...)
  TimeMs ttl = 30000;                     // leader key TTL
  TimeMs loop_wait = 1000;
  uint64_t maximum_lag_on_failover = 1 << 20;  // async: skip candidates further behind than this
  // How long the leader may go without its PostgreSQL running as primary before it gives the
  // leadership up to another member (Patroni's primary_start_timeout).
  TimeMs primary_start_timeout = 300000;
};

enum class ActionKind {
  AcquireLease,     // compare-and-set the leader key from absent to self
  RenewLease,       // compare-and-set the leader key at `revision` to self, fresh TTL
  ReleaseLease,     // delete the leader key if still ours (compare-and-delete at `revision`; switchover)
  Promote,          // pg_promote(); AcquireLease/RenewLease precede it in the same list. On a fenced
                    // primary (not in recovery) it means: lift the fence, accept writes again
  Fence,            // stop accepting writes now (primary lost its lease or sees another leader)
  Follow,           // point primary_conninfo at `target` and reload (start as standby if needed);
                    // `target` "": run as a standby without upstream (a stopped ex-primary that was
                    // not elected starts so, read-only, never as a primary)
  Rewind,           // stop, pg_rewind from `target`, start as standby following it
  Reinit,           // wipe and pg_basebackup from `target`
  StartPostgres,    // start the postmaster (as primary or standby as its data says; a primary is only
                    // started by the lease holder, so starting one also lifts the fence)
  PublishSync,      // write the sync constraints `sync` to the DCS, with self as sync_leader
  SetSyncStandbys,  // set synchronous_standby_names to `sync.back()` on this primary and reload
  ClearSwitchover,  // remove the switchover request and the manual failover request (done or impossible)
  RecordHistory,    // append `reason` (from → to) to the failover history
  StepDown,         // give the leadership up: remember the time (stepped_down_at), stop promoting;
                    // ReleaseLease follows in the same list when this node holds the key
  Wait,             // nothing to do yet; `reason` says what it waits for
};

struct Action {
  ActionKind kind = ActionKind::Wait;
  std::string target;                     // node for Follow/Rewind/Reinit; the new leader for RecordHistory
  std::vector<SyncConstraint> sync;       // PublishSync / SetSyncStandbys
  int64_t revision = 0;                   // RenewLease
  uint64_t lsn = 0;                       // RecordHistory: where the old primary's WAL ended (as known)
  std::string reason;                     // human-readable why, logged once per change
  bool operator==(const Action&) const = default;
};

std::string to_string(ActionKind kind);

// The clock behind primary_start_timeout, which the agent carries from loop to loop.
struct LeadingClock {
  TimeMs down_since = 0;      // NodeView::leading_down_since
  uint64_t replayed_lsn = 0;  // replay position when it last moved (a promotion still replaying is not stuck)
  bool operator==(const LeadingClock&) const = default;
};

// The clock after this loop's observation (`self.leading_down_since` is ignored). It starts when
// this node holds the leader key without running as an accepting primary, keeps running while
// the key is lost or absent (a promotion that blocked the loop past the TTL), restarts when a
// replica's replay advances, and stops when the node runs as primary or another node leads.
LeadingClock next_leading_clock(const LeadingClock& previous, const ClusterView& cluster, const NodeView& self,
                                TimeMs now);

// After stepping down, a node is the last choice of elections for max(primary_start_timeout, ttl).
bool sits_out(TimeMs stepped_down_at, const Settings& settings, TimeMs now);

// The decision for one loop of `self`'s agent. Deterministic: the same inputs give the same actions.
// The agent executes the actions in order and stops at the first one that fails (a lost
// compare-and-set on the leader key must not be followed by Promote, PublishSync, ...).
// The rest of the agent's side of the safety argument is at the top of decide.cpp.
std::vector<Action> decide(const ClusterView& cluster, const NodeView& self, const Settings& settings, TimeMs now);

}  // namespace pgfleet::ha
