// Permanent replication slots (`pgfleet slot`, as Patroni's `slots:`): slots for consumers outside
// the cluster (a logical decoding client such as Debezium, a subscriber, pg_receivewal, a standby
// in another data centre) that every node keeps, so that a failover or switchover neither loses
// them nor the WAL and catalog rows their consumers still need. Kept in the DCS key `slots`.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "util/result.hpp"

namespace pgfleet::cluster {

struct SlotSpec {
  std::string type = "physical";  // physical | logical
  std::string database;           // logical: the database it decodes
  std::string plugin;             // logical: the output plugin (pgoutput, test_decoding, wal2json...)
  // Removed with `pgfleet slot remove`: kept as a mark so that every node, also one that is down
  // now, drops its copy (a forgotten slot would hold WAL for ever).
  bool dropped = false;
  bool operator==(const SlotSpec&) const = default;
};
using SlotSpecs = std::map<std::string, SlotSpec>;  // by slot name

// Why `name` cannot be a permanent slot's name ("" when it can): PostgreSQL's rule (lower-case
// letters, digits and underscores, at most 63) and not the name of a node (pgfleet gives each
// node a slot of its name on the primary).
std::string slot_name_problem(const std::string& name, const std::vector<std::string>& node_names);

std::string slots_to_json(const SlotSpecs& slots);
Result<SlotSpecs> slots_from_json(const std::string& text);

// The slots that are wanted now (not marked dropped).
SlotSpecs live_slots(const SlotSpecs& slots);

}  // namespace pgfleet::cluster
