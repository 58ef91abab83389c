// PgBinaries: locating the PostgreSQL server programs pgfleet drives.
#pragma once

#include <string>

namespace pgfleet::cluster {

struct PgBinaries {
  std::string bindir;
  int major_version = 0;
  [[nodiscard]] std::string path(const std::string& program) const { return bindir + "/" + program; }
};

// Order: explicit (flag or config) > $PG_BINDIR > /usr/lib/postgresql/<newest>/bin > pg_config.
// Throws UserError naming what is missing and the package that provides it.
PgBinaries find_binaries(const std::string& explicit_bindir);

}  // namespace pgfleet::cluster
