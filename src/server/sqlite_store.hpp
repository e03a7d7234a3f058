#pragma once
// Signature records in an SQLite file (WAL), so that they survive a restart or a crash of the proxy.
//
// Durability: a commit completes (its callback runs) only after the transaction holding the record
// has committed — with synchronous=FULL (the default) after the WAL has been fsynced, so the record
// survives a process crash and a power loss; with synchronous=NORMAL it survives a process crash
// (the WAL is in the kernel's page cache) but the last transactions may be lost on power loss.
// Group commit: one writer thread takes every commit that is pending when it is free and writes
// them in one transaction (one fsync), so concurrent commits share an fsync and no event-loop
// thread ever waits for the disk.
//
// Capacity and TTL are those of the memory store: reservations are counted in memory; live
// records are counted in memory per expiry second (loaded from the file at open), so reserve()
// never touches the file. Expiry is wall-clock time (system_clock, milliseconds since the epoch)
// in the file, because a steady clock does not survive a restart. get() never returns an expired
// record; expired rows are deleted by the writer thread every purge_interval.
//
// One process per file: the store holds an exclusive lock on PATH.lock (a second proxy on the same
// file is refused at start-up rather than miscounting the capacity).
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "server/capacity_ledger.hpp"
#include "server/signature_store.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace pi::server {

// The store cannot be opened or used (bad path, not a database, unwritable, locked by another process).
class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SqliteStoreOptions {
  std::string path;
  std::size_t capacity = 100000;
  std::chrono::seconds ttl{1200};
  // Who signed the records (the signing addresses): records are served with the current identity's
  // addresses, so records another identity signed are deleted at open (and counted in the log).
  std::string signer;
  bool synchronous_full = true;  // false: synchronous=NORMAL (see above)
  std::chrono::milliseconds purge_interval{std::chrono::seconds(10)};
  // The wall clock used for expiry (tests replace it; must be thread-safe). Empty: system_clock.
  std::function<std::chrono::system_clock::time_point()> clock;
};

class SqliteSignatureStore final : public SignatureStore {
 public:
  using WallClock = std::chrono::system_clock;

  explicit SqliteSignatureStore(SqliteStoreOptions o);  // throws StoreError
  ~SqliteSignatureStore() override;                     // completes pending commits first
  SqliteSignatureStore(const SqliteSignatureStore&) = delete;
  SqliteSignatureStore& operator=(const SqliteSignatureStore&) = delete;

  std::optional<StoredRecord> get(const std::string& key) override;
  std::size_t size() const override;
  std::size_t capacity() const override { return opt_.capacity; }
  std::chrono::seconds retry_after() override;
  void flush() override;
  std::string describe() const override { return "sqlite:" + opt_.path; }

  struct Stats {
    std::uint64_t transactions = 0;       // commit transactions written (each one fsync with FULL)
    std::uint64_t records = 0;            // commits written in them
    std::uint64_t purged = 0;             // expired rows deleted
    std::uint64_t failed = 0;             // commits that failed
    std::uint64_t discarded_at_open = 0;  // rows of another signer deleted at open
  };
  Stats stats() const;
  // Deletes expired rows now (on the writer thread) and waits for it.
  void purge_now();

 protected:
  bool try_reserve() override;
  void release() override;
  void commit_async(std::string key, const StoredRecord& rec, CommitCallback done) override;

 private:
  struct Pending {
    std::string key;
    StoredRecord rec;
    CommitCallback done;
  };
  struct Reader;

  std::int64_t now_ms() const;
  void open_and_load();
  void writer_loop();
  void write_batch(std::vector<Pending>& batch);
  void purge_expired();
  Reader* take_reader();
  void give_reader(Reader* r);

  const SqliteStoreOptions opt_;
  int lock_fd_ = -1;
  sqlite3* db_ = nullptr;  // the writer's connection (writer thread only after open)
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* purge_ = nullptr;

  mutable CapacityLedger ledger_;  // reserve/commit/size/retry_after

  // The writer's queue.
  mutable std::mutex mu_;
  std::condition_variable cv_;       // the writer waits for work
  std::condition_variable idle_cv_;  // flush() waits for the writer
  std::vector<Pending> queue_;
  bool writing_ = false;
  bool stop_ = false;
  bool purge_requested_ = false;
  std::uint64_t purge_done_ = 0;
  Stats stats_;

  std::mutex readers_mu_;
  std::vector<Reader*> readers_;  // idle read connections
  std::vector<Reader*> all_readers_;

  std::thread writer_;
};

}  // namespace pi::server
