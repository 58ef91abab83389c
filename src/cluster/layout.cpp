// Layout paths; the only logic is the socket-directory fallback for long paths.
#include "cluster/layout.hpp"

#include <unistd.h>

#include <functional>

#include "util/fs.hpp"

namespace pgfleet::cluster {

Layout::Layout(const std::string& directory) : root_(fs::absolute(directory)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

std::string Layout::tls_trust() const { return fs::exists(tls_ca_cert()) ? tls_ca_cert() : tls_cert(); }

std::string Layout::socket_dir() const {
  constexpr size_t kSocketPathMax = 107;
  constexpr size_t kSocketName = sizeof("/.s.PGSQL.65535.lock") - 1;
  if (run_dir().size() + kSocketName <= kSocketPathMax) return run_dir();
  return "/tmp/pgfleet-" + std::to_string(std::hash<std::string>{}(root_) % 100000000);
}

std::string proxy_socket_dir(const std::string& configured, const Layout* cluster) {
  if (configured == "off") return "";
  if (!configured.empty()) return configured;
  return cluster != nullptr ? cluster->socket_dir() : "";
}

}  // namespace pgfleet::cluster
