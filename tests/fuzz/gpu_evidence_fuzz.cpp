// GPU evidence JSON as attestation reports carry it (protocol/report.hpp NvidiaPayload: vllm-proxy's
// nvidia_payload text or object, or a bare array of evidence items; verify/gpu.hpp): the typed reader and the
// verifier's offline GPU checks (base64, PEM chain, SPDM report, nonce binding, signature, chain, validity).
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "protocol/report.hpp"
#include "verify/gpu.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = pi::fuzz::as_text(data, size);
  boost::system::error_code ec;
  auto doc = boost::json::parse(text, ec);
  if (ec) doc = boost::json::string(text);  // nvidia_payload is a JSON string in vllm-proxy's reports
  try {
    const auto p = pi::protocol::NvidiaPayload::parse(doc);
    (void)p.to_text();
  } catch (const pi::protocol::ShapeError&) {
  }
  pi::verify::GpuOptions opts;
  opts.now = 1756900000;
  pi::verify::Report rep;
  // Never throws on bad input: malformed evidence becomes a failed check. The nonce is the recorded nvtrust
  // report's (tests/unit/test_support.hpp kNvtrustNonce), so that a well-formed item reaches the later checks.
  pi::verify::check_gpu_evidence(doc, "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb", opts, rep);
  return 0;
}
