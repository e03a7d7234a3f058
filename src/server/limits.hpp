#pragma once
// Server-wide bounds that keep an unauthenticated or greedy client from taking the proxy's memory or
// its attestation capacity (docs/operations.md, "Limits").
#include <atomic>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

namespace pi::server {

// Bytes of client requests held in memory (request heads and bodies being read or forwarded),
// across all connections, bounded by --max-buffered-bytes.
class BufferBudget {
 public:
  explicit BufferBudget(std::size_t limit) : limit_(limit) {}
  bool try_take(std::size_t n) {
    std::size_t cur = used_.load();
    do {
      if (cur + n > limit_) return false;
    } while (!used_.compare_exchange_weak(cur, cur + n));
    return true;
  }
  void give(std::size_t n) { used_.fetch_sub(n); }
  std::size_t used() const { return used_.load(); }
  std::size_t limit() const { return limit_; }

 private:
  const std::size_t limit_;
  std::atomic<std::size_t> used_{0};
};

// What one request holds of the budget; follows the bytes it buffers and gives them back when done.
class BudgetHold {
 public:
  explicit BudgetHold(BufferBudget& b) : b_(b) {}
  BudgetHold(const BudgetHold&) = delete;
  BudgetHold& operator=(const BudgetHold&) = delete;
  ~BudgetHold() { b_.give(held_); }
  // Holds exactly `n` bytes from now on. false (nothing changed): the budget cannot cover the growth.
  bool hold(std::size_t n) {
    if (n > held_) {
      if (!b_.try_take(n - held_)) return false;
    } else {
      b_.give(held_ - n);
    }
    held_ = n;
    return true;
  }

 private:
  BufferBudget& b_;
  std::size_t held_ = 0;
};

// Attestations in flight: at most `total` at once, and at most a fair share per client (its token's
// namespace when it presented a valid token, else its source address; IPv6 by /64), so that clients
// looping on the endpoint cannot starve one that asks politely.
class AttestationLimiter {
 public:
  AttestationLimiter(std::size_t total, std::size_t per_client) : total_(total), per_client_(per_client) {}

  class Slot {
   public:
    Slot(Slot&& o) noexcept : l_(std::exchange(o.l_, nullptr)), key_(std::move(o.key_)) {}
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    Slot& operator=(Slot&&) = delete;
    ~Slot() {
      if (l_ != nullptr) l_->release(key_);
    }

   private:
    friend class AttestationLimiter;
    Slot(AttestationLimiter* l, std::string key) : l_(l), key_(std::move(key)) {}
    AttestationLimiter* l_;
    std::string key_;
  };

  // nullopt: the server is at its total, or this client at its share.
  std::optional<Slot> try_acquire(const std::string& client);
  std::size_t in_flight() const;

 private:
  void release(const std::string& client);
  const std::size_t total_;
  const std::size_t per_client_;
  mutable std::mutex mu_;
  std::size_t in_flight_ = 0;
  std::unordered_map<std::string, std::size_t> by_client_;
};

}  // namespace pi::server
