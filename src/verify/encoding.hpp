#pragma once
// Lenient decoding of the fields attestation reports carry in the wild:
//   event_log / info / tcb_info: a JSON value, a JSON string holding JSON, or a Python-literal
//   string (single quotes, True/False/None) as printed by Python services;
//   quotes: hex with or without 0x (surrounding whitespace ignored).
// Each decoder says which form it saw so the verifier can report it as a fact.
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <boost/json.hpp>

#include "crypto/bytes.hpp"

namespace pi::verify {

struct DecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Decoded {
  boost::json::value value;
  std::string form;  // "json" (already a JSON value), "json-string", "python-literal-string", "null"
};

// Accepts a JSON value: objects/arrays pass through; a string is parsed as JSON, else as a Python
// literal. Throws DecodeError when a string is neither.
Decoded decode_lenient(const boost::json::value& v);

// Python literal (dict/list/tuple/str/int/float/True/False/None) to JSON. Throws DecodeError.
boost::json::value parse_python_literal(std::string_view text);

struct DecodedHex {
  Bytes bytes;
  std::string form;  // "hex" or "0x-hex"
};
// Throws DecodeError on odd length / bad digit / empty.
DecodedHex decode_hex_field(std::string_view text);

}  // namespace pi::verify
