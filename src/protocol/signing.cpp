#include "protocol/signing.hpp"

#include <cstring>
#include <stdexcept>

namespace pi::protocol {

std::optional<SigningAlgo> parse_signing_algo(std::string_view s) {
  if (s == "ecdsa") return SigningAlgo::Ecdsa;
  if (s == "ed25519") return SigningAlgo::Ed25519;
  return std::nullopt;
}

std::string_view to_string(SigningAlgo a) { return a == SigningAlgo::Ecdsa ? "ecdsa" : "ed25519"; }

std::optional<Nonce> parse_nonce(std::string_view hex64) {
  if (!is_hex_of_length(hex64, 64)) return std::nullopt;
  auto b = from_hex(hex64);
  Nonce n{};
  std::memcpy(n.data(), b->data(), 32);
  return n;
}

ReportData make_report_data(ByteView address_bytes, const Nonce& nonce) {
  if (address_bytes.empty() || address_bytes.size() > 32)
    throw std::invalid_argument("signing address must be 1..32 bytes");
  ReportData rd{};
  std::memcpy(rd.data(), address_bytes.data(), address_bytes.size());
  std::memcpy(rd.data() + 32, nonce.data(), 32);
  return rd;
}

ReportData make_report_data_tls(ByteView address_bytes, ByteView tls_fingerprint, const Nonce& nonce) {
  if (address_bytes.empty() || address_bytes.size() > 32)
    throw std::invalid_argument("signing address must be 1..32 bytes");
  if (tls_fingerprint.size() != 32) throw std::invalid_argument("TLS certificate fingerprint must be 32 bytes");
  Bytes preimage(address_bytes.begin(), address_bytes.end());
  preimage.insert(preimage.end(), tls_fingerprint.begin(), tls_fingerprint.end());
  const auto digest = crypto::sha256(ByteView(preimage));
  ReportData rd{};
  std::memcpy(rd.data(), digest.data(), 32);
  std::memcpy(rd.data() + 32, nonce.data(), 32);
  return rd;
}

std::string signed_text(std::string_view request_hash_hex, std::string_view response_hash_hex) {
  std::string t;
  t.reserve(request_hash_hex.size() + 1 + response_hash_hex.size());
  t.append(request_hash_hex).append(":").append(response_hash_hex);
  return t;
}

std::string SignatureRecord::text() const { return signed_text(to_hex(request_hash), to_hex(response_hash)); }

SignatureRecord SigningIdentity::sign(const crypto::Digest32& request_hash,
                                      const crypto::Digest32& response_hash) const {
  SignatureRecord r;
  r.request_hash = request_hash;
  r.response_hash = response_hash;
  const std::string text = r.text();
  r.ecdsa_signature = ecdsa_.personal_sign(text);
  r.ed25519_signature = ed25519_.sign(as_bytes(text));
  return r;
}

std::string SigningIdentity::signing_address(SigningAlgo a) const {
  return a == SigningAlgo::Ecdsa ? crypto::eth_checksum_address(ecdsa_.address()) : to_hex(ed25519_.public_key());
}

std::string SigningIdentity::signing_public_key(SigningAlgo a) const {
  return a == SigningAlgo::Ecdsa ? to_hex(ecdsa_.public_key()) : to_hex(ed25519_.public_key());
}

Bytes SigningIdentity::address_bytes(SigningAlgo a) const {
  if (a == SigningAlgo::Ecdsa) return {ecdsa_.address().begin(), ecdsa_.address().end()};
  return {ed25519_.public_key().begin(), ed25519_.public_key().end()};
}

std::string ecdsa_signature_hex(const SignatureRecord& r) { return "0x" + to_hex(r.ecdsa_signature); }
std::string ed25519_signature_hex(const SignatureRecord& r) { return to_hex(r.ed25519_signature); }

std::optional<crypto::EthAddress> recover_ecdsa_signer(std::string_view text, std::string_view sig_hex) {
  auto sig = from_hex(sig_hex);
  if (!sig || sig->size() != 65) return std::nullopt;
  return crypto::personal_recover(text, *sig);
}

bool verify_ed25519(std::string_view text, std::string_view sig_hex, std::string_view pubkey_hex) {
  auto sig = from_hex(sig_hex);
  auto pk = from_hex(pubkey_hex);
  if (!sig || !pk) return false;
  return crypto::ed25519_verify(*pk, as_bytes(text), *sig);
}

}  // namespace pi::protocol
