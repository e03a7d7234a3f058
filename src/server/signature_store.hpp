#pragma once
// In-memory signature records with a fixed TTL and a hard capacity.
//
// Capacity policy (docs/operations.md): a record is never dropped before its TTL. Before a
// signed request is forwarded, the proxy reserves a slot; when live records + reservations
// reach the capacity (after purging expired records) the request is refused with 503 and
// Retry-After = seconds until the oldest record expires. So under overload clients are told
// to come back instead of silently losing signatures they were promised.
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "protocol/signing.hpp"

namespace pi::server {

class SignatureStore {
 public:
  using Clock = std::chrono::steady_clock;

  SignatureStore(std::size_t capacity, std::chrono::seconds ttl) : capacity_(capacity), ttl_(ttl) {}

  // Reserves room for one record. false: full (see retry_after()).
  bool try_reserve();
  // Gives back an unused reservation (the exchange produced no signature).
  void release();
  // Stores a record under `key`, consuming a reservation. false if the key is already taken
  // (the existing record is never overwritten).
  bool commit(const std::string& key, const protocol::SignatureRecord& rec);
  std::optional<protocol::SignatureRecord> get(const std::string& key);

  std::size_t size() const { return live_.load(); }
  std::size_t capacity() const { return capacity_; }
  std::chrono::seconds retry_after();

  void set_clock_for_test(std::function<Clock::time_point()> now) { now_ = std::move(now); }

 private:
  static constexpr std::size_t kShards = 16;
  struct Entry {
    protocol::SignatureRecord rec;
    Clock::time_point expires;
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Entry> map;
    std::deque<std::pair<Clock::time_point, std::string>> order;  // insertion = expiry order
  };
  Shard& shard_for(const std::string& key) { return shards_[std::hash<std::string>{}(key) % kShards]; }
  void purge_locked(Shard& s, Clock::time_point now);
  void purge_all();
  Clock::time_point now() const { return now_ ? now_() : Clock::now(); }

  const std::size_t capacity_;
  const std::chrono::seconds ttl_;
  std::atomic<std::size_t> live_{0};
  std::atomic<std::size_t> reserved_{0};
  Shard shards_[kShards];
  std::function<Clock::time_point()> now_;
};

}  // namespace pi::server
