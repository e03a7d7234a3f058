#include "server/limits.hpp"

namespace pi::server {

std::optional<AttestationLimiter::Slot> AttestationLimiter::try_acquire(const std::string& client) {
  std::lock_guard lk(mu_);
  auto& mine = by_client_[client];
  if (in_flight_ >= total_ || mine >= per_client_) {
    if (mine == 0) by_client_.erase(client);
    return std::nullopt;
  }
  ++mine;
  ++in_flight_;
  return Slot(this, client);
}

void AttestationLimiter::release(const std::string& client) {
  std::lock_guard lk(mu_);
  --in_flight_;
  if (auto it = by_client_.find(client); it != by_client_.end() && --it->second == 0) by_client_.erase(it);
}

std::size_t AttestationLimiter::in_flight() const {
  std::lock_guard lk(mu_);
  return in_flight_;
}

}  // namespace pi::server
