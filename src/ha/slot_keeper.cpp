#include "ha/slot_keeper.hpp"

#include <fmt/format.h>

#include <filesystem>

#include "ha/slot_sync.hpp"
#include "postgres/lsn.hpp"
#include "util/fs.hpp"
#include "util/log.hpp"

namespace pgfleet::ha {
namespace {

// A conninfo value in single quotes, as libpq reads it.
std::string conninfo_value(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

std::string from_hex(const std::string& hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return "";
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

}  // namespace

std::string SlotKeeper::read_specs(const dcs::KeyValue* kv) {
  const int64_t revision = kv != nullptr ? kv->mod_revision : 0;
  if (revision == seen_revision_) return "";
  seen_revision_ = revision;
  if (kv == nullptr) {
    specs_.clear();
    return "";
  }
  auto parsed = cluster::slots_from_json(kv->value);
  if (!parsed) return "the DCS key 'slots' is not valid (" + parsed.error() + "): the slots in force stay";
  specs_ = std::move(*parsed);
  return "";
}

postgres::PgConn* SlotKeeper::conn_for(postgres::PgConn& default_conn, const std::string& local_conninfo,
                                       const std::string& database, std::string& error) {
  if (database.empty()) return &default_conn;
  if (auto it = database_conns_.find(database); it != database_conns_.end()) return &it->second;
  // A later keyword overrides an earlier one in a libpq conninfo.
  auto c = postgres::PgConn::connect(local_conninfo + " dbname=" + conninfo_value(database));
  if (!c) {
    error = "cannot connect to database " + database + ": " + c.error();
    return nullptr;
  }
  return &database_conns_.emplace(database, std::move(c.value())).first->second;
}

SlotKeeper::Pass SlotKeeper::sync(postgres::PgConn& conn, const std::string& local_conninfo, bool primary,
                                  const std::map<std::string, uint64_t>& primary_positions, uint64_t replayed) {
  Pass pass;
  auto rows = conn.query_prepared(
      "SELECT slot_name, slot_type, coalesce(database, ''), coalesce(plugin, ''), active, "
      "coalesce((CASE WHEN slot_type = 'logical' THEN confirmed_flush_lsn ELSE restart_lsn END)::text, '') "
      "FROM pg_replication_slots WHERE NOT temporary");
  if (!rows) {
    pass.problems.push_back("cannot read pg_replication_slots: " + rows.error());
    return pass;
  }
  std::vector<LocalSlot> local;
  for (const auto& r : *rows) {
    LocalSlot s{r[0].value_or(""), r[1].value_or(""), r[2].value_or(""), r[3].value_or(""),
                r[4].value_or("f") == "t", postgres::parse_lsn(r[5].value_or("")).value_or(0)};
    local.push_back(std::move(s));
  }
  for (const auto& [name, lsn] : permanent_slot_positions(specs_, local)) pass.positions[name] = postgres::format_lsn(lsn);

  for (const auto& step : plan_slot_sync(specs_, local, primary, primary_positions, replayed)) {
    std::string error;
    auto* c = conn_for(conn, local_conninfo, step.database, error);
    if (c == nullptr) {
      pass.problems.push_back("permanent slot " + step.name + ": " + error);
      database_conns_.erase(step.database);
      continue;
    }
    Result<std::vector<postgres::Row>> done = std::vector<postgres::Row>{};
    switch (step.kind) {
      case SlotStepKind::CreatePhysical:
        done = c->query(
            "SELECT pg_create_physical_replication_slot($1, true) "
            "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            {step.name});
        if (done) log::info("created the permanent physical replication slot {}", step.name);
        break;
      case SlotStepKind::CreateLogical:
        done = c->query("SELECT pg_create_logical_replication_slot($1, $2)", {step.name, step.plugin});
        if (done) log::info("created the permanent logical replication slot {} ({} in database {})", step.name,
                            step.plugin, step.database);
        break;
      case SlotStepKind::CopyFromPrimary:
        pass.to_copy.push_back(step.name);
        break;
      case SlotStepKind::Advance:
        done = c->query("SELECT pg_replication_slot_advance($1, $2::pg_lsn)", {step.name, postgres::format_lsn(step.lsn)});
        if (done) pass.positions[step.name] = postgres::format_lsn(step.lsn);
        if (!done && done.error().find("has already been removed") != std::string::npos) {
          // The copy points at WAL this replica no longer has (it was copied from an older
          // state): drop it, and the next pass copies the primary's again.
          log::warn("permanent slot {} needs WAL this replica removed: dropping it to copy it again", step.name);
          done = c->query("SELECT pg_drop_replication_slot($1)", {step.name});
        }
        break;
      case SlotStepKind::Drop:
        done = c->query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        "WHERE slot_name = $1 AND NOT active",
                        {step.name});
        if (done) log::info("dropped the replication slot {} (removed with pgfleet slot remove)", step.name);
        break;
      case SlotStepKind::Conflict:
        pass.problems.push_back(fmt::format(
            "a replication slot named {} exists on this node with another type, database or plugin than the "
            "permanent slot of that name: drop it (pg_drop_replication_slot) or remove the permanent slot",
            step.name));
        break;
    }
    if (!done) {
      pass.problems.push_back("permanent slot " + step.name + ": " + done.error());
      if (!step.database.empty()) database_conns_.erase(step.database);  // maybe broken; reconnect next pass
    }
  }
  return pass;
}

Result<uint64_t> SlotKeeper::oldest_wal(postgres::PgConn& local) {
  auto rows = local.query(
      "SELECT min(name), current_setting('wal_segment_size') FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'");
  if (!rows) return Error{"cannot list pg_wal: " + rows.error()};
  const std::string name = rows->empty() ? "" : rows->front()[0].value_or("");
  const std::string size_text = rows->empty() ? "" : rows->front()[1].value_or("");
  // "16MB"; initdb --wal-segsize allows 1 MB to 1 GB, in powers of two.
  uint64_t segment = 0;
  try {
    segment = std::stoull(size_text) * (size_text.ends_with("GB") ? 1ULL << 30 : 1ULL << 20);
  } catch (const std::exception&) {
  }
  if (name.size() != 24 || segment == 0) return uint64_t{0};
  // File name: timeline, then the segment number as "log" (high 32 bits of the LSN) and "seg".
  const uint64_t log = std::stoull(name.substr(8, 8), nullptr, 16), seg = std::stoull(name.substr(16, 8), nullptr, 16);
  return (log << 32) + seg * segment;
}

Result<std::map<std::string, std::string>> SlotKeeper::fetch_states(const std::string& primary_conninfo,
                                                                    const std::vector<std::string>& names,
                                                                    uint64_t oldest_local_wal,
                                                                    std::vector<std::string>& waiting) {
  auto c = postgres::PgConn::connect(primary_conninfo);
  if (!c) return Error{"cannot connect to the primary: " + c.error()};
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ",") + n;  // slot names need no quoting
  auto rows = c->query(
      "SELECT slot_name, encode(pg_read_binary_file('pg_replslot/' || slot_name || '/state'), 'hex'), "
      "coalesce(restart_lsn::text, '') "
      "FROM pg_replication_slots WHERE slot_type = 'logical' AND NOT pg_is_in_recovery() "
      "AND slot_name = ANY($1::text[])",
      {"{" + list + "}"});
  if (!rows) return Error{"cannot read the slots' state on the primary: " + rows.error()};
  std::map<std::string, std::string> out;
  for (const auto& r : *rows) {
    const std::string name = r[0].value_or("");
    const uint64_t restart = postgres::parse_lsn(r[2].value_or("")).value_or(0);
    if (restart < oldest_local_wal) {
      waiting.push_back(fmt::format("{} (its restart_lsn {} is older than this replica's oldest WAL, {})", name,
                                    r[2].value_or("?"), postgres::format_lsn(oldest_local_wal)));
      continue;
    }
    std::string state = from_hex(r[1].value_or(""));
    if (!state.empty()) out[name] = std::move(state);
  }
  return out;
}

Status SlotKeeper::install_states(const std::string& data_dir, const std::map<std::string, std::string>& states) {
  try {
    for (const auto& [name, state] : states) {
      const std::string dir = data_dir + "/pg_replslot/" + name, tmp = dir + ".tmp";
      fs::remove_all(tmp);
      fs::make_directories(tmp, 0700);
      fs::write_file_atomic(tmp + "/state", state, 0600);
      fs::remove_all(dir);
      std::filesystem::rename(tmp, dir);
    }
  } catch (const std::exception& e) {
    return Error{std::string("cannot write the slots' state files: ") + e.what()};
  }
  return {};
}

}  // namespace pgfleet::ha
