#include "protocol/event_log.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace pi::protocol::event_log {

crypto::Digest48 runtime_event_digest(std::uint32_t event_type, std::string_view event, ByteView payload) {
  Bytes m;
  m.reserve(4 + 1 + event.size() + 1 + payload.size());
  for (int i = 0; i < 4; ++i) m.push_back(static_cast<std::uint8_t>(event_type >> (8 * i)));
  m.push_back(':');
  m.insert(m.end(), event.begin(), event.end());
  m.push_back(':');
  m.insert(m.end(), payload.begin(), payload.end());
  return crypto::sha384(m);
}

void extend_rtmr(crypto::Digest48& rtmr, const crypto::Digest48& digest) {
  std::array<std::uint8_t, 96> m{};
  std::copy(rtmr.begin(), rtmr.end(), m.begin());
  std::copy(digest.begin(), digest.end(), m.begin() + 48);
  rtmr = crypto::sha384(m);
}

Rtmrs replay(std::span<const Measurement> measurements) {
  Rtmrs r{};
  for (const Measurement& m : measurements) {
    if (m.imr >= kRtmrCount) throw std::invalid_argument("RTMR index " + std::to_string(m.imr) + " is not 0..3");
    extend_rtmr(r[m.imr], m.digest);
  }
  return r;
}

}  // namespace pi::protocol::event_log
