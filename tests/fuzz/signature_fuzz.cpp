// A signature record as `verify response` receives it from GET /v1/signature/{id}: JSON text through the typed
// reader (protocol/report.hpp SignatureResponse) and the response checks (verify/response.hpp) for both
// algorithms, against fixed request/response bytes and an attestation outcome that binds a fixed key, so that
// hash, signature and key-binding paths all run.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "fuzz_support.hpp"
#include "protocol/report.hpp"
#include "protocol/signing.hpp"
#include "verify/attestation.hpp"
#include "verify/response.hpp"

namespace {

// The bytes the seed corpus's records were signed over (tests/fuzz/make_corpus.py).
constexpr std::string_view kRequest = R"({"model":"m","messages":[{"role":"user","content":"hi"}]})";
constexpr std::string_view kResponse = R"({"id":"chatcmpl-fuzz","object":"chat.completion","choices":[]})";

std::optional<pi::verify::AttestationOutcome> outcome(const char* algo, const char* address) {
  pi::verify::AttestationOutcome o;
  o.signing_algo = algo;
  o.signing_address = address;
  o.bound = true;
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The seed records' keys (make_corpus.py): secret 0x42 × 32 (ecdsa), seed 0x24 × 32 (ed25519).
  static const auto ecdsa_att = outcome("ecdsa", "0x17c5185167401eD00cF5F5b2fc97D9BBfDb7D025");
  static const auto ed_att = outcome("ed25519", "58936604abda112bc94933569c82f8d0cc0ddf92a3f8329f2f448f7f484a594c");
  boost::system::error_code ec;
  const auto doc = boost::json::parse(pi::fuzz::as_text(data, size), ec);
  if (ec) return 0;
  try {
    const auto s = pi::protocol::SignatureResponse::parse(doc);
    (void)s.signature_for(pi::protocol::SigningAlgo::Ecdsa);
    (void)s.signature_for(pi::protocol::SigningAlgo::Ed25519);
    (void)s.signing_address_for(pi::protocol::SigningAlgo::Ecdsa);
    (void)s.signing_address_for(pi::protocol::SigningAlgo::Ed25519);
    (void)s.inconsistency();
    (void)boost::json::serialize(s.to_json());
  } catch (const pi::protocol::ShapeError&) {
  }
  // Documented never to throw on bad input.
  for (const auto* att : {&ecdsa_att, &ed_att}) {
    pi::verify::Report rep;
    pi::verify::check_response(kRequest, kResponse, doc, (*att)->signing_algo, *att, rep);
    pi::verify::check_response(kRequest, kResponse, doc, (*att)->signing_algo, std::nullopt, rep);
  }
  return 0;
}
