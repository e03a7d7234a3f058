#pragma once
// Percent-decoding (RFC 3986 §2.1) and query strings, one strict rule for every component: a '%'
// not followed by two hex digits is an error, never passed through, so callers can answer 400 instead
// of acting on a different string than the client meant.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pi::protocol {

// Decodes every %XX (either case; %00 gives a NUL byte — callers that cannot take one must check).
// `plus_is_space`: '+' means ' ' (form / query encoding); otherwise '+' stays '+' (paths, headers).
// nullopt on a bad (%zz) or truncated (%4, trailing %) escape.
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space);

// One parameter of a query string (the part after '?', without it).
struct QueryParam {
  enum class State { Absent, Present, Undecodable };
  State state = State::Absent;
  std::string value;  // decoded (plus_is_space); empty unless Present. "k" and "k=" are both Present and ""

  bool present() const { return state == State::Present; }
  bool undecodable() const { return state == State::Undecodable; }  // answer 400
};

// The first occurrence of `key` in `query`, matched against each decoded key ("a%5Fb" matches "a_b");
// pairs whose key cannot be decoded match nothing. Undecodable when that occurrence's value has a bad escape.
QueryParam find_query_param(std::string_view query, std::string_view key);

// find_query_param's value when Present; nullopt when Absent or Undecodable.
std::optional<std::string> query_param(std::string_view query, std::string_view key);

// Every key=value pair in order, decoded ("a&&b": empty pairs skipped; "k" gives value "").
// nullopt when any key or value has a bad escape.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_query(std::string_view query);

}  // namespace pi::protocol
