#pragma once
// Certificate side of NVIDIA GPU evidence (OpenSSL 3): the device's PEM chain, the report signature by the
// chain's leaf key, the chain to NVIDIA's Device Identity root, and certificate validity at a given time.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/openssl.hpp"
#include "protocol/gpu_spdm.hpp"

namespace pi::verify::gpu {

using X509Ptr = pi::crypto::ossl::X509Ptr;

// Leaf first, as NVIDIA's tools emit it. NUL bytes (padding some deployments add) and text between the PEM
// blocks are ignored. Throws protocol::gpu::ParseError when there is no certificate or a block does not parse.
std::vector<X509Ptr> parse_pem_chain(std::string_view pem);

struct Result {
  bool ok = false;
  std::string detail;
};

// ECDSA P-384 / SHA-384 over report.signed_data with the leaf's public key; the 96-byte r‖s signature is
// converted to DER for OpenSSL. Fails (never throws) on a non-P-384 key or a bad signature.
Result verify_report_signature(const pi::protocol::gpu::SpdmReport& report, const x509_st& leaf);

struct ChainResult {
  bool ok = false;
  bool anchored_in_extra_root = false;  // true: trusted only because of an extra (test) root → simulated
  std::string detail;
  std::string root_subject;
};

// Verifies the chain's signatures up to one of the trusted roots: the bundled NVIDIA Device Identity CA plus
// `extra_root_pems`. Time is NOT checked here (see check_validity), so a chain failure always means a
// signature/issuer problem. The chain's own self-signed top is never trusted by itself.
ChainResult verify_chain(const std::vector<X509Ptr>& chain, const std::vector<std::string>& extra_root_pems);

// Every certificate in `chain` must have notBefore <= now <= notAfter.
Result check_validity(const std::vector<X509Ptr>& chain, std::int64_t now);

// One-line subject ("CN=GH100 A01 GSP FMC LF, O=NVIDIA Corporation, ...").
std::string subject_of(const x509_st& cert);
// Chip name-based arch from the subjects/issuers of the chain (e.g. "GH100 A01 GSP FMC LF" → HOPPER).
std::optional<std::string> arch_from_chain(const std::vector<X509Ptr>& chain);
// Lowercase hex SHA-256 of the certificate's DER (stable device identity for duplicate detection).
std::string fingerprint_sha256(const x509_st& cert);

}  // namespace pi::verify::gpu
