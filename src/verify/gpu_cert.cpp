#include "verify/gpu_cert.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <ctime>

#include "crypto/hash.hpp"
#include "verify/gpu.hpp"

namespace pi::verify::gpu {

using namespace pi::protocol::gpu;  // the report layout and its parse errors

void X509Free::operator()(x509_st* x) const { X509_free(x); }

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct SigFree {
  void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
struct StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_free(s); }
};

std::string openssl_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
constexpr std::string_view kEnd = "-----END CERTIFICATE-----";

std::string asn1_time_str(const ASN1_TIME* t) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || ASN1_TIME_print(bio.get(), t) != 1) return "?";
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string cn_of(const X509* cert) {
  std::string s = subject_of(*cert);
  auto p = s.find("CN=");
  if (p == std::string::npos) return s;
  auto e = s.find(", ", p);
  return s.substr(p + 3, e == std::string::npos ? std::string::npos : e - p - 3);
}

}  // namespace

std::vector<X509Ptr> parse_pem_chain(std::string_view pem_in) {
  std::string pem;
  pem.reserve(pem_in.size());
  for (char c : pem_in)
    if (c != '\0') pem.push_back(c);
  std::vector<X509Ptr> out;
  std::size_t pos = 0;
  while (true) {
    auto b = pem.find(kBegin, pos);
    if (b == std::string::npos) break;
    auto e = pem.find(kEnd, b);
    if (e == std::string::npos) throw ParseError("PEM certificate #" + std::to_string(out.size()) + " has no END line");
    e += kEnd.size();
    std::string block = pem.substr(b, e - b) + "\n";
    std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(block.data(), static_cast<int>(block.size())));
    X509* x = bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr;
    if (!x) {
      throw ParseError("PEM certificate #" + std::to_string(out.size()) + " does not parse: " + openssl_error());
    }
    out.emplace_back(x);
    pos = e;
  }
  if (out.empty()) throw ParseError("no PEM certificate found in the certificate chain");
  return out;
}

Result verify_report_signature(const SpdmReport& report, const x509_st& leaf_c) {
  X509* leaf = const_cast<X509*>(&leaf_c);  // OpenSSL getters are not const-correct
  std::unique_ptr<EVP_PKEY, PkeyFree> key(X509_get_pubkey(leaf));
  if (!key) return {false, "leaf certificate has no usable public key: " + openssl_error()};
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC) return {false, "leaf key is not an EC key"};
  char group[64] = {0};
  std::size_t glen = 0;
  if (EVP_PKEY_get_utf8_string_param(key.get(), "group", group, sizeof group, &glen) != 1 ||
      std::string_view(group) != "secp384r1") {
    return {false, std::string("leaf key is not on P-384 (group ") + group + ")"};
  }
  if (report.signature.size() != kP384SignatureSize) return {false, "signature is not 96 bytes"};
  std::unique_ptr<ECDSA_SIG, SigFree> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(report.signature.data(), 48, nullptr);
  BIGNUM* s = BN_bin2bn(report.signature.data() + 48, 48, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return {false, "cannot build ECDSA signature: " + openssl_error()};
  }
  unsigned char* der = nullptr;
  int der_len = i2d_ECDSA_SIG(sig.get(), &der);
  if (der_len <= 0) return {false, "cannot encode ECDSA signature: " + openssl_error()};
  std::unique_ptr<unsigned char, void (*)(unsigned char*)> der_owner(der, [](unsigned char* p) { OPENSSL_free(p); });

  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha384(), nullptr, key.get()) != 1) {
    return {false, "cannot initialise ECDSA verification: " + openssl_error()};
  }
  int rc = EVP_DigestVerify(ctx.get(), der, static_cast<std::size_t>(der_len), report.signed_data.data(),
                            report.signed_data.size());
  ERR_clear_error();
  if (rc == 1) {
    return {true, "ECDSA P-384/SHA-384 signature over " + std::to_string(report.signed_data.size()) +
                      " bytes verifies with the leaf key (" + cn_of(leaf) + ")"};
  }
  return {false, "ECDSA P-384/SHA-384 signature does NOT verify with the leaf certificate's key (" + cn_of(leaf) + ")"};
}

ChainResult verify_chain(const std::vector<X509Ptr>& chain, const std::vector<std::string>& extra_root_pems) {
  ChainResult res;
  if (chain.empty()) {
    res.detail = "empty certificate chain";
    return res;
  }
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  if (!store) {
    res.detail = "cannot create X509 store";
    return res;
  }
  std::vector<X509Ptr> nvidia_roots;
  try {
    nvidia_roots = parse_pem_chain(pi::verify::nvidia_device_identity_root_pem());
  } catch (const ParseError& e) {
    res.detail = std::string("bundled NVIDIA root does not parse: ") + e.what();
    return res;
  }
  std::vector<X509Ptr> extra_roots;
  for (const auto& pem : extra_root_pems) {
    try {
      for (auto& c : parse_pem_chain(pem)) extra_roots.push_back(std::move(c));
    } catch (const ParseError& e) {
      res.detail = std::string("extra root does not parse: ") + e.what();
      return res;
    }
  }
  for (auto& r : nvidia_roots) X509_STORE_add_cert(store.get(), r.get());
  for (auto& r : extra_roots) X509_STORE_add_cert(store.get(), r.get());
  ERR_clear_error();

  std::unique_ptr<STACK_OF(X509), StackFree> untrusted(sk_X509_new_null());
  for (std::size_t i = 1; i < chain.size(); ++i) sk_X509_push(untrusted.get(), chain[i].get());

  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), chain[0].get(), untrusted.get()) != 1) {
    res.detail = "cannot initialise chain verification: " + openssl_error();
    return res;
  }
  // Time is checked separately (check_validity) so each failure is reported by exactly one check.
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_NO_CHECK_TIME | X509_V_FLAG_X509_STRICT);
  int rc = X509_verify_cert(ctx.get());
  ERR_clear_error();
  if (rc != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    int depth = X509_STORE_CTX_get_error_depth(ctx.get());
    X509* bad = X509_STORE_CTX_get_current_cert(ctx.get());
    res.detail = std::string("chain does not verify to the NVIDIA Device Identity root: ") +
                 X509_verify_cert_error_string(err) + " at depth " + std::to_string(depth) +
                 (bad ? " (" + cn_of(bad) + ")" : std::string());
    return res;
  }
  STACK_OF(X509)* built = X509_STORE_CTX_get0_chain(ctx.get());
  X509* top = sk_X509_value(built, sk_X509_num(built) - 1);
  bool is_nvidia = false;
  for (auto& r : nvidia_roots)
    if (X509_cmp(top, r.get()) == 0) is_nvidia = true;
  res.ok = true;
  res.anchored_in_extra_root = !is_nvidia;
  res.root_subject = cn_of(top);
  res.detail = std::to_string(sk_X509_num(built)) + "-certificate chain verifies: " + cn_of(chain[0].get()) +
               " → … → " + res.root_subject +
               (is_nvidia ? " (bundled NVIDIA Device Identity root)" : " (extra root given on the command line)");
  return res;
}

Result check_validity(const std::vector<X509Ptr>& chain, std::int64_t now) {
  std::time_t t = static_cast<std::time_t>(now);
  for (std::size_t i = 0; i < chain.size(); ++i) {
    X509* c = chain[i].get();
    const ASN1_TIME* nb = X509_get0_notBefore(c);
    const ASN1_TIME* na = X509_get0_notAfter(c);
    int before = X509_cmp_time(nb, &t);  // -1: nb < now (fine); 1: nb > now (not yet valid); 0: error
    int after = X509_cmp_time(na, &t);   // 1: na > now (fine); -1: na < now (expired); 0: error
    if (before == 0 || after == 0) {
      return {false, "certificate #" + std::to_string(i) + " (" + cn_of(c) + ") has an unreadable validity period"};
    }
    if (before > 0) {
      return {false, "certificate #" + std::to_string(i) + " (" + cn_of(c) +
                         ") is not yet valid at now=" + std::to_string(now) + " (notBefore " + asn1_time_str(nb) + ")"};
    }
    if (after < 0) {
      return {false, "certificate #" + std::to_string(i) + " (" + cn_of(c) +
                         ") expired before now=" + std::to_string(now) + " (notAfter " + asn1_time_str(na) + ")"};
    }
  }
  return {true, "all " + std::to_string(chain.size()) + " certificates are valid at now=" + std::to_string(now)};
}

std::string subject_of(const x509_st& cert) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio) return {};
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(&cert), 0,
                     (XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB & ~XN_FLAG_SPC_EQ) | XN_FLAG_DN_REV);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::optional<std::string> arch_from_chain(const std::vector<X509Ptr>& chain) {
  // Leaf first: "GH100 A01 GSP FMC LF", then BROM, provisioner ICA and "NVIDIA GH100 Identity".
  std::optional<std::string> found;
  for (const auto& c : chain) {
    auto a = arch_from_chip_name(subject_of(*c));
    if (!a) continue;
    if (found && *found != *a) return std::string("CONFLICT");
    found = a;
  }
  return found;
}

std::string fingerprint_sha256(const x509_st& cert) {
  unsigned char* der = nullptr;
  int len = i2d_X509(const_cast<X509*>(&cert), &der);
  if (len <= 0) return {};
  auto d = pi::crypto::sha256(pi::ByteView(der, static_cast<std::size_t>(len)));
  OPENSSL_free(der);
  return pi::to_hex(d);
}

}  // namespace pi::verify::gpu
