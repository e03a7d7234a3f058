#include "verify/event_log.hpp"

#include <charconv>
#include <stdexcept>

#include <fmt/format.h>

namespace pi::verify {
namespace {

namespace json = boost::json;

std::uint32_t as_u32(const json::object& e, std::string_view key, std::size_t index) {
  auto it = e.find(key);
  if (it == e.end()) throw std::runtime_error(fmt::format("event_log[{}] has no '{}'", index, key));
  const auto& v = it->value();
  if (v.is_int64() && v.get_int64() >= 0 && v.get_int64() <= 0xffffffffLL)
    return static_cast<std::uint32_t>(v.get_int64());
  if (v.is_uint64() && v.get_uint64() <= 0xffffffffULL) return static_cast<std::uint32_t>(v.get_uint64());
  if (v.is_string()) {
    std::string_view s = v.get_string();
    std::uint32_t out = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec == std::errc() && p == s.data() + s.size() && !s.empty()) return out;
  }
  throw std::runtime_error(fmt::format("event_log[{}].{} is not a 32-bit unsigned number", index, key));
}

Bytes as_hex(const json::object& e, std::string_view key, std::size_t index) {
  auto it = e.find(key);
  if (it == e.end() || it->value().is_null()) return {};
  if (!it->value().is_string()) throw std::runtime_error(fmt::format("event_log[{}].{} is not a string", index, key));
  std::string_view s = it->value().get_string();
  if (s.empty()) return {};
  auto b = from_hex(s);
  if (!b) throw std::runtime_error(fmt::format("event_log[{}].{} is not hex", index, key));
  return *b;
}

}  // namespace

std::vector<Event> parse_event_log(const json::value& log) {
  if (!log.is_array()) throw std::runtime_error("event log is not a JSON array");
  std::vector<Event> out;
  std::size_t i = 0;
  for (const auto& item : log.get_array()) {
    if (!item.is_object()) throw std::runtime_error(fmt::format("event_log[{}] is not an object", i));
    const auto& o = item.get_object();
    Event e;
    e.imr = as_u32(o, "imr", i);
    if (e.imr > 3) throw std::runtime_error(fmt::format("event_log[{}].imr {} is not 0..3", i, e.imr));
    e.event_type = as_u32(o, "event_type", i);
    e.digest = as_hex(o, "digest", i);
    if (!e.digest.empty() && e.digest.size() != 48)
      throw std::runtime_error(fmt::format("event_log[{}].digest is {} bytes, not 48 (SHA-384)", i, e.digest.size()));
    if (auto it = o.find("event"); it != o.end() && it->value().is_string())
      e.event = std::string(it->value().get_string());
    e.payload = as_hex(o, "event_payload", i);
    out.push_back(std::move(e));
    ++i;
  }
  return out;
}

Replay replay_event_log(const std::vector<Event>& events) {
  Replay r;
  for (std::size_t i = 0; i < events.size(); ++i) {
    const Event& e = events[i];
    if (e.imr >= r.rtmr.size()) {
      r.problems.push_back(fmt::format("event_log[{}] '{}': imr {} is not 0..3", i, e.event, e.imr));
      continue;
    }
    crypto::Digest48 d{};
    if (e.event_type == kDstackRuntimeEventType) {
      d = protocol::event_log::runtime_event_digest(e.event_type, e.event, e.payload);
      ++r.recomputed;
      if (e.digest.empty()) {
        ++r.stripped;
      } else if (e.digest.size() != d.size() || !std::equal(d.begin(), d.end(), e.digest.begin())) {
        r.problems.push_back(fmt::format("event_log[{}] '{}': logged digest does not match its content", i, e.event));
      }
    } else {
      if (e.digest.empty()) {
        r.problems.push_back(
            fmt::format("event_log[{}] (type 0x{:08x}, imr {}) has no digest", i, e.event_type, e.imr));
        continue;
      }
      if (e.digest.size() != d.size()) {
        r.problems.push_back(fmt::format("event_log[{}] (type 0x{:08x}, imr {}): digest is {} bytes, not 48", i,
                                         e.event_type, e.imr, e.digest.size()));
        continue;
      }
      std::copy(e.digest.begin(), e.digest.end(), d.begin());
    }
    protocol::event_log::extend_rtmr(r.rtmr[e.imr], d);
    ++r.events;
  }
  return r;
}

std::optional<std::string> runtime_event_payload(const std::vector<Event>& events, std::string_view name, bool hex) {
  std::optional<std::string> out;
  for (const auto& e : events)
    if (e.event_type == kDstackRuntimeEventType && e.event == name)
      out = hex ? to_hex(e.payload) : std::string(e.payload.begin(), e.payload.end());
  return out;
}

}  // namespace pi::verify
