// Event logs as a verifier receives them (the "event_log" of an attestation report: a JSON array, a JSON string
// holding one, or a Python literal; verify/event_log.hpp, verify/encoding.hpp, protocol/event_log.hpp): lenient
// decoding, parsing into events, replay into RTMRs, and the payload lookups the code checks use.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "fuzz_support.hpp"
#include "protocol/event_log.hpp"
#include "protocol/report.hpp"
#include "verify/encoding.hpp"
#include "verify/event_log.hpp"

namespace {

void check_log(const boost::json::value& log) {
  std::vector<pi::verify::Event> events;
  try {
    events = pi::verify::parse_event_log(log);
  } catch (const std::runtime_error&) {  // documented: names the bad entry
    return;
  }
  const auto replay = pi::verify::replay_event_log(events);
  // Events that cannot be replayed are skipped with a problem; a stripped digest is one that was recomputed.
  if (replay.events > events.size() || replay.recomputed > replay.events || replay.stripped > replay.recomputed)
    __builtin_trap();
  for (const char* name : {"compose-hash", "app-id", "instance-id", "key-provider", "os-image-hash"}) {
    (void)pi::verify::runtime_event_payload(events, name, false);
    (void)pi::verify::runtime_event_payload(events, name, true);
  }
  std::vector<pi::protocol::event_log::Measurement> ms;
  for (const auto& e : events) {
    pi::protocol::event_log::Measurement m;
    m.imr = e.imr;
    if (e.digest.size() == m.digest.size()) std::copy(e.digest.begin(), e.digest.end(), m.digest.begin());
    ms.push_back(m);
  }
  try {
    (void)pi::protocol::event_log::replay(ms);
  } catch (const std::invalid_argument&) {  // documented: imr outside 0..3
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = pi::fuzz::as_text(data, size);
  // What the proxy stores for an agent's log text, then what the verifier makes of it.
  const auto stored = pi::protocol::AttestationReport::event_log_from_text(text);
  try {
    check_log(pi::verify::decode_lenient(stored).value);
  } catch (const pi::verify::DecodeError&) {
  }
  try {
    check_log(pi::verify::parse_python_literal(text));
  } catch (const pi::verify::DecodeError&) {
  }
  return 0;
}
