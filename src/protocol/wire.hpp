#pragma once
// JSON shapes that clients depend on (vllm-proxy compatible), built in one place.
#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/signing.hpp"

namespace pi::protocol {

// {"error":{"message","type","param","code"}} as the OpenAI API sends it.
std::string error_envelope(std::string_view message, std::string_view type,
                           std::optional<std::string_view> param = std::nullopt,
                           std::optional<std::string_view> code = std::nullopt);

// Body of GET /v1/signature/{id}?signing_algo=…: vllm-proxy's text/signature/signing_address/
// signing_algo plus request_hash/response_hash/ecdsa_signature/ed25519_signature and both
// signing addresses: SignatureResponse::make(r, id, algo).to_json() (protocol/report.hpp).
boost::json::object signature_response(const SignatureRecord& r, const SigningIdentity& id, SigningAlgo algo,
                                       std::string_view instance_id = {});

// Extracts the top-level "id" of a JSON response body without re-serializing it.
std::optional<std::string> response_id(std::string_view json_body);

}  // namespace pi::protocol
