// `pgfleet proxy`: runs the wire-protocol proxy in the foreground (up starts it as a daemon).
#include "cli/commands.hpp"
#include "cluster/layout.hpp"
#include "proxy/proxy.hpp"
#include "util/errors.hpp"
#include "util/fs.hpp"

namespace pgfleet::cli {

int run_proxy_command(const std::string& dir, const std::string& config_file, bool takeover) {
  std::string path = config_file;
  if (path.empty()) {
    become_cluster_owner(dir);
    path = cluster::Layout(dir).config_file();
    if (!fs::exists(path)) {
      throw UserError("no pgfleet cluster in " + cluster::Layout(dir).root(),
                      "pass --dir of a cluster, or --config with a pgfleet.yaml listing the servers");
    }
  }
  return proxy::run_proxy(proxy::ProxyOptions{path, takeover});
}

}  // namespace pgfleet::cli
