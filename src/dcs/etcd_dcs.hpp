// EtcdDcs: the multi-host DCS backend — etcd v3 through its JSON gateway (HTTP/1.1), several
// endpoints with failover, TLS and user/password authentication, one key prefix per cluster.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dcs/dcs.hpp"
#include "dcs/http_client.hpp"

namespace pgfleet::dcs {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // base URLs: http://host:port or https://host:port
  std::string cluster = "pgfleet";     // keys live under /pgfleet/<cluster>/
  HttpTls tls;
  std::string user;                    // etcd authentication ("" = none)
  std::string password;
  Millis request_timeout{2000};        // per request and endpoint; bounds a call to n × this
};

// Parses "etcd://h1:2379,h2:2379" (http) or "etcds://..." (https); also accepts a comma list of
// http(s):// URLs. Throws UserError (with a hint) on anything else.
std::vector<std::string> parse_etcd_endpoints(const std::string& text);

// Mapping onto etcd: revisions are etcd's; compare_and_set is a txn comparing mod_revision; a TTL
// write attaches the key to a lease of its own, kept alive (/v3/lease/keepalive) on each renewal
// and replaced when it expired; wait_for_change is a /v3/watch stream from after_revision + 1.
// A request that gets no answer (or a 5xx: no quorum) is retried on the next endpoint; the one
// that answered is used first next time. Auth tokens are fetched and renewed on demand.
class EtcdDcs final : public Dcs {
 public:
  explicit EtcdDcs(EtcdOptions options);

  Result<std::optional<KeyValue>> get(std::string_view key) override;
  Result<std::vector<KeyValue>> list(std::string_view prefix) override;
  Result<int64_t> put(std::string_view key, std::string_view value,
                      std::optional<Millis> ttl) override;
  Result<bool> compare_and_set(std::string_view key, std::string_view value,
                               int64_t expected_revision, std::optional<Millis> ttl) override;
  Result<bool> compare_and_delete(std::string_view key, int64_t expected_revision) override;
  Result<bool> remove(std::string_view key) override;
  Result<int64_t> wait_for_change(std::string_view prefix, int64_t after_revision,
                                  Millis timeout) override;

  // The endpoint that answered last (for logs and tests).
  [[nodiscard]] const std::string& current_endpoint() const { return options_.endpoints[current_]; }
  [[nodiscard]] const std::string& key_prefix() const { return prefix_; }

 private:
  struct Lease {
    int64_t id = 0;
    int64_t ttl_seconds = 0;
  };
  // POSTs to every endpoint in turn until one answers; parses the JSON answer. etcd errors
  // (4xx) are returned as errors carrying etcd's message.
  Result<nlohmann::json> call(const std::string& path, const nlohmann::json& body);
  Result<nlohmann::json> call_once(size_t endpoint, const std::string& path, const std::string& body);
  Status authenticate(size_t endpoint);
  // A lease for `key` with `ttl`, alive for at least ttl from now (kept alive or granted).
  Result<int64_t> lease_for(const std::string& key, Millis ttl);
  Result<nlohmann::json> txn_put(const std::string& key, std::string_view value, int64_t expected_revision,
                                 bool compare, std::optional<Millis> ttl);
  std::optional<Millis> ttl_of(int64_t lease_id);

  EtcdOptions options_;
  std::string prefix_;  // "/pgfleet/<cluster>/"
  HttpClient http_;
  size_t current_ = 0;
  std::string token_;
  std::map<std::string, Lease, std::less<>> leases_;  // key -> the lease we last attached it to
  std::chrono::steady_clock::time_point unreachable_until_{};  // calls fail at once until then
  std::string unreachable_error_;
};

}  // namespace pgfleet::dcs
