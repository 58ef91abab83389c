// What an agent does with the permanent replication slots (cluster/permanent_slots.hpp) on its
// node, as a pure function of what it sees: the agent runs the steps (agent.cpp).
//
// * The primary creates the slots that are missing. Consumers advance them.
// * A replica keeps a copy of each, advanced to where the primary's slot is (never past its own
//   replay): after a promotion the copy is there, and its consumer goes on from about where it
//   left off. PostgreSQL 15 cannot create a logical slot on a standby; a missing one is copied
//   from the primary (its state file) while the replica's server is stopped, then advanced with
//   pg_replication_slot_advance, which works on a standby. docs/failover.md, Permanent slots.
// * Slots removed with `pgfleet slot remove` are dropped wherever they are not in use.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cluster/permanent_slots.hpp"

namespace pgfleet::ha {

// A slot as pg_replication_slots shows it on this node.
struct LocalSlot {
  std::string name;
  std::string type;  // physical | logical
  std::string database;
  std::string plugin;
  bool active = false;
  uint64_t position = 0;  // logical: confirmed_flush_lsn; physical: restart_lsn (0 = none)
};

enum class SlotStepKind {
  CreatePhysical,  // pg_create_physical_replication_slot(name, true)
  CreateLogical,   // pg_create_logical_replication_slot(name, plugin) in `database` (primary)
  CopyFromPrimary, // a replica lacks a logical slot the primary has: copy its state file
  Advance,         // pg_replication_slot_advance(name, lsn) (replica)
  Drop,            // pg_drop_replication_slot(name)
  Conflict,        // a slot of that name exists with another type, database or plugin: left alone
};

struct SlotStep {
  SlotStepKind kind;
  std::string name;
  std::string database;  // where the step runs: logical slots are used from their database
  std::string plugin;
  uint64_t lsn = 0;      // Advance: the target
  bool operator==(const SlotStep&) const = default;
};

// `primary_positions`: the positions the primary published for its permanent slots (empty on the
// primary itself, or when no primary is known); `replayed`: this replica's replay position.
std::vector<SlotStep> plan_slot_sync(const cluster::SlotSpecs& specs, const std::vector<LocalSlot>& local, bool primary,
                                     const std::map<std::string, uint64_t>& primary_positions, uint64_t replayed);

// The positions of this node's copies of the permanent slots (and of removed ones it still has),
// for its member key.
std::map<std::string, uint64_t> permanent_slot_positions(const cluster::SlotSpecs& specs,
                                                         const std::vector<LocalSlot>& local);

}  // namespace pgfleet::ha
