#include "verify/gpu_cert.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <ctime>

#include "crypto/hash.hpp"
#include "verify/gpu.hpp"

namespace pi::verify::gpu {

using namespace pi::protocol::gpu;  // the report layout and its parse errors

namespace ossl = pi::crypto::ossl;

namespace {

std::string cn_of(const X509* cert) {
  std::string s = subject_of(*cert);
  auto p = s.find("CN=");
  if (p == std::string::npos) return s;
  auto e = s.find(", ", p);
  return s.substr(p + 3, e == std::string::npos ? std::string::npos : e - p - 3);
}

}  // namespace

std::vector<X509Ptr> parse_pem_chain(std::string_view pem) {
  std::vector<X509Ptr> out;
  try {
    out = ossl::certs_from_pem(pem);
  } catch (const ossl::Error& e) {
    throw ParseError(e.what());
  }
  if (out.empty()) throw ParseError("no PEM certificate found in the certificate chain");
  return out;
}

Result verify_report_signature(const SpdmReport& report, const x509_st& leaf) {
  const EVP_PKEY* key = X509_get0_pubkey(&leaf);
  if (!key) return {false, "leaf certificate has no usable public key: " + ossl::last_error()};
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) return {false, "leaf key is not an EC key"};
  if (ossl::curve_of(*key) != ossl::Curve::P384) {
    char group[64] = {0};
    std::size_t glen = 0;
    EVP_PKEY_get_utf8_string_param(key, "group", group, sizeof group, &glen);
    ERR_clear_error();
    return {false, std::string("leaf key is not on P-384 (group ") + group + ")"};
  }
  if (report.signature.size() != kP384SignatureSize) return {false, "signature is not 96 bytes"};
  if (ossl::ecdsa_verify_raw(ossl::Curve::P384, key, report.signed_data, report.signature)) {
    return {true, "ECDSA P-384/SHA-384 signature over " + std::to_string(report.signed_data.size()) +
                      " bytes verifies with the leaf key (" + cn_of(&leaf) + ")"};
  }
  return {false,
          "ECDSA P-384/SHA-384 signature does NOT verify with the leaf certificate's key (" + cn_of(&leaf) + ")"};
}

ChainResult verify_chain(const std::vector<X509Ptr>& chain, const std::vector<std::string>& extra_root_pems) {
  ChainResult res;
  if (chain.empty()) {
    res.detail = "empty certificate chain";
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
  std::vector<X509*> trusted;
  trusted.reserve(nvidia_roots.size() + extra_roots.size());
  for (auto& r : nvidia_roots) trusted.push_back(r.get());
  for (auto& r : extra_roots) trusted.push_back(r.get());
  // Time is checked separately (check_validity) so each failure is reported by exactly one check.
  ossl::ChainOptions opts;
  opts.strict = true;
  auto v = ossl::verify_cert_chain(chain, trusted, opts);
  if (!v.ok || v.path.empty()) {
    res.detail = "chain does not verify to the NVIDIA Device Identity root: " + v.reason + " at depth " +
                 std::to_string(v.depth) + (v.failed ? " (" + cn_of(v.failed.get()) + ")" : std::string());
    return res;
  }
  X509* top = v.path.back().get();
  bool is_nvidia = false;
  for (auto& r : nvidia_roots)
    if (X509_cmp(top, r.get()) == 0) is_nvidia = true;
  res.ok = true;
  res.anchored_in_extra_root = !is_nvidia;
  res.root_subject = cn_of(top);
  res.detail = std::to_string(v.path.size()) + "-certificate chain verifies: " + cn_of(chain[0].get()) + " → … → " +
               res.root_subject +
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
      return {false, "certificate #" + std::to_string(i) + " (" + cn_of(c) + ") is not yet valid at now=" +
                         std::to_string(now) + " (notBefore " + ossl::time_text(*nb) + ")"};
    }
    if (after < 0) {
      return {false, "certificate #" + std::to_string(i) + " (" + cn_of(c) +
                         ") expired before now=" + std::to_string(now) + " (notAfter " + ossl::time_text(*na) + ")"};
    }
  }
  return {true, "all " + std::to_string(chain.size()) + " certificates are valid at now=" + std::to_string(now)};
}

std::string subject_of(const x509_st& cert) { return ossl::subject_oneline(cert); }

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
  try {
    return pi::to_hex(pi::crypto::sha256(ossl::cert_to_der(cert)));
  } catch (const ossl::Error&) {
    return {};
  }
}

}  // namespace pi::verify::gpu
