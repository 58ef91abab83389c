// node.yaml: the node's own keys are taken out, the rest goes through pgfleet.yaml's strict parser.
#include "cluster/node_file.hpp"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <regex>
#include <sstream>

namespace pgfleet::cluster {
namespace {

[[noreturn]] void fail(const std::string& source, const std::string& message) {
  throw ConfigError(source + ": " + message);
}

}  // namespace

NodeFile parse_node_file(const std::string& yaml_text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    fail(source, e.msg);
  }
  if (!root.IsMap()) fail(source, "expected a map of settings (node, data_dir, dcs, ...)");
  NodeFile nf;
  std::string advertise;
  int port = 5432;
  int api_port = 8009;  // ports.api_base: 8008 is ports.http
  bool nofailover = false, noloadbalance = false;
  auto take = [&](const char* key, auto& out) {
    if (!root[key]) return;
    try {
      out = root[key].as<std::remove_reference_t<decltype(out)>>();
    } catch (const YAML::Exception&) {
      fail(source, std::string("'") + key + "' has the wrong type");
    }
    root.remove(key);
  };
  take("node", nf.node);
  take("data_dir", nf.data_dir);
  take("advertise_address", advertise);
  take("port", port);
  take("api_port", api_port);
  take("nofailover", nofailover);
  take("noloadbalance", noloadbalance);
  if (root["nodes"]) fail(source, "'nodes' does not belong in node.yaml: every host names itself with 'node'");
  if (nf.node.empty()) fail(source, "'node' (this host's node name) is required");
  if (!std::regex_match(nf.node, std::regex("[a-z0-9_]{1,63}")))
    fail(source, "'node' must use only a-z, 0-9 and '_', got '" + nf.node + "'");
  if (nf.data_dir.empty() || nf.data_dir.front() != '/')
    fail(source, "'data_dir' must be an absolute path (this host's cluster directory)");
  if (port < 1 || port > 65535) fail(source, "'port' must be a TCP port");

  YAML::Emitter rest;
  rest << root;
  nf.config = parse_config(rest.c_str(), source);
  if (nf.config.etcd.endpoints.empty())
    fail(source, "'dcs.etcd.endpoints' is required: agents on several hosts share an etcd");
  if (advertise.empty()) advertise = nf.config.listen_address;
  if (advertise == "0.0.0.0" || advertise == "*" || advertise == "::")
    fail(source, "'advertise_address' is required when listen_address is a wildcard: the others connect to it");
  NodeConfig self;
  self.name = nf.node;
  self.port = port;
  self.api_port = api_port;
  self.host = advertise;
  self.nofailover = nofailover;
  self.noloadbalance = noloadbalance;
  nf.config.nodes = {self};
  validate_config(nf.config, source);
  return nf;
}

NodeFile load_node_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_node_file(ss.str(), path);
}

}  // namespace pgfleet::cluster
