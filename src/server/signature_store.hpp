#pragma once
// Where signature records live. The proxy talks to the SignatureStore interface only; the store is
// chosen at start-up (memory for tests, SQLite on a file by default — sqlite_store.hpp; Redis for a
// fleet of replicas — redis_store.hpp), never on the per-token path: the proxy calls it once before
// forwarding (reserve), once when an answer is complete (commit) and when a record is fetched (get).
//
// Sign on demand: a record holds the two hashes, not the signatures. GET /v1/signature/{id} signs
// them when it is asked; ECDSA (RFC 6979 nonces) and Ed25519 are deterministic, so the signature is
// the same bytes whenever, and on whichever replica holding the fleet's keys, it is made.
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
#include "server/metrics.hpp"

namespace pi::server {

// What a store keeps for a signed answer.
struct StoredRecord {
  crypto::Digest32 request_hash{};
  crypto::Digest32 response_hash{};
  std::string instance_id;  // the TEE instance (dstack instance_id) that served the answer; "" unknown
};
inline constexpr std::size_t kMaxInstanceIdBytes = 64;  // longer ids are cut when encoded
// A record's bytes in a durable store: 0x02 ‖ request_hash ‖ response_hash ‖ instance_id.
std::string encode_record(const StoredRecord& r);
// Also reads the first SQLite layout (193 bytes: the hashes, then signatures, which are ignored: the
// store only ever holds records of the current keys, so signing again gives the same bytes).
std::optional<StoredRecord> decode_record(std::string_view bytes);

// How a commit ended.
enum class CommitResult {
  Stored,     // the record is stored (durably, for a durable store)
  Collision,  // the key already had a record; the existing one was kept
  Failed      // the store could not write it (I/O error, disk full): the record does not exist
};

// What a fetch found.
struct GetResult {
  enum class Status {
    Found,
    NotFound,    // no live record under the key
    Unavailable  // the store cannot tell now (Redis unreachable): neither found nor absent
  } status = Status::NotFound;
  StoredRecord record;  // Found
};

// A move-only callable `void(Arg)` (std::function needs copyable targets; the proxy's are Asio
// completion handlers, which are move-only). One allocation per call.
template <class Arg>
class Callback {
 public:
  Callback() = default;
  // NOLINTBEGIN(bugprone-forwarding-reference-overload,google-explicit-constructor): the constraint
  // keeps copies/moves of CommitCallback on the special members; lambdas convert implicitly.
  template <class F>
  requires(!std::is_same_v<std::decay_t<F>, Callback>) Callback(F&& f)
      : impl_(std::make_unique<Impl<std::decay_t<F>>>(std::forward<F>(f))) {}
  // NOLINTEND(bugprone-forwarding-reference-overload,google-explicit-constructor)
  void operator()(Arg r) {
    if (impl_) std::exchange(impl_, nullptr)->call(std::move(r));
  }
  explicit operator bool() const { return impl_ != nullptr; }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual void call(Arg r) = 0;
  };
  template <class F>
  struct Impl final : Base {
    explicit Impl(F&& f) : fn(std::move(f)) {}
    explicit Impl(const F& f) : fn(f) {}
    void call(Arg r) override { fn(std::move(r)); }
    F fn;
  };
  std::unique_ptr<Base> impl_;
};
using CommitCallback = Callback<CommitResult>;
using GetCallback = Callback<GetResult>;

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
    void commit_async(std::string key, const StoredRecord& rec, CommitCallback done);
    // Blocking form of commit_async (tests, tools; never on an event-loop thread): true if stored.
    bool commit(const std::string& key, const StoredRecord& rec);
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
  // The live record under `key` (blocking: a local store answers from memory or its file).
  virtual std::optional<StoredRecord> get(const std::string& key) = 0;
  // The event-loop form: `done` is called (on any thread, possibly inline) with what was found. A
  // networked store (Redis) overrides it; the default answers inline from get().
  virtual void get_async(const std::string& key, GetCallback done) {
    auto r = get(key);
    done(r ? GetResult{GetResult::Status::Found, std::move(*r)} : GetResult{});
  }
  virtual std::size_t size() const = 0;
  virtual std::size_t capacity() const = 0;
  virtual std::chrono::seconds retry_after() = 0;
  // Returns once every commit handed over so far has completed (its `done` has been called).
  virtual void flush() {}
  // For logs: "memory", "sqlite:/path", "redis://host:port".
  virtual std::string describe() const = 0;
  virtual StoreHealth health() const { return {}; }

 protected:
  virtual bool try_reserve() = 0;
  virtual void release() = 0;
  // Consumes one reserved slot whatever the result; calls `done` exactly once.
  virtual void commit_async(std::string key, const StoredRecord& rec, CommitCallback done) = 0;
};

// Records in memory, sharded by key, with a fixed TTL and a hard capacity.
class MemorySignatureStore final : public SignatureStore {
 public:
  MemorySignatureStore(std::size_t capacity, std::chrono::seconds ttl) : capacity_(capacity), ttl_(ttl) {}

  std::optional<StoredRecord> get(const std::string& key) override;
  std::size_t size() const override { return live_.load(); }
  std::size_t capacity() const override { return capacity_; }
  std::chrono::seconds retry_after() override;
  std::string describe() const override { return "memory"; }

  void set_clock_for_test(std::function<Clock::time_point()> now) { now_ = std::move(now); }

 protected:
  bool try_reserve() override;
  void release() override;
  void commit_async(std::string key, const StoredRecord& rec, CommitCallback done) override;

 private:
  static constexpr std::size_t kShards = 16;
  struct Entry {
    StoredRecord rec;
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
  bool insert(const std::string& key, const StoredRecord& rec);

  const std::size_t capacity_;
  const std::chrono::seconds ttl_;
  std::atomic<std::size_t> live_{0};
  std::atomic<std::size_t> reserved_{0};
  Shard shards_[kShards];
  std::function<Clock::time_point()> now_;
};

}  // namespace pi::server
