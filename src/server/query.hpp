#pragma once
// TEMPORARY until protocol/url lands: query parameter access for handlers.
#include <optional>
#include <string>
#include <string_view>

namespace pi::server {
// Value of `key` (first occurrence), percent-decoded; nullopt if absent. Throws HttpErrorException
// (400 invalid_query) when the value has a bad %xx.
std::optional<std::string> query_param(std::string_view query, std::string_view key);
// A path segment, percent-decoded; throws HttpErrorException (400) on a bad %xx.
std::string decode_path_segment(std::string_view s);
}  // namespace pi::server
