#pragma once
// Ed25519 (RFC 8032) through OpenSSL.
#include <array>
#include <optional>

#include "crypto/bytes.hpp"

struct evp_pkey_st;

namespace pi::crypto {

using Ed25519Sig = std::array<std::uint8_t, 64>;
using Ed25519Pub = std::array<std::uint8_t, 32>;

class Ed25519Signer {
 public:
  static std::optional<Ed25519Signer> from_seed(ByteView seed32);
  static Ed25519Signer random();
  ~Ed25519Signer();
  Ed25519Signer(Ed25519Signer&&) noexcept;
  Ed25519Signer& operator=(Ed25519Signer&&) noexcept;
  Ed25519Signer(const Ed25519Signer&) = delete;
  Ed25519Signer& operator=(const Ed25519Signer&) = delete;

  const Ed25519Pub& public_key() const { return pub_; }
  Ed25519Sig sign(ByteView message) const;

 private:
  Ed25519Signer() = default;
  evp_pkey_st* key_ = nullptr;
  Ed25519Pub pub_{};
};

bool ed25519_verify(ByteView pubkey32, ByteView message, ByteView sig64);

}  // namespace pi::crypto
