#pragma once
// Small byte helpers shared by every layer: hex encoding and constant-time compare.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pi {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

inline ByteView as_bytes(std::string_view s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

// Lowercase hex, no prefix.
std::string to_hex(ByteView data);
// Accepts upper/lower case and an optional 0x/0X prefix; nullopt on odd length or bad digit.
std::optional<Bytes> from_hex(std::string_view hex);

// Base64 decoding, standard or URL-safe alphabet, padding optional, ASCII whitespace ignored.
std::optional<Bytes> base64_decode(std::string_view in);
std::string base64url_encode(ByteView in);  // URL-safe alphabet, no padding (JWT/JWK)
std::string base64_encode(ByteView in);     // standard alphabet, padded
// True when `s` is exactly `n` hex digits (no prefix).
bool is_hex_of_length(std::string_view s, std::size_t n);

// Constant-time equality (length is not secret).
bool ct_equal(ByteView a, ByteView b);

}  // namespace pi
