// `pgfleet backup` (take, list, prune base backups), `pgfleet restore` (point-in-time recovery of
// the whole cluster from a backup and the WAL archive), and the two commands PostgreSQL runs:
// `archive-wal` (archive_command) and `restore-wal` (restore_command). docs/backup.md.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <iostream>
#include <thread>

#include "backup/catalog.hpp"
#include "backup/file_backup.hpp"
#include "backup/wal_archive.hpp"
#include "cli/commands.hpp"
#include "cluster/binaries.hpp"
#include "cluster/control.hpp"
#include "cluster/discovery.hpp"
#include "dcs/member.hpp"
#include "postgres/instance.hpp"
#include "postgres/pgconn.hpp"
#include "util/clock.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"

namespace pgfleet::cli {
namespace {

using backup::BackupInfo;

std::string size_text(uint64_t bytes) {
  if (bytes >= (1ull << 30)) return fmt::format("{:.1f} GB", static_cast<double>(bytes) / (1ull << 30));
  return fmt::format("{:.1f} MB", static_cast<double>(bytes) / (1ull << 20));
}

uint64_t bytes_under(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) total += e.file_size(ec);
  return total;
}

// The WAL archive and the backups live in the cluster directory of one host.
cluster::Cluster open_local_cluster(const std::string& dir, const char* command) {
  auto c = cluster::Cluster::open(dir);
  if (!c.config.etcd.endpoints.empty())
    throw UserError(fmt::format("`pgfleet {}` works on one-host clusters (the local DCS) for now", command),
                    "on several hosts, take backups with pg_basebackup from any node");
  return c;
}

// What pg_basebackup wrote into backup_label: where replay starts and on which timeline.
void read_backup_label(const std::string& data_dir, BackupInfo& b) {
  auto label = fs::read_file(data_dir + "/backup_label");
  if (!label) throw UserError("the backup has no backup_label: " + data_dir);
  std::istringstream in(*label);
  std::string line;
  while (std::getline(in, line)) {
    char lsn[64] = {}, file[64] = {};
    int timeline = 0;
    if (std::sscanf(line.c_str(), "START WAL LOCATION: %63s (file %63[0-9A-F])", lsn, file) == 2) {
      b.start_lsn = lsn;
      b.start_wal = file;
    } else if (std::sscanf(line.c_str(), "START TIMELINE: %d", &timeline) == 1) {
      b.timeline = timeline;
    }
  }
  if (b.start_lsn.empty() || b.timeline == 0) throw UserError("cannot read " + data_dir + "/backup_label:\n" + *label);
}

// The end of the WAL the backup needs (backup_manifest's last WAL range).
std::string read_stop_lsn(const std::string& data_dir) {
  auto manifest = fs::read_file(data_dir + "/backup_manifest");
  if (!manifest) return "";
  try {
    auto ranges = nlohmann::json::parse(*manifest).at("WAL-Ranges");
    return ranges.empty() ? "" : ranges.back().at("End-LSN").get<std::string>();
  } catch (const nlohmann::json::exception&) {
    return "";
  }
}

// Removes archived WAL no kept backup needs (pg_archivecleanup: segments before the oldest
// backup's first one, on every timeline; history files stay).
void clean_archive(const cluster::PgBinaries& bins, const cluster::Layout& layout, const BackupInfo& oldest) {
  if (!fs::is_directory(layout.archive_dir())) return;
  // -x: the compressed segments (<name>.zst) count as the segments they hold; plain files still do.
  auto r = process::run({bins.path("pg_archivecleanup"), "-x", ".zst", layout.archive_dir(), oldest.start_wal});
  if (r.exit_code != 0) std::cerr << "warning: pg_archivecleanup failed: " << r.output << "\n";
}

// Nodes that do not archive yet: their servers run since before archiving was configured (an
// upgraded cluster); archive_mode takes effect at a restart.
std::vector<std::string> nodes_not_archiving(const cluster::Cluster& c) {
  std::vector<std::string> out;
  for (const auto& n : c.config.nodes) {
    if (postgres::running_postmaster(c.layout, n.name) == 0) continue;
    auto conn = postgres::PgConn::connect(postgres::local_conninfo(c.layout, c.config, n));
    if (!conn) continue;
    auto mode = conn->scalar("SELECT setting FROM pg_settings WHERE name = 'archive_mode'");
    if (mode && *mode == std::optional<std::string>("off")) out.push_back(n.name);
  }
  return out;
}

void prune(const cluster::Cluster& c, const cluster::PgBinaries& bins, int keep) {
  const auto all = backup::list_backups(c.layout);
  for (const auto& b : backup::backups_to_remove(all, keep)) {
    fs::remove_all(backup::backup_dir(c.layout, b.id));
    std::cout << "removed backup " << b.id << " (--keep " << keep << ")\n";
  }
  const auto kept = backup::list_backups(c.layout);
  if (!kept.empty()) clean_archive(bins, c.layout, kept.front());
}

// A backup taken from a standby: its last WAL segment must reach the archive for a restore to
// reach the backup's end. The primary switches segments; the standby archives what it receives.
void wait_for_archived(const cluster::Cluster& c, const std::string& stop_lsn) {
  const std::string primary = cluster::discover_primary(c.config, c.layout, *c.dcs);
  const auto* p = c.config.find_node(primary);
  if (p == nullptr) throw UserError("no primary to switch WAL segments: the backup's last WAL would not be archived");
  auto conn = postgres::PgConn::connect(postgres::local_conninfo(c.layout, c.config, *p));
  if (!conn) throw UserError("cannot connect to the primary " + primary + ": " + conn.error());
  auto name = conn->scalar(fmt::format("SELECT pg_walfile_name('{}'::pg_lsn - 1)", stop_lsn));
  if (!name || !name.value()) throw UserError("cannot name the WAL segment of " + stop_lsn + ": " + name.error());
  const std::string segment = *name.value();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!backup::is_archived(c.layout, segment)) {
    if (std::chrono::steady_clock::now() > deadline)
      throw UserError("WAL segment " + segment + " (the backup's end) did not reach the archive within 120 s",
                      "look at the nodes' archive errors in `pgfleet status`");
    (void)conn->exec("SELECT pg_switch_wal()");  // until the switch reached the standby and it archived it
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

// An incremental backup, file by file, between pg_backup_start and pg_backup_stop on a session
// that stays open (closing it aborts the backup): the source's data directory is on this host.
void take_file_backup(const cluster::Cluster& c, const cluster::NodeConfig& n, const BackupInfo& parent, BackupInfo& b,
                      const std::string& data) {
  const std::string parent_data = backup::backup_dir(c.layout, parent.id) + "/data";
  const auto parent_files = backup::read_manifest_files(parent_data + "/backup_manifest");
  auto conn = postgres::PgConn::connect(postgres::local_conninfo(c.layout, c.config, n) +
                                        " application_name=pgfleet-backup");
  if (!conn) throw UserError("cannot connect to " + n.name + ": " + conn.error());
  // Not pg_backup_stop's NOTICE on the terminal; no 5 s limit on waiting for the archive.
  (void)conn->exec("SET client_min_messages = warning");
  (void)conn->exec("SET statement_timeout = 0");
  auto recovering = conn->scalar("SELECT pg_is_in_recovery()");
  const bool standby = recovering && recovering.value() == std::optional<std::string>("t");
  if (auto started = conn->query("SELECT pg_backup_start($1, true)", {"pgfleet backup " + b.id}); !started)
    throw UserError("pg_backup_start on " + n.name + " failed: " + started.error());
  auto stats = backup::copy_data_directory(c.layout.data_dir(n.name), data, parent_data, parent_files,
                                           parent.started_ms / 1000);
  // A primary switches to a new WAL segment and waits until the backup's last one is archived. A
  // standby cannot switch: it would wait for the primary to fill that segment, so the primary is
  // asked to switch, and the archive is watched for the segment here.
  auto stopped = conn->query(fmt::format("SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop({})",
                                         standby ? "false" : "true"));
  if (!stopped || stopped->empty()) throw UserError("pg_backup_stop on " + n.name + " failed: " + stopped.error());
  if (standby) wait_for_archived(c, stopped->front()[0].value_or(""));
  const auto& row = stopped->front();
  fs::write_file_atomic(data + "/backup_label", row[1].value_or(""), 0600);
  backup::add_written_file(data, "backup_label", stats);
  if (!row[2].value_or("").empty()) {
    fs::write_file_atomic(data + "/tablespace_map", *row[2], 0600);
    backup::add_written_file(data, "tablespace_map", stats);
  }
  read_backup_label(data, b);
  b.stop_lsn = row[0].value_or("");
  b.bytes = stats.bytes;
  b.copied_bytes = stats.copied_bytes;
  b.parent = parent.id;
  fs::write_file_atomic(data + "/backup_manifest",
                        backup::render_manifest(std::move(stats.manifest), b.timeline, b.start_lsn, b.stop_lsn), 0600);
}

}  // namespace

int run_backup(const std::string& dir, const std::string& node, int keep, bool incremental) {
  if (keep < 0) throw UserError("--keep must be 1 or more (0: keep every backup), got " + std::to_string(keep));
  become_cluster_owner(dir);
  auto c = open_local_cluster(dir, "backup");
  // No command lock: a backup changes nothing in the cluster, and a switchover may run meanwhile.
  const std::string source = node.empty() ? cluster::discover_primary(c.config, c.layout, *c.dcs) : node;
  if (source.empty()) throw UserError("no primary to copy", "start the cluster with `pgfleet up`, or name a node with --node");
  const cluster::NodeConfig* n = c.config.find_node(source);
  if (n == nullptr) throw UserError("no node named '" + node + "' in " + c.layout.root());
  if (postgres::running_postmaster(c.layout, source) == 0)
    throw UserError(source + " is not running, so there is nothing to copy", "start the cluster with `pgfleet up`");
  auto bins = cluster::find_binaries(c.config.bindir);

  std::optional<BackupInfo> parent;
  if (incremental) {
    auto existing = backup::list_backups(c.layout);
    if (existing.empty())
      throw UserError("--incremental needs a backup to build on, and there is none",
                      "take a full one first: `pgfleet backup`");
    // The newest backup of the same node: another node's files have other modification times,
    // so nothing would be linked to them.
    parent = existing.back();
    for (const auto& e : existing)
      if (e.node == source) parent = e;
  }

  BackupInfo b;
  b.node = source;
  b.started_ms = unix_ms();
  b.id = backup::compact_utc(b.started_ms);
  for (int i = 2; fs::exists(backup::backup_dir(c.layout, b.id)) || fs::exists(backup::backup_dir(c.layout, b.id) + ".partial"); ++i)
    b.id = backup::compact_utc(b.started_ms) + "-" + std::to_string(i);
  // While it exists the nodes archive WAL (backup/wal_archive.hpp): from before the copy starts.
  const std::string partial = backup::backup_dir(c.layout, b.id) + ".partial";
  fs::make_directories(partial, 0700);
  fs::make_directories(c.layout.archive_dir(), 0700);
  const std::string data = partial + "/data";
  std::cout << "copying " << source << " into " << backup::backup_dir(c.layout, b.id)
            << (incremental ? " (incremental: files changed since backup " + parent->id + ")" : std::string()) << " ..."
            << std::endl;
  process::RunOptions options;
  options.env["PGPASSFILE"] = c.layout.passfile();
  options.env["PGAPPNAME"] = "pgfleet-backup";
  options.timeout = std::chrono::hours(24);
  try {
    if (incremental) {
      take_file_backup(c, *n, *parent, b, data);
    } else {
      auto copied = process::run({bins.path("pg_basebackup"), "--pgdata", data, "--host",
                                  n->host.empty() ? cluster::connect_host(c.config) : n->host, "--port",
                                  std::to_string(n->port), "--username", c.config.replication_user, "--no-password",
                                  "--wal-method=stream", "--checkpoint=fast", "--label", "pgfleet backup " + b.id},
                                 options);
      if (copied.exit_code != 0) throw UserError("pg_basebackup of " + source + " failed:\n" + copied.output);
    }
  } catch (...) {
    fs::remove_all(partial);
    throw;
  }
  // The WAL of an incremental backup is in the archive, not in the backup: its manifest lists none.
  std::vector<std::string> verify{bins.path("pg_verifybackup")};
  if (incremental) verify.push_back("--no-parse-wal");
  verify.push_back(data);
  auto verified = process::run(verify, options);
  if (verified.exit_code != 0) {
    fs::remove_all(partial);
    throw UserError("pg_verifybackup rejected the backup of " + source + ":\n" + verified.output);
  }
  read_backup_label(data, b);
  if (!incremental) {
    b.stop_lsn = read_stop_lsn(data);
    b.bytes = b.copied_bytes = bytes_under(data);
  }
  b.finished_ms = unix_ms();
  // Its own settings would come back with a restore; the node's are written at every start.
  ::unlink((data + "/standby.signal").c_str());
  fs::write_file_atomic(partial + "/backup.json", backup::to_json(b).dump(2) + "\n", 0600);
  std::filesystem::rename(partial, backup::backup_dir(c.layout, b.id));
  std::cout << fmt::format("backup {} of {}: timeline {}, WAL {} to {}, {}{}, verified (pg_verifybackup)\n", b.id,
                           b.node, b.timeline, b.start_lsn, b.stop_lsn, size_text(b.bytes),
                           incremental ? fmt::format(" ({} copied, the rest linked to backup {})",
                                                     size_text(b.copied_bytes), b.parent)
                                       : std::string());
  std::cout << "restorable to any time from " << backup::format_utc(b.finished_ms)
            << " on, as far as the WAL archive reaches (`pgfleet backup --list`)\n";
  if (auto idle = nodes_not_archiving(c); !idle.empty())
    std::cout << fmt::format("warning: {} not archiving WAL yet (archive_mode takes effect at a restart): until "
                             "`pgfleet restart <node>` for each, a restore reaches only the end of a backup\n",
                             fmt::join(idle, ", "));
  if (keep > 0) prune(c, bins, keep);
  return 0;
}

int run_backup_list(const std::string& dir, bool json) {
  become_cluster_owner(dir);
  auto c = open_local_cluster(dir, "backup --list");
  const auto backups = backup::list_backups(c.layout);
  // The archive's reach: its newest segment (by modification time) bounds a restore's target.
  std::string newest_wal;
  int64_t newest_ms = 0;
  int segments = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(c.layout.archive_dir(), ec)) {
    const auto wal = backup::wal_name_in_archive(e.path().filename().string());
    if (!wal) continue;
    const std::string& name = *wal;
    ++segments;
    auto t = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::file_clock::to_sys(e.last_write_time(ec)).time_since_epoch())
                 .count();
    if (t > newest_ms) {
      newest_ms = t;
      newest_wal = name;
    }
  }
  if (json) {
    nlohmann::json out = {{"backups", nlohmann::json::array()},
                          {"archive", {{"files", segments},
                                       {"newest", newest_wal.empty() ? nlohmann::json(nullptr) : nlohmann::json(newest_wal)},
                                       {"newest_ms", newest_ms == 0 ? nlohmann::json(nullptr) : nlohmann::json(newest_ms)}}}};
    for (const auto& b : backups) out["backups"].push_back(backup::to_json(b));
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (backups.empty()) {
    std::cout << "no backups in " << c.layout.backups_dir() << "; take one with `pgfleet backup`\n";
    return 0;
  }
  std::cout << fmt::format("{:<20} {:<8} {:<27} {:>3} {:<23} {:>9} {:>9}  {}\n", "ID", "NODE", "FINISHED (UTC)", "TL",
                           "WAL", "SIZE", "COPIED", "TYPE");
  for (const auto& b : backups)
    std::cout << fmt::format("{:<20} {:<8} {:<27} {:>3} {:<23} {:>9} {:>9}  {}\n", b.id, b.node,
                             backup::format_utc(b.finished_ms), b.timeline, b.start_lsn + ".." + b.stop_lsn,
                             size_text(b.bytes), size_text(b.copied_bytes),
                             b.parent.empty() ? std::string("full") : "incremental (links into " + b.parent + ")");
  std::cout << fmt::format("WAL archive: {} file(s) in {}", segments, c.layout.archive_dir());
  if (!newest_wal.empty()) std::cout << fmt::format(", newest {} written {}", newest_wal, backup::format_utc(newest_ms));
  std::cout << "\npoint-in-time restore: from " << backup::format_utc(backups.front().finished_ms)
            << " to the newest archived WAL (or the WAL still in the nodes' pg_wal)\n";
  return 0;
}

int run_restore(const RestoreOptions& o) {
  if (o.time.empty() == !o.latest)
    throw UserError("say where to stop: --time 'YYYY-MM-DD HH:MM:SS[+TZ]' or --latest");
  std::optional<int64_t> target;
  if (!o.time.empty()) {
    target = backup::parse_timestamp(o.time);
    if (!target)
      throw UserError("--time: cannot read '" + o.time + "'",
                      "write YYYY-MM-DD HH:MM:SS[.fff][+HH:MM|Z] (no zone: local time) or unix seconds");
  }
  become_cluster_owner(o.dir);
  auto c = open_local_cluster(o.dir, "restore");
  cluster::CommandLock lock(c.layout);
  for (const auto& n : c.config.nodes)
    if (cluster::agent_pid(c.layout, n.name) != 0 || postgres::running_postmaster(c.layout, n.name) != 0)
      throw UserError("the cluster is running (" + n.name + ")",
                      "stop it first with `pgfleet down`: a restore replaces the data of every node "
                      "(the current data is kept aside, nothing is deleted)");
  const auto backups = backup::list_backups(c.layout);
  if (backups.empty())
    throw UserError("no backup in " + c.layout.backups_dir(), "take one with `pgfleet backup` while the cluster runs");
  std::optional<BackupInfo> chosen;
  if (!o.backup_id.empty()) {
    for (const auto& b : backups)
      if (b.id == o.backup_id) chosen = b;
    if (!chosen) throw UserError("no backup " + o.backup_id, "`pgfleet backup --list` shows them");
    if (target && chosen->finished_ms > *target)
      throw UserError("backup " + chosen->id + " finished at " + backup::format_utc(chosen->finished_ms) +
                      ", after " + backup::format_utc(*target) + ": a restore cannot stop before its backup's end");
  } else {
    chosen = backup::backup_for(backups, target);
    if (!chosen)
      throw UserError("no backup finished before " + backup::format_utc(*target),
                      "the oldest finished at " + backup::format_utc(backups.front().finished_ms));
  }
  auto bins = cluster::find_binaries(c.config.bindir);
  const std::string node = c.config.find_node(chosen->node) ? chosen->node : c.config.nodes.front().name;
  const cluster::NodeConfig& config_node = *c.config.find_node(node);

  // Nothing is deleted: every node's data goes aside, and a failed restore can be undone by hand.
  const std::string aside_suffix = "/data.before-restore-" + backup::compact_utc(unix_ms());
  std::vector<std::string> aside;
  for (const auto& n : c.config.nodes) {
    if (!fs::exists(c.layout.data_dir(n.name))) continue;
    const std::string to = c.layout.node_dir(n.name) + aside_suffix;
    std::filesystem::rename(c.layout.data_dir(n.name), to);
    aside.push_back(to);
  }
  if (!aside.empty()) std::cout << "the current data of every node is now in nodes/<node>" << aside_suffix << "\n";
  const std::string data = c.layout.data_dir(node);
  std::cout << "copying backup " << chosen->id << " into " << data << " ..." << std::endl;
  fs::make_directories(c.layout.node_dir(node), 0700);
  fs::make_directories(c.layout.log_dir(node), 0700);
  std::filesystem::copy(backup::backup_dir(c.layout, chosen->id) + "/data", data,
                        std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks);
  ::chmod(data.c_str(), 0700);
  for (const char* stale : {"/standby.signal", "/postmaster.pid", "/recovery.signal"}) ::unlink((data + stale).c_str());

  // Recovery settings for this one run, after the node's usual ones (rewritten afterwards).
  postgres::write_managed_files(c.layout, c.config, config_node, nullptr, "");
  std::string restore_command =
      fmt::format("\"{}\" restore-wal --dir \"{}\" %f \"%p\"", process::self_exe(), c.layout.root());
  for (const auto& d : aside) restore_command += fmt::format(" --from \"{}\"", d);
  std::string recovery = "\n# pgfleet restore: removed when the restore is done\n";
  recovery += "restore_command = " + postgres::quote(restore_command) + "\n";
  recovery += "recovery_target_timeline = 'latest'\n";
  recovery += "recovery_target_action = 'promote'\n";
  if (target) recovery += "recovery_target_time = " + postgres::quote(backup::format_utc(*target)) + "\n";
  fs::append_file(data + "/pgfleet.conf", recovery);
  fs::write_file_atomic(data + "/recovery.signal", "", 0600);
  fs::make_directories(c.layout.socket_dir(), 0700);

  std::cout << "replaying WAL " << (target ? "up to " + backup::format_utc(*target) : std::string("to its end"))
            << " ..." << std::endl;
  const std::string log = c.layout.postgres_log(node);
  auto undo_hint = [&] {
    return (aside.empty() ? node + "'s data directory holds the unfinished restore (run the restore again)"
                          : "the data from before the restore is in nodes/<node>" + aside_suffix +
                                " (rename it back to data to undo)") +
           "; the server log is " + log;
  };
  // The server stopped on its own: say why in the user's terms when PostgreSQL's reason is known.
  auto recovery_failed = [&] {
    const std::string tail = fs::tail(log, 15);
    if (target && tail.find("recovery ended before configured recovery target was reached") != std::string::npos)
      throw UserError("the WAL ends before " + backup::format_utc(*target) +
                          ": neither the archive nor the nodes' pg_wal reach it\n" + tail,
                      "restore to an earlier --time (`pgfleet backup --list` shows the archive's newest file) or "
                      "use --latest; " + undo_hint());
    throw UserError("recovery stopped before it was done:\n" + tail, undo_hint());
  };
  auto started = process::run({bins.path("pg_ctl"), "start", "-D", data, "-l", log, "-w", "-t", "60"});
  if (started.exit_code != 0 && postgres::running_postmaster(c.layout, node) == 0) recovery_failed();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.timeout_seconds);
  const std::string conninfo = postgres::local_conninfo(c.layout, c.config, config_node);
  std::string stopped_at, wal_file, lsn;
  while (true) {
    if (postgres::running_postmaster(c.layout, node) == 0) recovery_failed();
    if (std::chrono::steady_clock::now() > deadline) {
      (void)process::run({bins.path("pg_ctl"), "stop", "-D", data, "-m", "fast", "-w"});
      throw UserError("recovery did not finish within " + std::to_string(o.timeout_seconds) + " s", undo_hint());
    }
    if (auto conn = postgres::PgConn::connect(conninfo)) {
      auto r = conn->query(
          "SELECT pg_is_in_recovery(), coalesce(pg_last_xact_replay_timestamp()::text, ''), "
          "CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_walfile_name(pg_current_wal_lsn()) END, "
          "CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_current_wal_lsn()::text END");
      if (r && !r->empty() && r->front()[0] == std::optional<std::string>("f")) {
        stopped_at = r->front()[1].value_or("");
        wal_file = r->front()[2].value_or("");
        lsn = r->front()[3].value_or("");
        (void)conn->exec("CHECKPOINT");
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  auto stopped = process::run({bins.path("pg_ctl"), "stop", "-D", data, "-m", "fast", "-w", "-t", "120"});
  if (stopped.exit_code != 0) throw UserError("cannot stop the restored server:\n" + stopped.output);
  postgres::write_managed_files(c.layout, c.config, config_node, nullptr, "");  // without the recovery settings
  const int timeline = wal_file.size() >= 8 ? std::stoi(wal_file.substr(0, 8), nullptr, 16) : 0;

  // The cluster starts afresh from this node: forget the old leader, members and sync state.
  for (const char* key : {dcs::keys::kLeader, dcs::keys::kSync, dcs::keys::kSwitchover, dcs::keys::kFailover})
    (void)c.dcs->remove(key);
  if (auto members = c.dcs->list(dcs::keys::kMembersPrefix))
    for (const auto& kv : *members) (void)c.dcs->remove(kv.key);
  const std::string reason = "restore from backup " + chosen->id + " to " +
                             (target ? backup::format_utc(*target) : std::string("the end of the archived WAL")) +
                             " (last transaction replayed: " + (stopped_at.empty() ? "none" : stopped_at) + ")";
  const int64_t now = unix_ms();
  nlohmann::json entry = {{"time_ms", now}, {"from", ""}, {"to", node}, {"reason", reason}, {"lsn", lsn},
                          {"started_ms", now}};
  (void)c.dcs->put(std::string(dcs::keys::kHistoryPrefix) + std::to_string(now), entry.dump());

  std::cout << fmt::format("restored {} from backup {}: last transaction replayed at {}, now on timeline {}\n", node,
                           chosen->id, stopped_at.empty() ? std::string("(none after the backup)") : stopped_at,
                           timeline);
  std::cout << "start the cluster with `pgfleet up`: the other nodes are copied from " << node << " again\n";
  if (!aside.empty())
    std::cout << "the data from before the restore stays in nodes/<node>" << aside_suffix
              << " until you remove it\n";
  return 0;
}

int run_archive_wal(const std::string& dir, const std::string& path, const std::string& name) {
  auto r = backup::archive_wal(cluster::Layout(dir), path, name);
  if (!r) {
    std::cerr << "pgfleet archive-wal: " << r.error() << "\n";
    return 1;
  }
  if (*r == backup::Archived::KeptAside)
    std::cerr << "pgfleet archive-wal: " << name << " was already archived with other contents; this copy is kept beside it\n";
  return 0;
}

int run_restore_wal(const std::string& dir, const std::string& name, const std::string& path,
                    const std::vector<std::string>& fallbacks) {
  auto r = backup::restore_wal(cluster::Layout(dir), name, path, fallbacks);
  return r ? 0 : 1;  // a missing file is normal (PostgreSQL asks for the next one until it ends)
}

}  // namespace pgfleet::cli
