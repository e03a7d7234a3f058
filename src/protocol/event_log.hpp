#pragma once
// The TDX / dstack measurement rule, shared by the verifier (which replays a quote's event log) and
// dev-tee (which builds a simulated log whose replay gives its simulated quote's RTMRs).
//
// Every RTMR starts as 48 zero bytes; each event extends one: rtmr[imr] = SHA384(rtmr[imr] ‖ digest).
// A dstack runtime event (event_type 0x08000001, always RTMR3) has the digest
//   SHA384(u32_le(event_type) ‖ ":" ‖ event name ‖ ":" ‖ payload).
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "crypto/bytes.hpp"
#include "crypto/hash.hpp"

namespace pi::protocol::event_log {

inline constexpr std::uint32_t kDstackRuntimeEventType = 0x08000001;
inline constexpr std::uint32_t kRuntimeEventImr = 3;
inline constexpr std::size_t kRtmrCount = 4;

using Rtmrs = std::array<crypto::Digest48, kRtmrCount>;

// SHA384(u32_le(event_type) ‖ ":" ‖ event ‖ ":" ‖ payload).
crypto::Digest48 runtime_event_digest(std::uint32_t event_type, std::string_view event, ByteView payload);

// rtmr = SHA384(rtmr ‖ digest).
void extend_rtmr(crypto::Digest48& rtmr, const crypto::Digest48& digest);

struct Measurement {
  std::uint32_t imr = 0;  // 0..3
  crypto::Digest48 digest{};
};

// The RTMRs after extending, in order, each measurement into its register (all start at zero).
// Throws std::invalid_argument for an imr outside 0..3.
Rtmrs replay(std::span<const Measurement> measurements);

}  // namespace pi::protocol::event_log
