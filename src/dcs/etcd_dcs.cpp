// EtcdDcs: etcd v3 JSON gateway calls (kv/range, kv/txn, kv/deleterange, lease, watch) behind Dcs.
#include "dcs/etcd_dcs.hpp"

#include <algorithm>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "protocol/scram.hpp"
#include "util/errors.hpp"

namespace pgfleet::dcs {
namespace {

using nlohmann::json;

std::string b64(std::string_view s) { return protocol::base64_encode(protocol::as_bytes(s)); }

std::string unb64(const json& j) {
  if (!j.is_string()) return {};
  auto bytes = protocol::base64_decode(j.get<std::string>());
  return bytes ? std::string(bytes->begin(), bytes->end()) : std::string();
}

// The gateway renders int64 as strings and omits zero values.
int64_t num(const json& j, const char* field) {
  if (!j.is_object() || !j.contains(field)) return 0;
  const json& v = j[field];
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) {
    try {
      return std::stoll(v.get<std::string>());
    } catch (const std::exception&) {
      return 0;
    }
  }
  return 0;
}

// The end of etcd's range for "every key starting with prefix": the prefix with its last byte
// incremented (bytes 0xff are dropped first, as etcd's clientv3.GetPrefixRangeEnd does).
std::string prefix_end(std::string prefix) {
  while (!prefix.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(prefix.back());
    if (last < 0xff) {
      ++last;
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

bool is_lease_gone(const std::string& error) { return error.find("requested lease not found") != std::string::npos; }

}  // namespace

std::vector<std::string> parse_etcd_endpoints(const std::string& text) {
  std::string scheme = "http://";
  std::string rest = text;
  if (text.starts_with("etcd://")) {
    rest = text.substr(7);
  } else if (text.starts_with("etcds://")) {
    scheme = "https://";
    rest = text.substr(8);
  } else if (!text.starts_with("http://") && !text.starts_with("https://")) {
    throw UserError("DCS address '" + text + "' is not an etcd address",
                    "write etcd://host:port[,host:port...] (etcds:// for TLS), e.g. etcd://10.0.0.5:2379");
  }
  std::vector<std::string> out;
  std::stringstream ss(rest);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) continue;
    while (!item.empty() && item.back() == '/') item.pop_back();
    std::string url = item.starts_with("http://") || item.starts_with("https://") ? item : scheme + item;
    const auto host_port = url.substr(url.find("://") + 3);
    if (host_port.empty() || host_port.find('/') != std::string::npos || host_port.find(':') == std::string::npos) {
      throw UserError("etcd endpoint '" + item + "' in '" + text + "' is not host:port",
                      "list the client URLs of the etcd members, e.g. etcd://10.0.0.5:2379,10.0.0.6:2379");
    }
    out.push_back(url);
  }
  if (out.empty()) throw UserError("no etcd endpoint in '" + text + "'", "write etcd://host:port[,host:port...]");
  return out;
}

EtcdDcs::EtcdDcs(EtcdOptions options)
    : options_(std::move(options)), prefix_("/pgfleet/" + options_.cluster + "/"), http_(options_.tls) {
  if (options_.endpoints.empty()) throw UserError("no etcd endpoints configured", "set dcs: etcd://host:port");
}

Status EtcdDcs::authenticate(size_t endpoint) {
  json body = {{"name", options_.user}, {"password", options_.password}};
  auto r = http_.post(options_.endpoints[endpoint] + "/v3/auth/authenticate", body.dump(), {},
                      options_.request_timeout);
  if (!r) return make_error(r.error());
  try {
    auto j = json::parse(r->body);
    if (r->status != 200 || !j.contains("token")) {
      return make_error(fmt::format("etcd authentication as {} failed: {}", options_.user, j.value("error", r->body)));
    }
    token_ = j["token"].get<std::string>();
    return {};
  } catch (const json::exception&) {
    return make_error("etcd authentication: unreadable answer: " + r->body);
  }
}

Result<json> EtcdDcs::call_once(size_t endpoint, const std::string& path, const std::string& body) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!options_.user.empty() && token_.empty()) {
      if (auto s = authenticate(endpoint); !s) return make_error(s.error());
    }
    std::vector<std::string> headers;
    if (!token_.empty()) headers.push_back("Authorization: " + token_);
    auto r = http_.post(options_.endpoints[endpoint] + path, body, headers, options_.request_timeout);
    if (!r) return make_error(r.error());
    json j;
    try {
      j = json::parse(r->body);
    } catch (const json::exception&) {
      return make_error(fmt::format("{}{}: HTTP {}: {}", options_.endpoints[endpoint], path, r->status, r->body));
    }
    if (r->status == 200) return j;
    std::string error = j.is_object() ? j.value("error", r->body) : r->body;
    // Simple tokens expire after idling; fetch a new one once.
    if (!options_.user.empty() && attempt == 0 && error.find("auth") != std::string::npos &&
        error.find("token") != std::string::npos) {
      token_.clear();
      continue;
    }
    return make_error(fmt::format("{}{}: HTTP {}: {}", options_.endpoints[endpoint], path, r->status, error));
  }
  return make_error("etcd: authentication keeps failing");
}

Result<json> EtcdDcs::call(const std::string& path, const json& body) {
  // Once every endpoint failed, calls fail at once for a request timeout: an agent loop makes a
  // dozen requests, and with etcd cut off in the middle of one each used to wait out its own
  // timeout, stalling the loop for longer than the TTL (a primary in failsafe mode then fenced
  // before it even noticed the outage and asked its members).
  const auto now = std::chrono::steady_clock::now();
  if (now < unreachable_until_) return make_error("etcd unreachable: " + unreachable_error_ + " (not retried yet)");
  const std::string text = body.dump();
  std::string errors;
  const size_t n = options_.endpoints.size();
  for (size_t i = 0; i < n; ++i) {
    const size_t endpoint = (current_ + i) % n;
    auto r = call_once(endpoint, path, text);
    if (r) {
      current_ = endpoint;
      unreachable_until_ = {};
      return r;
    }
    // A 4xx is etcd's verdict on the request itself: another member would say the same.
    const bool client_error = r.error().find(": HTTP 4") != std::string::npos;
    if (client_error) return r;
    errors += (errors.empty() ? "" : "; ") + r.error();
    if (endpoint == current_ && !token_.empty()) token_.clear();  // tokens are per member in 3.4
  }
  unreachable_until_ = std::chrono::steady_clock::now() + options_.request_timeout;
  unreachable_error_ = errors;
  return make_error("etcd unreachable: " + errors);
}

std::optional<Millis> EtcdDcs::ttl_of(int64_t lease_id) {
  if (lease_id == 0) return std::nullopt;
  auto r = call("/v3/lease/timetolive", {{"ID", std::to_string(lease_id)}});
  if (!r) return std::nullopt;
  return Millis(std::max<int64_t>(0, num(*r, "TTL")) * 1000);
}

Result<std::optional<KeyValue>> EtcdDcs::get(std::string_view key) {
  auto r = call("/v3/kv/range", {{"key", b64(prefix_ + std::string(key))}});
  if (!r) return make_error(r.error());
  if (!r->contains("kvs") || (*r)["kvs"].empty()) return std::optional<KeyValue>();
  const json& kv = (*r)["kvs"][0];
  KeyValue out{std::string(key), unb64(kv.value("value", json())), num(kv, "mod_revision"),
               num(kv, "create_revision"), ttl_of(num(kv, "lease"))};
  return std::optional<KeyValue>(std::move(out));
}

Result<std::vector<KeyValue>> EtcdDcs::list(std::string_view prefix) {
  const std::string full = prefix_ + std::string(prefix);
  auto r = call("/v3/kv/range", {{"key", b64(full)}, {"range_end", b64(prefix_end(full))}, {"sort_order", "ASCEND"},
                                 {"sort_target", "KEY"}});
  if (!r) return make_error(r.error());
  std::vector<KeyValue> out;
  if (r->contains("kvs")) {
    for (const auto& kv : (*r)["kvs"]) {
      std::string key = unb64(kv.value("key", json()));
      // No ttl_remaining: one more request per key, on every agent loop and proxy refresh (get() has it).
      out.push_back(KeyValue{key.substr(prefix_.size()), unb64(kv.value("value", json())), num(kv, "mod_revision"),
                             num(kv, "create_revision"), std::nullopt});
    }
  }
  return out;
}

Result<int64_t> EtcdDcs::lease_for(const std::string& key, Millis ttl) {
  const int64_t seconds = std::max<int64_t>(1, (ttl.count() + 999) / 1000);
  if (auto it = leases_.find(key); it != leases_.end() && it->second.ttl_seconds == seconds) {
    auto r = call("/v3/lease/keepalive", {{"ID", std::to_string(it->second.id)}});
    if (r && num(r->value("result", json::object()), "TTL") > 0) return it->second.id;
    leases_.erase(it);  // expired (or unknown after an etcd restore): take a new one
  }
  auto r = call("/v3/lease/grant", {{"TTL", seconds}});
  if (!r) return make_error(r.error());
  const int64_t id = num(*r, "ID");
  if (id == 0) return make_error("etcd granted no lease: " + r->dump());
  leases_[key] = Lease{id, seconds};
  return id;
}

Result<json> EtcdDcs::txn_put(const std::string& key, std::string_view value, int64_t expected_revision,
                              bool compare, std::optional<Millis> ttl) {
  if (ttl && ttl->count() <= 0) return make_error("dcs ttl must be positive");
  const std::string full = prefix_ + key;
  for (int attempt = 0;; ++attempt) {
    json put = {{"key", b64(full)}, {"value", b64(value)}};
    if (ttl) {
      auto lease = lease_for(key, *ttl);
      if (!lease) return make_error(lease.error());
      put["lease"] = std::to_string(*lease);
    }
    json body = {{"success", json::array({{{"request_put", put}}})}};
    if (compare) {
      body["compare"] = json::array(
          {{{"target", "MOD"}, {"key", b64(full)}, {"mod_revision", std::to_string(expected_revision)}}});
    }
    auto r = call("/v3/kv/txn", body);
    // The lease may expire between keep-alive and the write: once more with a new one.
    if (!r && ttl && attempt == 0 && is_lease_gone(r.error())) {
      leases_.erase(key);
      continue;
    }
    return r;
  }
}

Result<int64_t> EtcdDcs::put(std::string_view key, std::string_view value, std::optional<Millis> ttl) {
  auto r = txn_put(std::string(key), value, 0, false, ttl);
  if (!r) return make_error(r.error());
  if (!ttl) leases_.erase(std::string(key));
  return num(r->value("header", json::object()), "revision");
}

Result<bool> EtcdDcs::compare_and_set(std::string_view key, std::string_view value, int64_t expected_revision,
                                      std::optional<Millis> ttl) {
  auto r = txn_put(std::string(key), value, expected_revision, true, ttl);
  if (!r) return make_error(r.error());
  const bool wrote = r->value("succeeded", false);
  if (wrote && !ttl) leases_.erase(std::string(key));
  return wrote;
}

Result<bool> EtcdDcs::compare_and_delete(std::string_view key, int64_t expected_revision) {
  if (expected_revision == 0) return false;  // revision 0 names a missing key: nothing to delete
  const std::string full = prefix_ + std::string(key);
  json body = {
      {"compare", json::array({{{"target", "MOD"}, {"key", b64(full)}, {"mod_revision", std::to_string(expected_revision)}}})},
      {"success", json::array({{{"request_delete_range", {{"key", b64(full)}}}}})}};
  auto r = call("/v3/kv/txn", body);
  if (!r) return make_error(r.error());
  return r->value("succeeded", false);
}

Result<bool> EtcdDcs::remove(std::string_view key) {
  auto r = call("/v3/kv/deleterange", {{"key", b64(prefix_ + std::string(key))}});
  if (!r) return make_error(r.error());
  return num(*r, "deleted") > 0;
}

Result<int64_t> EtcdDcs::wait_for_change(std::string_view prefix, int64_t after_revision, Millis timeout) {
  const std::string full = prefix_ + std::string(prefix);
  const std::string end = prefix_end(full);
  // A linearizable read first: it finds a member with quorum (a watch on a cut-off member would
  // just stay quiet) and tells whether anything is already newer.
  auto head = call("/v3/kv/range", {{"key", b64(full)}, {"range_end", b64(end)}, {"count_only", true}});
  if (!head) return make_error(head.error());
  const int64_t current = num(head->value("header", json::object()), "revision");
  if (after_revision > current) return current;  // the store is older than the caller: re-read
  if (timeout.count() <= 0) return current;       // no time left to watch (and 0 is "forever" to curl)
  json body = {{"create_request",
                {{"key", b64(full)}, {"range_end", b64(end)}, {"start_revision", std::to_string(after_revision + 1)}}}};
  std::vector<std::string> headers;
  if (!token_.empty()) headers.push_back("Authorization: " + token_);
  std::string buffer;
  int64_t woke_at = 0;
  std::string error;
  auto on_data = [&](std::string_view data) {
    buffer.append(data);
    for (size_t nl; (nl = buffer.find('\n')) != std::string::npos;) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      if (line.empty()) continue;
      try {
        auto j = json::parse(line);
        if (j.contains("error")) {
          error = j["error"].dump();
          return false;
        }
        const json& result = j.value("result", json::object());
        const int64_t rev = num(result.value("header", json::object()), "revision");
        // Events, or a compacted start revision / a cancelled watch: the caller must re-read.
        if ((result.contains("events") && !result["events"].empty()) || num(result, "compact_revision") > 0 ||
            result.value("canceled", false)) {
          woke_at = std::max(rev, after_revision + 1);
          return false;
        }
      } catch (const json::exception& e) {
        error = std::string("unreadable watch message: ") + e.what();
        return false;
      }
    }
    return true;
  };
  auto r = http_.post_stream(options_.endpoints[current_] + "/v3/watch", body.dump(), headers, timeout, on_data);
  if (!r) return make_error("etcd watch: " + r.error());
  if (!error.empty()) return make_error("etcd watch: " + error);
  return woke_at != 0 ? woke_at : current;
}

}  // namespace pgfleet::dcs
