#pragma once
// The project's one home for OpenSSL 3 mechanics: owning handles, PEM/DER loading and writing, raw ECDSA
// signatures (r ‖ s, as Intel DCAP, SPDM and JWS ES256/ES384 carry them), the X.509 chain verifier, and the
// building blocks of the simulated test PKIs (dev-tee, the simulated NVML). Callers never free an OpenSSL object by
// hand and never convert ECDSA signatures themselves.
//
// Error convention: loaders and builders throw ossl::Error with a message that names what failed (plus OpenSSL's
// reason); predicates (ecdsa_verify_raw, verify_chain) never throw and report failure in their result. Every function
// leaves OpenSSL's per-thread error queue empty.
#include <openssl/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crypto/bytes.hpp"

struct stack_st_X509;  // STACK_OF(X509)
// Same declarations as <openssl/ec.h> and <openssl/x509.h>, which this header does not need in full.
typedef struct ECDSA_SIG_st ECDSA_SIG;            // NOLINT(modernize-use-using)
typedef struct X509_extension_st X509_EXTENSION;  // NOLINT(modernize-use-using)

namespace pi::crypto::ossl {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---------- Owning handles ----------
// One deleter for every OpenSSL type the project owns (defined in openssl.cpp, so this header stays light).
struct Free {
  void operator()(EVP_PKEY* p) const;
  void operator()(EVP_PKEY_CTX* p) const;
  void operator()(EVP_MD_CTX* p) const;
  void operator()(X509* p) const;
  void operator()(X509_CRL* p) const;
  void operator()(X509_STORE* p) const;
  void operator()(X509_STORE_CTX* p) const;
  void operator()(X509_NAME* p) const;
  void operator()(X509_EXTENSION* p) const;
  void operator()(BIO* p) const;
  void operator()(ECDSA_SIG* p) const;
  void operator()(BIGNUM* p) const;
  void operator()(stack_st_X509* p) const;  // frees the stack only: its certificates are borrowed
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Free>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Free>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Free>;
using X509Ptr = std::unique_ptr<X509, Free>;
using CrlPtr = std::unique_ptr<X509_CRL, Free>;
using StorePtr = std::unique_ptr<X509_STORE, Free>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Free>;
using NamePtr = std::unique_ptr<X509_NAME, Free>;
using ExtensionPtr = std::unique_ptr<X509_EXTENSION, Free>;
using BioPtr = std::unique_ptr<BIO, Free>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, Free>;
using BnPtr = std::unique_ptr<BIGNUM, Free>;
using X509StackPtr = std::unique_ptr<stack_st_X509, Free>;

// The oldest error on OpenSSL's queue as text ("unknown OpenSSL error" when empty); clears the queue.
std::string last_error();

// ---------- Loading and writing ----------
// Every "-----BEGIN CERTIFICATE-----" block of `pem`, in order. NUL bytes (padding some producers add) and text
// between blocks are ignored. An empty result means no block was found; a block without END line, or one that does
// not parse, throws Error("PEM certificate #N has no END line" / "PEM certificate #N does not parse: ...").
std::vector<X509Ptr> certs_from_pem(std::string_view pem);
// The first certificate of `pem`; throws Error when there is none or it does not parse.
X509Ptr cert_from_pem(std::string_view pem);
// One DER certificate; throws Error when it does not parse.
X509Ptr cert_from_der(ByteView der);
// A CRL in DER or, failing that, PEM; throws Error when it is neither.
CrlPtr crl_from_der_or_pem(ByteView data);
// A PEM private key (PKCS#8 or traditional) / public key (SubjectPublicKeyInfo); throw Error.
PkeyPtr private_key_from_pem(std::string_view pem);
PkeyPtr public_key_from_pem(std::string_view pem);

Bytes cert_to_der(const X509& cert);
std::string cert_to_pem(const X509& cert);
Bytes crl_to_der(const X509_CRL& crl);
std::string private_key_to_pem(const EVP_PKEY& key);  // unencrypted PKCS#8
std::string public_key_to_pem(const EVP_PKEY& key);

// ---------- Names and times ----------
std::string common_name(const X509& cert);         // subject CN, "" when absent
std::string issuer_common_name(const X509& cert);  // issuer CN, "" when absent
// "CN=…, O=…, C=…" for the usual C, O, CN encoding: the name in reverse of its encoded order, UTF-8.
std::string subject_oneline(const X509& cert);
std::string time_text(const ASN1_TIME& t);  // "Jan  1 00:00:00 2030 GMT"

// ---------- EC keys and raw ECDSA ----------
// The two NIST curves the project meets, each with the hash its protocols pair it with: P-256 + SHA-256 (Intel
// DCAP, ES256) and P-384 + SHA-384 (NVIDIA SPDM, ES384).
enum class Curve { P256, P384 };
constexpr std::size_t coordinate_size(Curve c) { return c == Curve::P256 ? 32 : 48; }
constexpr std::size_t raw_signature_size(Curve c) { return 2 * coordinate_size(c); }
// The curve of an EC key; nullopt for any other key or curve.
std::optional<Curve> curve_of(const EVP_PKEY& key);

PkeyPtr generate_ec_key(Curve c);  // throws Error
// The public key of the uncompressed point x ‖ y (2 × coordinate_size bytes); nullptr when `xy` has the wrong size
// or is not a point on the curve.
PkeyPtr ec_public_key_from_raw(Curve c, ByteView xy);
// The uncompressed public point x ‖ y of an EC key (private or public); nullopt for a non-EC key.
std::optional<Bytes> ec_public_raw(const EVP_PKEY& key);

// r ‖ s (two big-endian integers of equal width) ⇄ DER ECDSA-Sig-Value. nullopt on malformed input: an odd or
// empty raw size, DER that does not parse or has trailing bytes, an r or s wider than `width`.
std::optional<Bytes> ecdsa_raw_to_der(ByteView rs);
std::optional<Bytes> ecdsa_der_to_raw(ByteView der, std::size_t width);

// ECDSA over `msg` (hashed with the curve's hash) with a raw r ‖ s signature. False for a bad signature, a signature
// of the wrong size, a key that is not on curve `c`, or a null key. Never throws.
bool ecdsa_verify_raw(Curve c, const EVP_PKEY* key, ByteView msg, ByteView rs);
// Signs `msg` with an EC private key on curve `c`; returns raw r ‖ s. Throws Error.
Bytes ecdsa_sign_raw(Curve c, const EVP_PKEY& key, ByteView msg);

// ---------- Certificate chains ----------
struct ChainOptions {
  // When set, every certificate of the chain must have a CRL in `crls` (from its issuer) and must not be listed.
  bool check_crls = false;
  std::vector<X509_CRL*> crls;
  // Verification time (Unix seconds). nullopt: validity periods are NOT checked (the caller checks them).
  std::optional<std::int64_t> time;
  bool strict = false;  // X509_V_FLAG_X509_STRICT (RFC 5280 conformance of every certificate)
};

struct ChainResult {
  bool ok = false;
  // On failure: "<OpenSSL reason> (at depth N, certificate '<CN>')". Empty on success.
  std::string error;
  std::string reason;         // OpenSSL's reason alone
  int depth = -1;             // depth of the failing certificate (0 = leaf), -1 when unknown
  X509Ptr failed;             // the failing certificate, when OpenSSL names one
  std::vector<X509Ptr> path;  // on success: the verified path, leaf first, trust anchor last
};

// Verifies `leaf` through the `untrusted` intermediates (in any order) to one of `trusted`. A self-signed
// certificate among `untrusted` is never a trust anchor by itself. Never throws.
ChainResult verify_cert_chain(X509* leaf, const std::vector<X509*>& untrusted, const std::vector<X509*>& trusted,
                              const ChainOptions& opts = {});
// `chain` leaf first, the rest untrusted.
ChainResult verify_cert_chain(const std::vector<X509Ptr>& chain, const std::vector<X509*>& trusted,
                              const ChainOptions& opts = {});

// ---------- Building test certificates (simulated PKIs only) ----------
enum class Hash { Sha256, Sha384 };

struct CertSpec {
  std::vector<std::pair<std::string, std::string>> subject;  // e.g. {{"CN", "…"}, {"O", "…"}, {"C", "XX"}}
  long serial = 0;                                           // 0: random positive 127-bit serial
  std::int64_t not_before = 0, not_after = 0;                // Unix seconds
  bool ca = false;
  int path_len = -1;      // CA only; -1: no pathlen constraint
  std::string key_usage;  // "" → CA: "critical,keyCertSign,cRLSign", leaf: "critical,digitalSignature"
  bool subject_key_id = true;
  bool authority_key_id = true;  // keyid:always (also on a self-signed root)
  // Extensions added last, as (dotted OID, DER content of the extnValue OCTET STRING), not critical.
  std::vector<std::pair<std::string, Bytes>> raw_extensions;
  Hash hash = Hash::Sha256;
};

// Issues `spec` for `subject_key`, signed by `issuer_key` under `issuer` (nullptr: self-signed, `issuer_key` is the
// subject's own private key). Throws Error.
X509Ptr make_cert(const CertSpec& spec, const EVP_PKEY& subject_key, const X509* issuer, const EVP_PKEY& issuer_key);

struct CrlSpec {
  std::int64_t last_update = 0, next_update = 0;
  long number = 1;                   // CRL number extension
  std::vector<const X509*> revoked;  // certificates to list as revoked (revocation date = last_update)
  Hash hash = Hash::Sha256;
};
// A v2 CRL by `issuer` with a CRL number and an authority key identifier. Throws Error.
CrlPtr make_crl(const CrlSpec& spec, const X509& issuer, const EVP_PKEY& issuer_key);

}  // namespace pi::crypto::ossl
