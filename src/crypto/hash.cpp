#include "crypto/hash.hpp"

#include <cryptopp/keccak.h>
#include <openssl/evp.h>

#include <stdexcept>
#include <utility>

namespace pi::crypto {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 init failed");
}
Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }
Sha256::Sha256(Sha256&& o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)) {}
Sha256& Sha256::operator=(Sha256&& o) noexcept {
  if (this != &o) {
    EVP_MD_CTX_free(ctx_);
    ctx_ = std::exchange(o.ctx_, nullptr);
  }
  return *this;
}

void Sha256::update(ByteView data) {
  if (!data.empty() && EVP_DigestUpdate(ctx_, data.data(), data.size()) != 1)
    throw std::runtime_error("SHA-256 update failed");
}

Digest32 Sha256::finish() {
  Digest32 out{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_, out.data(), &len) != 1 || len != out.size())
    throw std::runtime_error("SHA-256 final failed");
  return out;
}

Digest32 sha256(ByteView data) {
  Sha256 h;
  h.update(data);
  return h.finish();
}

Digest48 sha384(ByteView data) {
  Digest48 out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha384(), nullptr) != 1)
    throw std::runtime_error("SHA-384 failed");
  return out;
}

Digest32 keccak256(ByteView data) {
  // Ethereum's Keccak-256 is the original Keccak padding (0x01), not FIPS-202 SHA3-256.
  CryptoPP::Keccak_256 k;
  k.Update(data.data(), data.size());
  Digest32 out{};
  k.Final(out.data());
  return out;
}

}  // namespace pi::crypto
