#include "server/signature_store.hpp"

#include <future>

namespace pi::server {

void SignatureStore::Reservation::commit_async(std::string key, const protocol::SignatureRecord& rec,
                                               CommitCallback done) {
  if (store_ == nullptr) {
    done(CommitResult::Collision);
    return;
  }
  // The store's commit consumes the slot whatever the result.
  std::exchange(store_, nullptr)->commit_async(std::move(key), rec, std::move(done));
}

bool SignatureStore::Reservation::commit(const std::string& key, const protocol::SignatureRecord& rec) {
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

void MemorySignatureStore::commit_async(std::string key, const protocol::SignatureRecord& rec, CommitCallback done) {
  done(insert(key, rec) ? CommitResult::Stored : CommitResult::Collision);
}

bool MemorySignatureStore::insert(const std::string& key, const protocol::SignatureRecord& rec) {
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

std::optional<protocol::SignatureRecord> MemorySignatureStore::get(const std::string& key) {
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
