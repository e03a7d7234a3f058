#pragma once
// Query parameters and path ids for handlers, decoded by protocol/url's one rule; a bad %xx becomes an
// HttpError (400) that the session renders.
#include <optional>
#include <string>
#include <string_view>

namespace pi::server {
// Value of `key` (first occurrence), decoded; nullopt if absent. Throws HttpErrorException
// (400 invalid_query) when the value has a bad %xx.
std::optional<std::string> query_param(std::string_view query, std::string_view key);
// A path segment, decoded ('+' stays '+'); throws HttpErrorException (400 invalid_path) on a bad %xx.
std::string decode_path_segment(std::string_view s);
}  // namespace pi::server
