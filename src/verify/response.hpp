#pragma once
// Verification of one signed exchange (`verify response`): the exact request and response bytes
// hash to what the proxy signed, the signature verifies, and the signing key is the one a freshly
// verified attestation binds.
#include <optional>
#include <string>

#include <boost/json.hpp>

#include "verify/attestation.hpp"
#include "verify/report.hpp"

namespace pi::verify {

// `signature` is the body of GET /v1/signature/{id}. `attestation` is the outcome of verifying a
// fresh attestation (nullopt: the key-binding check fails). Adds Group::Response checks
// "response.*". Never throws on bad input.
void check_response(std::string_view request_bytes, std::string_view response_bytes,
                    const boost::json::value& signature, std::string_view signing_algo,
                    const std::optional<AttestationOutcome>& attestation, Report& report);

}  // namespace pi::verify
