// PostgreSQL data-directory operations, each one a call of the real server tools.
#include "postgres/instance.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/shm.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "cluster/discovery.hpp"
#include "util/fs.hpp"
#include "util/process.hpp"

namespace pgfleet::postgres {

namespace {
Status tool_failed(const std::string& what, const process::RunResult& r) {
  std::string out = r.output;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  if (r.timed_out) return Error{what + " timed out\n" + out};
  return Error{fmt::format("{} failed (exit code {}):\n{}", what, r.exit_code, out)};
}
}  // namespace

Status initdb(const cluster::PgBinaries& bins, const cluster::Layout& layout, const cluster::ClusterConfig& config,
              const std::string& node, const std::string& superuser_password) {
  std::string pwfile = layout.run_dir() + "/initdb-pw." + node;
  fs::write_file_atomic(pwfile, superuser_password + "\n", 0600);
  auto r = process::run({bins.path("initdb"), "--pgdata", layout.data_dir(node), "--username", config.superuser,
                         "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256",
                         "--data-checksums", "--encoding=UTF8", "--locale=C.UTF-8"});
  ::unlink(pwfile.c_str());
  if (r.exit_code != 0) return tool_failed("initdb of " + node, r);
  fs::append_file(layout.data_dir(node) + "/postgresql.conf", std::string("\n") + kIncludeLine);
  return {};
}

Status basebackup(const cluster::PgBinaries& bins, const cluster::Layout& layout,
                  const cluster::ClusterConfig& config, const std::string& node, const std::string& host, int port,
                  const std::string& slot) {
  std::vector<std::string> argv = {bins.path("pg_basebackup"), "--pgdata", layout.data_dir(node),
                                   "--host", host, "--port", std::to_string(port),
                                   "--username", config.replication_user, "--wal-method=stream",
                                   "--checkpoint=fast", "--no-password"};
  if (!slot.empty()) argv.insert(argv.end(), {"--slot", slot});
  process::RunOptions options;
  options.env["PGPASSFILE"] = layout.passfile();
  options.env["PGAPPNAME"] = node;
  auto r = process::run(argv, options);
  if (r.exit_code != 0) return tool_failed("pg_basebackup of " + node, r);
  fs::write_file_atomic(layout.data_dir(node) + "/standby.signal", "", 0600);
  // A backup of a standby or of a primary with its own pgfleet.conf: ours is rewritten at start.
  ::unlink((layout.data_dir(node) + "/postmaster.pid").c_str());
  return {};
}

std::string archive_command(const cluster::Layout& layout) {
  return fmt::format("\"{}\" archive-wal --dir \"{}\" %p %f", process::self_exe(), layout.root());
}

bool write_managed_files(const cluster::Layout& layout, const cluster::ClusterConfig& config,
                         const cluster::NodeConfig& node, const UpstreamInfo* upstream,
                         const std::string& sync_names, const ParameterFloors& floors) {
  std::string data = layout.data_dir(node.name);
  bool ssl = fs::exists(layout.tls_cert()) && fs::exists(layout.tls_key());
  std::string conf = render_node_conf(config, node, layout, upstream, sync_names, ssl, archive_command(layout), floors);
  bool changed = fs::read_file(data + "/pgfleet.conf").value_or("") != conf;
  if (changed) fs::write_file_atomic(data + "/pgfleet.conf", conf, 0600);
  std::string hba = render_hba(config);
  if (fs::read_file(data + "/pg_hba.conf").value_or("") != hba) {
    fs::write_file_atomic(data + "/pg_hba.conf", hba, 0600);
    changed = true;  // the server reads pg_hba.conf again on the same reload
  }
  auto main_conf = fs::read_file(data + "/postgresql.conf").value_or("");
  if (main_conf.find(kIncludeLine) == std::string::npos) fs::append_file(data + "/postgresql.conf", kIncludeLine);
  return changed;
}

bool is_standby(const cluster::Layout& layout, const std::string& node) {
  return fs::exists(layout.data_dir(node) + "/standby.signal");
}

bool has_data(const cluster::Layout& layout, const std::string& node) {
  return fs::exists(layout.data_dir(node) + "/PG_VERSION") && fs::exists(layout.data_dir(node) + "/global/pg_control");
}

int data_timeline(const std::string& bindir, const cluster::Layout& layout, const std::string& node) {
  if (!has_data(layout, node)) return 0;
  std::string program = bindir.empty() ? "pg_controldata" : bindir + "/pg_controldata";
  auto r = process::run({program, layout.data_dir(node)});
  constexpr std::string_view kLabel = "Latest checkpoint's TimeLineID:";
  auto at = r.output.find(kLabel);
  if (r.exit_code != 0 || at == std::string::npos) return 0;
  return std::atoi(r.output.c_str() + at + kLabel.size());
}

pid_t running_postmaster(const cluster::Layout& layout, const std::string& node) {
  std::ifstream in(layout.data_dir(node) + "/postmaster.pid");
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return 0;
  if (!process::alive(static_cast<pid_t>(pid))) return 0;
  auto name = process::name_of(static_cast<pid_t>(pid));
  return (name == "postgres" || name == "postmaster") ? static_cast<pid_t>(pid) : 0;
}

std::string previous_server_lingers(const cluster::Layout& layout, const std::string& node) {
  std::ifstream in(layout.data_dir(node) + "/postmaster.pid");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  if (lines.empty()) return "";
  // PostgreSQL's own checks at start: kill(pid, 0) on line 1 (a zombie counts), then whether
  // anything is still attached to the System V segment on line 7 ("key id").
  long pid = std::atol(lines[0].c_str());
  if (pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) == 0 &&
      process::name_of(static_cast<pid_t>(pid)).starts_with("postgres"))
    return fmt::format("its previous postmaster (pid {}) has not exited yet", pid);
  if (lines.size() >= 7) {
    std::istringstream shm(lines[6]);
    long key = 0, id = -1;
    struct shmid_ds ds {};
    if (shm >> key >> id && id >= 0 && ::shmctl(static_cast<int>(id), IPC_STAT, &ds) == 0 && ds.shm_nattch > 0)
      return fmt::format("{} process(es) of its previous server still hold its shared memory", ds.shm_nattch);
  }
  return "";
}

std::string local_conninfo(const cluster::Layout& layout, const cluster::ClusterConfig& config,
                           const cluster::NodeConfig& node) {
  return fmt::format("host={} port={} user={} dbname={} connect_timeout=3 application_name=pgfleet "
                     "options='-c statement_timeout=5000'",
                     layout.socket_dir(), node.port, config.superuser, config.database);
}

std::string tcp_conninfo(const cluster::Layout& layout, const cluster::ClusterConfig& config,
                         const cluster::NodeConfig& node, const std::string& user, const std::string& dbname) {
  return fmt::format("host={} port={} user={} dbname={} passfile={} connect_timeout=5 application_name=pgfleet",
                     node.host.empty() ? cluster::connect_host(config) : node.host, node.port, user, dbname,
                     layout.passfile());
}

}  // namespace pgfleet::postgres
