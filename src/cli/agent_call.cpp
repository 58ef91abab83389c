#include "cli/agent_call.hpp"

#include <fmt/format.h>

#include "cluster/discovery.hpp"
#include "dcs/http_client.hpp"
#include "util/fs.hpp"

namespace pgfleet::cli {

std::optional<http::ClientReply> post_to_agent(const cluster::Cluster& c, const cluster::NodeConfig& node,
                                               const std::string& path, const std::string& body,
                                               std::chrono::milliseconds timeout) {
  if (c.secrets.api_token.empty() || node.api_port == 0) return std::nullopt;
  const std::string host = node.host.empty() ? cluster::connect_host(c.config) : node.host;
  const std::string auth = "Authorization: Bearer " + c.secrets.api_token;
  if (!c.config.http_tls) {
    std::vector<std::string> headers{auth};
    if (!body.empty()) headers.emplace_back("Content-Type: application/json");
    auto reply = http::request(host, node.api_port, "POST", path, headers, body, timeout);
    if (!reply) return std::nullopt;
    return *reply;
  }
  // HTTPS: the agent's certificate is issued by the cluster CA for the node's address.
  dcs::HttpTls tls;
  if (c.remote) tls.ca_pem = c.ca_pem;
  else tls.ca_file = c.layout.tls_trust();
  if (tls.ca_pem.empty() && (tls.ca_file.empty() || !fs::exists(tls.ca_file))) return std::nullopt;
  dcs::HttpClient client(std::move(tls));
  const std::string url = fmt::format("https://{}:{}{}", host.find(':') != std::string::npos ? "[" + host + "]" : host,
                                      node.api_port, path);
  auto reply = client.post(url, body, {auth}, timeout);
  if (!reply) return std::nullopt;
  return http::ClientReply{static_cast<int>(reply->status), reply->body};
}

}  // namespace pgfleet::cli
