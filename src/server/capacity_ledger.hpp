#pragma once
// Capacity accounting for a store whose records live outside the process's memory (an SQLite file,
// Redis): live records are counted per expiry second (wall clock, which survives a restart), plus
// the reservations of requests in flight, so reserve() never touches the file or the network.
// Thread-safe.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <utility>

namespace pi::server {

class CapacityLedger {
 public:
  explicit CapacityLedger(std::size_t capacity) : capacity_(capacity) {}

  static std::int64_t expiry_second(std::int64_t expires_ms) { return (expires_ms + 999) / 1000; }  // rounded up

  // `n` live records expiring at `expires_ms` (records found at open, or written): counted until then.
  void add_live(std::int64_t expires_ms, std::size_t n) {
    std::lock_guard lk(mu_);
    add_locked(expires_ms, n);
  }
  // A slot for one record, unless live + reserved would pass the capacity.
  bool try_reserve(std::int64_t now_ms) {
    std::lock_guard lk(mu_);
    drop_expired_locked(now_ms);
    if (live_ + reserved_ + 1 > capacity_) return false;
    ++reserved_;
    return true;
  }
  void release(std::size_t n = 1) {
    std::lock_guard lk(mu_);
    reserved_ -= n;
  }
  // `reserved` reservations end; `stored` of them became records expiring at `expires_ms`.
  void settle(std::size_t reserved, std::size_t stored, std::int64_t expires_ms) {
    std::lock_guard lk(mu_);
    reserved_ -= reserved;
    add_locked(expires_ms, stored);
  }
  std::size_t live(std::int64_t now_ms) {
    std::lock_guard lk(mu_);
    drop_expired_locked(now_ms);
    return live_;
  }
  // Seconds until the oldest counted record expires (at least 1): the Retry-After of a full store.
  std::chrono::seconds retry_after(std::int64_t now_ms) {
    std::lock_guard lk(mu_);
    drop_expired_locked(now_ms);
    if (buckets_.empty()) return std::chrono::seconds(1);
    const auto wait_ms = buckets_.front().first * 1000 - now_ms;
    return std::chrono::seconds(std::max<std::int64_t>(1, (wait_ms + 999) / 1000));
  }
  std::size_t capacity() const { return capacity_; }

 private:
  void add_locked(std::int64_t expires_ms, std::size_t n) {
    if (n == 0) return;
    const auto sec = expiry_second(expires_ms);
    if (!buckets_.empty() && buckets_.back().first >= sec)
      buckets_.back().second += n;  // same second (or the wall clock went back: counted longer)
    else
      buckets_.emplace_back(sec, n);
    live_ += n;
  }
  void drop_expired_locked(std::int64_t now_ms) {
    while (!buckets_.empty() && buckets_.front().first * 1000 <= now_ms) {
      live_ -= buckets_.front().second;
      buckets_.pop_front();
    }
  }

  const std::size_t capacity_;
  std::mutex mu_;
  std::deque<std::pair<std::int64_t, std::size_t>> buckets_;  // (expiry second, live records), ascending
  std::size_t live_ = 0;
  std::size_t reserved_ = 0;
};

}  // namespace pi::server
