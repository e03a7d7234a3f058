#include "devtee/test_pki.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>

#include "crypto/openssl.hpp"

namespace pi::devtee {
namespace {

namespace fs = std::filesystem;

namespace ossl = pi::crypto::ossl;
using ossl::PkeyPtr;
using ossl::X509Ptr;

// Every OpenSSL failure surfaces as "test PKI: <what>".
template <typename F>
auto ossl_call(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const ossl::Error& e) {
    throw std::runtime_error(std::string("test PKI: ") + e.what());
  }
}

constexpr std::int64_t kDay = 86400;
constexpr std::int64_t kTenYears = 10LL * 365 * kDay;

PkeyPtr new_p256() {
  return ossl_call([] { return ossl::generate_ec_key(ossl::Curve::P256); });
}
PkeyPtr key_from_pem(const std::string& pem) {
  return ossl_call([&] { return ossl::private_key_from_pem(pem); });
}
X509Ptr cert_from_pem(const std::string& pem) {
  return ossl_call([&] { return ossl::cert_from_pem(pem); });
}
std::string key_pem(const EVP_PKEY& k) {
  return ossl_call([&] { return ossl::private_key_to_pem(k); });
}
std::string cert_pem(const X509& c) {
  return ossl_call([&] { return ossl::cert_to_pem(c); });
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

// The Intel SGX extension as Intel's PCK Platform CA writes it (checked against a real PCK certificate, see
// tests/fixtures/tdx/README.md): PPID, TCB (components 1..16, PCESVN, CPUSVN), PCE-ID, FMSPC, SGX type
// (Scalable), PlatformInstanceID and Configuration (dynamicPlatform, cachedKeys, SMTEnabled).
Bytes sgx_extension_der() {
  Bytes ppid(kSimPpid.begin(), kSimPpid.end());
  Bytes tcb_items;
  for (std::uint8_t i = 1; i <= 16; ++i)
    tcb_items = cat({tcb_items, der(0x30, cat({sgx_oid({0x02, i}), der_int(kSimCpuSvn[i - 1])}))});
  tcb_items = cat({tcb_items, der(0x30, cat({sgx_oid({0x02, 17}), der_int(kSimPceSvn)}))});
  tcb_items =
      cat({tcb_items, der(0x30, cat({sgx_oid({0x02, 18}), der(0x04, Bytes(kSimCpuSvn.begin(), kSimCpuSvn.end()))}))});
  const Bytes yes = der(0x01, Bytes{0xff});
  Bytes config = cat({der(0x30, cat({sgx_oid({0x07, 0x01}), yes})), der(0x30, cat({sgx_oid({0x07, 0x02}), yes})),
                      der(0x30, cat({sgx_oid({0x07, 0x03}), yes}))});
  Bytes items = cat({
      der(0x30, cat({sgx_oid({0x01}), der(0x04, ppid)})), der(0x30, cat({sgx_oid({0x02}), der(0x30, tcb_items)})),
      der(0x30, cat({sgx_oid({0x03}), der(0x04, Bytes(kSimPceId.begin(), kSimPceId.end()))})),
      der(0x30, cat({sgx_oid({0x04}), der(0x04, Bytes(kSimFmspc.begin(), kSimFmspc.end()))})),
      der(0x30, cat({sgx_oid({0x05}), der(0x0A, Bytes{0x01})})),      // SGX type: Scalable (Platform CA certificates)
      der(0x30, cat({sgx_oid({0x06}), der(0x04, Bytes(16, 0x5b))})),  // PlatformInstanceID
      der(0x30, cat({sgx_oid({0x07}), der(0x30, config)})),           // Configuration
  });
  return der(0x30, items);
}

// X.509 CRL distribution points (2.5.29.31) with one full-name URI, as on every Intel SGX certificate.
Bytes crl_dp_der(std::string_view uri) {
  Bytes u(uri.begin(), uri.end());
  return der(0x30, der(0x30, der(0xA0, der(0xA0, der(0x86, u)))));
}

// Subjects carry Intel's common names (verifiers such as go-tdx-guest check them before the root of trust)
// with an organisation that says what they are: never Intel's.
ossl::CertSpec spec(const char* cn, long serial, bool ca, std::int64_t now, std::string_view crl_uri) {
  ossl::CertSpec s;
  s.subject = {{"CN", cn}, {"O", kSimPkiOrganization}, {"C", "XX"}};
  s.serial = serial;
  s.not_before = now - kDay;
  s.not_after = now + kTenYears;
  s.ca = ca;
  s.path_len = ca ? 1 : -1;
  s.key_usage = ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature,nonRepudiation";
  s.raw_extensions = {{"2.5.29.31", crl_dp_der(crl_uri)}};
  return s;
}

Bytes make_crl(const X509& issuer, const EVP_PKEY& issuer_key, std::int64_t now) {
  ossl::CrlSpec s;
  s.last_update = now - kDay;
  s.next_update = now + kTenYears;
  return ossl_call([&] { return ossl::crl_to_der(*ossl::make_crl(s, issuer, issuer_key)); });
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
  return ossl_call([&] { return ossl::cert_to_der(*c); });
}

TestPki generate_test_pki(std::int64_t now) {
  PkeyPtr root_key = new_p256(), pck_ca_key = new_p256(), pck_key = new_p256(), tcb_key = new_p256(), ak = new_p256();
  auto issue = [&](const ossl::CertSpec& s, const EVP_PKEY& key, const X509* issuer, const EVP_PKEY& issuer_key) {
    return ossl_call([&] { return ossl::make_cert(s, key, issuer, issuer_key); });
  };
  // Intel's extensions on each: authority and subject key ids (also on the self-signed root), CRL distribution
  // points, key usage, basic constraints (root pathlen 1, PCK CA pathlen 0) and, on the PCK leaf, the SGX
  // extension: six on the leaf, as go-tdx-guest requires.
  const std::string root_crl_uri = std::string(kSimCrlBaseUrl) + "/IntelSGXRootCA.der";
  ossl::CertSpec root_spec = spec("Intel SGX Root CA", 1, true, now, root_crl_uri);
  X509Ptr root = issue(root_spec, *root_key, nullptr, *root_key);
  ossl::CertSpec pck_ca_spec = spec("Intel SGX PCK Platform CA", 2, true, now, root_crl_uri);
  pck_ca_spec.path_len = 0;
  X509Ptr pck_ca = issue(pck_ca_spec, *pck_ca_key, root.get(), *root_key);
  X509Ptr tcb = issue(spec("Intel SGX TCB Signing", 3, false, now, root_crl_uri), *tcb_key, root.get(), *root_key);
  ossl::CertSpec pck_spec = spec("Intel SGX PCK Certificate", 4, false, now,
                                 std::string(kSimCrlBaseUrl) + "/sgx/certification/v4/pckcrl?ca=platform&encoding=der");
  pck_spec.raw_extensions.emplace_back("1.2.840.113741.1.13.1", sgx_extension_der());
  X509Ptr pck = issue(pck_spec, *pck_key, pck_ca.get(), *pck_ca_key);
  TestPki p;
  p.root_cert_pem = cert_pem(*root);
  p.pck_ca_cert_pem = cert_pem(*pck_ca);
  p.pck_cert_pem = cert_pem(*pck);
  p.tcb_cert_pem = cert_pem(*tcb);
  p.root_key_pem = key_pem(*root_key);
  p.pck_ca_key_pem = key_pem(*pck_ca_key);
  p.pck_key_pem = key_pem(*pck_key);
  p.tcb_key_pem = key_pem(*tcb_key);
  p.attestation_key_pem = key_pem(*ak);
  p.root_crl_der = make_crl(*root, *root_key, now);
  p.pck_crl_der = make_crl(*pck_ca, *pck_ca_key, now);
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
  Bytes raw = ossl_call([&] { return ossl::ecdsa_sign_raw(ossl::Curve::P256, *key, msg); });
  std::array<std::uint8_t, 64> out{};
  std::copy(raw.begin(), raw.end(), out.begin());
  return out;
}

std::array<std::uint8_t, 64> p256_public_raw(const std::string& pem) {
  PkeyPtr key = key_from_pem(pem);
  auto raw = ossl::ec_public_raw(*key);
  if (!raw || ossl::curve_of(*key) != ossl::Curve::P256)
    throw std::runtime_error("test PKI: not an uncompressed P-256 public key");
  std::array<std::uint8_t, 64> out{};
  std::copy(raw->begin(), raw->end(), out.begin());
  return out;
}

}  // namespace pi::devtee
