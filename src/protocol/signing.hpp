#pragma once
// THE protocol rules shared by the signing proxy and the verifier. Change nothing here
// without changing docs/spec/ (and its vectors): existing vllm-proxy clients depend on these bytes.
//
//  * request_hash  = sha256(exact request body bytes the proxy received), lowercase hex
//  * response_hash = sha256(exact response body bytes the proxy sent; for SSE the whole
//                    stream as sent, framing included), lowercase hex
//  * signed text   = request_hash ":" response_hash
//  * ECDSA         = EIP-191 personal_sign over the text, secp256k1, "0x" + hex(r‖s‖v), v∈{27,28};
//                    signing address = EIP-55 checksummed Ethereum address
//  * Ed25519       = RFC 8032 signature over the text, hex; signing address = public key hex
//  * report_data   = signing-address bytes zero-padded to 32 ‖ 32-byte nonce
//                    (20-byte Ethereum address for ECDSA, 32-byte public key for Ed25519)
//  * NEAR TLS layout: sha256(signing-address bytes ‖ 32-byte TLS certificate fingerprint) ‖ nonce
// The normative text is docs/spec/ (test vectors: tests/vectors/).
#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/bytes.hpp"
#include "crypto/ed25519.hpp"
#include "crypto/eth.hpp"
#include "crypto/hash.hpp"

namespace pi::protocol {

enum class SigningAlgo { Ecdsa, Ed25519 };
std::optional<SigningAlgo> parse_signing_algo(std::string_view s);  // "ecdsa" | "ed25519"
std::string_view to_string(SigningAlgo a);

using Nonce = std::array<std::uint8_t, 32>;
using ReportData = std::array<std::uint8_t, 64>;

// Exactly 64 hex digits (no 0x); anything else is rejected.
std::optional<Nonce> parse_nonce(std::string_view hex64);

// signing address bytes (≤ 32) zero-padded to 32 ‖ nonce. Throws std::invalid_argument if > 32 bytes.
ReportData make_report_data(ByteView address_bytes, const Nonce& nonce);

// NEAR's TLS-bound layout (docs/spec/report-data.md): sha256(address_bytes ‖ tls_fingerprint) ‖ nonce, where
// address_bytes are the raw signing-address bytes (as for make_report_data, not their hex text) and tls_fingerprint
// is the 32 raw bytes of the certificate fingerprint (not its hex text). Throws std::invalid_argument unless
// address_bytes is 1..32 bytes and tls_fingerprint exactly 32.
ReportData make_report_data_tls(ByteView address_bytes, ByteView tls_fingerprint, const Nonce& nonce);

std::string signed_text(std::string_view request_hash_hex, std::string_view response_hash_hex);

// What the proxy keeps per signed exchange (binary, compact: 193 bytes).
struct SignatureRecord {
  crypto::Digest32 request_hash{};
  crypto::Digest32 response_hash{};
  crypto::RecoverableSig ecdsa_signature{};
  crypto::Ed25519Sig ed25519_signature{};

  std::string text() const;
};

// The proxy's signing keys: one per algorithm.
class SigningIdentity {
 public:
  SigningIdentity(crypto::EthSigner ecdsa, crypto::Ed25519Signer ed25519)
      : ecdsa_(ecdsa), ed25519_(std::move(ed25519)) {}
  static SigningIdentity random() { return {crypto::EthSigner::random(), crypto::Ed25519Signer::random()}; }

  SignatureRecord sign(const crypto::Digest32& request_hash, const crypto::Digest32& response_hash) const;

  // "0x…" checksummed for ECDSA; public-key hex for Ed25519.
  std::string signing_address(SigningAlgo a) const;
  // ECDSA: 64-byte uncompressed key hex (no 04 prefix); Ed25519: public key hex.
  std::string signing_public_key(SigningAlgo a) const;
  // The bytes that go into report_data.
  Bytes address_bytes(SigningAlgo a) const;

  const crypto::EthSigner& ecdsa() const { return ecdsa_; }
  const crypto::Ed25519Signer& ed25519() const { return ed25519_; }

 private:
  crypto::EthSigner ecdsa_;
  crypto::Ed25519Signer ed25519_;
};

// Hex forms as served by GET /v1/signature/{id}.
std::string ecdsa_signature_hex(const SignatureRecord& r);    // "0x" + 130 hex
std::string ed25519_signature_hex(const SignatureRecord& r);  // 128 hex

// Independent checks used by the verifier (and by tests of the signer).
// ECDSA: the address recovered from `sig_hex` over `text` (personal_sign), if any.
std::optional<crypto::EthAddress> recover_ecdsa_signer(std::string_view text, std::string_view sig_hex);
bool verify_ed25519(std::string_view text, std::string_view sig_hex, std::string_view pubkey_hex);

}  // namespace pi::protocol
