#pragma once
// Where signature records live. The proxy talks to the SignatureStore interface only; the store is
// chosen at start-up (memory for tests, SQLite on a file by default — sqlite_store.hpp; Redis is the
// next one), never on the per-token path: the proxy calls it once before forwarding (reserve) and
// once when an answer is complete (commit).
//
// Commit is asynchronous: commit_async hands the record to the store and returns at once; the store
// calls `done` (on any thread: the memory store inline, the SQLite store on its writer thread) once
// the record is durable, or has failed. The proxy sends the last bytes of an answer only after that.
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
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "protocol/signing.hpp"

namespace pi::server {

// How a commit ended.
enum class CommitResult {
  Stored,     // the record is stored (durably, for a durable store)
  Collision,  // the key already had a record; the existing one was kept
  Failed      // the store could not write it (I/O error, disk full): the record does not exist
};

// A move-only callable `void(CommitResult)` (std::function needs copyable targets; the proxy's are
// Asio completion handlers, which are move-only). One allocation per commit.
class CommitCallback {
 public:
  CommitCallback() = default;
  // NOLINTBEGIN(bugprone-forwarding-reference-overload,google-explicit-constructor): the constraint
  // keeps copies/moves of CommitCallback on the special members; lambdas convert implicitly.
  template <class F>
  requires(!std::is_same_v<std::decay_t<F>, CommitCallback>) CommitCallback(F&& f)
      : impl_(std::make_unique<Impl<std::decay_t<F>>>(std::forward<F>(f))) {}
  // NOLINTEND(bugprone-forwarding-reference-overload,google-explicit-constructor)
  void operator()(CommitResult r) {
    if (impl_) std::exchange(impl_, nullptr)->call(r);
  }
  explicit operator bool() const { return impl_ != nullptr; }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual void call(CommitResult r) = 0;
  };
  template <class F>
  struct Impl final : Base {
    explicit Impl(F&& f) : fn(std::move(f)) {}
    explicit Impl(const F& f) : fn(f) {}
    void call(CommitResult r) override { fn(r); }
    F fn;
  };
  std::unique_ptr<Base> impl_;
};

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

    // Stores `rec` under `key`, consuming the slot; `done` is called (on any thread, possibly
    // inline) when the record is stored, collided with an existing key (the existing record is
    // kept) or failed. A reservation commits at most once: again, `done` gets Collision.
    void commit_async(std::string key, const protocol::SignatureRecord& rec, CommitCallback done);
    // Blocking form of commit_async (tests, tools; never on an event-loop thread): true if stored.
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
  // Returns once every commit handed over so far has completed (its `done` has been called).
  virtual void flush() {}
  // For logs: "memory", "sqlite:/path".
  virtual std::string describe() const = 0;

 protected:
  virtual bool try_reserve() = 0;
  virtual void release() = 0;
  // Consumes one reserved slot whatever the result; calls `done` exactly once.
  virtual void commit_async(std::string key, const protocol::SignatureRecord& rec, CommitCallback done) = 0;
};

// Records in memory, sharded by key, with a fixed TTL and a hard capacity.
class MemorySignatureStore final : public SignatureStore {
 public:
  MemorySignatureStore(std::size_t capacity, std::chrono::seconds ttl) : capacity_(capacity), ttl_(ttl) {}

  std::optional<protocol::SignatureRecord> get(const std::string& key) override;
  std::size_t size() const override { return live_.load(); }
  std::size_t capacity() const override { return capacity_; }
  std::chrono::seconds retry_after() override;
  std::string describe() const override { return "memory"; }

  void set_clock_for_test(std::function<Clock::time_point()> now) { now_ = std::move(now); }

 protected:
  bool try_reserve() override;
  void release() override;
  void commit_async(std::string key, const protocol::SignatureRecord& rec, CommitCallback done) override;

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
  bool insert(const std::string& key, const protocol::SignatureRecord& rec);

  const std::size_t capacity_;
  const std::chrono::seconds ttl_;
  std::atomic<std::size_t> live_{0};
  std::atomic<std::size_t> reserved_{0};
  Shard shards_[kShards];
  std::function<Clock::time_point()> now_;
};

}  // namespace pi::server
