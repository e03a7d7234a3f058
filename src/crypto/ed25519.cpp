#include "crypto/ed25519.hpp"

#include <openssl/evp.h>

#include <stdexcept>
#include <utility>

#include "crypto/openssl.hpp"
#include "crypto/random.hpp"

namespace pi::crypto {

namespace {
using MdCtx = ossl::MdCtxPtr;
}  // namespace

std::optional<Ed25519Signer> Ed25519Signer::from_seed(ByteView seed32) {
  if (seed32.size() != 32) return std::nullopt;
  Ed25519Signer s;
  s.key_ = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed32.data(), seed32.size());
  if (s.key_ == nullptr) return std::nullopt;
  std::size_t len = s.pub_.size();
  if (EVP_PKEY_get_raw_public_key(s.key_, s.pub_.data(), &len) != 1 || len != 32) return std::nullopt;
  return s;
}

Ed25519Signer Ed25519Signer::random() {
  std::array<std::uint8_t, 32> seed{};
  random_fill(seed);
  auto s = from_seed(seed);
  if (!s) throw std::runtime_error("Ed25519 key generation failed");
  return std::move(*s);
}

Ed25519Signer::~Ed25519Signer() { EVP_PKEY_free(key_); }
Ed25519Signer::Ed25519Signer(Ed25519Signer&& o) noexcept : key_(std::exchange(o.key_, nullptr)), pub_(o.pub_) {}
Ed25519Signer& Ed25519Signer::operator=(Ed25519Signer&& o) noexcept {
  if (this != &o) {
    EVP_PKEY_free(key_);
    key_ = std::exchange(o.key_, nullptr);
    pub_ = o.pub_;
  }
  return *this;
}

Ed25519Sig Ed25519Signer::sign(ByteView message) const {
  MdCtx ctx(EVP_MD_CTX_new());
  Ed25519Sig sig{};
  std::size_t len = sig.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_) != 1 ||
      EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()) != 1 || len != 64)
    throw std::runtime_error("Ed25519 signing failed");
  return sig;
}

bool ed25519_verify(ByteView pubkey32, ByteView message, ByteView sig64) {
  if (pubkey32.size() != 32 || sig64.size() != 64) return false;
  ossl::PkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, pubkey32.data(), 32));
  if (!key) return false;
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), sig64.data(), sig64.size(), message.data(), message.size()) == 1;
}

}  // namespace pi::crypto
