// Dcs: the distributed configuration store interface every backend (local files, etcd) implements.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace pgfleet::dcs {

using Millis = std::chrono::milliseconds;

// One stored key. Revisions are store-wide and strictly increasing (etcd's model):
// a key's mod_revision changes on every write, so it is the token for compare-and-set.
struct KeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
  int64_t create_revision = 0;
  std::optional<Millis> ttl_remaining;  // set only for keys written with a TTL (by get(); list() may omit it)
};

// Contract for every backend:
//  * keys are relative to the cluster's namespace ("leader", "members/node1");
//  * every call is atomic on its own; compare_and_set / compare_and_delete are the only
//    read-modify-write operations and are linearizable;
//  * a key written with a TTL disappears once the TTL passes without another write to it
//    (renewal = writing it again, usually with compare_and_set on its own revision);
//  * failures to reach the store are errors (Result), never exceptions.
// Implementations are safe to use from one thread per instance; several processes may share a store.
class Dcs {
 public:
  virtual ~Dcs() = default;

  virtual Result<std::optional<KeyValue>> get(std::string_view key) = 0;
  // Keys starting with `prefix`, sorted by key.
  virtual Result<std::vector<KeyValue>> list(std::string_view prefix) = 0;
  // Unconditional write; returns the new mod_revision.
  virtual Result<int64_t> put(std::string_view key, std::string_view value,
                              std::optional<Millis> ttl = std::nullopt) = 0;
  // Writes only if the key's current mod_revision equals expected_revision
  // (0 means "the key must not exist"). Returns whether it wrote.
  virtual Result<bool> compare_and_set(std::string_view key, std::string_view value,
                                       int64_t expected_revision,
                                       std::optional<Millis> ttl = std::nullopt) = 0;
  // Deletes only if the key's mod_revision equals expected_revision. Returns whether it deleted.
  virtual Result<bool> compare_and_delete(std::string_view key, int64_t expected_revision) = 0;
  // Unconditional delete; returns whether the key existed.
  virtual Result<bool> remove(std::string_view key) = 0;
  // Returns once a key under `prefix` has changed after `after_revision` (write, delete or
  // TTL expiry) or `timeout` passed; yields the store's current revision either way.
  virtual Result<int64_t> wait_for_change(std::string_view prefix, int64_t after_revision,
                                          Millis timeout) = 0;
};

}  // namespace pgfleet::dcs
