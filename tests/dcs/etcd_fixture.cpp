// EtcdCluster: starts real etcd members (Debian etcd-server) for the tests, stops them by pid.
#include "etcd_fixture.hpp"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "support/port_reservation.hpp"
#include "util/process.hpp"

namespace pgfleet::etcdtest {
namespace {

using namespace std::chrono_literals;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int free_port_pair() { return pgfleet::testing::reserve_port_block(); }

EtcdCluster::EtcdCluster(int members, EtcdTls tls) : tls_(std::move(tls)) {
  char tmpl[] = "/tmp/pgfleet_etcd.XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  const std::string scheme = tls_.cert_file.empty() ? "http://" : "https://";
  std::vector<int> ports;
  std::string initial;
  const int block = pgfleet::testing::reserve_port_block();  // member i: client block+2i, peer +1
  for (int i = 0; i < members; ++i) {
    int p = block + 2 * i;
    ports.push_back(p);
    initial += (i ? "," : "") + std::string("m") + std::to_string(i) + "=http://127.0.0.1:" + std::to_string(p + 1);
    endpoints_.push_back(scheme + "127.0.0.1:" + std::to_string(p));
  }
  for (int i = 0; i < members; ++i) {
    const std::string name = "m" + std::to_string(i);
    std::vector<std::string> argv = {"etcd",
                                     "--name", name,
                                     "--data-dir", dir_ + "/" + name,
                                     "--listen-client-urls", endpoints_[i],
                                     "--advertise-client-urls", endpoints_[i],
                                     "--listen-peer-urls", "http://127.0.0.1:" + std::to_string(ports[i] + 1),
                                     "--initial-advertise-peer-urls", "http://127.0.0.1:" + std::to_string(ports[i] + 1),
                                     "--initial-cluster", initial,
                                     "--initial-cluster-state", "new",
                                     "--initial-cluster-token", std::filesystem::path(dir_).filename().string(),
                                     // Short raft timers: elections in tests take well under a second.
                                     "--heartbeat-interval", "50",
                                     "--election-timeout", "500",
                                     "--log-level", "warn"};
    if (!tls_.cert_file.empty()) {
      for (const auto& a : {std::string("--cert-file"), tls_.cert_file, std::string("--key-file"), tls_.key_file})
        argv.push_back(a);
    }
    pid_t pid = process::spawn(argv, dir_ + "/" + name + ".log");
    if (pid <= 0) throw std::runtime_error("cannot start etcd (is etcd-server installed? scripts/setup.sh)");
    pids_.push_back(pid);
  }
  auto deadline = std::chrono::steady_clock::now() + 60s;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    for (;;) {
      std::vector<std::string> args = {"--endpoints", endpoints_[i], "put", "/fixture/ready", "1"};
      if (!tls_.cert_file.empty()) args.insert(args.begin(), "--cacert=" + tls_.cert_file);
      std::string out;
      if (process::run([&] {
            std::vector<std::string> argv = {"etcdctl", "--command-timeout=2s"};
            argv.insert(argv.end(), args.begin(), args.end());
            return argv;
          }(), process::RunOptions{{{"ETCDCTL_API", "3"}}, 10s, ""})
              .exit_code == 0)
        break;
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("etcd did not come up within 60 s:\n" + logs());
      }
      std::this_thread::sleep_for(100ms);
    }
  }
}

EtcdCluster::~EtcdCluster() {
  for (pid_t pid : pids_) {
    if (pid <= 0) continue;
    ::kill(pid, SIGTERM);
    if (!process::wait_gone(pid, 5s)) ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void EtcdCluster::kill_member(size_t i) {
  if (pids_.at(i) <= 0) return;
  ::kill(pids_[i], SIGKILL);
  ::waitpid(pids_[i], nullptr, 0);
  pids_[i] = 0;
}

int EtcdCluster::etcdctl(const std::vector<std::string>& args, std::string* out) const {
  std::string eps;
  for (const auto& e : endpoints_) eps += (eps.empty() ? "" : ",") + e;
  std::vector<std::string> argv = {"etcdctl", "--command-timeout=5s", "--endpoints", eps};
  if (!tls_.cert_file.empty()) argv.push_back("--cacert=" + tls_.cert_file);
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = process::run(argv, process::RunOptions{{{"ETCDCTL_API", "3"}}, 30s, ""});
  if (out) *out = r.output;
  return r.exit_code;
}

std::string EtcdCluster::logs() const {
  std::string all;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    all += "---- etcd m" + std::to_string(i) + " ----\n" + read_text(dir_ + "/m" + std::to_string(i) + ".log");
  }
  return all;
}

}  // namespace pgfleet::etcdtest
