#pragma once
// Validation of request bodies as JSON (RFC 8259) without building a document and without recursion:
// nesting is tracked in a bit stack (one bit per level), so no depth that fits in the body limit can
// exhaust the stack, and no real schema (structured output, tools) hits a depth limit. Strings must be
// valid UTF-8 (as Python's json, which OpenAI-compatible engines use, requires); NaN/Infinity and
// comments are not JSON and are refused.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace pi::protocol {

struct JsonSyntaxError {
  std::size_t offset = 0;  // byte offset of the problem
  std::string message;
};

// nullopt: `text` is exactly one JSON value (surrounded by optional whitespace).
std::optional<JsonSyntaxError> check_json(std::string_view text);

// nullopt: `text` is one JSON value and it is an object.
std::optional<JsonSyntaxError> check_json_object(std::string_view text);

}  // namespace pi::protocol
