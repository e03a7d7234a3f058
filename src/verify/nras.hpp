#pragma once
// NVIDIA Remote Attestation Service (NRAS v4) answers: EAT JWTs signed ES384.
//
// An answer is `[["JWT", <overall token>], {"GPU-0": <detached token>, ...}]`. The overall token's claims carry
// `x-nvidia-overall-att-result`, `eat_nonce` and `submods: {"GPU-0": ["DIGEST", ["SHA-256", hex]]}` where the hex
// is SHA-256 of the detached token's compact text. Tokens are verified against NVIDIA's JWKS (`kid` lookup);
// offline the JWKS comes from a file.
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json.hpp>

#include "crypto/bytes.hpp"
#include "verify/report.hpp"

struct evp_pkey_st;

namespace pi::verify::nras {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Jwt {
  std::string compact;        // the token as received
  std::string signing_input;  // base64url(header) "." base64url(payload)
  boost::json::object header;
  boost::json::object claims;
  pi::Bytes signature;  // raw JWS signature (ES384: 96 bytes r‖s)
  std::string alg, kid;
};

// Throws Error on anything that is not three base64url parts with JSON-object header and payload.
Jwt parse_jwt(std::string_view compact);

class Jwks {
 public:
  // {"keys":[{"kty":"EC","crv":"P-384","kid":..,"x":..,"y":..}|{..,"x5c":[base64 DER, ...]}]}; throws Error.
  static Jwks parse(std::string_view json);
  static Jwks load(const std::string& path);  // throws Error (also when the file cannot be read)
  const evp_pkey_st* find(std::string_view kid) const;
  std::size_t size() const { return keys_.size(); }

 private:
  std::vector<std::pair<std::string, std::shared_ptr<evp_pkey_st>>> keys_;
};

enum class SigStatus { Ok, NoJwks, KeyNotInJwks, UnsupportedAlg, BadSignature };
struct SigResult {
  SigStatus status;
  std::string detail;
};
// ES384 only (what NRAS uses); `jwks` may be null (then NoJwks).
SigResult verify_jwt(const Jwt& token, const Jwks* jwks);

struct Answer {
  Jwt overall;
  std::vector<std::pair<std::string, Jwt>> detached;  // ("GPU-0", token), ... in the answer's order
};
// Throws Error with what is wrong with the shape.
Answer parse_answer(const boost::json::value& v);

struct Outcome {
  bool ok;
  std::string detail;
};
Outcome check_eat_nonce(const Jwt& token, std::string_view expected_nonce_hex);
Outcome check_overall_result(const Jwt& overall);
// Every submod is ["DIGEST", ["SHA-256"|"SHA256", hex]] matching SHA-256 of its detached token, and the submod
// names equal the detached token names.
Outcome check_submods(const Answer& answer);

// Adds the Group::Gpu checks "gpu.nras.*" for a parsed answer.
void check_answer(const Answer& answer, const Jwks* jwks, std::string_view jwks_origin,
                  std::string_view expected_nonce_hex, std::int64_t now, Report& report);

// --- network (Boost.Beast + OpenSSL TLS, system trust store, host name verified) ---
struct HttpResult {
  bool ok = false;  // transport succeeded (any HTTP status)
  int status = 0;
  std::string body;
  std::string error;  // transport error when !ok
};
// `extra_ca_pem`: additional CA(s) trusted for this connection besides the system store (tests, private mirrors).
HttpResult https_request(std::string_view method, std::string_view url, std::string_view body, int timeout_s = 30,
                         std::string_view extra_ca_pem = {});

// The NRAS v4 request body for a list of evidence items ({"evidence","certificate"} as base64).
boost::json::value build_request(std::string_view nonce_hex, std::string_view arch,
                                 const std::vector<std::pair<std::string, std::string>>& evidence_and_certificate);

}  // namespace pi::verify::nras
