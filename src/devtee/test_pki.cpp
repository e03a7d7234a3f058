#include "devtee/test_pki.hpp"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace pi::devtee {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void ossl_fail(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = {0};
  if (e) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  throw std::runtime_error("test PKI: " + what + (e ? std::string(": ") + buf : std::string()));
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct CrlFree {
  void operator()(X509_CRL* p) const { X509_CRL_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using CrlPtr = std::unique_ptr<X509_CRL, CrlFree>;

PkeyPtr new_p256() {
  PkeyPtr k(EVP_EC_gen("P-256"));
  if (!k) ossl_fail("cannot generate a P-256 key");
  return k;
}

PkeyPtr key_from_pem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) ossl_fail("out of memory");
  EVP_PKEY* k = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!k) ossl_fail("private key PEM does not parse");
  return PkeyPtr(k);
}

X509Ptr cert_from_pem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) ossl_fail("out of memory");
  X509* c = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!c) ossl_fail("certificate PEM does not parse");
  return X509Ptr(c);
}

template <typename F>
std::string to_pem(F&& write) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (!bio) ossl_fail("out of memory");
  if (write(bio) != 1) {
    BIO_free(bio);
    ossl_fail("PEM encoding failed");
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string s(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return s;
}

std::string key_pem(EVP_PKEY* k) {
  return to_pem([&](BIO* b) { return PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr); });
}
std::string cert_pem(X509* c) {
  return to_pem([&](BIO* b) { return PEM_write_bio_X509(b, c); });
}

X509_NAME* make_name(const char* cn) {
  X509_NAME* n = X509_NAME_new();
  if (!n) ossl_fail("out of memory");
  auto add = [&](const char* field, const char* value) {
    X509_NAME_add_entry_by_txt(n, field, MBSTRING_ASC, reinterpret_cast<const unsigned char*>(value), -1, -1, 0);
  };
  add("CN", cn);
  add("O", "SIMULATED dev-tee test PKI (not Intel)");
  add("C", "XX");
  return n;
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) ossl_fail(std::string("cannot build extension ") + OBJ_nid2sn(nid));
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// ---- DER for the Intel SGX extension (OID 1.2.840.113741.1.13.1) ----
Bytes der(std::uint8_t tag, const Bytes& content) {
  Bytes out{tag};
  std::size_t n = content.size();
  if (n < 0x80) {
    out.push_back(static_cast<std::uint8_t>(n));
  } else if (n < 0x100) {
    out.push_back(0x81);
    out.push_back(static_cast<std::uint8_t>(n));
  } else {
    out.push_back(0x82);
    out.push_back(static_cast<std::uint8_t>(n >> 8));
    out.push_back(static_cast<std::uint8_t>(n));
  }
  out.insert(out.end(), content.begin(), content.end());
  return out;
}
Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
Bytes sgx_oid(std::initializer_list<std::uint8_t> suffix) {
  Bytes oid = {0x2A, 0x86, 0x48, 0x86, 0xF8, 0x4D, 0x01, 0x0D, 0x01};
  oid.insert(oid.end(), suffix.begin(), suffix.end());
  return der(0x06, oid);
}
Bytes der_int(unsigned v) {
  Bytes b;
  if (v == 0) b.push_back(0);
  while (v) {
    b.insert(b.begin(), static_cast<std::uint8_t>(v & 0xff));
    v >>= 8;
  }
  if (b[0] & 0x80) b.insert(b.begin(), 0);
  return der(0x02, b);
}

Bytes sgx_extension_der() {
  Bytes ppid(16, 0x5a);
  Bytes tcb_items;
  for (std::uint8_t i = 1; i <= 16; ++i)
    tcb_items = cat({tcb_items, der(0x30, cat({sgx_oid({0x02, i}), der_int(kSimCpuSvn[i - 1])}))});
  tcb_items = cat({tcb_items, der(0x30, cat({sgx_oid({0x02, 17}), der_int(kSimPceSvn)}))});
  tcb_items =
      cat({tcb_items, der(0x30, cat({sgx_oid({0x02, 18}), der(0x04, Bytes(kSimCpuSvn.begin(), kSimCpuSvn.end()))}))});
  Bytes items = cat({
      der(0x30, cat({sgx_oid({0x01}), der(0x04, ppid)})), der(0x30, cat({sgx_oid({0x02}), der(0x30, tcb_items)})),
      der(0x30, cat({sgx_oid({0x03}), der(0x04, Bytes(kSimPceId.begin(), kSimPceId.end()))})),
      der(0x30, cat({sgx_oid({0x04}), der(0x04, Bytes(kSimFmspc.begin(), kSimFmspc.end()))})),
      der(0x30, cat({sgx_oid({0x05}), der(0x0A, Bytes{0x00})})),  // SGX type: Standard
  });
  return der(0x30, items);
}

void add_sgx_extension(X509* cert) {
  Bytes body = sgx_extension_der();
  ASN1_OBJECT* obj = OBJ_txt2obj("1.2.840.113741.1.13.1", 1);
  ASN1_OCTET_STRING* os = ASN1_OCTET_STRING_new();
  if (!obj || !os || ASN1_OCTET_STRING_set(os, body.data(), static_cast<int>(body.size())) != 1) {
    ASN1_OBJECT_free(obj);
    ASN1_OCTET_STRING_free(os);
    ossl_fail("cannot build the SGX extension");
  }
  X509_EXTENSION* ext = X509_EXTENSION_create_by_OBJ(nullptr, obj, 0, os);
  ASN1_OBJECT_free(obj);
  ASN1_OCTET_STRING_free(os);
  if (!ext) ossl_fail("cannot build the SGX extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

X509Ptr make_cert(const char* cn, EVP_PKEY* subject_key, X509* issuer, EVP_PKEY* issuer_key, long serial, bool ca,
                  std::int64_t now) {
  X509Ptr c(X509_new());
  if (!c) ossl_fail("out of memory");
  X509_set_version(c.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c.get()), serial);
  X509_NAME* name = make_name(cn);
  X509_set_subject_name(c.get(), name);
  X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509_NAME_free(name);
  ASN1_TIME_set(X509_getm_notBefore(c.get()), static_cast<time_t>(now - 86400));
  ASN1_TIME_set(X509_getm_notAfter(c.get()), static_cast<time_t>(now + 10LL * 365 * 86400));
  X509_set_pubkey(c.get(), subject_key);
  X509* iss = issuer ? issuer : c.get();
  if (ca) {
    add_ext(c.get(), iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:1");
    add_ext(c.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(c.get(), iss, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(c.get(), iss, NID_key_usage, "critical,digitalSignature,nonRepudiation");
  }
  add_ext(c.get(), iss, NID_subject_key_identifier, "hash");
  if (issuer) add_ext(c.get(), iss, NID_authority_key_identifier, "keyid:always");
  if (X509_sign(c.get(), issuer_key, EVP_sha256()) <= 0) ossl_fail(std::string("cannot sign certificate ") + cn);
  return c;
}

Bytes make_crl(X509* issuer, EVP_PKEY* issuer_key, std::int64_t now) {
  CrlPtr crl(X509_CRL_new());
  if (!crl) ossl_fail("out of memory");
  X509_CRL_set_version(crl.get(), 1);  // v2
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer));
  ASN1_TIME* t = ASN1_TIME_new();
  ASN1_TIME_set(t, static_cast<time_t>(now - 86400));
  X509_CRL_set1_lastUpdate(crl.get(), t);
  ASN1_TIME_set(t, static_cast<time_t>(now + 10LL * 365 * 86400));
  X509_CRL_set1_nextUpdate(crl.get(), t);
  ASN1_TIME_free(t);
  // CRL number (RFC 5280 5.2.3, required by strict parsers such as webpki in dcap-qvl) and the
  // authority key identifier, as in Intel's CRLs.
  ASN1_INTEGER* number = ASN1_INTEGER_new();
  ASN1_INTEGER_set(number, 1);
  int ok = X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number, 0, 0);
  ASN1_INTEGER_free(number);
  if (ok != 1) ossl_fail("cannot add the CRL number");
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, nullptr, nullptr, crl.get(), 0);
  X509_EXTENSION* aki = X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always");
  if (!aki) ossl_fail("cannot build the CRL authority key identifier");
  X509_CRL_add_ext(crl.get(), aki, -1);
  X509_EXTENSION_free(aki);
  if (X509_CRL_sign(crl.get(), issuer_key, EVP_sha256()) <= 0) ossl_fail("cannot sign CRL");
  unsigned char* out = nullptr;
  int n = i2d_X509_CRL(crl.get(), &out);
  if (n <= 0) ossl_fail("cannot encode CRL");
  Bytes b(out, out + n);
  OPENSSL_free(out);
  return b;
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("test PKI: cannot read " + p.string() + " (partial pki directory? remove it)");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, std::string_view data, bool secret) {
  {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error("test PKI: cannot write " + p.string());
    f.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!f) throw std::runtime_error("test PKI: cannot write " + p.string());
  }
  ::chmod(p.c_str(), secret ? 0600 : 0644);
}

}  // namespace

Bytes TestPki::root_cert_der() const {
  X509Ptr c = cert_from_pem(root_cert_pem);
  unsigned char* out = nullptr;
  int n = i2d_X509(c.get(), &out);
  if (n <= 0) ossl_fail("cannot encode root certificate");
  Bytes b(out, out + n);
  OPENSSL_free(out);
  return b;
}

TestPki generate_test_pki(std::int64_t now) {
  PkeyPtr root_key = new_p256(), pck_ca_key = new_p256(), pck_key = new_p256(), tcb_key = new_p256(), ak = new_p256();
  X509Ptr root = make_cert("SIMULATED dev-tee Test Root CA", root_key.get(), nullptr, root_key.get(), 1, true, now);
  X509Ptr pck_ca =
      make_cert("SIMULATED dev-tee PCK Platform CA", pck_ca_key.get(), root.get(), root_key.get(), 2, true, now);
  X509Ptr tcb = make_cert("SIMULATED dev-tee TCB Signing", tcb_key.get(), root.get(), root_key.get(), 3, false, now);
  X509Ptr pck = [&] {
    X509Ptr c(X509_new());
    // the PCK leaf needs the SGX extension before signing: build it by hand
    X509_set_version(c.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c.get()), 4);
    X509_NAME* name = make_name("SIMULATED dev-tee PCK Certificate");
    X509_set_subject_name(c.get(), name);
    X509_NAME_free(name);
    X509_set_issuer_name(c.get(), X509_get_subject_name(pck_ca.get()));
    ASN1_TIME_set(X509_getm_notBefore(c.get()), static_cast<time_t>(now - 86400));
    ASN1_TIME_set(X509_getm_notAfter(c.get()), static_cast<time_t>(now + 10LL * 365 * 86400));
    X509_set_pubkey(c.get(), pck_key.get());
    add_ext(c.get(), pck_ca.get(), NID_basic_constraints, "critical,CA:FALSE");
    add_ext(c.get(), pck_ca.get(), NID_key_usage, "critical,digitalSignature,nonRepudiation");
    add_ext(c.get(), pck_ca.get(), NID_authority_key_identifier, "keyid:always");
    add_sgx_extension(c.get());
    if (X509_sign(c.get(), pck_ca_key.get(), EVP_sha256()) <= 0) ossl_fail("cannot sign the PCK certificate");
    return c;
  }();
  TestPki p;
  p.root_cert_pem = cert_pem(root.get());
  p.pck_ca_cert_pem = cert_pem(pck_ca.get());
  p.pck_cert_pem = cert_pem(pck.get());
  p.tcb_cert_pem = cert_pem(tcb.get());
  p.root_key_pem = key_pem(root_key.get());
  p.pck_ca_key_pem = key_pem(pck_ca_key.get());
  p.pck_key_pem = key_pem(pck_key.get());
  p.tcb_key_pem = key_pem(tcb_key.get());
  p.attestation_key_pem = key_pem(ak.get());
  p.root_crl_der = make_crl(root.get(), root_key.get(), now);
  p.pck_crl_der = make_crl(pck_ca.get(), pck_ca_key.get(), now);
  return p;
}

TestPki load_or_create_test_pki(const std::string& state_dir, std::int64_t now) {
  fs::path dir = fs::path(state_dir) / "pki";
  std::error_code ec;
  if (!fs::exists(dir / "root.cert.pem", ec)) {
    fs::create_directories(dir, ec);
    if (ec) throw std::runtime_error("test PKI: cannot create " + dir.string() + ": " + ec.message());
    ::chmod(dir.c_str(), 0700);
    TestPki p = generate_test_pki(now);
    write_file(dir / "pck_ca.cert.pem", p.pck_ca_cert_pem, false);
    write_file(dir / "pck.cert.pem", p.pck_cert_pem, false);
    write_file(dir / "tcb_signing.cert.pem", p.tcb_cert_pem, false);
    write_file(dir / "root.key.pem", p.root_key_pem, true);
    write_file(dir / "pck_ca.key.pem", p.pck_ca_key_pem, true);
    write_file(dir / "pck.key.pem", p.pck_key_pem, true);
    write_file(dir / "tcb_signing.key.pem", p.tcb_key_pem, true);
    write_file(dir / "attestation.key.pem", p.attestation_key_pem, true);
    write_file(dir / "root.crl.der",
               std::string_view(reinterpret_cast<const char*>(p.root_crl_der.data()), p.root_crl_der.size()), false);
    write_file(dir / "pck.crl.der",
               std::string_view(reinterpret_cast<const char*>(p.pck_crl_der.data()), p.pck_crl_der.size()), false);
    write_file(dir / "root.cert.pem", p.root_cert_pem, false);  // last: its presence marks a complete directory
    return p;
  }
  TestPki p;
  p.root_cert_pem = read_text(dir / "root.cert.pem");
  p.pck_ca_cert_pem = read_text(dir / "pck_ca.cert.pem");
  p.pck_cert_pem = read_text(dir / "pck.cert.pem");
  p.tcb_cert_pem = read_text(dir / "tcb_signing.cert.pem");
  p.root_key_pem = read_text(dir / "root.key.pem");
  p.pck_ca_key_pem = read_text(dir / "pck_ca.key.pem");
  p.pck_key_pem = read_text(dir / "pck.key.pem");
  p.tcb_key_pem = read_text(dir / "tcb_signing.key.pem");
  p.attestation_key_pem = read_text(dir / "attestation.key.pem");
  std::string rc = read_text(dir / "root.crl.der"), pc = read_text(dir / "pck.crl.der");
  p.root_crl_der.assign(rc.begin(), rc.end());
  p.pck_crl_der.assign(pc.begin(), pc.end());
  // fail now, clearly, on a corrupt file rather than at the first quote
  (void)cert_from_pem(p.root_cert_pem);
  (void)cert_from_pem(p.pck_cert_pem);
  for (const auto* k : {&p.pck_key_pem, &p.tcb_key_pem, &p.attestation_key_pem}) (void)key_from_pem(*k);
  return p;
}

std::array<std::uint8_t, 64> sign_p256_raw(const std::string& pem, ByteView msg) {
  PkeyPtr key = key_from_pem(pem);
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  std::size_t len = 0;
  if (!md || EVP_DigestSignInit(md, nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(md, nullptr, &len, msg.data(), msg.size()) != 1) {
    EVP_MD_CTX_free(md);
    ossl_fail("ECDSA signing failed");
  }
  Bytes sig(len);
  int rc = EVP_DigestSign(md, sig.data(), &len, msg.data(), msg.size());
  EVP_MD_CTX_free(md);
  if (rc != 1) ossl_fail("ECDSA signing failed");
  const unsigned char* p = sig.data();
  ECDSA_SIG* s = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(len));
  if (!s) ossl_fail("ECDSA signature does not decode");
  std::array<std::uint8_t, 64> out{};
  BN_bn2binpad(ECDSA_SIG_get0_r(s), out.data(), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(s), out.data() + 32, 32);
  ECDSA_SIG_free(s);
  return out;
}

std::array<std::uint8_t, 64> p256_public_raw(const std::string& pem) {
  PkeyPtr key = key_from_pem(pem);
  unsigned char buf[65];
  std::size_t n = 0;
  if (EVP_PKEY_get_octet_string_param(key.get(), "encoded-pub-key", buf, sizeof(buf), &n) != 1 || n != 65 ||
      buf[0] != 0x04)
    ossl_fail("not an uncompressed P-256 public key");
  std::array<std::uint8_t, 64> out{};
  std::memcpy(out.data(), buf + 1, 64);
  return out;
}

}  // namespace pi::devtee
