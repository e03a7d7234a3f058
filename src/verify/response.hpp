#pragma once
// Verification of one signed exchange (`verify response`): the exact request and response bytes
// hash to what the proxy signed, the signature verifies, and the signing key is the one a freshly
// verified attestation binds.
#include <optional>
#include <string>

#include <boost/json.hpp>

#include "crypto/bytes.hpp"
#include "verify/attestation.hpp"
#include "verify/report.hpp"

namespace pi::verify {

struct ResponseOptions {
  // ECDSA signatures must be exactly what docs/spec/hashing-and-signing.md §4 produces: low s (s <= n/2) and
  // v in {27, 28}. true also accepts v in {0, 1} (some signers emit the bare recovery id). High s never passes.
  bool accept_ecdsa_v01 = false;
};

// `signature` is the body of GET /v1/signature/{id}. `attestation` is the outcome of verifying a
// fresh attestation (nullopt: the key-binding check fails). Adds Group::Response checks
// "response.*". Never throws on bad input.
void check_response(std::string_view request_bytes, std::string_view response_bytes,
                    const boost::json::value& signature, std::string_view signing_algo,
                    const std::optional<AttestationOutcome>& attestation, Report& report);
void check_response(std::string_view request_bytes, std::string_view response_bytes,
                    const boost::json::value& signature, std::string_view signing_algo,
                    const std::optional<AttestationOutcome>& attestation, const ResponseOptions& options,
                    Report& report);

// Empty when the 65-byte r || s || v signature has the form the spec allows; else why not (high s, v byte).
std::string ecdsa_signature_form_problem(ByteView sig65, const ResponseOptions& options);

}  // namespace pi::verify
