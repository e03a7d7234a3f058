#include "server/signature_store.hpp"

#include <cstring>
#include <future>

namespace pi::server {

namespace {
constexpr unsigned char kRecordFormat = 0x02;
constexpr std::size_t kLegacySqliteRecordBytes = 32 + 32 + 65 + 64;
}  // namespace

std::string encode_record(const StoredRecord& r) {
  const auto id = std::string_view(r.instance_id).substr(0, kMaxInstanceIdBytes);
  std::string b;
  b.reserve(1 + 64 + id.size());
  b.push_back(static_cast<char>(kRecordFormat));
  b.append(reinterpret_cast<const char*>(r.request_hash.data()), r.request_hash.size());
  b.append(reinterpret_cast<const char*>(r.response_hash.data()), r.response_hash.size());
  b.append(id);
  return b;
}

std::optional<StoredRecord> decode_record(std::string_view b) {
  StoredRecord r;
  std::string_view hashes;
  if (b.size() == kLegacySqliteRecordBytes) {
    hashes = b.substr(0, 64);
  } else if (b.size() >= 65 && b.size() <= 65 + kMaxInstanceIdBytes &&
             static_cast<unsigned char>(b[0]) == kRecordFormat) {
    hashes = b.substr(1, 64);
    r.instance_id = std::string(b.substr(65));
  } else {
    return std::nullopt;
  }
  std::memcpy(r.request_hash.data(), hashes.data(), 32);
  std::memcpy(r.response_hash.data(), hashes.data() + 32, 32);
  return r;
}

void SignatureStore::Reservation::commit_async(std::string key, const StoredRecord& rec, CommitCallback done) {
  if (store_ == nullptr) {
    done(CommitResult::Collision);
    return;
  }
  // The store's commit consumes the slot whatever the result.
  std::exchange(store_, nullptr)->commit_async(std::move(key), rec, std::move(done));
}

bool SignatureStore::Reservation::commit(const std::string& key, const StoredRecord& rec) {
  std::promise<CommitResult> p;
  auto f = p.get_future();
  commit_async(key, rec, [&p](CommitResult r) { p.set_value(r); });
  return f.get() == CommitResult::Stored;
}

void MemorySignatureStore::purge_locked(Shard& s, Clock::time_point t) {
  while (!s.order.empty() && s.order.front().first <= t) {
    auto it = s.map.find(s.order.front().second);
    if (it != s.map.end() && it->second.expires <= t) {
      s.map.erase(it);
      live_.fetch_sub(1);
    }
    s.order.pop_front();
  }
}

void MemorySignatureStore::purge_all() {
  const auto t = now();
  for (auto& s : shards_) {
    std::lock_guard lk(s.mu);
    purge_locked(s, t);
  }
}

bool MemorySignatureStore::try_reserve() {
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::size_t r = reserved_.fetch_add(1) + 1;
    if (live_.load() + r <= capacity_) return true;
    reserved_.fetch_sub(1);
    if (attempt == 0) purge_all();
  }
  return false;
}

void MemorySignatureStore::release() { reserved_.fetch_sub(1); }

void MemorySignatureStore::commit_async(std::string key, const StoredRecord& rec, CommitCallback done) {
  done(insert(key, rec) ? CommitResult::Stored : CommitResult::Collision);
}

bool MemorySignatureStore::insert(const std::string& key, const StoredRecord& rec) {
  auto& s = shard_for(key);
  const auto t = now();
  bool inserted = false;
  {
    std::lock_guard lk(s.mu);
    purge_locked(s, t);
    auto [it, ok] = s.map.try_emplace(key, Entry{rec, t + ttl_});
    if (ok) {
      s.order.emplace_back(it->second.expires, key);
      live_.fetch_add(1);
      inserted = true;
    }
  }
  reserved_.fetch_sub(1);
  return inserted;
}

std::optional<StoredRecord> MemorySignatureStore::get(const std::string& key) {
  auto& s = shard_for(key);
  const auto t = now();
  std::lock_guard lk(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end() || it->second.expires <= t) return std::nullopt;
  return it->second.rec;
}

std::chrono::seconds MemorySignatureStore::retry_after() {
  const auto t = now();
  auto oldest = Clock::time_point::max();
  for (auto& s : shards_) {
    std::lock_guard lk(s.mu);
    if (!s.order.empty()) oldest = std::min(oldest, s.order.front().first);
  }
  if (oldest == Clock::time_point::max() || oldest <= t) return std::chrono::seconds(1);
  return std::chrono::duration_cast<std::chrono::seconds>(oldest - t) + std::chrono::seconds(1);
}

}  // namespace pi::server
