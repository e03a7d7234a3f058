#pragma once
// Ethereum-style ECDSA over secp256k1 (libsecp256k1): keys, addresses, EIP-191 personal_sign
// and public-key recovery.
#include <array>
#include <optional>
#include <string>

#include "crypto/bytes.hpp"
#include "crypto/hash.hpp"

namespace pi::crypto {

using EthAddress = std::array<std::uint8_t, 20>;
using RecoverableSig = std::array<std::uint8_t, 65>;  // r ‖ s ‖ v, v ∈ {27, 28}

// EIP-55 mixed-case checksum encoding, with 0x prefix.
std::string eth_checksum_address(const EthAddress& addr);
// Parses "0x" + 40 hex (any case; checksum not enforced).
std::optional<EthAddress> parse_eth_address(std::string_view s);

// keccak256("\x19Ethereum Signed Message:\n" + decimal(len(message)) + message)
Digest32 eip191_digest(std::string_view message);

class EthSigner {
 public:
  // `secret` must be a valid secp256k1 scalar (32 bytes, 0 < k < n).
  static std::optional<EthSigner> from_secret(ByteView secret);
  static EthSigner random();

  const EthAddress& address() const { return address_; }
  // 64-byte uncompressed public key without the 0x04 prefix (as eth_keys prints it).
  const std::array<std::uint8_t, 64>& public_key() const { return pubkey_; }
  // Signs a 32-byte digest; returns r ‖ s ‖ (27 + recid).
  RecoverableSig sign_digest(const Digest32& digest) const;
  RecoverableSig personal_sign(std::string_view message) const { return sign_digest(eip191_digest(message)); }

 private:
  std::array<std::uint8_t, 32> secret_{};
  std::array<std::uint8_t, 64> pubkey_{};
  EthAddress address_{};
};

// Recovers the signer's address from a 65-byte signature (v = 27/28 or 0/1) over `digest`.
std::optional<EthAddress> eth_recover(const Digest32& digest, ByteView sig65);
inline std::optional<EthAddress> personal_recover(std::string_view message, ByteView sig65) {
  return eth_recover(eip191_digest(message), sig65);
}
// Address of a 64-byte uncompressed public key (no prefix).
EthAddress eth_address_of(ByteView pubkey64);

}  // namespace pi::crypto
