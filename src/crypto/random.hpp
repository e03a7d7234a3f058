#pragma once
#include "crypto/bytes.hpp"

namespace pi::crypto {
// Cryptographically secure random bytes (OpenSSL DRBG); throws on failure.
void random_fill(std::span<std::uint8_t> out);
Bytes random_bytes(std::size_t n);
}  // namespace pi::crypto
