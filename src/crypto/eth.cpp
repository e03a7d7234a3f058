#include "crypto/eth.hpp"

#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <cctype>
#include <cstring>
#include <stdexcept>

#include "crypto/random.hpp"

namespace pi::crypto {

namespace {
// One context for signing and verification; libsecp256k1 contexts are thread-safe for
// const use after creation.
const secp256k1_context* ctx() {
  static secp256k1_context* c = [] {
    secp256k1_context* p = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    std::array<std::uint8_t, 32> seed{};
    random_fill(seed);
    if (secp256k1_context_randomize(p, seed.data()) != 1) throw std::runtime_error("secp256k1 randomize failed");
    return p;
  }();
  return c;
}

std::array<std::uint8_t, 64> serialize_uncompressed(const secp256k1_pubkey& pk) {
  std::array<std::uint8_t, 65> buf{};
  std::size_t len = buf.size();
  secp256k1_ec_pubkey_serialize(ctx(), buf.data(), &len, &pk, SECP256K1_EC_UNCOMPRESSED);
  std::array<std::uint8_t, 64> out{};
  std::memcpy(out.data(), buf.data() + 1, 64);
  return out;
}
}  // namespace

EthAddress eth_address_of(ByteView pubkey64) {
  Digest32 h = keccak256(pubkey64);
  EthAddress a{};
  std::memcpy(a.data(), h.data() + 12, 20);
  return a;
}

std::string eth_checksum_address(const EthAddress& addr) {
  std::string hex = to_hex(addr);
  Digest32 h = keccak256(std::string_view(hex));
  for (std::size_t i = 0; i < hex.size(); ++i) {
    int nib = (i % 2 == 0) ? (h[i / 2] >> 4) : (h[i / 2] & 0x0f);
    if (nib >= 8) hex[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(hex[i])));
  }
  return "0x" + hex;
}

std::optional<EthAddress> parse_eth_address(std::string_view s) {
  if (s.size() != 42 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return std::nullopt;
  auto b = from_hex(s.substr(2));
  if (!b || b->size() != 20) return std::nullopt;
  EthAddress a{};
  std::memcpy(a.data(), b->data(), 20);
  return a;
}

Digest32 eip191_digest(std::string_view message) {
  std::string prefix =
      "\x19"
      "Ethereum Signed Message:\n" +
      std::to_string(message.size());
  Bytes buf;
  buf.reserve(prefix.size() + message.size());
  buf.insert(buf.end(), prefix.begin(), prefix.end());
  buf.insert(buf.end(), message.begin(), message.end());
  return keccak256(buf);
}

std::optional<EthSigner> EthSigner::from_secret(ByteView secret) {
  if (secret.size() != 32) return std::nullopt;
  EthSigner s;
  std::memcpy(s.secret_.data(), secret.data(), 32);
  if (secp256k1_ec_seckey_verify(ctx(), s.secret_.data()) != 1) return std::nullopt;
  secp256k1_pubkey pk;
  if (secp256k1_ec_pubkey_create(ctx(), &pk, s.secret_.data()) != 1) return std::nullopt;
  s.pubkey_ = serialize_uncompressed(pk);
  s.address_ = eth_address_of(s.pubkey_);
  return s;
}

EthSigner EthSigner::random() {
  for (;;) {
    std::array<std::uint8_t, 32> k{};
    random_fill(k);
    if (auto s = from_secret(k)) return *s;
  }
}

RecoverableSig EthSigner::sign_digest(const Digest32& digest) const {
  secp256k1_ecdsa_recoverable_signature sig;
  // RFC 6979 deterministic nonce (default nonce function); low-s normalised by libsecp256k1.
  if (secp256k1_ecdsa_sign_recoverable(ctx(), &sig, digest.data(), secret_.data(), nullptr, nullptr) != 1)
    throw std::runtime_error("secp256k1 signing failed");
  RecoverableSig out{};
  int recid = 0;
  secp256k1_ecdsa_recoverable_signature_serialize_compact(ctx(), out.data(), &recid, &sig);
  out[64] = static_cast<std::uint8_t>(27 + recid);
  return out;
}

std::optional<EthAddress> eth_recover(const Digest32& digest, ByteView sig65) {
  if (sig65.size() != 65) return std::nullopt;
  int v = sig65[64];
  if (v >= 27) v -= 27;
  if (v < 0 || v > 3) return std::nullopt;
  secp256k1_ecdsa_recoverable_signature sig;
  if (secp256k1_ecdsa_recoverable_signature_parse_compact(ctx(), &sig, sig65.data(), v) != 1) return std::nullopt;
  secp256k1_pubkey pk;
  if (secp256k1_ecdsa_recover(ctx(), &pk, &sig, digest.data()) != 1) return std::nullopt;
  return eth_address_of(serialize_uncompressed(pk));
}

}  // namespace pi::crypto
