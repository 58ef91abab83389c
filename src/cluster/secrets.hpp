// Secrets: the cluster's generated passwords and API token, stored 0600 in secrets.json.
#pragma once

#include <string>

#include "cluster/config.hpp"
#include "cluster/layout.hpp"

namespace pgfleet::cluster {

struct Secrets {
  std::string superuser_password;
  std::string replication_password;
  std::string api_token;  // for mutating HTTP endpoints
};

Secrets generate_secrets();
// Writes secrets.json and the libpq passfile (both 0600).
void save_secrets(const Layout& layout, const ClusterConfig& config, const Secrets& secrets);
// Throws UserError when missing or unreadable.
Secrets load_secrets(const Layout& layout);

}  // namespace pgfleet::cluster
