// `pgfleet slot`: permanent replication slots (cluster/permanent_slots.hpp), kept in the DCS key
// `slots` and made by the agents on every node (ha/slot_sync.hpp). `add` checks what it can on
// the primary first (wal_level, the database), then waits until every running node has the
// slot; `remove` marks it removed and waits until no node has it.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cluster/control.hpp"
#include "cluster/permanent_slots.hpp"
#include "dcs/member.hpp"
#include "postgres/pgconn.hpp"
#include "util/errors.hpp"

namespace pgfleet::cli {
namespace {

using cluster::SlotSpec;
using cluster::SlotSpecs;

struct StoredSlots {
  SlotSpecs slots;       // live and removed
  int64_t revision = 0;  // 0 = the key does not exist
};

StoredSlots read_slots(dcs::Dcs& dcs) {
  auto kv = dcs.get(dcs::keys::kSlots);
  if (!kv) throw UserError("cannot read the DCS: " + kv.error());
  if (!kv.value()) return {};
  auto parsed = cluster::slots_from_json(kv.value()->value);
  if (!parsed) throw UserError("the DCS key 'slots' is not valid: " + parsed.error());
  return {std::move(*parsed), kv.value()->mod_revision};
}

std::string describe(const SlotSpec& s) {
  return s.type == "logical" ? fmt::format("logical, plugin {} in database {}", s.plugin, s.database) : "physical";
}

// Compare-and-set of the whole key: two operators adding different slots at once both get theirs.
void write_slot(dcs::Dcs& dcs, const std::string& name, const SlotSpec& spec) {
  for (int attempt = 0; attempt < 6; ++attempt) {
    auto stored = read_slots(dcs);
    stored.slots[name] = spec;
    auto written = dcs.compare_and_set(dcs::keys::kSlots, cluster::slots_to_json(stored.slots), stored.revision);
    if (!written) throw UserError("cannot write the DCS: " + written.error());
    if (*written) return;
  }
  throw UserError("the permanent slots kept changing under this command", "try again");
}

// What the primary can tell before the slot is kept: a logical slot needs wal_level = logical and
// an existing database; a slot of that name made by hand must be of the same kind.
void check_on_primary(const cluster::Cluster& c, const std::string& name, const SlotSpec& spec) {
  auto status = c.status();
  if (status.leader.empty())
    throw UserError("the cluster has no primary now", "wait for one (pgfleet status): the primary creates the slot");
  auto conn = postgres::PgConn::connect_uri(status.connection.nodes.at(status.leader), "pgfleet-slot", 5);
  if (!conn) throw UserError("cannot connect to the primary " + status.leader + ": " + conn.error());
  if (spec.type == "logical") {
    auto level = conn->scalar("SHOW wal_level");
    if (level && level->value_or("") != "logical")
      throw UserError(fmt::format("a logical slot needs wal_level = logical; the cluster runs with {}",
                                  level->value_or("?")),
                      "pgfleet config set wal_level=logical, then pgfleet restart --pending (on several hosts "
                      "both with --dcs and --cluster), then add the slot again");
    auto db = conn->query("SELECT 1 FROM pg_database WHERE datname = $1", {spec.database});
    if (db && db->empty())
      throw UserError("there is no database '" + spec.database + "'", "create it first, or choose another with --database");
  }
  auto existing = conn->query(
      "SELECT slot_type, coalesce(database, ''), coalesce(plugin, '') FROM pg_replication_slots WHERE slot_name = $1",
      {name});
  if (existing && !existing->empty()) {
    const auto& row = existing->front();
    SlotSpec found{row[0].value_or(""), row[1].value_or(""), row[2].value_or(""), false};
    if (found.type != "logical") found.database = found.plugin = "";
    if (!(found == spec))
      throw UserError(fmt::format("the primary already has a slot named {} ({}), not {}", name, describe(found),
                                  describe(spec)),
                      "choose another name, or drop that slot first (pg_drop_replication_slot)");
  }
}

// Waits until `done(member)` holds for every member that is not down, or the timeout; the last
// read. A node restarting (a replica loading its copy of a logical slot) is waited for.
std::vector<dcs::Member> wait_for_nodes(dcs::Dcs& dcs, int timeout_seconds,
                                        const std::function<bool(const dcs::Member&)>& done) {
  return dcs::wait_for_members(dcs, std::chrono::seconds(timeout_seconds), [&](const dcs::Member& m) {
    return done(m) || m.state == "stopped" || m.state == "crashed";
  });
}

int list_slots(const cluster::Cluster& c, bool json) {
  auto live = cluster::live_slots(read_slots(*c.dcs).slots);
  auto members = dcs::read_members(*c.dcs);
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [name, s] : live) {
      nlohmann::json nodes = nlohmann::json::object();
      for (const auto& m : members) {
        auto it = m.slots.find(name);
        nodes[m.name] = dcs::is_running(m) && it != m.slots.end() ? nlohmann::json(it->second) : nlohmann::json(nullptr);
      }
      out.push_back({{"name", name},
                     {"type", s.type},
                     {"database", s.type == "logical" ? nlohmann::json(s.database) : nlohmann::json(nullptr)},
                     {"plugin", s.type == "logical" ? nlohmann::json(s.plugin) : nlohmann::json(nullptr)},
                     {"nodes", nodes}});
    }
    std::cout << nlohmann::json{{"slots", out}}.dump(2) << std::endl;
    return 0;
  }
  if (live.empty()) {
    std::cout << "no permanent replication slots (add one: pgfleet slot add NAME [--type logical --database DB "
                 "--plugin pgoutput])\n";
    return 0;
  }
  // One row per slot, one column per node: where its copy of the slot is (restart_lsn for a
  // physical slot, confirmed_flush_lsn for a logical one); "-" where it has none (yet).
  std::vector<std::vector<std::string>> rows = {{"SLOT", "TYPE", "DATABASE", "PLUGIN"}};
  for (const auto& m : members) rows[0].push_back(m.role == "primary" ? m.name + " (primary)" : m.name);
  for (const auto& [name, s] : live) {
    std::vector<std::string> row = {name, s.type, s.type == "logical" ? s.database : "-",
                                    s.type == "logical" ? s.plugin : "-"};
    for (const auto& m : members) {
      auto it = m.slots.find(name);
      row.push_back(!dcs::is_running(m) ? m.state : it != m.slots.end() ? it->second : "-");
    }
    rows.push_back(std::move(row));
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) line += fmt::format("{:<{}}  ", row[i], width[i]);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  }
  return 0;
}

}  // namespace

int run_slot(const SlotOptions& o) {
  become_cluster_owner(o.dir);
  auto c = cluster::Cluster::open(o.dir);
  if (o.action == "list" || o.action.empty()) {
    if (!o.names.empty()) throw UserError("slot list takes no names");
    return list_slots(c, o.json);
  }
  if (o.action != "add" && o.action != "remove")
    throw UserError("slot takes list, add or remove, not '" + o.action + "'",
                    "pgfleet slot add cdc --type logical --database app; pgfleet slot remove cdc; pgfleet slot list");
  if (o.names.size() != 1) throw UserError("slot " + o.action + " takes one slot name");
  if (o.timeout_seconds <= 0) throw UserError("--timeout must be positive (seconds)");
  const std::string& name = o.names.front();
  auto stored = read_slots(*c.dcs);

  if (o.action == "remove") {
    auto it = stored.slots.find(name);
    if (it == stored.slots.end() || it->second.dropped) throw UserError("no permanent slot named " + name, "pgfleet slot list");
    SlotSpec removed = it->second;
    removed.dropped = true;
    write_slot(*c.dcs, name, removed);
    std::cout << "removed the permanent slot " << name << ": every node drops its copy\n";
    auto members = wait_for_nodes(*c.dcs, o.timeout_seconds, [&](const dcs::Member& m) { return !m.slots.contains(name); });
    std::vector<std::string> left;
    for (const auto& m : members)
      if (dcs::is_running(m) && m.slots.contains(name)) left.push_back(m.name);
    if (left.empty()) return 0;
    std::cerr << fmt::format("pgfleet: error: {} still {} it after {} s: a slot in use cannot be dropped; stop its "
                             "consumer and the agents drop it then\n",
                             fmt::join(left, ", "), left.size() == 1 ? "has" : "have", o.timeout_seconds);
    return 1;
  }

  std::vector<std::string> node_names;
  for (const auto& n : c.config.nodes) node_names.push_back(n.name);
  if (auto why = cluster::slot_name_problem(name, node_names); !why.empty()) throw UserError(why);
  if (o.type != "physical" && o.type != "logical") throw UserError("--type is physical or logical, not '" + o.type + "'");
  SlotSpec spec{o.type, "", "", false};
  if (o.type == "logical") {
    spec.database = o.database.empty() ? c.config.database : o.database;
    spec.plugin = o.plugin;
    if (spec.plugin.empty()) throw UserError("--plugin needs a name (pgoutput, test_decoding, wal2json...)");
  } else if (!o.database.empty()) {
    throw UserError("--database is for logical slots (--type logical): a physical slot streams the whole cluster");
  }
  if (auto it = stored.slots.find(name); it != stored.slots.end() && !it->second.dropped) {
    if (it->second == spec) {
      std::cout << "the permanent slot " << name << " is already kept (" << describe(spec) << ")\n";
      return 0;
    }
    throw UserError(fmt::format("the permanent slot {} is kept as {}", name, describe(it->second)),
                    "remove it first (pgfleet slot remove " + name + ") or choose another name");
  }
  check_on_primary(c, name, spec);
  write_slot(*c.dcs, name, spec);
  std::cout << fmt::format("added the permanent slot {} ({})\n", name, describe(spec));
  auto members = wait_for_nodes(*c.dcs, o.timeout_seconds, [&](const dcs::Member& m) { return m.slots.contains(name); });
  bool all = true;
  for (const auto& m : members) {
    std::string line;
    if (!dcs::is_running(m)) line = m.state + " (it makes its copy when it runs)";
    else if (auto it = m.slots.find(name); it != m.slots.end()) line = "has it at " + it->second;
    else {
      all = false;
      line = "not yet" + (m.last_error.empty() ? std::string() : ": " + m.last_error);
    }
    std::cout << fmt::format("  {}{}: {}\n", m.name, m.role == "primary" ? " (primary)" : "", line);
  }
  if (spec.type == "logical")
    std::cout << "a replica restarts its server once to load its copy of a logical slot (PostgreSQL 15 cannot "
                 "create one on a standby)\n";
  if (!all) {
    std::cerr << fmt::format("pgfleet: error: not every running node has the slot after {} s; see `pgfleet slot list` "
                             "and `pgfleet logs NODE --agent`\n",
                             o.timeout_seconds);
    return 1;
  }
  return 0;
}

}  // namespace pgfleet::cli
