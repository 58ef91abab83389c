// Secrets on disk: JSON for pgfleet, a libpq passfile so passwords never appear in conninfo strings.
#include "cluster/secrets.hpp"

#include <nlohmann/json.hpp>

#include "util/errors.hpp"
#include "util/fs.hpp"
#include "util/random.hpp"

namespace pgfleet::cluster {

Secrets generate_secrets() { return Secrets{random_secret(32), random_secret(32), random_secret(40)}; }

void save_secrets(const Layout& layout, const ClusterConfig& config, const Secrets& secrets) {
  nlohmann::json j = {{"superuser_password", secrets.superuser_password},
                      {"replication_password", secrets.replication_password},
                      {"api_token", secrets.api_token}};
  fs::write_file_atomic(layout.secrets_file(), j.dump(2) + "\n", 0600);
  fs::write_file_atomic(layout.passfile(),
                        "*:*:*:" + config.replication_user + ":" + secrets.replication_password + "\n" +
                            "*:*:*:" + config.superuser + ":" + secrets.superuser_password + "\n",
                        0600);
}

Secrets load_secrets(const Layout& layout) {
  auto text = fs::read_file(layout.secrets_file());
  if (!text) {
    throw UserError("cannot read " + layout.secrets_file(),
                    "the cluster directory is incomplete; restore the file or recreate the cluster");
  }
  try {
    auto j = nlohmann::json::parse(*text);
    return Secrets{j.at("superuser_password").get<std::string>(),
                   j.at("replication_password").get<std::string>(), j.at("api_token").get<std::string>()};
  } catch (const nlohmann::json::exception& e) {
    throw UserError(layout.secrets_file() + " is corrupt: " + e.what(),
                    "restore it from a backup; the passwords it held are still set in PostgreSQL");
  }
}

}  // namespace pgfleet::cluster
