// `pgfleet config`: cluster-wide PostgreSQL parameters in the DCS (Patroni's edit-config). `set`
// changes them with a compare-and-set and waits until every running agent has written them into
// its node's files, then says which nodes wait for a restart.
#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <thread>

#include "cli/commands.hpp"
#include "cluster/binaries.hpp"
#include "cluster/cluster_parameters.hpp"
#include "cluster/control.hpp"
#include "dcs/member.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"

namespace pgfleet::cli {
namespace {

using cluster::PgParameters;

struct StoredParameters {
  PgParameters parameters;
  int64_t revision = 0;  // 0 = the key does not exist
};

StoredParameters read_parameters(dcs::Dcs& dcs) {
  auto kv = dcs.get(dcs::keys::kParameters);
  if (!kv) throw UserError("cannot read the DCS: " + kv.error());
  if (!kv.value()) return {};
  auto parsed = cluster::parameters_from_json(kv.value()->value);
  if (!parsed) {
    throw UserError("the DCS key 'parameters' is not valid: " + parsed.error(),
                    "replace it: pgfleet config set NAME=VALUE (or unset every name)");
  }
  return {std::move(*parsed), kv.value()->mod_revision};
}

// Whether a member's files have the key at `revision` (or a later one); a deleted key (the last
// name unset) is had by an agent that holds none.
bool has_revision(const dcs::Member& m, int64_t revision) {
  return revision == 0 ? m.parameters_revision == 0 : m.parameters_revision >= revision;
}

// PostgreSQL itself judges name and value (`postgres -C` over an empty configuration): a value a
// reload only logs as invalid would stop every node at its next start. "" when accepted; a note
// when it could not be asked (no PostgreSQL binaries here, or running as root).
std::string rejected_by_postgres(const cluster::ClusterConfig& config, const std::string& name,
                                 const std::string& value, std::string& note) {
  cluster::PgBinaries bins;
  try {
    bins = cluster::find_binaries(config.bindir);
  } catch (const UserError&) {
    note = "not checked by PostgreSQL (no PostgreSQL binaries on this machine)";
    return "";
  }
  // PostgreSQL does not run as root: root (on a machine without the cluster's directory, --dcs)
  // asks it as the postgres account.
  std::vector<std::string> argv;
  std::optional<process::User> as;
  if (::geteuid() == 0) {
    as = process::lookup_user("postgres");
    if (!as) {
      note = "not checked by PostgreSQL (it does not run as root, and there is no postgres account)";
      return "";
    }
    argv = {"runuser", "-u", as->name, "--"};
  }
  std::optional<fs::TempDir> dir;
  try {
    dir.emplace("pgfleet-config");
  } catch (const std::exception&) {
    note = "not checked by PostgreSQL (cannot create a directory in /tmp)";
    return "";
  }
  fs::write_file_atomic(dir->path() + "/postgresql.conf", "", 0600);
  if (as) fs::chown_recursive(dir->path(), as->uid, as->gid);
  argv.insert(argv.end(), {bins.path("postgres"), "-D", dir->path(), "-C", name, "-c", name + "=" + value});
  auto r = process::run(argv);
  if (r.exit_code == 0) return "";
  auto line_after = [&](std::string_view label) -> std::string {
    auto at = r.output.find(label);
    if (at == std::string::npos) return "";
    at += label.size();
    return r.output.substr(at, r.output.find('\n', at) - at);
  };
  std::string why = line_after("FATAL:  "), hint = line_after("HINT:  ");
  if (why.empty()) why = "PostgreSQL refused " + name + " = " + value;
  return hint.empty() ? why : why + " (" + hint + ")";
}

// Nodes whose own `nodes[].postgresql` sets `name` keep their value (one host: pgfleet.yaml).
std::string own_values(const cluster::ClusterConfig& config, const std::string& name) {
  std::string out;
  for (const auto& n : config.nodes) {
    if (auto it = n.postgresql.find(name); it != n.postgresql.end())
      out += fmt::format("{}{} keeps its own {} = {}", out.empty() ? "" : "; ", n.name, name, it->second);
  }
  return out;
}

void print_nodes(const std::vector<dcs::Member>& members, int64_t revision) {
  for (const auto& m : members) {
    std::string line = m.name + ": ";
    if (!dcs::is_running(m)) line += m.state + " (it takes them when it starts)";
    else line += has_revision(m, revision) ? "applied" : "not applied yet";
    if (!m.pending_restart.empty()) {
      std::string names;
      for (const auto& p : m.pending_restart) names += (names.empty() ? "" : ", ") + p;
      line += "; waits for a restart: " + names;
    }
    std::cout << "  " << line << "\n";
  }
}

}  // namespace

int run_config(const ConfigOptions& o) {
  become_cluster_owner(o.dir);
  auto c = cluster::Cluster::open(o.dir);
  if (o.action == "show" || o.action.empty()) {
    if (!o.arguments.empty()) throw UserError("config show takes no arguments");
    auto stored = read_parameters(*c.dcs);
    auto members = dcs::read_members(*c.dcs);
    if (o.json) {
      nlohmann::json nodes = nlohmann::json::array();
      for (const auto& m : members) {
        nodes.push_back({{"name", m.name},
                         {"state", m.state},
                         {"applied", has_revision(m, stored.revision)},
                         {"pending_restart", m.pending_restart}});
      }
      std::cout << nlohmann::json{{"parameters", stored.parameters}, {"revision", stored.revision}, {"nodes", nodes}}.dump(2)
                << std::endl;
      return 0;
    }
    if (stored.parameters.empty()) {
      std::cout << "no cluster-wide parameters (set one: pgfleet config set work_mem=64MB)\n";
    } else {
      std::cout << "cluster-wide parameters (pgfleet config set; they override postgresql: in "
                << (c.config.etcd.endpoints.empty() ? "pgfleet.yaml" : "each host's node.yaml") << "):\n";
      for (const auto& [name, value] : stored.parameters) std::cout << "  " << name << " = " << value << "\n";
    }
    if (!members.empty()) {
      std::cout << "nodes:\n";
      print_nodes(members, stored.revision);
    }
    return 0;
  }
  if (o.action != "set" && o.action != "unset")
    throw UserError("config takes show, set or unset, not '" + o.action + "'",
                    "pgfleet config set work_mem=64MB; pgfleet config unset work_mem; pgfleet config show");
  if (o.arguments.empty())
    throw UserError(o.action == "set" ? "config set needs NAME=VALUE (e.g. work_mem=64MB)" : "config unset needs a NAME");
  if (o.timeout_seconds <= 0) throw UserError("--timeout must be positive (seconds)");

  PgParameters changes;
  std::vector<std::string> removals;
  for (const auto& arg : o.arguments) {
    if (o.action == "set") {
      auto assignment = cluster::parse_parameter_assignment(arg);
      if (!assignment) throw UserError(assignment.error());
      std::string note;
      if (auto why = rejected_by_postgres(c.config, assignment->first, assignment->second, note); !why.empty())
        throw UserError(why, "nothing was changed");
      if (!note.empty()) std::cout << assignment->first << ": " << note << "\n";
      changes[assignment->first] = assignment->second;
    } else {
      std::string name = arg;
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
      if (!cluster::is_guc_name(name)) throw UserError("'" + arg + "' is not a PostgreSQL parameter name");
      removals.push_back(name);
    }
  }

  // Compare-and-set: two operators changing different parameters at once both get theirs.
  int64_t target = 0;
  std::vector<std::string> removed;
  for (int attempt = 0;; ++attempt) {
    auto stored = read_parameters(*c.dcs);
    PgParameters next = stored.parameters;
    for (const auto& [name, value] : changes) next[name] = value;
    removed.clear();
    for (const auto& name : removals) {
      if (next.erase(name) != 0) removed.push_back(name);
    }
    if (next == stored.parameters) {
      for (const auto& name : removals) std::cout << name << " was not set cluster-wide\n";
      std::cout << "nothing to change\n";
      return 0;
    }
    Result<bool> written = next.empty() ? c.dcs->compare_and_delete(dcs::keys::kParameters, stored.revision)
                                        : c.dcs->compare_and_set(dcs::keys::kParameters,
                                                                 cluster::parameters_to_json(next), stored.revision);
    if (!written) throw UserError("cannot write the DCS: " + written.error());
    if (*written) break;
    if (attempt == 5) throw UserError("the parameters kept changing under this command", "try again");
  }
  if (auto now = c.dcs->get(dcs::keys::kParameters); now && now.value()) target = now.value()->mod_revision;
  for (const auto& [name, value] : changes) {
    std::cout << fmt::format("set {} = {} cluster-wide\n", name, value);
    if (auto own = own_values(c.config, name); !own.empty()) std::cout << "  (" << own << ")\n";
  }
  for (const auto& name : removals) {
    std::cout << (std::find(removed.begin(), removed.end(), name) != removed.end() ? "unset " + name + " cluster-wide\n"
                                                                                  : name + " was not set cluster-wide\n");
  }

  // Every running agent writes them into its files and reloads its server within a loop.
  auto applied = [&](const dcs::Member& m) { return !dcs::is_running(m) || has_revision(m, target); };
  auto members = dcs::wait_for_members(*c.dcs, std::chrono::seconds(o.timeout_seconds), applied);
  if (std::all_of(members.begin(), members.end(), applied)) {
    // The reload's pending restarts are read shortly after it and published the next loop.
    std::this_thread::sleep_for(std::chrono::seconds(c.config.loop_wait_seconds) + std::chrono::milliseconds(700));
    members = dcs::read_members(*c.dcs);
  }
  print_nodes(members, target);
  bool all_applied = std::all_of(members.begin(), members.end(), applied);
  bool restart = std::any_of(members.begin(), members.end(), [](const dcs::Member& m) { return !m.pending_restart.empty(); });
  if (restart) {
    const bool several_hosts = c.remote || !c.config.etcd.endpoints.empty();
    std::cout << "apply what waits for a restart: pgfleet restart --pending"
              << (several_hosts ? " --dcs etcd://... --cluster " + c.config.cluster : std::string())
              << " (replicas first, the primary last)\n";
  }
  if (!all_applied) {
    std::cerr << fmt::format("pgfleet: error: not every running node applied them within {} s; see `pgfleet status` "
                             "(an agent that is not running takes them when it starts)\n",
                             o.timeout_seconds);
    return 1;
  }
  return 0;
}

}  // namespace pgfleet::cli
