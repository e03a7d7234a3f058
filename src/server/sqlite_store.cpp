#include "server/sqlite_store.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

namespace pi::server {

namespace {

constexpr int kSchemaVersion = 1;
std::string describe_error(sqlite3* db, int rc) {
  std::string m = sqlite3_errstr(rc);
  if (db != nullptr) {
    const char* e = sqlite3_errmsg(db);
    if (e != nullptr && m != e) m += std::string(": ") + e;
  }
  return m;
}

void check(sqlite3* db, int rc, const std::string& path, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    throw StoreError("signature store " + path + ": " + what + ": " + describe_error(db, rc));
}

void exec(sqlite3* db, const char* sql, const std::string& path) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string m = err != nullptr ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw StoreError("signature store " + path + ": " + m);
  }
}

sqlite3_stmt* prepare(sqlite3* db, const char* sql, const std::string& path) {
  sqlite3_stmt* st = nullptr;
  check(db, sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr), path, "prepare");
  return st;
}

// Owns a prepared statement for one use (reset on exit).
struct Use {
  explicit Use(sqlite3_stmt* s) : st(s) {}
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;
  ~Use() {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
  }
  sqlite3_stmt* st;
};

sqlite3* open_db(const std::string& path, int flags) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string m = describe_error(db, rc);
    sqlite3_close(db);
    throw StoreError("signature store " + path + ": cannot open: " + m);
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, 5000);
  return db;
}

}  // namespace

struct SqliteSignatureStore::Reader {
  sqlite3* db = nullptr;
  sqlite3_stmt* get = nullptr;
};

SqliteSignatureStore::SqliteSignatureStore(SqliteStoreOptions o) : opt_(std::move(o)), ledger_(opt_.capacity) {
  if (opt_.path.empty()) throw StoreError("signature store: empty path");
  const std::string lock_path = opt_.path + ".lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0)
    throw StoreError("signature store " + opt_.path + ": cannot create " + lock_path + ": " + std::strerror(errno));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    ::close(lock_fd_);
    throw StoreError("signature store " + opt_.path + ": " +
                     (e == EWOULDBLOCK ? std::string("in use by another process (") + lock_path + " is locked)"
                                       : std::string("cannot lock ") + lock_path + ": " + std::strerror(e)));
  }
  try {
    open_and_load();
  } catch (...) {
    sqlite3_finalize(insert_);
    sqlite3_finalize(purge_);
    sqlite3_close(db_);
    ::close(lock_fd_);
    throw;
  }
  writer_ = std::thread([this] { writer_loop(); });
}

void SqliteSignatureStore::open_and_load() {
  const auto& path = opt_.path;
  db_ = open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  // The first statements read the file: a file that is not a database fails here.
  exec(db_, "PRAGMA journal_mode=WAL", path);
  exec(db_, opt_.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", path);
  exec(db_,
       "CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
       "CREATE TABLE IF NOT EXISTS records(key BLOB PRIMARY KEY, expires_at INTEGER NOT NULL, rec BLOB NOT NULL) "
       "WITHOUT ROWID;"
       "CREATE INDEX IF NOT EXISTS records_by_expiry ON records(expires_at);",
       path);
  auto meta = [&](const char* name) -> std::optional<std::string> {
    sqlite3_stmt* st = prepare(db_, "SELECT value FROM meta WHERE name=?1", path);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    std::optional<std::string> v;
    const int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) v = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    check(db_, rc, path, "read meta");
    return v;
  };
  auto set_meta = [&](const char* name, const std::string& value) {
    sqlite3_stmt* st = prepare(db_, "INSERT OR REPLACE INTO meta(name, value) VALUES(?1, ?2)", path);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value.c_str(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    check(db_, rc, path, "write meta");
  };
  if (auto v = meta("schema"); v && *v != std::to_string(kSchemaVersion))
    throw StoreError("signature store " + path + ": schema version " + *v + " (this build reads " +
                     std::to_string(kSchemaVersion) + ")");
  set_meta("schema", std::to_string(kSchemaVersion));
  if (auto v = meta("signer"); v && *v != opt_.signer) {
    exec(db_, "DELETE FROM records", path);
    stats_.discarded_at_open = static_cast<std::uint64_t>(sqlite3_changes64(db_));
    if (stats_.discarded_at_open > 0)
      spdlog::warn(
          "signature store {}: {} record(s) signed by other keys ({}) deleted: they cannot be served with this "
          "proxy's signing addresses",
          path, stats_.discarded_at_open, *v);
  }
  set_meta("signer", opt_.signer);

  // Live records per expiry second, for the capacity.
  sqlite3_stmt* st = prepare(db_,
                             "SELECT (expires_at + 999) / 1000, count(*) FROM records WHERE expires_at > ?1 "
                             "GROUP BY 1 ORDER BY 1",
                             path);
  sqlite3_bind_int64(st, 1, now_ms());
  int rc = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    ledger_.add_live(sqlite3_column_int64(st, 0) * 1000, static_cast<std::size_t>(sqlite3_column_int64(st, 1)));
  }
  sqlite3_finalize(st);
  check(db_, rc, path, "count records");
  insert_ = prepare(db_, "INSERT OR IGNORE INTO records(key, expires_at, rec) VALUES(?1, ?2, ?3)", path);
  purge_ = prepare(db_, "DELETE FROM records WHERE expires_at <= ?1", path);
  purge_expired();
  spdlog::info("signature store {}: {} live record(s), capacity {}, TTL {} s, synchronous={}", path,
               ledger_.live(now_ms()), opt_.capacity, opt_.ttl.count(), opt_.synchronous_full ? "FULL" : "NORMAL");
}

SqliteSignatureStore::~SqliteSignatureStore() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  for (auto* r : all_readers_) {
    sqlite3_finalize(r->get);
    sqlite3_close(r->db);
    delete r;  // NOLINT(cppcoreguidelines-owning-memory): owned by all_readers_
  }
  sqlite3_finalize(insert_);
  sqlite3_finalize(purge_);
  sqlite3_close(db_);  // the last connection: checkpoints the WAL into the file
  ::close(lock_fd_);
}

std::int64_t SqliteSignatureStore::now_ms() const {
  const auto t = opt_.clock ? opt_.clock() : WallClock::now();
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

bool SqliteSignatureStore::try_reserve() { return ledger_.try_reserve(now_ms()); }

void SqliteSignatureStore::release() { ledger_.release(); }

std::size_t SqliteSignatureStore::size() const { return ledger_.live(now_ms()); }

std::chrono::seconds SqliteSignatureStore::retry_after() { return ledger_.retry_after(now_ms()); }

void SqliteSignatureStore::commit_async(std::string key, const StoredRecord& rec, CommitCallback done) {
  {
    std::lock_guard lk(mu_);
    queue_.push_back(Pending{std::move(key), rec, std::move(done)});
  }
  cv_.notify_one();
}

void SqliteSignatureStore::writer_loop() {
  std::vector<Pending> batch;
  auto next_purge = std::chrono::steady_clock::now() + opt_.purge_interval;
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait_until(lk, next_purge, [&] { return stop_ || purge_requested_ || !queue_.empty(); });
    const bool purge_due = purge_requested_ || std::chrono::steady_clock::now() >= next_purge;
    if (queue_.empty() && !purge_due) {
      if (stop_) break;
      continue;
    }
    batch.swap(queue_);  // both keep their capacity: no allocation once warm
    const bool requested = std::exchange(purge_requested_, false);
    writing_ = true;
    lk.unlock();
    if (!batch.empty()) write_batch(batch);
    if (purge_due) {
      purge_expired();
      next_purge = std::chrono::steady_clock::now() + opt_.purge_interval;
    }
    batch.clear();
    lk.lock();
    writing_ = false;
    if (requested) ++purge_done_;
    idle_cv_.notify_all();
  }
}

void SqliteSignatureStore::write_batch(std::vector<Pending>& batch) {
  const auto now = now_ms();
  const auto expires = now + std::chrono::duration_cast<std::chrono::milliseconds>(opt_.ttl).count();
  std::vector<CommitResult> results(batch.size(), CommitResult::Failed);
  std::string error;
  int rc = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK) {
    for (std::size_t i = 0; i < batch.size() && error.empty(); ++i) {
      Use u(insert_);
      const auto blob = encode_record(batch[i].rec);
      sqlite3_bind_blob(insert_, 1, batch[i].key.data(), static_cast<int>(batch[i].key.size()), SQLITE_STATIC);
      sqlite3_bind_int64(insert_, 2, expires);
      sqlite3_bind_blob(insert_, 3, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
      rc = sqlite3_step(insert_);
      if (rc == SQLITE_DONE)
        results[i] = sqlite3_changes(db_) == 1 ? CommitResult::Stored : CommitResult::Collision;
      else
        error = describe_error(db_, rc);
    }
    if (error.empty()) {
      rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
      if (rc != SQLITE_OK) error = describe_error(db_, rc);
    }
    if (!error.empty()) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  } else {
    error = describe_error(db_, rc);
  }
  std::size_t stored = 0;
  if (!error.empty()) {
    std::fill(results.begin(), results.end(), CommitResult::Failed);
    spdlog::error("signature store {}: writing {} record(s) failed: {}", opt_.path, batch.size(), error);
  } else {
    stored = static_cast<std::size_t>(std::count(results.begin(), results.end(), CommitResult::Stored));
  }
  ledger_.settle(batch.size(), stored, expires);
  {
    std::lock_guard lk(mu_);
    if (error.empty()) {
      stats_.transactions++;
      stats_.records += batch.size();
    } else {
      stats_.failed += batch.size();
    }
  }
  for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(results[i]);
}

void SqliteSignatureStore::purge_expired() {
  Use u(purge_);
  sqlite3_bind_int64(purge_, 1, now_ms());
  const int rc = sqlite3_step(purge_);
  if (rc != SQLITE_DONE) {
    spdlog::warn("signature store {}: purging expired records failed: {}", opt_.path, describe_error(db_, rc));
    return;
  }
  const auto n = static_cast<std::uint64_t>(sqlite3_changes64(db_));
  std::lock_guard lk(mu_);
  stats_.purged += n;
}

void SqliteSignatureStore::purge_now() {
  std::unique_lock lk(mu_);
  const auto target = purge_done_ + 1;
  purge_requested_ = true;
  cv_.notify_all();
  idle_cv_.wait(lk, [&] { return purge_done_ >= target; });
}

void SqliteSignatureStore::flush() {
  std::unique_lock lk(mu_);
  idle_cv_.wait(lk, [&] { return queue_.empty() && !writing_; });
}

SqliteSignatureStore::Stats SqliteSignatureStore::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

SqliteSignatureStore::Reader* SqliteSignatureStore::take_reader() {
  {
    std::lock_guard lk(readers_mu_);
    if (!readers_.empty()) {
      auto* r = readers_.back();
      readers_.pop_back();
      return r;
    }
  }
  auto* db = open_db(opt_.path, SQLITE_OPEN_READONLY);
  sqlite3_stmt* st = nullptr;
  try {
    st = prepare(db, "SELECT rec FROM records WHERE key=?1 AND expires_at>?2", opt_.path);
  } catch (...) {
    sqlite3_close(db);
    throw;
  }
  auto* r = new Reader{db, st};  // NOLINT(cppcoreguidelines-owning-memory): owned by all_readers_
  std::lock_guard lk(readers_mu_);
  all_readers_.push_back(r);
  return r;
}

void SqliteSignatureStore::give_reader(Reader* r) {
  std::lock_guard lk(readers_mu_);
  readers_.push_back(r);
}

std::optional<StoredRecord> SqliteSignatureStore::get(const std::string& key) {
  Reader* r = nullptr;
  try {
    r = take_reader();
  } catch (const StoreError& e) {
    spdlog::error("{}", e.what());
    return std::nullopt;
  }
  std::optional<StoredRecord> out;
  {
    Use u(r->get);
    sqlite3_bind_blob(r->get, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_int64(r->get, 2, now_ms());
    const int rc = sqlite3_step(r->get);
    if (rc == SQLITE_ROW)
      out = decode_record({static_cast<const char*>(sqlite3_column_blob(r->get, 0)),
                           static_cast<std::size_t>(sqlite3_column_bytes(r->get, 0))});
    else if (rc != SQLITE_DONE)
      spdlog::error("signature store {}: reading a record failed: {}", opt_.path, describe_error(r->db, rc));
  }
  give_reader(r);
  return out;
}

}  // namespace pi::server
