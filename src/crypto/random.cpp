#include "crypto/random.hpp"

#include <openssl/rand.h>

#include <stdexcept>

namespace pi::crypto {
void random_fill(std::span<std::uint8_t> out) {
  if (!out.empty() && RAND_bytes(out.data(), static_cast<int>(out.size())) != 1)
    throw std::runtime_error("RAND_bytes failed");
}
Bytes random_bytes(std::size_t n) {
  Bytes b(n);
  random_fill(b);
  return b;
}
}  // namespace pi::crypto
