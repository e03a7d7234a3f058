// The request-body JSON validator (protocol/json_check.hpp), which decides what the proxy forwards to the
// engine. Differential: it must accept exactly what Boost.JSON's strict parser accepts (RFC 8259, valid UTF-8,
// no comments or trailing commas), nesting depth aside (Boost stops at a configured depth; check_json has none).
// Two differences are not findings: RFC 8259 §8.2 lets a \u escape name a lone surrogate (Python's json, which
// the engines use, accepts it; Boost refuses it, so inputs with surrogate escapes are only checked for crashes),
// and Boost refuses numbers beyond double's range.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_support.hpp"
#include "protocol/json_check.hpp"

namespace {

// A \uD800..\uDFFF escape anywhere (a backslash before "u" is enough to be conservative).
bool has_surrogate_escape(std::string_view t) {
  for (std::size_t i = 0; i + 3 < t.size(); ++i)
    if (t[i] == '\\' && t[i + 1] == 'u' && (t[i + 2] == 'd' || t[i + 2] == 'D') &&
        std::string_view("89abcdefABCDEF").find(t[i + 3]) != std::string_view::npos)
      return true;
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = pi::fuzz::as_text(data, size);
  const auto err = pi::protocol::check_json(text);
  const auto obj_err = pi::protocol::check_json_object(text);
  if (err && err->offset > size) __builtin_trap();
  if (obj_err && obj_err->offset > size) __builtin_trap();
  if (has_surrogate_escape(text)) return 0;

  boost::json::parse_options opt;
  opt.max_depth = size + 1;  // deeper than any input can nest
  boost::system::error_code ec;
  boost::json::monotonic_resource mr;
  const auto v = boost::json::parse(text, ec, &mr, opt);
  if (ec) {
    if (ec == boost::json::error::exponent_overflow) return 0;
    if (!err) __builtin_trap();
  } else {
    if (err) __builtin_trap();
    if (v.is_object() != !obj_err) __builtin_trap();
  }
  return 0;
}
