#pragma once
// SIMULATED Intel-like PKI for dev-tee's test-PKI mode (issue 5). NOT Intel's: every certificate
// chains to a self-signed TEST root generated on first start, so a verifier trusts it only when told
// to (`verify --trust-simulated DIR`). The shapes follow Intel's DCAP PKI so that the verifier's real
// DCAP code path (src/verify/dcap.cpp) checks quotes made with it:
//   root CA (P-256, self-signed) ─┬─ PCK platform CA ── PCK leaf (Intel SGX extension: PPID, TCB components
//                                 │                    1..16 + PCESVN + CPUSVN, PCE id, FMSPC, SGX type,
//                                 │                    platform instance id, configuration)
//                                 └─ TCB signing cert (signs TCB info and QE identity JSON)
// Subject common names are Intel's ("Intel SGX Root CA", "Intel SGX PCK Platform CA", "Intel SGX PCK
// Certificate", "Intel SGX TCB Signing"), organisation kSimPkiOrganization; extensions as on Intel's certificates.
//   root CRL (by the root), PCK CRL (by the PCK CA), both empty.
// Plus the quoting enclave's attestation key (P-256, not a certificate).
// Persisted under <state>/pki/ as PEM (keys 0600) and DER (CRLs).
#include <array>
#include <cstdint>
#include <string>

#include "crypto/bytes.hpp"

namespace pi::devtee {

// Platform values written into the PCK certificate and matched by the generated TCB info.
inline constexpr std::array<std::uint8_t, 6> kSimFmspc = {0x50, 0x80, 0x6f, 0x00, 0x00, 0x00};
inline constexpr std::array<std::uint8_t, 2> kSimPceId = {0x00, 0x00};
inline constexpr std::array<std::uint8_t, 16> kSimCpuSvn = {3, 3, 2, 2, 4, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0};
inline constexpr std::uint16_t kSimPceSvn = 13;
inline constexpr std::array<std::uint8_t, 16> kSimPpid = {0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
                                                          0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a};
// Every certificate's subject: Intel's common name (e.g. "Intel SGX Root CA", which verifiers such as go-tdx-guest
// require) with this organisation and country XX, so no reader mistakes it for Intel's.
inline constexpr const char* kSimPkiOrganization = "SIMULATED dev-tee test PKI (not Intel)";
// CRL distribution points name this base, which never resolves (.invalid, RFC 6761); the CRLs themselves are in
// the generated collateral.
inline constexpr const char* kSimCrlBaseUrl = "https://dev-tee-simulated-pki.invalid";

struct TestPki {
  std::string root_cert_pem, pck_ca_cert_pem, pck_cert_pem, tcb_cert_pem;
  std::string root_key_pem, pck_ca_key_pem, pck_key_pem, tcb_key_pem, attestation_key_pem;
  Bytes root_crl_der, pck_crl_der;

  Bytes root_cert_der() const;
  std::string pck_chain_pem() const { return pck_cert_pem + pck_ca_cert_pem + root_cert_pem; }
  std::string pck_crl_issuer_chain_pem() const { return pck_ca_cert_pem + root_cert_pem; }
  std::string tcb_chain_pem() const { return tcb_cert_pem + root_cert_pem; }
};

// Fresh keys and certificates valid from `now` − 1 day to `now` + 10 years (CRLs likewise).
// Throws std::runtime_error on an OpenSSL failure.
TestPki generate_test_pki(std::int64_t now);

// Reads <state_dir>/pki/*, or generates the PKI and writes it there (dir 0700, keys 0600) when
// <state_dir>/pki/root.cert.pem does not exist. Throws std::runtime_error on I/O errors or a
// partial / corrupt directory (never silently regenerates over existing files).
TestPki load_or_create_test_pki(const std::string& state_dir, std::int64_t now);

// ECDSA-P256-SHA256 over `msg` with a PEM private key, as raw r ‖ s (32 + 32 bytes, big-endian).
std::array<std::uint8_t, 64> sign_p256_raw(const std::string& key_pem, ByteView msg);
// The uncompressed public point x ‖ y of a PEM P-256 private key.
std::array<std::uint8_t, 64> p256_public_raw(const std::string& key_pem);

}  // namespace pi::devtee
