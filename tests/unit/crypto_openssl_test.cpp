// crypto/openssl: the one OpenSSL module (handles, PEM/DER, raw ECDSA, the chain verifier, test-cert builders).
#include "crypto/openssl.hpp"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <string>

using namespace pi;
namespace ossl = pi::crypto::ossl;
using ossl::Curve;

namespace {

constexpr std::int64_t kNow = 1'700'000'000;  // 2023-11-14
constexpr std::int64_t kDay = 86400;

struct Issued {
  ossl::PkeyPtr key;
  ossl::X509Ptr cert;
};

// issuer == nullptr: a self-signed root.
Issued issue(const std::string& cn, bool ca, const Issued* issuer, long serial, std::int64_t not_before = kNow - kDay,
             std::int64_t not_after = kNow + 365 * kDay) {
  Issued out;
  out.key = ossl::generate_ec_key(Curve::P256);
  ossl::CertSpec spec;
  spec.subject = {{"CN", cn}, {"O", "pi unit test"}};
  spec.serial = serial;
  spec.not_before = not_before;
  spec.not_after = not_after;
  spec.ca = ca;
  out.cert = ossl::make_cert(spec, *out.key, issuer ? issuer->cert.get() : nullptr, issuer ? *issuer->key : *out.key);
  return out;
}

struct Pki {
  Issued root = issue("Test Root", true, nullptr, 1);
  Issued ica = issue("Test ICA", true, &root, 2);
  Issued leaf = issue("Test Leaf", false, &ica, 3);
};

ossl::CrlPtr crl_by(const Issued& issuer, std::vector<const X509*> revoked = {}) {
  ossl::CrlSpec spec;
  spec.last_update = kNow - kDay;
  spec.next_update = kNow + 30 * kDay;
  spec.revoked = std::move(revoked);
  return ossl::make_crl(spec, *issuer.cert, *issuer.key);
}

ossl::ChainOptions at(std::int64_t t) {
  ossl::ChainOptions o;
  o.time = t;
  return o;
}

}  // namespace

// ---------- PEM / DER ----------

TEST(CryptoOpenssl, CertificatePemAndDerRoundTrip) {
  Pki p;
  std::string pem = ossl::cert_to_pem(*p.leaf.cert);
  auto back = ossl::cert_from_pem(pem);
  EXPECT_EQ(X509_cmp(back.get(), p.leaf.cert.get()), 0);
  Bytes der = ossl::cert_to_der(*p.leaf.cert);
  EXPECT_EQ(der, ossl::cert_to_der(*back));
  EXPECT_EQ(X509_cmp(ossl::cert_from_der(der).get(), p.leaf.cert.get()), 0);
}

TEST(CryptoOpenssl, PemChainKeepsOrderAndIgnoresNulsAndText) {
  Pki p;
  std::string text = "leaf:\n" + ossl::cert_to_pem(*p.leaf.cert) + "some text\n" + ossl::cert_to_pem(*p.ica.cert) +
                     std::string(3, '\0') + ossl::cert_to_pem(*p.root.cert) + std::string(1, '\0');
  auto chain = ossl::certs_from_pem(text);
  ASSERT_EQ(chain.size(), 3u);
  EXPECT_EQ(ossl::common_name(*chain[0]), "Test Leaf");
  EXPECT_EQ(ossl::common_name(*chain[1]), "Test ICA");
  EXPECT_EQ(ossl::common_name(*chain[2]), "Test Root");
}

TEST(CryptoOpenssl, BadPemIsAnErrorNotACrash) {
  EXPECT_TRUE(ossl::certs_from_pem("").empty());
  EXPECT_TRUE(ossl::certs_from_pem("no certificate here").empty());
  EXPECT_THROW(ossl::cert_from_pem(""), ossl::Error);
  try {
    ossl::certs_from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    FAIL() << "a corrupt block must throw";
  } catch (const ossl::Error& e) {
    EXPECT_NE(std::string(e.what()).find("PEM certificate #0 does not parse"), std::string::npos) << e.what();
  }
  Pki p;
  try {
    ossl::certs_from_pem(ossl::cert_to_pem(*p.leaf.cert) + "-----BEGIN CERTIFICATE-----\nMIIB");
    FAIL() << "a truncated block must throw";
  } catch (const ossl::Error& e) {
    EXPECT_NE(std::string(e.what()).find("PEM certificate #1 has no END line"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ossl::cert_from_der(as_bytes("not DER")), ossl::Error);
  EXPECT_THROW(ossl::cert_from_der(ByteView{}), ossl::Error);
  EXPECT_THROW(ossl::crl_from_der_or_pem(as_bytes("not a CRL")), ossl::Error);
  EXPECT_THROW(ossl::private_key_from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
               ossl::Error);
  EXPECT_THROW(ossl::public_key_from_pem("garbage"), ossl::Error);
}

TEST(CryptoOpenssl, CrlDerAndPemRoundTrip) {
  Pki p;
  auto crl = crl_by(p.ica, {p.leaf.cert.get()});
  Bytes der = ossl::crl_to_der(*crl);
  auto from_der = ossl::crl_from_der_or_pem(der);
  EXPECT_EQ(ossl::crl_to_der(*from_der), der);
  ossl::BioPtr bio(BIO_new(BIO_s_mem()));
  ASSERT_EQ(PEM_write_bio_X509_CRL(bio.get(), crl.get()), 1);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  auto from_pem = ossl::crl_from_der_or_pem(ByteView(reinterpret_cast<const std::uint8_t*>(data), n));
  EXPECT_EQ(ossl::crl_to_der(*from_pem), der);
}

TEST(CryptoOpenssl, KeyPemRoundTrip) {
  for (Curve c : {Curve::P256, Curve::P384}) {
    auto key = ossl::generate_ec_key(c);
    auto priv = ossl::private_key_from_pem(ossl::private_key_to_pem(*key));
    auto pub = ossl::public_key_from_pem(ossl::public_key_to_pem(*key));
    EXPECT_EQ(ossl::curve_of(*priv), c);
    EXPECT_EQ(ossl::ec_public_raw(*priv), ossl::ec_public_raw(*key));
    EXPECT_EQ(ossl::ec_public_raw(*pub), ossl::ec_public_raw(*key));
    // A signature by the reloaded private key verifies with the reloaded public key.
    Bytes sig = ossl::ecdsa_sign_raw(c, *priv, as_bytes("round trip"));
    EXPECT_TRUE(ossl::ecdsa_verify_raw(c, pub.get(), as_bytes("round trip"), sig));
  }
}

TEST(CryptoOpenssl, NamesAndTimes) {
  Pki p;
  EXPECT_EQ(ossl::common_name(*p.leaf.cert), "Test Leaf");
  EXPECT_EQ(ossl::issuer_common_name(*p.leaf.cert), "Test ICA");
  // Printed in reverse of the encoded order (CN was encoded first here).
  EXPECT_EQ(ossl::subject_oneline(*p.leaf.cert), "O=pi unit test, CN=Test Leaf");
  EXPECT_EQ(ossl::time_text(*X509_get0_notBefore(p.leaf.cert.get())), "Nov 13 22:13:20 2023 GMT");
}

// ---------- EC keys and raw ECDSA ----------

TEST(CryptoOpenssl, RawPublicKeyRoundTrip) {
  for (Curve c : {Curve::P256, Curve::P384}) {
    auto key = ossl::generate_ec_key(c);
    auto raw = ossl::ec_public_raw(*key);
    ASSERT_TRUE(raw);
    EXPECT_EQ(raw->size(), 2 * ossl::coordinate_size(c));
    auto pub = ossl::ec_public_key_from_raw(c, *raw);
    ASSERT_TRUE(pub);
    EXPECT_EQ(ossl::ec_public_raw(*pub), raw);
    EXPECT_EQ(ossl::curve_of(*pub), c);
    // Wrong size, wrong curve width, and a point that is not on the curve.
    EXPECT_FALSE(ossl::ec_public_key_from_raw(c, ByteView(*raw).first(raw->size() - 1)));
    EXPECT_FALSE(ossl::ec_public_key_from_raw(c == Curve::P256 ? Curve::P384 : Curve::P256, *raw));
    Bytes off = *raw;
    off.back() ^= 0x01;
    EXPECT_FALSE(ossl::ec_public_key_from_raw(c, off));
  }
}

TEST(CryptoOpenssl, EcdsaRawDerKnownEncoding) {
  // r = 1, s = 0x80 (needs a leading zero in DER), 32-byte fixed width.
  Bytes rs(64, 0);
  rs[31] = 0x01;
  rs[63] = 0x80;
  auto der = ossl::ecdsa_raw_to_der(rs);
  ASSERT_TRUE(der);
  EXPECT_EQ(to_hex(*der),
            "3007020101020200"
            "80");
  EXPECT_EQ(ossl::ecdsa_der_to_raw(*der, 32), rs);
  // The same DER at P-384 width pads to 48 bytes each.
  auto wide = ossl::ecdsa_der_to_raw(*der, 48);
  ASSERT_TRUE(wide);
  EXPECT_EQ(wide->size(), 96u);
  EXPECT_EQ((*wide)[47], 0x01);
  EXPECT_EQ((*wide)[95], 0x80);
}

TEST(CryptoOpenssl, EcdsaRawDerRejectsMalformedInput) {
  EXPECT_FALSE(ossl::ecdsa_raw_to_der(ByteView{}));
  EXPECT_FALSE(ossl::ecdsa_raw_to_der(Bytes(63, 1)));  // odd
  EXPECT_FALSE(ossl::ecdsa_der_to_raw(as_bytes("junk"), 32));
  EXPECT_FALSE(ossl::ecdsa_der_to_raw(ByteView{}, 32));
  Bytes rs(96, 0xff);
  auto der = ossl::ecdsa_raw_to_der(rs);
  ASSERT_TRUE(der);
  EXPECT_FALSE(ossl::ecdsa_der_to_raw(*der, 32)) << "48-byte integers do not fit a 32-byte width";
  Bytes trailing = *der;
  trailing.push_back(0);
  EXPECT_FALSE(ossl::ecdsa_der_to_raw(trailing, 48)) << "trailing bytes after the DER";
  EXPECT_EQ(ossl::ecdsa_der_to_raw(*der, 48), rs);
}

TEST(CryptoOpenssl, EcdsaSignVerifyRaw) {
  for (Curve c : {Curve::P256, Curve::P384}) {
    auto key = ossl::generate_ec_key(c);
    Bytes msg(1000, 0x42);
    Bytes sig = ossl::ecdsa_sign_raw(c, *key, msg);
    ASSERT_EQ(sig.size(), ossl::raw_signature_size(c));
    EXPECT_TRUE(ossl::ecdsa_verify_raw(c, key.get(), msg, sig));
    Bytes other = msg;
    other[0] ^= 1;
    EXPECT_FALSE(ossl::ecdsa_verify_raw(c, key.get(), other, sig));
    Bytes bad = sig;
    bad[5] ^= 1;
    EXPECT_FALSE(ossl::ecdsa_verify_raw(c, key.get(), msg, bad));
    EXPECT_FALSE(ossl::ecdsa_verify_raw(c, key.get(), msg, ByteView(sig).first(sig.size() - 1)));
    EXPECT_FALSE(ossl::ecdsa_verify_raw(c, nullptr, msg, sig));
    EXPECT_FALSE(ossl::ecdsa_verify_raw(c, key.get(), msg, Bytes(sig.size(), 0))) << "r = s = 0";
    Curve wrong = c == Curve::P256 ? Curve::P384 : Curve::P256;
    EXPECT_FALSE(ossl::ecdsa_verify_raw(wrong, key.get(), msg, sig));
    EXPECT_THROW(ossl::ecdsa_sign_raw(wrong, *key, msg), ossl::Error);
  }
}

// ---------- Chains ----------

TEST(CryptoOpenssl, ChainVerifies) {
  Pki p;
  std::vector<ossl::X509Ptr> chain;
  chain.push_back(std::move(p.leaf.cert));
  chain.emplace_back(X509_dup(p.ica.cert.get()));
  auto r = ossl::verify_cert_chain(chain, {p.root.cert.get()}, at(kNow));
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(r.error.empty());
  ASSERT_EQ(r.path.size(), 3u);
  EXPECT_EQ(ossl::common_name(*r.path.front()), "Test Leaf");
  EXPECT_EQ(X509_cmp(r.path.back().get(), p.root.cert.get()), 0);
}

TEST(CryptoOpenssl, ChainWithoutTrustedRootFails) {
  Pki p;
  Issued stranger = issue("Other Root", true, nullptr, 9);
  // The chain carries its own root: never a trust anchor by itself.
  auto r = ossl::verify_cert_chain(p.leaf.cert.get(), {p.ica.cert.get(), p.root.cert.get()}, {stranger.cert.get()},
                                   at(kNow));
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("at depth"), std::string::npos) << r.error;
  // A missing intermediate: the leaf's issuer cannot be found.
  auto missing = ossl::verify_cert_chain(p.leaf.cert.get(), {}, {p.root.cert.get()}, at(kNow));
  EXPECT_FALSE(missing.ok);
  EXPECT_EQ(missing.depth, 0);
  EXPECT_EQ(missing.error, "unable to get local issuer certificate (at depth 0, certificate 'Test Leaf')");
  ASSERT_TRUE(missing.failed);
  EXPECT_EQ(ossl::common_name(*missing.failed), "Test Leaf");
  // No certificate at all.
  EXPECT_FALSE(ossl::verify_cert_chain(std::vector<ossl::X509Ptr>{}, {p.root.cert.get()}).ok);
  EXPECT_FALSE(ossl::verify_cert_chain(nullptr, {}, {p.root.cert.get()}).ok);
}

TEST(CryptoOpenssl, ChainSignedByAnImpostorFails) {
  Pki p;
  // Same names as the real ICA, different key: the leaf's signature does not verify under it.
  Issued fake_ica = issue("Test ICA", true, &p.root, 2);
  auto r = ossl::verify_cert_chain(p.leaf.cert.get(), {fake_ica.cert.get()}, {p.root.cert.get()}, at(kNow));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.depth, 0) << r.error;
}

TEST(CryptoOpenssl, ChainCrlRevocation) {
  Pki p;
  auto root_crl = crl_by(p.root);
  auto clean_ica_crl = crl_by(p.ica);
  auto revoking_ica_crl = crl_by(p.ica, {p.leaf.cert.get()});

  ossl::ChainOptions o = at(kNow);
  o.check_crls = true;
  o.crls = {root_crl.get(), clean_ica_crl.get()};
  auto ok = ossl::verify_cert_chain(p.leaf.cert.get(), {p.ica.cert.get()}, {p.root.cert.get()}, o);
  EXPECT_TRUE(ok.ok) << ok.error;

  o.crls = {root_crl.get(), revoking_ica_crl.get()};
  auto revoked = ossl::verify_cert_chain(p.leaf.cert.get(), {p.ica.cert.get()}, {p.root.cert.get()}, o);
  EXPECT_FALSE(revoked.ok);
  EXPECT_EQ(revoked.error, "certificate revoked (at depth 0, certificate 'Test Leaf')");

  // Revocation checking without the issuer's CRL fails closed.
  o.crls = {root_crl.get()};
  auto no_crl = ossl::verify_cert_chain(p.leaf.cert.get(), {p.ica.cert.get()}, {p.root.cert.get()}, o);
  EXPECT_FALSE(no_crl.ok);
  EXPECT_NE(no_crl.error.find("unable to get certificate CRL"), std::string::npos) << no_crl.error;

  // Without check_crls the revoking CRL is not consulted.
  ossl::ChainOptions plain = at(kNow);
  plain.crls = {revoking_ica_crl.get()};
  EXPECT_TRUE(ossl::verify_cert_chain(p.leaf.cert.get(), {p.ica.cert.get()}, {p.root.cert.get()}, plain).ok);
}

TEST(CryptoOpenssl, ChainTimeOutsideValidity) {
  Pki p;
  auto before =
      ossl::verify_cert_chain(p.leaf.cert.get(), {p.ica.cert.get()}, {p.root.cert.get()}, at(kNow - 2 * kDay));
  EXPECT_FALSE(before.ok);
  EXPECT_NE(before.error.find("not yet valid"), std::string::npos) << before.error;
  auto after =
      ossl::verify_cert_chain(p.leaf.cert.get(), {p.ica.cert.get()}, {p.root.cert.get()}, at(kNow + 400 * kDay));
  EXPECT_FALSE(after.ok);
  EXPECT_NE(after.error.find("expired"), std::string::npos) << after.error;
  // An expired leaf under a valid CA: the failure names the leaf.
  Issued old_leaf = issue("Old Leaf", false, &p.ica, 5, kNow - 10 * kDay, kNow - 5 * kDay);
  auto expired = ossl::verify_cert_chain(old_leaf.cert.get(), {p.ica.cert.get()}, {p.root.cert.get()}, at(kNow));
  EXPECT_EQ(expired.error, "certificate has expired (at depth 0, certificate 'Old Leaf')");
  // No time given: validity periods are the caller's business.
  EXPECT_TRUE(ossl::verify_cert_chain(old_leaf.cert.get(), {p.ica.cert.get()}, {p.root.cert.get()}).ok);
}

// ---------- Test-certificate builder ----------

TEST(CryptoOpenssl, MakeCertHonoursTheSpec) {
  auto key = ossl::generate_ec_key(Curve::P384);
  ossl::CertSpec spec;
  spec.subject = {{"CN", "Spec"}, {"C", "XX"}};
  spec.not_before = kNow;
  spec.not_after = kNow + kDay;
  spec.ca = true;
  spec.path_len = 0;
  spec.hash = ossl::Hash::Sha384;
  spec.raw_extensions = {{"1.2.3.4.5", Bytes{0x04, 0x01, 0x2a}}};
  auto cert = ossl::make_cert(spec, *key, nullptr, *key);
  EXPECT_EQ(X509_check_ca(cert.get()), 1);
  EXPECT_EQ(X509_get_signature_nid(cert.get()), NID_ecdsa_with_SHA384);
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert.get());
  EXPECT_EQ(ASN1_STRING_length(serial), 16) << "random 127-bit serial";
  ASN1_OBJECT* oid = OBJ_txt2obj("1.2.3.4.5", 1);
  EXPECT_GE(X509_get_ext_by_OBJ(cert.get(), oid, -1), 0);
  ASN1_OBJECT_free(oid);
  EXPECT_TRUE(ossl::verify_cert_chain(cert.get(), {}, {cert.get()}, at(kNow)).ok);
  spec.subject = {{"NOT-A-FIELD", "x"}};
  EXPECT_THROW(ossl::make_cert(spec, *key, nullptr, *key), ossl::Error);
}
