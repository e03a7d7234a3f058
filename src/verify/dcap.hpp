#pragma once
// Intel DCAP quote verification in C++ with OpenSSL (no Debian package does this):
//   PCK certificate chain to the bundled Intel SGX Root CA with CRLs, QE report signature and QE
//   identity, TCB info evaluation (TCB levels, TDX module identity, status, advisory ids), and the
//   attestation-key signature over the quote. Semantics follow Intel's QVL as implemented by
//   dcap-qvl (tests cross-check status and advisories against dcap-qvl 0.7.0 on the fixtures).
//
// Every step becomes one Check in the Hardware group; a step that cannot run because an earlier
// step it depends on failed is reported Skipped with the reason, so a bad quote fails at exactly
// the step that is wrong.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "crypto/bytes.hpp"
#include "verify/intel_root_ca.hpp"
#include "verify/report.hpp"
#include "verify/tdx_quote.hpp"

namespace pi::verify {

// dcap-qvl's QuoteCollateralV3 (the JSON in tests/fixtures/tdx/*collateral*.json):
// PEM chains and signed JSON as strings; CRLs and signatures as hex.
struct Collateral {
  std::string pck_crl_issuer_chain;
  Bytes root_ca_crl;  // DER
  Bytes pck_crl;      // DER
  std::string tcb_info_issuer_chain;
  std::string tcb_info;      // the exact signed JSON text
  Bytes tcb_info_signature;  // raw r ‖ s
  std::string qe_identity_issuer_chain;
  std::string qe_identity;
  Bytes qe_identity_signature;
  std::optional<std::string> pck_certificate_chain;  // optional: overrides the quote's chain
  // Not part of the collateral JSON (never read from it): a TEST root CA (DER) trusted besides Intel's,
  // set only by `verify --trust-simulated` (dev-tee's simulated PKI). A quote whose PCK chain is issued
  // under it is checked against it instead, and every resulting check is marked simulated.
  std::optional<Bytes> simulated_root_der;
};

// Throws std::runtime_error naming the missing / malformed field.
Collateral parse_collateral_json(std::string_view json);
std::string collateral_to_json(const Collateral& c);

// TCB status severity order as in Intel's QVL (higher is worse).
int tcb_status_severity(std::string_view status);

struct DcapResult {
  std::vector<Check> checks;   // Hardware group, ids "tdx.*"
  std::optional<Quote> quote;  // when it parsed
  bool verified = false;       // every cryptographic step passed (status not yet judged by policy)
  std::string tcb_status;      // merged platform + QE status, when evaluated
  std::vector<std::string> advisory_ids;
  std::string platform_tcb_status, qe_tcb_status;
  std::string fmspc;                    // hex, from the PCK certificate
  std::size_t trailing_zero_bytes = 0;  // zero padding after the signature data (accepted, covered by no signature)
  bool simulated = false;  // checked against Collateral::simulated_root_der (a TEST root): not a security proof
};

// `now` is Unix seconds; `root_ca_der` defaults to the bundled Intel root.
DcapResult verify_dcap(ByteView raw_quote, const Collateral& collateral, std::int64_t now,
                       ByteView root_ca_der = intel_sgx_root_ca_der());

// Quote only (no collateral): parse + the attestation-key signature over the quote.
// Used offline without collateral so that a broken quote still FAILs.
DcapResult verify_quote_structure(ByteView raw_quote);

// What Intel's PCS needs to serve collateral for a quote: FMSPC and CA type ("processor" or
// "platform"), read from the PCK certificate inside the quote. Throws on failure.
struct PckInfo {
  std::string fmspc_hex;
  std::string ca;  // "processor" | "platform"
};
PckInfo pck_info_from_quote(const Quote& q);

}  // namespace pi::verify
