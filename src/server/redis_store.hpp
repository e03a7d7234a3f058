#pragma once
// Signature records in Redis, so that every replica of a fleet can serve every record (docs/operations.md,
// "Signature store"). hiredis (Debian's libhiredis) drives one connection from one thread of its own with an
// Asio event loop (redis_asio.hpp): commands from every worker are pipelined on it, none waits for another's
// reply and no thread is made per request.
//
// A commit is `SET key value PX ttl NX` and completes when Redis has answered it, so once an answer's last
// byte has left, any replica can fetch its record. Keys: "pi:sig:" + the fleet's ECDSA signing address + ":"
// + the owner tag (token digest) + ":" + the id; the value is encode_record(). NX keeps the first record of an
// id, as the other stores do.
//
// When Redis is unreachable (down, refusing, or not answering within command_timeout), the proxy keeps
// answering: a commit that cannot reach Redis is kept in this replica's memory (it is served from there) and
// written to Redis, with its remaining TTL, as soon as the connection is back. A fetch this replica cannot
// answer from memory while Redis is away is "unavailable" (503 + Retry-After, not 404: the record may well
// exist). Each transition is logged once; metrics count errors and unsynced records. Records kept in memory
// are lost if this replica dies before Redis is back (the SQLite store is the choice for a single replica).
//
// Capacity (no live record is evicted; full → 503): each replica counts the records it wrote that are still
// live, plus reservations, against its own --capacity; Redis must hold replicas × capacity records
// (docs/performance.md sizes it).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "server/capacity_ledger.hpp"
#include "server/config.hpp"
#include "server/signature_store.hpp"

namespace pi::server {

struct RedisStoreOptions {
  RedisEndpoint endpoint;
  std::size_t capacity = 100000;
  std::chrono::seconds ttl{1200};
  std::string key_prefix = "pi:sig:";  // the proxy adds the signing address: "pi:sig:0xabc…:"
  std::chrono::milliseconds command_timeout{2000};
  std::chrono::milliseconds connect_wait{3000};  // how long the constructor waits for the first connection
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{2000};
};

class RedisSignatureStore final : public SignatureStore {
 public:
  explicit RedisSignatureStore(RedisStoreOptions o);  // never throws for an unreachable server: it reconnects
  ~RedisSignatureStore() override;                    // completes pending commits first (bounded)
  RedisSignatureStore(const RedisSignatureStore&) = delete;
  RedisSignatureStore& operator=(const RedisSignatureStore&) = delete;

  std::optional<StoredRecord> get(const std::string& key) override;  // blocking (tests, tools)
  void get_async(const std::string& key, GetCallback done) override;
  std::size_t size() const override;
  std::size_t capacity() const override { return opt_.capacity; }
  std::chrono::seconds retry_after() override;
  void flush() override;
  std::string describe() const override { return opt_.endpoint.describe(); }
  StoreHealth health() const override;

  struct Stats {
    std::uint64_t written = 0;       // records Redis acknowledged (SET … NX answered OK)
    std::uint64_t collisions = 0;    // SET … NX answered nil
    std::uint64_t kept_locally = 0;  // commits that could not reach Redis and were kept in memory
    std::uint64_t resynced = 0;      // of those, written to Redis later
    std::uint64_t errors = 0;        // failures: error replies, connections lost or refused, timeouts
    std::uint64_t connects = 0;      // connections made ready (the first one included)
    std::size_t unsynced = 0;        // records in memory waiting for Redis
    bool connected = false;
  };
  Stats stats() const;

 protected:
  bool try_reserve() override;
  void release() override;
  void commit_async(std::string key, const StoredRecord& rec, CommitCallback done) override;

 private:
  struct Impl;
  std::int64_t now_ms() const;

  const RedisStoreOptions opt_;
  mutable CapacityLedger ledger_;
  std::unique_ptr<Impl> impl_;  // runs on the store's own thread
  std::thread thread_;
};

}  // namespace pi::server
