#pragma once
// dstack / TDX event-log parsing and replay, by the rule in protocol/event_log.hpp.
//
// The digest of a dstack runtime event is always recomputed from its content, never trusted:
// the newer "stripped" logs leave these digests empty, full logs must carry the recomputed value.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "crypto/bytes.hpp"
#include "crypto/hash.hpp"
#include "protocol/event_log.hpp"

namespace pi::verify {

using protocol::event_log::kDstackRuntimeEventType;

struct Event {
  std::uint32_t imr = 0;
  std::uint32_t event_type = 0;
  Bytes digest;  // empty when stripped
  std::string event;
  Bytes payload;
};

// Accepts the JSON array form (imr / event_type as numbers or decimal strings; digest and
// event_payload hex). Throws std::runtime_error naming the bad entry.
std::vector<Event> parse_event_log(const boost::json::value& log);

struct Replay {
  std::array<crypto::Digest48, 4> rtmr{};
  std::size_t events = 0;
  std::size_t recomputed = 0;         // runtime events whose digest was recomputed
  std::size_t stripped = 0;           // of those, how many had an empty digest in the log
  std::vector<std::string> problems;  // e.g. a runtime event whose logged digest ≠ its content
};

Replay replay_event_log(const std::vector<Event>& events);

// The payload of the last runtime event with this name, as text (dstack payloads are UTF-8 or
// raw hashes; `as_hex` returns the hex form instead).
std::optional<std::string> runtime_event_payload(const std::vector<Event>& events, std::string_view name, bool as_hex);

}  // namespace pi::verify
