#pragma once
// SHA-2 (OpenSSL) and Keccak-256 (Crypto++), one-shot and incremental.
#include <array>
#include <memory>

#include "crypto/bytes.hpp"

struct evp_md_ctx_st;

namespace pi::crypto {

using Digest32 = std::array<std::uint8_t, 32>;
using Digest48 = std::array<std::uint8_t, 48>;

// Incremental SHA-256: feed the exact bytes as they pass, never buffering them.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(ByteView data);
  void update(std::string_view data) { update(as_bytes(data)); }
  // Finishes the hash; the object must not be updated afterwards.
  Digest32 finish();

 private:
  evp_md_ctx_st* ctx_;
};

Digest32 sha256(ByteView data);
inline Digest32 sha256(std::string_view data) { return sha256(as_bytes(data)); }
Digest48 sha384(ByteView data);
Digest32 keccak256(ByteView data);
inline Digest32 keccak256(std::string_view data) { return keccak256(as_bytes(data)); }

}  // namespace pi::crypto
