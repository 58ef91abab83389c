// Finds initdb/postgres/pg_basebackup/pg_rewind/pg_ctl and checks they run and are PostgreSQL 12+.
#include "cluster/binaries.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <regex>
#include <vector>

#include "util/errors.hpp"
#include "util/process.hpp"

namespace pgfleet::cluster {
namespace {
const std::vector<std::string> kPrograms = {"initdb", "postgres", "pg_ctl", "pg_basebackup", "pg_rewind"};

std::string newest_debian_bindir() {
  std::error_code ec;
  int best = 0;
  for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    int v = std::atoi(e.path().filename().c_str());
    if (v > best && ::access((e.path() / "bin/postgres").c_str(), X_OK) == 0) best = v;
  }
  return best ? "/usr/lib/postgresql/" + std::to_string(best) + "/bin" : "";
}
}  // namespace

PgBinaries find_binaries(const std::string& explicit_bindir) {
  std::string bindir = explicit_bindir;
  std::string source = "--pg-bindir / postgres.bindir";
  if (bindir.empty()) {
    if (const char* env = std::getenv("PG_BINDIR"); env && *env) {
      bindir = env;
      source = "PG_BINDIR";
    }
  }
  if (bindir.empty()) {
    bindir = newest_debian_bindir();
    source = "/usr/lib/postgresql";
  }
  if (bindir.empty()) {
    auto r = process::run({"pg_config", "--bindir"});
    if (r.exit_code == 0) {
      bindir = r.output.substr(0, r.output.find('\n'));
      source = "pg_config";
    }
  }
  const std::string hint =
      "install the server with `apt-get install postgresql-15` (or run scripts/setup.sh), "
      "or point --pg-bindir / PG_BINDIR at the directory holding initdb and postgres";
  if (bindir.empty()) throw UserError("PostgreSQL server binaries not found", hint);
  std::vector<std::string> missing;
  for (const auto& p : kPrograms) {
    if (::access((bindir + "/" + p).c_str(), X_OK) != 0) missing.push_back(p);
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    throw UserError("PostgreSQL binaries not found in " + bindir + " (from " + source + "): missing " + list,
                    hint);
  }
  auto version = process::run({bindir + "/postgres", "--version"});
  std::smatch m;
  static const std::regex re(R"(\(PostgreSQL\) (\d+))");
  if (version.exit_code != 0 || !std::regex_search(version.output, m, re)) {
    throw UserError(bindir + "/postgres does not run: " + version.output, hint);
  }
  PgBinaries b{bindir, std::stoi(m[1])};
  if (b.major_version < 12) {
    throw UserError("PostgreSQL " + std::to_string(b.major_version) + " in " + bindir +
                        " is too old; pgfleet needs 12 or newer (15 recommended)",
                    hint);
  }
  return b;
}

}  // namespace pgfleet::cluster
