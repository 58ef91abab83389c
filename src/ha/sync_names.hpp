// synchronous_standby_names ⇄ SyncConstraint: what the leader applies and what it reads back.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "ha/decide.hpp"

namespace pgfleet::ha {

// '' for no constraint; FIRST q (...) in On mode, ANY q (...) in Quorum mode; names quoted.
std::string render_sync_names(const SyncConstraint& constraint, SyncMode mode);
// Reads any form PostgreSQL accepts ('a', 'a, b', '2 (a, b)', 'FIRST 1 (a)', 'ANY 2 ("a", b)');
// nullopt when it cannot be read. '' gives the empty constraint.
std::optional<SyncConstraint> parse_sync_names(std::string_view text);

}  // namespace pgfleet::ha
