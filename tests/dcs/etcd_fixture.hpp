// EtcdCluster: a real etcd (one member or several) on free 127.0.0.1 ports in a temporary
// directory, started by a test and stopped (by pid) in its destructor; logs printed on failure.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace pgfleet::etcdtest {

struct EtcdTls {
  std::string cert_file;  // server certificate + key; clients verify against cert_file
  std::string key_file;
};

class EtcdCluster {
 public:
  // Starts `members` members and waits until a write through each of them succeeds.
  // Throws std::runtime_error (with the logs) when etcd does not come up.
  explicit EtcdCluster(int members = 1, EtcdTls tls = {});
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  // Client URLs, one per member ("http://127.0.0.1:P" or https).
  [[nodiscard]] const std::vector<std::string>& endpoints() const { return endpoints_; }
  [[nodiscard]] const std::string& dir() const { return dir_; }
  // SIGKILLs member i (it stays down).
  void kill_member(size_t i);
  // etcdctl against every endpoint with `args`; returns exit code, output in `out`.
  int etcdctl(const std::vector<std::string>& args, std::string* out = nullptr) const;
  // Every member's log (for failure messages).
  [[nodiscard]] std::string logs() const;

 private:
  std::string dir_;
  std::vector<std::string> endpoints_;
  std::vector<pid_t> pids_;
  EtcdTls tls_;
};

// A port P such that P and P+1 are free on 127.0.0.1 and reserved for this test process.
int free_port_pair();

}  // namespace pgfleet::etcdtest
