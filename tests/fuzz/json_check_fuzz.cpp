// The request-body JSON validator (protocol/json_check.hpp), which decides what the proxy forwards to the
// engine. Differential: it must accept exactly what Boost.JSON's strict parser accepts (RFC 8259, valid UTF-8,
// no comments or trailing commas), nesting depth aside (Boost stops at a configured depth; check_json has none).
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "protocol/json_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = pi::fuzz::as_text(data, size);
  const auto err = pi::protocol::check_json(text);
  const auto obj_err = pi::protocol::check_json_object(text);
  if (err && err->offset > size) __builtin_trap();
  if (obj_err && obj_err->offset > size) __builtin_trap();

  boost::json::parse_options opt;
  opt.max_depth = size + 1;  // deeper than any input can nest
  boost::system::error_code ec;
  boost::json::monotonic_resource mr;
  const auto v = boost::json::parse(text, ec, &mr, opt);
  if (ec) {
    // Boost rejects numbers out of double's range only where check_json accepts them as JSON text.
    if (ec == boost::json::error::exponent_overflow) return 0;
    if (!err) __builtin_trap();
  } else {
    if (err) __builtin_trap();
    if (v.is_object() != !obj_err) __builtin_trap();
  }
  return 0;
}
