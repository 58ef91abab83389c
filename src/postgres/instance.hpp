// Driving one PostgreSQL data directory: initdb, pg_basebackup, managed config files, readiness.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

#include "cluster/binaries.hpp"
#include "cluster/config.hpp"
#include "cluster/layout.hpp"
#include "postgres/conf.hpp"
#include "util/result.hpp"

namespace pgfleet::postgres {

// initdb with checksums, SCRAM and the superuser password from the cluster's secrets.
Status initdb(const cluster::PgBinaries& bins, const cluster::Layout& layout, const cluster::ClusterConfig& config,
              const std::string& node, const std::string& superuser_password);

// pg_basebackup of `node`'s data directory from host:port; `slot` (may be empty) is used while
// copying so the source keeps the WAL the new replica needs. Writes standby.signal.
Status basebackup(const cluster::PgBinaries& bins, const cluster::Layout& layout,
                  const cluster::ClusterConfig& config, const std::string& node, const std::string& host, int port,
                  const std::string& slot);

// PostgreSQL's archive_command for the cluster's WAL archive: this binary's `archive-wal`.
std::string archive_command(const cluster::Layout& layout);

// Writes pgfleet.conf and pg_hba.conf into the node's data directory and makes sure
// postgresql.conf includes pgfleet.conf. Returns whether pgfleet.conf changed.
bool write_managed_files(const cluster::Layout& layout, const cluster::ClusterConfig& config,
                         const cluster::NodeConfig& node, const UpstreamInfo* upstream,
                         const std::string& sync_names, const ParameterFloors& floors = {});

bool is_standby(const cluster::Layout& layout, const std::string& node);
bool has_data(const cluster::Layout& layout, const std::string& node);  // PG_VERSION present
// Timeline of the data directory's latest checkpoint (pg_controldata); 0 when unknown.
int data_timeline(const std::string& bindir, const cluster::Layout& layout, const std::string& node);
// Postmaster pid from postmaster.pid when that process is alive, else 0.
pid_t running_postmaster(const cluster::Layout& layout, const std::string& node);
// Why a new postmaster would refuse to start now because the previous one has not fully gone
// ("" when it has): its pid still exists (a zombie not yet reaped) or its backends still hold
// its shared memory (they exit on their own shortly after a kill -9 of the postmaster).
std::string previous_server_lingers(const cluster::Layout& layout, const std::string& node);

// libpq conninfo for the superuser over the node's Unix socket (the agent's own view).
std::string local_conninfo(const cluster::Layout& layout, const cluster::ClusterConfig& config,
                           const cluster::NodeConfig& node);
// libpq conninfo over TCP with the passfile, as another node or the CLI connects.
std::string tcp_conninfo(const cluster::Layout& layout, const cluster::ClusterConfig& config,
                         const cluster::NodeConfig& node, const std::string& user, const std::string& dbname);

}  // namespace pgfleet::postgres
