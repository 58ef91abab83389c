#include "ha/slot_sync.hpp"

#include <algorithm>

namespace pgfleet::ha {
namespace {

const LocalSlot* find_slot(const std::vector<LocalSlot>& local, const std::string& name) {
  auto it = std::find_if(local.begin(), local.end(), [&](const LocalSlot& s) { return s.name == name; });
  return it == local.end() ? nullptr : &*it;
}

bool same_kind(const cluster::SlotSpec& spec, const LocalSlot& slot) {
  if (spec.type != slot.type) return false;
  return spec.type == "physical" || (spec.database == slot.database && spec.plugin == slot.plugin);
}

}  // namespace

std::vector<SlotStep> plan_slot_sync(const cluster::SlotSpecs& specs, const std::vector<LocalSlot>& local, bool primary,
                                     const std::map<std::string, uint64_t>& primary_positions, uint64_t replayed) {
  std::vector<SlotStep> steps;
  for (const auto& [name, spec] : specs) {
    const LocalSlot* have = find_slot(local, name);
    if (spec.dropped) {
      // An active slot is someone's stream: dropping fails; it is tried again once they let go.
      if (have != nullptr && !have->active) steps.push_back({SlotStepKind::Drop, name, have->database, "", 0});
      continue;
    }
    if (have != nullptr && !same_kind(spec, *have)) {
      steps.push_back({SlotStepKind::Conflict, name, have->database, have->plugin, 0});
      continue;
    }
    if (have == nullptr) {
      if (spec.type == "physical") steps.push_back({SlotStepKind::CreatePhysical, name, "", "", 0});
      else if (primary) steps.push_back({SlotStepKind::CreateLogical, name, spec.database, spec.plugin, 0});
      else if (primary_positions.contains(name))
        steps.push_back({SlotStepKind::CopyFromPrimary, name, spec.database, spec.plugin, 0});
      continue;
    }
    if (primary || have->active) continue;  // consumers move the slot they use
    auto it = primary_positions.find(name);
    if (it == primary_positions.end()) continue;
    // Never past this replica's replay: the slot would point at WAL the replica has not got.
    const uint64_t target = std::min(it->second, replayed);
    if (target > have->position && have->position != 0)
      steps.push_back({SlotStepKind::Advance, name, have->database, "", target});
  }
  return steps;
}

std::map<std::string, uint64_t> permanent_slot_positions(const cluster::SlotSpecs& specs,
                                                         const std::vector<LocalSlot>& local) {
  std::map<std::string, uint64_t> out;
  for (const auto& [name, spec] : specs) {
    // A removed one still here is shown too: `pgfleet slot remove` waits until no node has it.
    if (const LocalSlot* have = find_slot(local, name); have != nullptr && (spec.dropped || same_kind(spec, *have)))
      out[name] = have->position;
  }
  return out;
}

}  // namespace pgfleet::ha
