// become_cluster_owner: root hands every cluster command over to the cluster directory's owner.
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.hpp"
#include "util/errors.hpp"
#include "util/process.hpp"

namespace pgfleet::cli {

void become_cluster_owner(const std::string& dir) {
  if (::geteuid() != 0) return;
  struct stat st{};
  if (::stat(dir.c_str(), &st) != 0 || st.st_uid == 0) return;
  auto user = process::user_of_uid(st.st_uid);
  if (!user) throw UserError("the owner (uid " + std::to_string(st.st_uid) + ") of " + dir + " has no account");
  process::become(*user);
}

}  // namespace pgfleet::cli
