#include "crypto/openssl.hpp"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <climits>
#include <ctime>

#include "crypto/random.hpp"

namespace pi::crypto::ossl {

void Free::operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
void Free::operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
void Free::operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
void Free::operator()(X509* p) const { X509_free(p); }
void Free::operator()(X509_CRL* p) const { X509_CRL_free(p); }
void Free::operator()(X509_STORE* p) const { X509_STORE_free(p); }
void Free::operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
void Free::operator()(X509_NAME* p) const { X509_NAME_free(p); }
void Free::operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
void Free::operator()(BIO* p) const { BIO_free(p); }
void Free::operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
void Free::operator()(BIGNUM* p) const { BN_free(p); }
void Free::operator()(stack_st_X509* p) const { sk_X509_free(p); }

std::string last_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256] = {0};
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

namespace {

[[noreturn]] void fail(const std::string& what) { throw Error(what + ": " + last_error()); }

// OpenSSL's getters and signing calls take non-const pointers although they do not modify the object.
EVP_PKEY* mut(const EVP_PKEY* k) { return const_cast<EVP_PKEY*>(k); }
X509* mut(const X509* c) { return const_cast<X509*>(c); }

BioPtr read_bio(const void* data, std::size_t size) {
  if (size > static_cast<std::size_t>(INT_MAX)) throw Error("input too large for OpenSSL");
  BioPtr bio(BIO_new_mem_buf(data, static_cast<int>(size)));
  if (!bio) fail("out of memory");
  return bio;
}

template <typename Write>
std::string pem_text(const char* what, Write&& write) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get()) != 1) fail(std::string("cannot PEM-encode ") + what);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

template <typename T, typename Encode>
Bytes der_bytes(const char* what, T* obj, Encode&& encode) {
  unsigned char* der = nullptr;
  int n = encode(obj, &der);
  if (n <= 0) fail(std::string("cannot DER-encode ") + what);
  Bytes out(der, der + n);
  OPENSSL_free(der);
  return out;
}

const EVP_MD* md_of(Hash h) { return h == Hash::Sha384 ? EVP_sha384() : EVP_sha256(); }
const EVP_MD* md_of(Curve c) { return md_of(c == Curve::P384 ? Hash::Sha384 : Hash::Sha256); }
const char* name_of(Curve c) { return c == Curve::P384 ? "P-384" : "P-256"; }

std::string name_text(const X509_NAME* name, int nid) {
  char buf[256] = {0};
  if (X509_NAME_get_text_by_NID(const_cast<X509_NAME*>(name), nid, buf, sizeof(buf) - 1) < 0) {
    ERR_clear_error();
    return {};
  }
  return buf;
}

constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
constexpr std::string_view kEnd = "-----END CERTIFICATE-----";

}  // namespace

// ---------- Loading and writing ----------
std::vector<X509Ptr> certs_from_pem(std::string_view pem_in) {
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
    if (e == std::string::npos) throw Error("PEM certificate #" + std::to_string(out.size()) + " has no END line");
    e += kEnd.size();
    std::string block = pem.substr(b, e - b) + "\n";
    BioPtr bio = read_bio(block.data(), block.size());
    X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!x) throw Error("PEM certificate #" + std::to_string(out.size()) + " does not parse: " + last_error());
    out.push_back(std::move(x));
    pos = e;
  }
  ERR_clear_error();
  return out;
}

X509Ptr cert_from_pem(std::string_view pem) {
  auto certs = certs_from_pem(pem);
  if (certs.empty()) throw Error("no PEM certificate found");
  return std::move(certs.front());
}

X509Ptr cert_from_der(ByteView der) {
  if (der.size() > static_cast<std::size_t>(LONG_MAX)) throw Error("certificate too large");
  const unsigned char* p = der.data();
  X509Ptr c(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!c) fail("DER certificate does not parse");
  return c;
}

CrlPtr crl_from_der_or_pem(ByteView data) {
  if (data.size() > static_cast<std::size_t>(INT_MAX)) throw Error("CRL too large");
  const unsigned char* p = data.data();
  CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(data.size())));
  if (!crl) {
    BioPtr bio = read_bio(data.data(), data.size());
    crl.reset(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
  }
  if (!crl) fail("CRL is neither DER nor PEM");
  ERR_clear_error();
  return crl;
}

PkeyPtr private_key_from_pem(std::string_view pem) {
  BioPtr bio = read_bio(pem.data(), pem.size());
  PkeyPtr k(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!k) fail("private key PEM does not parse");
  return k;
}

PkeyPtr public_key_from_pem(std::string_view pem) {
  BioPtr bio = read_bio(pem.data(), pem.size());
  PkeyPtr k(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!k) fail("public key PEM does not parse");
  return k;
}

Bytes cert_to_der(const X509& cert) {
  return der_bytes("certificate", &cert, [](const X509* c, unsigned char** out) { return i2d_X509(c, out); });
}

std::string cert_to_pem(const X509& cert) {
  return pem_text("certificate", [&](BIO* b) { return PEM_write_bio_X509(b, mut(&cert)); });
}

Bytes crl_to_der(const X509_CRL& crl) {
  return der_bytes("CRL", &crl, [](const X509_CRL* c, unsigned char** out) { return i2d_X509_CRL(c, out); });
}

std::string private_key_to_pem(const EVP_PKEY& key) {
  return pem_text("private key",
                  [&](BIO* b) { return PEM_write_bio_PrivateKey(b, &key, nullptr, nullptr, 0, nullptr, nullptr); });
}

std::string public_key_to_pem(const EVP_PKEY& key) {
  return pem_text("public key", [&](BIO* b) { return PEM_write_bio_PUBKEY(b, &key); });
}

// ---------- Names and times ----------
std::string common_name(const X509& cert) { return name_text(X509_get_subject_name(&cert), NID_commonName); }
std::string issuer_common_name(const X509& cert) { return name_text(X509_get_issuer_name(&cert), NID_commonName); }

std::string subject_oneline(const X509& cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return {};
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(&cert), 0,
                     (XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB & ~XN_FLAG_SPC_EQ) | XN_FLAG_DN_REV);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string time_text(const ASN1_TIME& t) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || ASN1_TIME_print(bio.get(), &t) != 1) {
    ERR_clear_error();
    return "?";
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

// ---------- EC keys and raw ECDSA ----------
std::optional<Curve> curve_of(const EVP_PKEY& key) {
  if (EVP_PKEY_get_base_id(&key) != EVP_PKEY_EC) return std::nullopt;
  char group[64] = {0};
  std::size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(&key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  std::string_view g(group, len);
  if (g == "prime256v1" || g == "P-256" || g == "secp256r1") return Curve::P256;
  if (g == "secp384r1" || g == "P-384") return Curve::P384;
  return std::nullopt;
}

PkeyPtr generate_ec_key(Curve c) {
  PkeyPtr k(EVP_EC_gen(name_of(c)));
  if (!k) fail(std::string("cannot generate a ") + name_of(c) + " key");
  return k;
}

PkeyPtr ec_public_key_from_raw(Curve c, ByteView xy) {
  if (xy.size() != 2 * coordinate_size(c)) return nullptr;
  Bytes pub{0x04};
  pub.insert(pub.end(), xy.begin(), xy.end());
  char group[16] = {0};
  std::string_view g = c == Curve::P384 ? "secp384r1" : "prime256v1";
  g.copy(group, sizeof(group) - 1);
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
                         OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub.data(), pub.size()),
                         OSSL_PARAM_construct_end()};
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* key = nullptr;
  if (ctx && EVP_PKEY_fromdata_init(ctx.get()) == 1) EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params);
  ERR_clear_error();
  return PkeyPtr(key);
}

std::optional<Bytes> ec_public_raw(const EVP_PKEY& key) {
  auto c = curve_of(key);
  if (!c) return std::nullopt;
  unsigned char buf[1 + 2 * 48];
  std::size_t n = 0;
  if (EVP_PKEY_get_octet_string_param(&key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, buf, sizeof buf, &n) != 1 ||
      n != 1 + 2 * coordinate_size(*c) || buf[0] != 0x04) {
    ERR_clear_error();
    return std::nullopt;
  }
  return Bytes(buf + 1, buf + n);
}

constexpr std::size_t kMaxEcdsaWidth = 66;  // P-521, the widest curve OpenSSL has

std::optional<Bytes> ecdsa_raw_to_der(ByteView rs) {
  if (rs.empty() || rs.size() % 2 != 0 || rs.size() > 2 * kMaxEcdsaWidth) return std::nullopt;
  const int w = static_cast<int>(rs.size() / 2);
  EcdsaSigPtr sig(ECDSA_SIG_new());
  BnPtr r(BN_bin2bn(rs.data(), w, nullptr));
  BnPtr s(BN_bin2bn(rs.data() + w, w, nullptr));
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  (void)r.release();  // now owned by sig
  (void)s.release();
  unsigned char* der = nullptr;
  int n = i2d_ECDSA_SIG(sig.get(), &der);
  if (n <= 0) {
    ERR_clear_error();
    return std::nullopt;
  }
  Bytes out(der, der + n);
  OPENSSL_free(der);
  return out;
}

std::optional<Bytes> ecdsa_der_to_raw(ByteView der, std::size_t width) {
  if (width == 0 || width > kMaxEcdsaWidth || der.size() > static_cast<std::size_t>(LONG_MAX)) return std::nullopt;
  const unsigned char* p = der.data();
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig || p != der.data() + der.size()) {
    ERR_clear_error();
    return std::nullopt;
  }
  Bytes out(2 * width);
  const int w = static_cast<int>(width);
  if (BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), out.data(), w) != w ||
      BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), out.data() + width, w) != w) {
    ERR_clear_error();
    return std::nullopt;
  }
  return out;
}

bool ecdsa_verify_raw(Curve c, const EVP_PKEY* key, ByteView msg, ByteView rs) {
  if (!key || rs.size() != raw_signature_size(c) || curve_of(*key) != c) return false;
  auto der = ecdsa_raw_to_der(rs);
  if (!der) return false;
  MdCtxPtr md(EVP_MD_CTX_new());
  bool ok = md && EVP_DigestVerifyInit(md.get(), nullptr, md_of(c), nullptr, mut(key)) == 1 &&
            EVP_DigestVerify(md.get(), der->data(), der->size(), msg.data(), msg.size()) == 1;
  ERR_clear_error();
  return ok;
}

Bytes ecdsa_sign_raw(Curve c, const EVP_PKEY& key, ByteView msg) {
  if (curve_of(key) != c) throw Error(std::string("ECDSA signing key is not a ") + name_of(c) + " key");
  MdCtxPtr md(EVP_MD_CTX_new());
  std::size_t len = 0;
  if (!md || EVP_DigestSignInit(md.get(), nullptr, md_of(c), nullptr, mut(&key)) != 1 ||
      EVP_DigestSign(md.get(), nullptr, &len, msg.data(), msg.size()) != 1)
    fail("ECDSA signing failed");
  Bytes der(len);
  if (EVP_DigestSign(md.get(), der.data(), &len, msg.data(), msg.size()) != 1) fail("ECDSA signing failed");
  der.resize(len);
  auto raw = ecdsa_der_to_raw(der, coordinate_size(c));
  if (!raw) throw Error(std::string("ECDSA signature does not fit ") + name_of(c));
  return std::move(*raw);
}

// ---------- Certificate chains ----------
ChainResult verify_cert_chain(X509* leaf, const std::vector<X509*>& untrusted, const std::vector<X509*>& trusted,
                              const ChainOptions& opts) {
  ChainResult res;
  auto internal = [&](std::string why) {
    res.reason = why;
    res.error = std::move(why);
    ERR_clear_error();
    return std::move(res);
  };
  if (!leaf) return internal("no certificate to verify");
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509StackPtr chain(sk_X509_new_null());
  if (!store || !ctx || !chain) return internal("out of memory");
  for (X509* r : trusted)
    if (r) X509_STORE_add_cert(store.get(), r);
  if (opts.check_crls)
    for (X509_CRL* crl : opts.crls)
      if (crl) X509_STORE_add_crl(store.get(), crl);
  for (X509* c : untrusted)
    if (c && c != leaf && sk_X509_push(chain.get(), c) <= 0) return internal("out of memory");
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, chain.get()) != 1)
    return internal("cannot initialise the X509 store: " + last_error());
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  unsigned long flags = 0;
  if (opts.check_crls) flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
  if (opts.strict) flags |= X509_V_FLAG_X509_STRICT;
  if (!opts.time) flags |= X509_V_FLAG_NO_CHECK_TIME;
  X509_VERIFY_PARAM_set_flags(param, flags);
  if (opts.time) X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(*opts.time));
  int rc = X509_verify_cert(ctx.get());
  ERR_clear_error();
  if (rc == 1) {
    res.ok = true;
    STACK_OF(X509)* built = X509_STORE_CTX_get1_chain(ctx.get());
    for (int i = 0; built && i < sk_X509_num(built); ++i) res.path.emplace_back(sk_X509_value(built, i));
    sk_X509_free(built);  // the certificates' references moved into res.path
    return res;
  }
  int err = X509_STORE_CTX_get_error(ctx.get());
  res.reason = X509_verify_cert_error_string(err);
  res.depth = X509_STORE_CTX_get_error_depth(ctx.get());
  if (X509* bad = X509_STORE_CTX_get_current_cert(ctx.get()); bad && X509_up_ref(bad) == 1) res.failed.reset(bad);
  res.error = res.reason + " (at depth " + std::to_string(res.depth) +
              (res.failed ? ", certificate '" + common_name(*res.failed) + "'" : std::string()) + ")";
  return res;
}

ChainResult verify_cert_chain(const std::vector<X509Ptr>& chain, const std::vector<X509*>& trusted,
                              const ChainOptions& opts) {
  if (chain.empty()) {
    ChainResult res;
    res.reason = res.error = "empty certificate chain";
    return res;
  }
  std::vector<X509*> untrusted;
  for (std::size_t i = 1; i < chain.size(); ++i) untrusted.push_back(chain[i].get());
  return verify_cert_chain(chain[0].get(), untrusted, trusted, opts);
}

// ---------- Building test certificates ----------
namespace {

void add_conf_ext(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  if (!ext) fail(std::string("cannot build extension ") + OBJ_nid2sn(nid) + " = " + value);
  if (X509_add_ext(cert, ext.get(), -1) != 1) fail(std::string("cannot add extension ") + OBJ_nid2sn(nid));
}

void add_raw_ext(X509* cert, const std::string& oid, const Bytes& content) {
  ASN1_OBJECT* obj = OBJ_txt2obj(oid.c_str(), 1);
  ASN1_OCTET_STRING* os = ASN1_OCTET_STRING_new();
  ExtensionPtr ext;
  if (obj && os && content.size() <= static_cast<std::size_t>(INT_MAX) &&
      ASN1_OCTET_STRING_set(os, content.data(), static_cast<int>(content.size())) == 1)
    ext.reset(X509_EXTENSION_create_by_OBJ(nullptr, obj, 0, os));
  ASN1_OBJECT_free(obj);
  ASN1_OCTET_STRING_free(os);
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) fail("cannot build extension " + oid);
}

void set_time(ASN1_TIME* field, std::int64_t t) {
  if (!ASN1_TIME_set(field, static_cast<time_t>(t))) fail("cannot set a certificate time");
}

}  // namespace

X509Ptr make_cert(const CertSpec& spec, const EVP_PKEY& subject_key, const X509* issuer, const EVP_PKEY& issuer_key) {
  X509Ptr c(X509_new());
  if (!c) fail("out of memory");
  X509_set_version(c.get(), 2);  // v3
  if (spec.serial > 0) {
    ASN1_INTEGER_set(X509_get_serialNumber(c.get()), spec.serial);
  } else {
    unsigned char serial[16];
    random_fill(serial);
    serial[0] = static_cast<unsigned char>((serial[0] & 0x7f) | 0x01);  // positive, full length
    BnPtr bn(BN_bin2bn(serial, sizeof serial, nullptr));
    if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(c.get()))) fail("cannot set the serial number");
  }
  NamePtr name(X509_NAME_new());
  if (!name) fail("out of memory");
  for (const auto& [field, value] : spec.subject)
    if (X509_NAME_add_entry_by_txt(name.get(), field.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0) != 1)
      fail("cannot add name entry " + field);
  X509_set_subject_name(c.get(), name.get());
  X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : name.get());
  set_time(X509_getm_notBefore(c.get()), spec.not_before);
  set_time(X509_getm_notAfter(c.get()), spec.not_after);
  if (X509_set_pubkey(c.get(), mut(&subject_key)) != 1) fail("cannot set the public key");

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? mut(issuer) : c.get(), c.get(), nullptr, nullptr, 0);
  if (spec.ca) {
    add_conf_ext(c.get(), &ctx, NID_basic_constraints,
                 "critical,CA:TRUE" + (spec.path_len >= 0 ? ",pathlen:" + std::to_string(spec.path_len) : ""));
    add_conf_ext(c.get(), &ctx, NID_key_usage,
                 spec.key_usage.empty() ? "critical,keyCertSign,cRLSign" : spec.key_usage);
  } else {
    add_conf_ext(c.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE");
    add_conf_ext(c.get(), &ctx, NID_key_usage, spec.key_usage.empty() ? "critical,digitalSignature" : spec.key_usage);
  }
  if (spec.subject_key_id) add_conf_ext(c.get(), &ctx, NID_subject_key_identifier, "hash");
  if (spec.authority_key_id) add_conf_ext(c.get(), &ctx, NID_authority_key_identifier, "keyid:always");
  for (const auto& [oid, content] : spec.raw_extensions) add_raw_ext(c.get(), oid, content);
  if (X509_sign(c.get(), mut(&issuer_key), md_of(spec.hash)) <= 0) {
    std::string cn;
    for (const auto& [field, value] : spec.subject)
      if (field == "CN") cn = value;
    fail("cannot sign certificate '" + cn + "'");
  }
  return c;
}

CrlPtr make_crl(const CrlSpec& spec, const X509& issuer, const EVP_PKEY& issuer_key) {
  CrlPtr crl(X509_CRL_new());
  if (!crl) fail("out of memory");
  X509_CRL_set_version(crl.get(), 1);  // v2
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(&issuer));
  ASN1_TIME* t = ASN1_TIME_new();
  bool ok = t && ASN1_TIME_set(t, static_cast<time_t>(spec.last_update)) && X509_CRL_set1_lastUpdate(crl.get(), t);
  for (const X509* cert : spec.revoked) {
    X509_REVOKED* rev = X509_REVOKED_new();
    ok = ok && rev &&
         X509_REVOKED_set_serialNumber(rev, const_cast<ASN1_INTEGER*>(X509_get0_serialNumber(cert))) == 1 &&
         X509_REVOKED_set_revocationDate(rev, t) == 1 && X509_CRL_add0_revoked(crl.get(), rev) == 1;
    if (!ok) X509_REVOKED_free(rev);
  }
  ok = ok && ASN1_TIME_set(t, static_cast<time_t>(spec.next_update)) && X509_CRL_set1_nextUpdate(crl.get(), t);
  ASN1_TIME_free(t);
  if (!ok) fail("cannot fill the CRL");
  if (!spec.revoked.empty()) X509_CRL_sort(crl.get());
  // CRL number (RFC 5280 5.2.3, required by strict parsers such as webpki) and the authority key identifier.
  ASN1_INTEGER* number = ASN1_INTEGER_new();
  ok = number && ASN1_INTEGER_set(number, spec.number) == 1 &&
       X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number, 0, 0) == 1;
  ASN1_INTEGER_free(number);
  if (!ok) fail("cannot add the CRL number");
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, mut(&issuer), nullptr, nullptr, crl.get(), 0);
  ExtensionPtr aki(X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always"));
  if (!aki || X509_CRL_add_ext(crl.get(), aki.get(), -1) != 1) fail("cannot build the CRL authority key identifier");
  if (X509_CRL_sign(crl.get(), mut(&issuer_key), md_of(spec.hash)) <= 0) fail("cannot sign the CRL");
  return crl;
}

}  // namespace pi::crypto::ossl
