// node.yaml, one host of a multi-host cluster: its own keys, its tags, and the errors that name them.
#include "cluster/node_file.hpp"

#include <gtest/gtest.h>

namespace pgfleet::cluster {
namespace {

const char* kMinimal = R"(
node: pi2
cluster: homelab
data_dir: /var/lib/pgfleet
listen_address: 192.168.50.12
dcs:
  etcd:
    endpoints: [http://192.168.50.11:2379]
)";

std::string error_of(const std::string& text) {
  try {
    parse_node_file(text, "node.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(NodeFile, TheHostsOwnKeysMakeItsOnlyNode) {
  auto nf = parse_node_file(kMinimal, "node.yaml");
  EXPECT_EQ(nf.node, "pi2");
  EXPECT_EQ(nf.data_dir, "/var/lib/pgfleet");
  ASSERT_EQ(nf.config.nodes.size(), 1u);
  const auto& self = nf.config.nodes[0];
  EXPECT_EQ(self.name, "pi2");
  EXPECT_EQ(self.port, 5432);
  EXPECT_EQ(self.api_port, 8009);
  EXPECT_EQ(self.host, "192.168.50.12");  // advertise_address defaults to listen_address
  EXPECT_FALSE(self.nofailover);
  EXPECT_FALSE(self.noloadbalance);
  EXPECT_EQ(nf.config.cluster, "homelab");
}

TEST(NodeFile, TagsBelongToTheHost) {
  auto nf = parse_node_file(std::string(kMinimal) + "nofailover: true\nnoloadbalance: true\n", "node.yaml");
  EXPECT_TRUE(nf.config.nodes[0].nofailover);
  EXPECT_TRUE(nf.config.nodes[0].noloadbalance);
  // The only node of this file is tagged, and that is allowed: the other hosts list themselves.
  EXPECT_EQ(error_of(std::string(kMinimal) + "nofailover: perhaps\n"), "node.yaml: 'nofailover' has the wrong type");
}

TEST(NodeFile, MistakesAreNamed) {
  EXPECT_EQ(error_of("cluster: x\n"), "node.yaml: 'node' (this host's node name) is required");
  EXPECT_EQ(error_of(std::string(kMinimal) + "nodes: []\n"),
            "node.yaml: 'nodes' does not belong in node.yaml: every host names itself with 'node'");
  std::string relative = kMinimal;
  relative.replace(relative.find("/var/lib/pgfleet"), 16, "var/lib");
  EXPECT_EQ(error_of(relative), "node.yaml: 'data_dir' must be an absolute path (this host's cluster directory)");
  std::string wildcard = kMinimal;
  wildcard.replace(wildcard.find("192.168.50.12"), 13, "0.0.0.0");
  EXPECT_EQ(error_of(wildcard),
            "node.yaml: 'advertise_address' is required when listen_address is a wildcard: the others connect to it");
  std::string no_etcd = "node: pi2\ndata_dir: /d\n";
  EXPECT_EQ(error_of(no_etcd), "node.yaml: 'dcs.etcd.endpoints' is required: agents on several hosts share an etcd");
}

}  // namespace
}  // namespace pgfleet::cluster
