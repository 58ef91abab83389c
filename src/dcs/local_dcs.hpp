// LocalDcs: the one-host DCS backend — JSON files under the cluster's dcs/ folder, one per
// committed generation, changed without any lock (compare-and-swap by link(2)) so that a process
// frozen mid-operation never holds the others up; TTLs measured on CLOCK_MONOTONIC.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "dcs/dcs.hpp"

namespace pgfleet::dcs {

class LocalDcs final : public Dcs {
 public:
  // Returns nanoseconds on a clock shared by every process of this host (CLOCK_MONOTONIC).
  using MonotonicClock = std::function<int64_t()>;

  // `directory` is created if missing. `clock` is injectable for tests.
  explicit LocalDcs(std::string directory, MonotonicClock clock = {});

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

  LocalDcs(LocalDcs&&) noexcept;
  LocalDcs& operator=(LocalDcs&&) noexcept;
  ~LocalDcs() override;

 private:
  struct Watch;  // inotify on the directory and the store last read (local_dcs.cpp)

  std::string directory_;
  MonotonicClock clock_;
  std::string boot_id_;  // this boot's id: stored TTL deadlines from another boot are void
  std::unique_ptr<Watch> watch_;
};

}  // namespace pgfleet::dcs
