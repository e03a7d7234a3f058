#pragma once
// SIMULATED DCAP collateral for dev-tee's test-PKI mode (issue 5): TCB info (v3, TDX) with one
// UpToDate level matching the simulated PCK certificate and TDX module, a TD_QE identity matching the
// simulated quoting enclave, both signed with the TEST TCB signing key exactly as Intel signs them
// (ECDSA-P256-SHA256 over the exact JSON text, raw r‖s), and the test CRLs. Output is the collateral
// JSON the verifier's --collateral loads (dcap-qvl's QuoteCollateralV3 shape). Trusted by the
// verifier only with --trust-simulated.
#include <cstdint>
#include <string>

#include "devtee/test_pki.hpp"

namespace pi::devtee {

struct SimCollateral {
  std::string tcb_info;     // exact signed JSON text
  std::string qe_identity;  // exact signed JSON text
  std::array<std::uint8_t, 64> tcb_info_signature{}, qe_identity_signature{};
};

// Valid from `now` − 1 day to `now` + 30 days (as Intel's). Throws std::runtime_error on signing errors.
SimCollateral make_sim_collateral(const TestPki& pki, std::int64_t now);

// The collateral JSON document (fields: pck_crl_issuer_chain, root_ca_crl, pck_crl, tcb_info_issuer_chain,
// tcb_info, tcb_info_signature, qe_identity_issuer_chain, qe_identity, qe_identity_signature) plus
// "simulated": true. No pck_certificate_chain: the verifier takes the PCK chain from the quote itself.
std::string sim_collateral_json(const TestPki& pki, std::int64_t now);

// RFC 3339 UTC ("2026-01-02T03:04:05Z").
std::string rfc3339(std::int64_t unix_seconds);

}  // namespace pi::devtee
