// An attestation report as `verify` receives it from GET /v1/attestation/report (any server's: ours, vllm-proxy,
// NEAR, dstack): JSON text through the typed reader (protocol/report.hpp) and the whole verifier
// (verify/attestation.hpp: quote + DCAP against the recorded collateral, binding, event-log replay, GPU evidence
// offline), once without and once with an expected nonce (the replay and binding paths differ), then rendered.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "protocol/report.hpp"
#include "verify/attestation.hpp"
#include "verify/dcap.hpp"
#include "verify/render.hpp"

namespace {

pi::verify::AttestationOptions options(bool with_nonce) {
  pi::verify::AttestationOptions o;
  o.now = pi::fuzz::kCollateralNow;
  o.collateral = pi::verify::parse_collateral_json(pi::fuzz::read_fixture("tdx/collateral_fmspc20a06f_2025-09.json"));
  o.gpu.now = pi::fuzz::kCollateralNow;  // offline: no NRAS, no network
  if (with_nonce) {
    o.expected_nonce_hex = std::string(64, '0');
    o.expected_signing_algo = "ecdsa";
  }
  return o;
}

void verify(const boost::json::value& doc, const pi::verify::AttestationOptions& opts) {
  // Documented never to throw on bad input: any exception escaping is a finding.
  auto out = pi::verify::verify_attestation(doc, opts);
  (void)pi::verify::exit_code(out.report);
  (void)pi::verify::render_text(out.report, "attestation");
  (void)boost::json::serialize(pi::verify::render_json(out.report, "attestation"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto plain = options(false);
  static const auto nonced = options(true);
  boost::system::error_code ec;
  const auto doc = boost::json::parse(pi::fuzz::as_text(data, size), ec);
  if (ec) return 0;
  try {
    const auto r = pi::protocol::AttestationReport::parse(doc);
    (void)boost::json::serialize(r.to_json());
  } catch (const pi::protocol::ShapeError&) {
  }
  verify(doc, plain);
  verify(doc, nonced);
  return 0;
}
