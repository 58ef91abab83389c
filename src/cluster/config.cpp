// Reads, validates and renders pgfleet.yaml (ClusterConfig).
#include "cluster/config.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

namespace pgfleet::cluster {

std::string to_string(SyncMode mode) {
  switch (mode) {
    case SyncMode::Off: return "off";
    case SyncMode::On: return "on";
    case SyncMode::Quorum: return "quorum";
  }
  return "off";
}

std::optional<SyncMode> parse_sync_mode(const std::string& text) {
  if (text == "off" || text == "async") return SyncMode::Off;
  if (text == "on" || text == "sync") return SyncMode::On;
  if (text == "quorum") return SyncMode::Quorum;
  return std::nullopt;
}

std::string to_string(PoolMode mode) {
  switch (mode) {
    case PoolMode::Session: return "session";
    case PoolMode::Transaction: return "transaction";
    case PoolMode::Statement: return "statement";
  }
  return "transaction";
}

std::optional<PoolMode> parse_pool_mode(const std::string& text) {
  if (text == "session") return PoolMode::Session;
  if (text == "transaction") return PoolMode::Transaction;
  if (text == "statement") return PoolMode::Statement;
  return std::nullopt;
}

const NodeConfig* ClusterConfig::find_node(const std::string& name) const {
  auto it = std::find_if(nodes.begin(), nodes.end(), [&](const NodeConfig& n) { return n.name == name; });
  return it == nodes.end() ? nullptr : &*it;
}

NodeConfig* ClusterConfig::find_node(const std::string& name) {
  return const_cast<NodeConfig*>(std::as_const(*this).find_node(name));
}

bool is_guc_name(const std::string& name) {
  static const std::regex re("[a-z_][a-z0-9_.]*");
  return std::regex_match(name, re);
}

namespace {

// ---- parsing -------------------------------------------------------------------------------

// One value in the document: its dotted path ("ports.proxy") and the 1-based line of its key,
// which is where an operator looks (a null or nested value's own mark points elsewhere).
struct Item {
  YAML::Node value;
  std::string path;
  int line;
  const std::string& source;
};

[[noreturn]] void fail(const std::string& source, int line, const std::string& message) {
  throw ConfigError(fmt::format("{}:{}: {}", source, line, message));
}

[[noreturn]] void fail(const Item& item, const std::string& message) {
  fail(item.source, item.line, message);
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar: return fmt::format("'{}'", node.Scalar());
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a sequence";
    default: return "nothing";
  }
}

std::string where(const std::string& path) { return path.empty() ? "top level" : fmt::format("'{}'", path); }

[[noreturn]] void fail_type(const Item& item, std::string_view expected) {
  fail(item, fmt::format("{} must be {}, got {}", where(item.path), expected, describe(item.value)));
}

int line_of(const YAML::Node& node, int fallback) {
  return node.Mark().line >= 0 ? node.Mark().line + 1 : fallback;
}

// Calls fn(key, child) for each entry of a mapping (null counts as empty), rejecting
// non-scalar and duplicate keys: yaml-cpp keeps duplicates, and the last one silently winning
// would hide typos.
void for_each_entry(const Item& item, const std::function<void(const std::string&, const Item&)>& fn) {
  if (item.value.IsNull()) return;
  if (!item.value.IsMap()) fail_type(item, "a mapping");
  std::map<std::string, int> seen;
  for (const auto& entry : item.value) {
    const int line = line_of(entry.first, item.line);
    if (!entry.first.IsScalar())
      fail(item.source, line, fmt::format("keys in {} must be plain names", where(item.path)));
    const std::string& key = entry.first.Scalar();
    if (auto [it, inserted] = seen.emplace(key, line); !inserted)
      fail(item.source, line,
           fmt::format("duplicate key '{}' in {} (first on line {})", key, where(item.path), it->second));
    fn(key, Item{entry.second, item.path.empty() ? key : item.path + "." + key, line, item.source});
  }
}

using Reader = std::function<void(const Item&)>;
struct Field {
  std::string_view key;
  Reader read;
};

void read_map(const Item& item, const std::vector<Field>& fields) {
  for_each_entry(item, [&](const std::string& key, const Item& child) {
    auto field = std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.key == key; });
    if (field == fields.end()) {
      std::string known;
      for (const Field& f : fields) known += (known.empty() ? "" : ", ") + std::string(f.key);
      const std::string in = item.path.empty() ? "at top level" : fmt::format("in '{}'", item.path);
      fail(child, fmt::format("unknown key '{}' {} (known: {})", key, in, known));
    }
    field->read(child);
  });
}

const std::string& scalar(const Item& item, std::string_view expected) {
  if (!item.value.IsScalar()) fail_type(item, expected);
  return item.value.Scalar();
}

// One overload per field type; `into` binds a field to a table entry.
void read_value(const Item& item, std::string& out) {
  out = item.value.IsNull() ? "" : scalar(item, "a string");
}

void read_value(const Item& item, std::optional<std::string>& out) {
  if (item.value.IsNull())
    out.reset();
  else
    out = scalar(item, "a string");
}

void read_value(const Item& item, int& out) {
  const std::string& text = scalar(item, "an integer");
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  if (ec != std::errc() || ptr != end || text.empty()) fail_type(item, "an integer");
}

void read_value(const Item& item, int64_t& out) {
  const std::string& text = scalar(item, "an integer");
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  if (ec != std::errc() || ptr != end || text.empty()) fail_type(item, "an integer");
}

void read_value(const Item& item, bool& out) {
  scalar(item, "a boolean (true or false)");
  if (!YAML::convert<bool>::decode(item.value, out)) fail_type(item, "a boolean (true or false)");
}

void read_value(const Item& item, SyncMode& out) {
  const std::string& text = scalar(item, "off, on or quorum");
  bool flag = false;
  if (auto mode = parse_sync_mode(text)) {
    out = *mode;
  } else if (item.value.Tag() == "?" && YAML::convert<bool>::decode(item.value, flag)) {
    out = flag ? SyncMode::On : SyncMode::Off;  // YAML 1.1 reads bare off/on/yes/no as booleans
  } else {
    fail_type(item, "off, on or quorum");
  }
}

void read_value(const Item& item, PgParameters& out) {
  out.clear();
  for_each_entry(item, [&](const std::string& name, const Item& child) {
    if (!is_guc_name(name))
      fail(child, fmt::format("'{}' in {} is not a PostgreSQL parameter name", name, where(item.path)));
    // The text as written: "on" stays "on", "0100" stays "0100".
    out[name] = scalar(child, "a single value");
  });
}

void read_value(const Item& item, PoolMode& out) {
  auto mode = parse_pool_mode(scalar(item, "session, transaction or statement"));
  if (!mode) fail_type(item, "session, transaction or statement");
  out = *mode;
}

void read_value(const Item& item, std::optional<PoolMode>& out) {
  if (item.value.IsNull()) return out.reset();
  out.emplace();
  read_value(item, *out);
}

void read_value(const Item& item, std::optional<int>& out) {
  if (item.value.IsNull()) return out.reset();
  out.emplace();
  read_value(item, *out);
}

void read_value(const Item& item, std::vector<std::string>& out) {
  out.clear();
  if (item.value.IsNull()) return;
  if (!item.value.IsSequence()) fail_type(item, "a sequence of strings");
  for (const auto& element : item.value) {
    out.push_back(scalar(Item{element, item.path, line_of(element, item.line), item.source}, "a string"));
  }
}

// One pg_hba.conf line: what is wrong with it, if anything. PostgreSQL does not start with a
// pg_hba.conf it cannot parse, so a bad line must stop at pgfleet.yaml.
std::optional<std::string> hba_line_problem(const std::string& line) {
  if (line.find_first_of("\n\r") != std::string::npos) return "one line per entry";
  std::vector<std::string> f;
  for (size_t at = line.find_first_not_of(" \t"); at != std::string::npos; at = line.find_first_not_of(" \t", at)) {
    const size_t end = line.find_first_of(" \t", at);
    f.push_back(line.substr(at, end == std::string::npos ? std::string::npos : end - at));
    at = end;
  }
  if (f.empty() || f[0].starts_with("#")) return "empty (write only entries, no comments)";
  static const std::set<std::string, std::less<>> types = {"local", "host", "hostssl", "hostnossl", "hostgssenc",
                                                           "hostnogssenc"};
  static const std::set<std::string, std::less<>> methods = {"trust", "reject", "scram-sha-256", "md5", "password",
                                                             "gss", "sspi", "ident", "peer", "ldap", "radius",
                                                             "cert", "pam", "bsd"};
  if (!types.contains(f[0]))
    return fmt::format("'{}' is not a connection type (local, host, hostssl, hostnossl, hostgssenc, hostnogssenc)", f[0]);
  const bool local = f[0] == "local";
  // TYPE DATABASE USER [ADDRESS [MASK]] METHOD [OPTIONS]: an IPv4 mask follows the address.
  size_t method_at = local ? 3 : 4;
  if (!local && f.size() > 5 && f[4].find_first_not_of("0123456789.") == std::string::npos) method_at = 5;
  if (f.size() <= method_at)
    return local ? "expected: local DATABASE USER METHOD [OPTIONS]" : "expected: " + f[0] + " DATABASE USER ADDRESS METHOD [OPTIONS]";
  const std::string& method = f[method_at];
  if (!methods.contains(method)) return fmt::format("'{}' is not an authentication method", method);
  // pgfleet's own rule: no trust beyond the Unix socket, no clear-text password on the wire.
  if (!local && method == "trust")
    return "trust over TCP lets in anyone who reaches the port; use scram-sha-256 (trust is for local only)";
  if (!local && method == "password" && f[0] != "hostssl")
    return "password sends it in clear text; use scram-sha-256, or password on hostssl only";
  return std::nullopt;
}

void read_hba(const Item& item, std::vector<std::string>& out) {
  out.clear();
  if (item.value.IsNull()) return;
  if (!item.value.IsSequence()) fail_type(item, "a sequence of pg_hba.conf lines");
  for (const auto& element : item.value) {
    const Item entry{element, item.path, line_of(element, item.line), item.source};
    const std::string& line = scalar(entry, "a pg_hba.conf line (a string)");
    if (auto problem = hba_line_problem(line)) fail(entry, fmt::format("pg_hba entry '{}': {}", line, *problem));
    out.push_back(line);
  }
}

template <typename T>
Reader into(T& target) {
  return [&target](const Item& item) { read_value(item, target); };
}

void read_nodes(const Item& item, std::vector<NodeConfig>& nodes) {
  nodes.clear();
  if (item.value.IsNull()) return;
  if (!item.value.IsSequence()) fail_type(item, "a sequence");
  for (const auto& element : item.value) {
    NodeConfig& node = nodes.emplace_back();
    read_map(
        Item{element, fmt::format("nodes[{}]", nodes.size() - 1), line_of(element, item.line), item.source},
        {{"name", into(node.name)},
         {"host", into(node.host)},
         {"port", into(node.port)},
         {"api_port", into(node.api_port)},
         {"upstream", into(node.upstream)},
         {"nofailover", into(node.nofailover)},
         {"noloadbalance", into(node.noloadbalance)},
         {"postgresql", into(node.postgresql)}});
  }
}

void read_pools(const Item& item, std::vector<PoolOverride>& pools) {
  pools.clear();
  if (item.value.IsNull()) return;
  if (!item.value.IsSequence()) fail_type(item, "a sequence");
  for (const auto& element : item.value) {
    PoolOverride& pool = pools.emplace_back();
    read_map(Item{element, fmt::format("{}[{}]", item.path, pools.size() - 1), line_of(element, item.line),
                  item.source},
             {{"database", into(pool.database)},
              {"user", into(pool.user)},
              {"pool_mode", into(pool.pool_mode)},
              {"pool_size", into(pool.pool_size)}});
  }
}

void read_value(const Item& item, std::map<std::string, int>& out) {
  out.clear();
  for_each_entry(item, [&](const std::string& name, const Item& child) { read_value(child, out[name]); });
}

void read_routing_rules(const Item& item, std::vector<RoutingRule>& rules) {
  rules.clear();
  if (item.value.IsNull()) return;
  if (!item.value.IsSequence()) fail_type(item, "a sequence of {database, user, application_name, route}");
  for (const auto& element : item.value) {
    RoutingRule& rule = rules.emplace_back();
    read_map(Item{element, fmt::format("{}[{}]", item.path, rules.size() - 1), line_of(element, item.line),
                  item.source},
             {{"database", into(rule.database)},
              {"user", into(rule.user)},
              {"application_name", into(rule.application_name)},
              {"route", into(rule.route)}});
  }
}

void read_proxy(const Item& item, ProxyConfig& p) {
  read_map(item, {{"enabled", into(p.enabled)},
                  {"threads", into(p.threads)},
                  {"pool_mode", into(p.pool_mode)},
                  {"default_pool_size", into(p.default_pool_size)},
                  {"min_pool_size", into(p.min_pool_size)},
                  {"reserve_pool_size", into(p.reserve_pool_size)},
                  {"reserve_pool_timeout_ms", into(p.reserve_pool_timeout_ms)},
                  {"max_client_conn", into(p.max_client_conn)},
                  {"query_wait_timeout_ms", into(p.query_wait_timeout_ms)},
                  {"server_connect_timeout_ms", into(p.server_connect_timeout_ms)},
                  {"server_idle_timeout", into(p.server_idle_timeout_s)},
                  {"server_lifetime", into(p.server_lifetime_s)},
                  {"client_idle_timeout", into(p.client_idle_timeout_s)},
                  {"shutdown_timeout", into(p.shutdown_timeout_s)},
                  {"auth_user", into(p.auth_user)},
                  {"auth_file", into(p.auth_file)},
                  {"auth_query", into(p.auth_query)},
                  {"admin_users", into(p.admin_users)},
                  {"tls_mode", into(p.tls_mode)},
                  {"tls_cert", into(p.tls_cert)},
                  {"tls_key", into(p.tls_key)},
                  {"server_sslmode", into(p.server_sslmode)},
                  {"server_tls_ca", into(p.server_tls_ca)},
                  {"server_unix_socket", into(p.server_unix_socket)},
                  {"unix_socket_dir", into(p.unix_socket_dir)},
                  {"pools", [&](const Item& i) { read_pools(i, p.pools); }},
                  {"causal_reads", into(p.causal_reads)},
                  {"max_replica_lag_bytes", into(p.max_replica_lag_bytes)},
                  {"max_replica_lag_seconds", into(p.max_replica_lag_seconds)},
                  {"primary_read_weight", into(p.primary_read_weight)},
                  {"weights", into(p.weights)},
                  {"function_routing", into(p.function_routing)},
                  {"read_only_functions", into(p.read_only_functions)},
                  {"writing_functions", into(p.writing_functions)},
                  {"replicas_fallback_to_primary", into(p.replicas_fallback_to_primary)},
                  {"routing_rules", [&](const Item& i) { read_routing_rules(i, p.routing_rules); }}});
}

// ---- validation ----------------------------------------------------------------------------

template <typename... Args>
[[noreturn]] void invalid(const std::string& source, fmt::format_string<Args...> format, Args&&... args) {
  throw ConfigError(fmt::format("{}: {}", source, fmt::format(format, std::forward<Args>(args)...)));
}

// ---- rendering -----------------------------------------------------------------------------

template <typename T>
void emit(YAML::Emitter& out, std::string_view key, const T& value) {
  out << YAML::Key << std::string(key) << YAML::Value << value;
}

void emit(YAML::Emitter& out, std::string_view key, const PgParameters& parameters) {
  out << YAML::Key << std::string(key) << YAML::Value;
  if (parameters.empty()) out << YAML::Flow;
  out << YAML::BeginMap;
  for (const auto& [name, value] : parameters) emit(out, name, value);
  out << YAML::EndMap;
}

}  // namespace

ClusterConfig parse_config(const std::string& yaml_text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    fail(source, e.mark.line >= 0 ? e.mark.line + 1 : 1, e.msg);
  }
  ClusterConfig c;
  const Item top{root, "", line_of(root, 1), source};
  read_map(top,
           {
               {"cluster", into(c.cluster)},
               {"listen_address", into(c.listen_address)},
               {"postgres",
                [&](const Item& i) {
                  read_map(i, {{"bindir", into(c.bindir)},
                               {"run_as", into(c.run_as)},
                               {"superuser", into(c.superuser)},
                               {"replication_user", into(c.replication_user)},
                               {"database", into(c.database)}});
                }},
               {"replication",
                [&](const Item& i) {
                  read_map(i, {{"sync", into(c.sync)},
                               {"sync_count", into(c.sync_count)},
                               {"strict", into(c.sync_strict)},
                               {"maximum_lag_on_failover", into(c.maximum_lag_on_failover)},
                               {"cascade", into(c.cascade)}});
                }},
               {"dcs",
                [&](const Item& i) {
                  read_map(i, {{"ttl", into(c.dcs_ttl_seconds)},
                               {"loop_wait", into(c.loop_wait_seconds)},
                               {"primary_start_timeout", into(c.primary_start_timeout_seconds)},
                               {"failsafe_mode", into(c.failsafe_mode)},
                               {"etcd", [&](const Item& e) {
                                  read_map(e, {{"endpoints", into(c.etcd.endpoints)},
                                               {"ca_file", into(c.etcd.ca_file)},
                                               {"cert_file", into(c.etcd.cert_file)},
                                               {"key_file", into(c.etcd.key_file)},
                                               {"user", into(c.etcd.user)},
                                               {"password", into(c.etcd.password)}});
                                }}});
                }},
               {"backup",
                [&](const Item& i) {
                  read_map(i, {{"interval", into(c.backup.interval_seconds)},
                               {"keep", into(c.backup.keep)},
                               {"full_interval", into(c.backup.full_interval_seconds)}});
                }},
               {"callbacks",
                [&](const Item& i) {
                  read_map(i, {{"on_role_change", into(c.callbacks.on_role_change)},
                               {"on_failover", into(c.callbacks.on_failover)},
                               {"timeout", into(c.callbacks.timeout_seconds)}});
                }},
               {"ports",
                [&](const Item& i) {
                  read_map(i, {{"proxy", into(c.ports.proxy)},
                               {"proxy_primary", into(c.ports.proxy_primary)},
                               {"proxy_replicas", into(c.ports.proxy_replicas)},
                               {"http", into(c.ports.http)},
                               {"node_base", into(c.ports.node_base)},
                               {"api_base", into(c.ports.api_base)}});
                }},
               {"http", [&](const Item& i) { read_map(i, {{"tls", into(c.http_tls)}}); }},
               {"proxy", [&](const Item& i) { read_proxy(i, c.proxy); }},
               {"postgresql", into(c.postgresql)},
               {"pg_hba", [&](const Item& i) { read_hba(i, c.pg_hba); }},
               {"nodes", [&](const Item& i) { read_nodes(i, c.nodes); }},
           });
  // Ports left out of a node entry follow its position: node_base + i, api_base + i.
  for (size_t i = 0; i < c.nodes.size(); ++i) {
    if (c.nodes[i].port == 0) c.nodes[i].port = c.ports.node_base + static_cast<int>(i);
    if (c.nodes[i].api_port == 0) c.nodes[i].api_port = c.ports.api_base + static_cast<int>(i);
  }
  validate_config(c, source);
  return c;
}

ClusterConfig load_config(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  auto cannot_read = [&] {
    return ConfigError(fmt::format("cannot read {}: {}", path, std::generic_category().message(errno)));
  };
  if (!file) throw cannot_read();
  std::string text;
  char buffer[8192];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, file.get())) text.append(buffer, n);
  if (std::ferror(file.get())) throw cannot_read();  // e.g. EISDIR: fopen accepts a directory
  return parse_config(text, path);
}

void validate_config(const ClusterConfig& c, const std::string& source) {
  static const std::regex cluster_re("[a-z0-9_-]+");
  static const std::regex node_re("[a-z0-9_]{1,63}");

  if (!std::regex_match(c.cluster, cluster_re))
    invalid(source, "'cluster' must be non-empty and use only a-z, 0-9, '_' and '-', got '{}'", c.cluster);
  if (c.listen_address.empty()) invalid(source, "'listen_address' must not be empty");
  if (c.sync_count < 1) invalid(source, "'replication.sync_count' must be at least 1, got {}", c.sync_count);
  if (c.dcs_ttl_seconds < 5)
    invalid(source, "'dcs.ttl' must be at least 5 seconds, got {}", c.dcs_ttl_seconds);
  if (c.loop_wait_seconds < 1)
    invalid(source, "'dcs.loop_wait' must be at least 1 second, got {}", c.loop_wait_seconds);
  // A member must be able to miss one loop and still renew its key before the TTL runs out.
  if (2LL * c.loop_wait_seconds >= c.dcs_ttl_seconds)
    invalid(source, "'dcs.loop_wait' ({}) must be less than half of 'dcs.ttl' ({})", c.loop_wait_seconds,
            c.dcs_ttl_seconds);
  if (c.primary_start_timeout_seconds < 0 || c.primary_start_timeout_seconds > 86400)
    invalid(source, "'dcs.primary_start_timeout' must be 0 to 86400 seconds, got {}", c.primary_start_timeout_seconds);
  for (const auto& e : c.etcd.endpoints) {
    if (!e.starts_with("http://") && !e.starts_with("https://"))
      invalid(source, "'dcs.etcd.endpoints' entries must be http://host:port or https://host:port, got '{}'", e);
  }
  if (c.maximum_lag_on_failover < 0)
    invalid(source, "'replication.maximum_lag_on_failover' must be 0 or more bytes, got {}", c.maximum_lag_on_failover);
  if (c.backup.interval_seconds != 0 && (c.backup.interval_seconds < 60 || c.backup.interval_seconds > 31 * 86400))
    invalid(source, "'backup.interval' must be 0 (off) or 60 to 2678400 seconds, got {}", c.backup.interval_seconds);
  if (c.backup.keep < 0) invalid(source, "'backup.keep' must be 0 (all) or more, got {}", c.backup.keep);
  if (c.backup.full_interval_seconds != 0 &&
      (c.backup.full_interval_seconds < 60 || c.backup.full_interval_seconds > 366 * 86400))
    invalid(source, "'backup.full_interval' must be 0 (every backup full) or 60 to 31622400 seconds, got {}",
            c.backup.full_interval_seconds);
  if (c.callbacks.timeout_seconds < 1 || c.callbacks.timeout_seconds > 3600)
    invalid(source, "'callbacks.timeout' must be between 1 and 3600 seconds, got {}", c.callbacks.timeout_seconds);
  if (c.nodes.size() > 64)
    invalid(source, "'nodes' has {} entries; at most 64 are supported", c.nodes.size());

  const ProxyConfig& p = c.proxy;
  auto at_least = [&](const char* key, int value, int minimum) {
    if (value < minimum) invalid(source, "'proxy.{}' must be at least {}, got {}", key, minimum, value);
  };
  at_least("threads", p.threads, 0);
  at_least("default_pool_size", p.default_pool_size, 1);
  at_least("min_pool_size", p.min_pool_size, 0);
  at_least("reserve_pool_size", p.reserve_pool_size, 0);
  at_least("reserve_pool_timeout_ms", p.reserve_pool_timeout_ms, 0);
  at_least("max_client_conn", p.max_client_conn, 1);
  at_least("query_wait_timeout_ms", p.query_wait_timeout_ms, 1);
  at_least("server_connect_timeout_ms", p.server_connect_timeout_ms, 1);
  at_least("server_idle_timeout", p.server_idle_timeout_s, 0);
  at_least("server_lifetime", p.server_lifetime_s, 0);
  at_least("client_idle_timeout", p.client_idle_timeout_s, 0);
  at_least("shutdown_timeout", p.shutdown_timeout_s, 0);
  if (p.min_pool_size > p.default_pool_size)
    invalid(source, "'proxy.min_pool_size' ({}) must not exceed 'proxy.default_pool_size' ({})", p.min_pool_size,
            p.default_pool_size);
  if (!p.auth_query.empty() && p.auth_query.find("$1") == std::string::npos)
    invalid(source, "'proxy.auth_query' must take the user name as $1, e.g. SELECT usename, passwd FROM "
                    "pg_catalog.pg_shadow WHERE usename = $1; got '{}'", p.auth_query);
  if (p.tls_mode != "disable" && p.tls_mode != "allow" && p.tls_mode != "require")
    invalid(source, "'proxy.tls_mode' must be disable, allow or require, got '{}'", p.tls_mode);
  if (p.server_sslmode != "disable" && p.server_sslmode != "prefer" && p.server_sslmode != "require" &&
      p.server_sslmode != "verify-ca" && p.server_sslmode != "verify-full")
    invalid(source, "'proxy.server_sslmode' must be disable, prefer, require, verify-ca or verify-full, got '{}'",
            p.server_sslmode);
  if (p.tls_cert.empty() != p.tls_key.empty())
    invalid(source, "'proxy.tls_cert' and 'proxy.tls_key' must be given together");
  if (!p.unix_socket_dir.empty() && p.unix_socket_dir != "off") {
    if (p.unix_socket_dir.front() != '/')
      invalid(source, "'proxy.unix_socket_dir' must be an absolute path or off, got '{}'", p.unix_socket_dir);
    // sun_path holds 107 bytes: the directory, "/.s.PGSQL." and a port of up to five digits.
    if (p.unix_socket_dir.size() + sizeof("/.s.PGSQL.65535") - 1 > 107)
      invalid(source, "'proxy.unix_socket_dir' is too long for a Unix socket path (at most 92 bytes): '{}'",
              p.unix_socket_dir);
  }
  at_least("max_replica_lag_bytes", p.max_replica_lag_bytes, 0);
  at_least("max_replica_lag_seconds", p.max_replica_lag_seconds, 0);
  at_least("primary_read_weight", p.primary_read_weight, 0);
  if (p.causal_reads != "session" && p.causal_reads != "off")
    invalid(source, "'proxy.causal_reads' must be session or off, got '{}'", p.causal_reads);
  if (p.function_routing != "strict" && p.function_routing != "permissive")
    invalid(source, "'proxy.function_routing' must be strict or permissive, got '{}'", p.function_routing);
  for (const auto& [name, weight] : p.weights) {
    if (weight < 0) invalid(source, "'proxy.weights.{}' must be at least 0, got {}", name, weight);
  }
  for (std::size_t i = 0; i < p.routing_rules.size(); ++i) {
    const auto& r = p.routing_rules[i];
    if (r.route != "primary" && r.route != "replica")
      invalid(source, "'proxy.routing_rules[{}].route' must be primary or replica, got '{}'", i, r.route);
  }
  for (std::size_t i = 0; i < p.pools.size(); ++i) {
    if (p.pools[i].pool_size && *p.pools[i].pool_size < 1)
      invalid(source, "'proxy.pools[{}].pool_size' must be at least 1, got {}", i, *p.pools[i].pool_size);
  }

  auto check_parameters = [&](const PgParameters& parameters, const std::string& key) {
    for (const auto& entry : parameters)
      if (!is_guc_name(entry.first))
        invalid(source, "'{}' in '{}' is not a PostgreSQL parameter name", entry.first, key);
  };
  check_parameters(c.postgresql, "postgresql");

  // Every listener shares listen_address, so all of them must differ.
  std::vector<std::pair<std::string, int>> listeners = {{"ports.proxy", c.ports.proxy},
                                                        {"ports.proxy_primary", c.ports.proxy_primary},
                                                        {"ports.proxy_replicas", c.ports.proxy_replicas},
                                                        {"ports.http", c.ports.http}};
  std::vector<std::pair<std::string, int>> ports = listeners;
  ports.insert(ports.end(), {{"ports.node_base", c.ports.node_base}, {"ports.api_base", c.ports.api_base}});

  for (std::size_t i = 0; i < c.nodes.size(); ++i) {
    const NodeConfig& node = c.nodes[i];
    const std::string path = fmt::format("nodes[{}]", i);
    if (!std::regex_match(node.name, node_re))
      invalid(source, "'{}.name' must be 1 to 63 characters of a-z, 0-9 and '_', got '{}'", path, node.name);
    for (std::size_t j = 0; j < i; ++j)
      if (c.nodes[j].name == node.name)
        invalid(source, "'{}.name': node '{}' is defined twice", path, node.name);
    check_parameters(node.postgresql, path + ".postgresql");
    ports.emplace_back(path + ".port", node.port);
    ports.emplace_back(path + ".api_port", node.api_port);
    // Several hosts (etcd): nodes[0] is this host's node; the others listen on their own hosts.
    if (c.etcd.endpoints.empty() || i == 0) {
      listeners.emplace_back(path + ".port", node.port);
      listeners.emplace_back(path + ".api_port", node.api_port);
    }
  }

  for (const auto& [key, port] : ports)
    if (port < 1 || port > 65535) invalid(source, "'{}' must be between 1 and 65535, got {}", key, port);
  for (std::size_t i = 0; i < listeners.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (listeners[i].second == listeners[j].second)
        invalid(source, "'{}' and '{}' both use port {}", listeners[j].first, listeners[i].first,
                listeners[i].second);

  auto index_of = [&](const std::string& name) {
    auto it =
        std::find_if(c.nodes.begin(), c.nodes.end(), [&](const NodeConfig& n) { return n.name == name; });
    return static_cast<std::size_t>(it - c.nodes.begin());
  };
  for (std::size_t i = 0; i < c.nodes.size(); ++i) {
    const NodeConfig& node = c.nodes[i];
    if (!node.upstream) continue;
    if (*node.upstream == node.name)
      invalid(source, "'nodes[{}].upstream': node '{}' cannot stream from itself", i, node.name);
    if (index_of(*node.upstream) == c.nodes.size())
      invalid(source, "'nodes[{}].upstream' names unknown node '{}'", i, *node.upstream);
  }
  // One host lists every node: if all were tagged, no failover could ever happen. (A node.yaml
  // lists its own node only: the others' tags are theirs.)
  if (c.etcd.endpoints.empty() && !c.nodes.empty() &&
      std::all_of(c.nodes.begin(), c.nodes.end(), [](const NodeConfig& n) { return n.nofailover; }))
    invalid(source, "every node is tagged 'nofailover': none could ever be promoted; tag replicas only");
  // Follow each upstream chain; revisiting a node on the same chain is a cycle.
  for (std::size_t start = 0; start < c.nodes.size(); ++start) {
    std::vector<std::size_t> chain{start};
    for (std::size_t at = start; c.nodes[at].upstream;) {
      at = index_of(*c.nodes[at].upstream);
      auto seen = std::find(chain.begin(), chain.end(), at);
      if (seen != chain.end()) {
        std::string names;
        for (auto it = seen; it != chain.end(); ++it) names += c.nodes[*it].name + " -> ";
        invalid(source, "'upstream' settings form a cycle: {}{}", names, c.nodes[at].name);
      }
      chain.push_back(at);
    }
  }
}

std::string render_config(const ClusterConfig& c) {
  std::string text = "# pgfleet cluster configuration; see docs/configuration.md\n";
  // Each top-level block is emitted on its own so that blank lines can separate them.
  auto block = [&](const std::function<void(YAML::Emitter&)>& body) {
    YAML::Emitter out;
    out << YAML::BeginMap;
    body(out);
    out << YAML::EndMap;
    if (!out.good()) throw ConfigError("cannot render configuration: " + out.GetLastError());
    text += std::string("\n") + out.c_str() + "\n";
  };
  auto section = [&](std::string_view key, const std::function<void(YAML::Emitter&)>& fields) {
    block([&](YAML::Emitter& out) {
      out << YAML::Key << std::string(key) << YAML::Value << YAML::BeginMap;
      fields(out);
      out << YAML::EndMap;
    });
  };

  block([&](YAML::Emitter& out) {
    emit(out, "cluster", c.cluster);
    emit(out, "listen_address", c.listen_address);
  });
  section("postgres", [&](YAML::Emitter& out) {
    emit(out, "bindir", c.bindir);
    emit(out, "run_as", c.run_as);
    emit(out, "superuser", c.superuser);
    emit(out, "replication_user", c.replication_user);
    emit(out, "database", c.database);
  });
  section("replication", [&](YAML::Emitter& out) {
    // Quoted: a bare off/on would be read back as a YAML 1.1 boolean.
    out << YAML::Key << "sync" << YAML::Value << YAML::DoubleQuoted << to_string(c.sync);
    emit(out, "sync_count", c.sync_count);
    emit(out, "strict", c.sync_strict);
    emit(out, "maximum_lag_on_failover", c.maximum_lag_on_failover);
    emit(out, "cascade", c.cascade);
  });
  section("backup", [&](YAML::Emitter& out) {
    emit(out, "interval", c.backup.interval_seconds);
    emit(out, "keep", c.backup.keep);
    emit(out, "full_interval", c.backup.full_interval_seconds);
  });
  section("callbacks", [&](YAML::Emitter& out) {
    emit(out, "on_role_change", c.callbacks.on_role_change);
    emit(out, "on_failover", c.callbacks.on_failover);
    emit(out, "timeout", c.callbacks.timeout_seconds);
  });
  section("dcs", [&](YAML::Emitter& out) {
    emit(out, "ttl", c.dcs_ttl_seconds);
    emit(out, "loop_wait", c.loop_wait_seconds);
    emit(out, "primary_start_timeout", c.primary_start_timeout_seconds);
    emit(out, "failsafe_mode", c.failsafe_mode);
    if (!c.etcd.endpoints.empty()) {
      out << YAML::Key << "etcd" << YAML::Value << YAML::BeginMap;
      out << YAML::Key << "endpoints" << YAML::Value << YAML::Flow << c.etcd.endpoints;
      for (const auto& [key, value] : {std::pair{"ca_file", &c.etcd.ca_file}, {"cert_file", &c.etcd.cert_file},
                                        {"key_file", &c.etcd.key_file}, {"user", &c.etcd.user},
                                        {"password", &c.etcd.password}}) {
        if (!value->empty()) emit(out, key, *value);
      }
      out << YAML::EndMap;
    }
  });
  section("ports", [&](YAML::Emitter& out) {
    emit(out, "proxy", c.ports.proxy);
    emit(out, "proxy_primary", c.ports.proxy_primary);
    emit(out, "proxy_replicas", c.ports.proxy_replicas);
    emit(out, "http", c.ports.http);
    emit(out, "node_base", c.ports.node_base);
    emit(out, "api_base", c.ports.api_base);
  });
  section("http", [&](YAML::Emitter& out) { emit(out, "tls", c.http_tls); });
  section("proxy", [&](YAML::Emitter& out) {
    const ProxyConfig& p = c.proxy;
    emit(out, "enabled", p.enabled);
    emit(out, "threads", p.threads);
    emit(out, "pool_mode", to_string(p.pool_mode));
    emit(out, "default_pool_size", p.default_pool_size);
    emit(out, "min_pool_size", p.min_pool_size);
    emit(out, "reserve_pool_size", p.reserve_pool_size);
    emit(out, "reserve_pool_timeout_ms", p.reserve_pool_timeout_ms);
    emit(out, "max_client_conn", p.max_client_conn);
    emit(out, "query_wait_timeout_ms", p.query_wait_timeout_ms);
    emit(out, "server_connect_timeout_ms", p.server_connect_timeout_ms);
    emit(out, "server_idle_timeout", p.server_idle_timeout_s);
    emit(out, "server_lifetime", p.server_lifetime_s);
    emit(out, "client_idle_timeout", p.client_idle_timeout_s);
    emit(out, "shutdown_timeout", p.shutdown_timeout_s);
    emit(out, "auth_user", p.auth_user);
    emit(out, "auth_file", p.auth_file);
    if (!p.auth_query.empty()) emit(out, "auth_query", p.auth_query);
    out << YAML::Key << "admin_users" << YAML::Value << YAML::Flow << p.admin_users;
    emit(out, "tls_mode", p.tls_mode);
    emit(out, "tls_cert", p.tls_cert);
    emit(out, "tls_key", p.tls_key);
    emit(out, "server_sslmode", p.server_sslmode);
    if (!p.server_tls_ca.empty()) emit(out, "server_tls_ca", p.server_tls_ca);
    emit(out, "server_unix_socket", p.server_unix_socket);
    emit(out, "unix_socket_dir", p.unix_socket_dir);
    out << YAML::Key << "pools" << YAML::Value;
    if (p.pools.empty()) out << YAML::Flow;
    out << YAML::BeginSeq;
    for (const PoolOverride& pool : p.pools) {
      out << YAML::BeginMap;
      emit(out, "database", pool.database);
      emit(out, "user", pool.user);
      if (pool.pool_mode) emit(out, "pool_mode", to_string(*pool.pool_mode));
      if (pool.pool_size) emit(out, "pool_size", *pool.pool_size);
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
    emit(out, "causal_reads", p.causal_reads);
    emit(out, "max_replica_lag_bytes", p.max_replica_lag_bytes);
    emit(out, "max_replica_lag_seconds", p.max_replica_lag_seconds);
    emit(out, "primary_read_weight", p.primary_read_weight);
    out << YAML::Key << "weights" << YAML::Value << YAML::Flow << YAML::BeginMap;
    for (const auto& [name, weight] : p.weights) emit(out, name, weight);
    out << YAML::EndMap;
    emit(out, "function_routing", p.function_routing);
    out << YAML::Key << "read_only_functions" << YAML::Value << YAML::Flow << p.read_only_functions;
    out << YAML::Key << "writing_functions" << YAML::Value << YAML::Flow << p.writing_functions;
    emit(out, "replicas_fallback_to_primary", p.replicas_fallback_to_primary);
    out << YAML::Key << "routing_rules" << YAML::Value;
    if (p.routing_rules.empty()) out << YAML::Flow;
    out << YAML::BeginSeq;
    for (const RoutingRule& rule : p.routing_rules) {
      out << YAML::BeginMap;
      emit(out, "database", rule.database);
      emit(out, "user", rule.user);
      emit(out, "application_name", rule.application_name);
      emit(out, "route", rule.route);
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  });
  block([&](YAML::Emitter& out) { emit(out, "postgresql", c.postgresql); });
  if (!c.pg_hba.empty()) block([&](YAML::Emitter& out) { emit(out, "pg_hba", c.pg_hba); });
  block([&](YAML::Emitter& out) {
    out << YAML::Key << "nodes" << YAML::Value;
    if (c.nodes.empty()) out << YAML::Flow;
    out << YAML::BeginSeq;
    for (const NodeConfig& node : c.nodes) {
      out << YAML::BeginMap;
      emit(out, "name", node.name);
      if (!node.host.empty()) emit(out, "host", node.host);
      emit(out, "port", node.port);
      emit(out, "api_port", node.api_port);
      if (node.upstream) emit(out, "upstream", *node.upstream);
      if (node.nofailover) emit(out, "nofailover", true);
      if (node.noloadbalance) emit(out, "noloadbalance", true);
      if (!node.postgresql.empty()) emit(out, "postgresql", node.postgresql);
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  });
  return text;
}

int default_proxy_threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency() / 2)); }

const PoolOverride* pool_override(const ProxyConfig& proxy, const std::string& database, const std::string& user) {
  for (const auto& o : proxy.pools) {
    if ((o.database.empty() || o.database == database) && (o.user.empty() || o.user == user)) return &o;
  }
  return nullptr;
}

}  // namespace pgfleet::cluster
