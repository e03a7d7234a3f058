// A GPU's PEM certificate chain (base64-decoded "certificate" of GPU evidence, verify/gpu_cert.hpp): the PEM
// splitter and OpenSSL's X.509 parser, then everything the verifier reads from a parsed chain — subjects,
// architecture, fingerprints, the chain to NVIDIA's root, validity, and the recorded H100 report's signature
// checked with the chain's leaf key.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "crypto/bytes.hpp"
#include "fuzz_support.hpp"
#include "protocol/gpu_spdm.hpp"
#include "verify/gpu_cert.hpp"

namespace {

const pi::protocol::gpu::SpdmReport& report() {
  static const pi::protocol::gpu::SpdmReport r = [] {
    auto hex = pi::fuzz::read_fixture("nvidia/nvtrust_hopper_report.hex");
    while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r' || hex.back() == ' ')) hex.pop_back();
    return pi::protocol::gpu::parse_spdm_report(pi::from_hex(hex).value());
  }();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace vg = pi::verify::gpu;
  std::vector<vg::X509Ptr> chain;
  try {
    chain = vg::parse_pem_chain(pi::fuzz::as_text(data, size));
  } catch (const pi::protocol::gpu::ParseError&) {
    return 0;
  }
  if (chain.empty()) __builtin_trap();  // documented: no certificate is an error
  for (const auto& c : chain) {
    (void)vg::subject_of(*c);
    if (vg::fingerprint_sha256(*c).size() != 64) __builtin_trap();
  }
  (void)vg::arch_from_chain(chain);
  (void)vg::verify_chain(chain, {});
  (void)vg::check_validity(chain, 1756900000);
  (void)vg::verify_report_signature(report(), *chain.front());
  return 0;
}
