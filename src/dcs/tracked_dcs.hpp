// TrackedDcs: a Dcs that forwards every call and records since when one has been in flight, so
// another thread can tell that the caller is stuck waiting on the store (the HA agent's failsafe
// thread: a primary whose loop waits out etcd timeouts must ask its members before its lease ends).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <type_traits>

#include "dcs/dcs.hpp"

namespace pgfleet::dcs {

class TrackedDcs final : public Dcs {
 public:
  explicit TrackedDcs(std::unique_ptr<Dcs> inner) : inner_(std::move(inner)) {}

  // How long the current call has been running (a watch: beyond the timeout it asked for); zero
  // when none is. Safe from any thread.
  Millis in_flight_for() const {
    const int64_t since = since_ms_.load();
    return since == 0 ? Millis(0) : Millis(std::max<int64_t>(0, now_ms() - since));
  }

  Result<std::optional<KeyValue>> get(std::string_view key) override {
    return timed([&] { return inner_->get(key); });
  }
  Result<std::vector<KeyValue>> list(std::string_view prefix) override {
    return timed([&] { return inner_->list(prefix); });
  }
  Result<int64_t> put(std::string_view key, std::string_view value, std::optional<Millis> ttl) override {
    return timed([&] { return inner_->put(key, value, ttl); });
  }
  Result<bool> compare_and_set(std::string_view key, std::string_view value, int64_t expected_revision,
                               std::optional<Millis> ttl) override {
    return timed([&] { return inner_->compare_and_set(key, value, expected_revision, ttl); });
  }
  Result<bool> compare_and_delete(std::string_view key, int64_t expected_revision) override {
    return timed([&] { return inner_->compare_and_delete(key, expected_revision); });
  }
  Result<bool> remove(std::string_view key) override {
    return timed([&] { return inner_->remove(key); });
  }
  // A watch waits on purpose: only the time past its timeout counts.
  Result<int64_t> wait_for_change(std::string_view prefix, int64_t after_revision, Millis timeout) override {
    return timed([&] { return inner_->wait_for_change(prefix, after_revision, timeout); }, timeout);
  }

 private:
  static int64_t now_ms() {
    return std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now().time_since_epoch()).count() + 1;
  }
  template <typename Call>
  std::invoke_result_t<Call&> timed(Call&& call, Millis expected = Millis(0)) {
    since_ms_ = now_ms() + expected.count();
    auto result = call();
    since_ms_ = 0;
    return result;
  }

  std::unique_ptr<Dcs> inner_;
  std::atomic<int64_t> since_ms_{0};
};

}  // namespace pgfleet::dcs
