#include "cluster/permanent_slots.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace pgfleet::cluster {

std::string slot_name_problem(const std::string& name, const std::vector<std::string>& node_names) {
  if (name.empty() || name.size() > 63) return "a slot name has 1 to 63 characters";
  if (!std::all_of(name.begin(), name.end(),
                   [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }))
    return "'" + name + "' is not a replication slot name: lower-case letters, digits and underscores only";
  if (std::find(node_names.begin(), node_names.end(), name) != node_names.end())
    return "'" + name + "' is the name of a node: the primary keeps a slot of that name for it";
  return "";
}

std::string slots_to_json(const SlotSpecs& slots) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, s] : slots) {
    nlohmann::json one = {{"type", s.type}};
    if (s.type == "logical") {
      one["database"] = s.database;
      one["plugin"] = s.plugin;
    }
    if (s.dropped) one["dropped"] = true;
    j[name] = one;
  }
  return j.dump();
}

Result<SlotSpecs> slots_from_json(const std::string& text) {
  try {
    auto j = nlohmann::json::parse(text);
    if (!j.is_object()) return Error{"not a JSON object"};
    SlotSpecs out;
    for (const auto& [name, v] : j.items()) {
      if (!v.is_object()) return Error{"slot " + name + " is not a JSON object"};
      SlotSpec s;
      s.type = v.value("type", "physical");
      if (s.type != "physical" && s.type != "logical") return Error{"slot " + name + " has type '" + s.type + "'"};
      s.database = v.value("database", "");
      s.plugin = v.value("plugin", "");
      s.dropped = v.value("dropped", false);
      if (s.type == "logical" && (s.database.empty() || s.plugin.empty()))
        return Error{"logical slot " + name + " needs a database and a plugin"};
      if (auto why = slot_name_problem(name, {}); !why.empty()) return Error{why};
      out[name] = s;
    }
    return out;
  } catch (const nlohmann::json::exception& e) {
    return Error{e.what()};
  }
}

SlotSpecs live_slots(const SlotSpecs& slots) {
  SlotSpecs out;
  for (const auto& [name, s] : slots)
    if (!s.dropped) out[name] = s;
  return out;
}

}  // namespace pgfleet::cluster
