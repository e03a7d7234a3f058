#pragma once
// Where signature records live. The proxy talks to the SignatureStore interface only; the store is
// chosen at start-up (memory today; SQLite and Redis are the next implementations), never on the
// per-token path: the proxy calls it once before forwarding (reserve) and once when an answer is
// complete (commit).
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
#include <utility>

#include "protocol/signing.hpp"

namespace pi::server {

class SignatureStore {
 public:
  using Clock = std::chrono::steady_clock;

  // A held slot. Move-only; the slot goes back to the store when the reservation is destroyed
  // without a commit, so no path (error, cancellation, exception) can leak one.
  class Reservation {
   public:
    Reservation(Reservation&& o) noexcept : store_(std::exchange(o.store_, nullptr)) {}
    Reservation& operator=(Reservation&& o) noexcept {
      if (this != &o) {
        reset();
        store_ = std::exchange(o.store_, nullptr);
      }
      return *this;
    }
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    ~Reservation() { reset(); }

    // Stores `rec` under `key`, consuming the slot. false if the key already has a record (the
    // existing record is kept). A reservation commits at most once.
    bool commit(const std::string& key, const protocol::SignatureRecord& rec);
    bool held() const { return store_ != nullptr; }

   private:
    friend class SignatureStore;
    explicit Reservation(SignatureStore* s) : store_(s) {}
    void reset() {
      if (store_ != nullptr) std::exchange(store_, nullptr)->release();
    }
    SignatureStore* store_;
  };

  virtual ~SignatureStore() = default;

  // A slot for one record, or nullopt when full (see retry_after()).
  std::optional<Reservation> reserve() {
    if (!try_reserve()) return std::nullopt;
    return Reservation(this);
  }
  virtual std::optional<protocol::SignatureRecord> get(const std::string& key) = 0;
  virtual std::size_t size() const = 0;
  virtual std::size_t capacity() const = 0;
  virtual std::chrono::seconds retry_after() = 0;

 protected:
  virtual bool try_reserve() = 0;
  virtual void release() = 0;
  virtual bool commit(const std::string& key, const protocol::SignatureRecord& rec) = 0;
};

// Records in memory, sharded by key, with a fixed TTL and a hard capacity.
class MemorySignatureStore final : public SignatureStore {
 public:
  MemorySignatureStore(std::size_t capacity, std::chrono::seconds ttl) : capacity_(capacity), ttl_(ttl) {}

  std::optional<protocol::SignatureRecord> get(const std::string& key) override;
  std::size_t size() const override { return live_.load(); }
  std::size_t capacity() const override { return capacity_; }
  std::chrono::seconds retry_after() override;

  void set_clock_for_test(std::function<Clock::time_point()> now) { now_ = std::move(now); }

 protected:
  bool try_reserve() override;
  void release() override;
  bool commit(const std::string& key, const protocol::SignatureRecord& rec) override;

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
