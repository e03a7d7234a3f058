// NVIDIA SPDM attestation report bytes (GET_MEASUREMENTS request ‖ response, protocol/gpu_spdm.hpp): the parser,
// every decoder of its opaque fields, and the verifier's signature check against the recorded H100 leaf
// certificate (which only reads the parsed report, never throws).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "crypto/bytes.hpp"
#include "fuzz_support.hpp"
#include "protocol/gpu_spdm.hpp"
#include "verify/gpu_cert.hpp"

namespace {

const std::vector<pi::verify::gpu::X509Ptr>& chain() {
  static const auto c = pi::verify::gpu::parse_pem_chain(pi::fuzz::read_fixture("nvidia/nvtrust_hopper_certchain.pem"));
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace gpu = pi::protocol::gpu;
  gpu::SpdmReport r;
  try {
    r = gpu::parse_spdm_report(pi::ByteView(data, size));
  } catch (const gpu::ParseError&) {
    return 0;
  }
  if (r.request_nonce.size() != gpu::kSpdmNonceSize || r.signature.size() != gpu::kP384SignatureSize ||
      r.signed_data.size() + r.signature.size() != size)
    __builtin_trap();
  (void)gpu::driver_version(r);
  (void)gpu::vbios_version(r);
  if (auto id = gpu::gpu_arch_id(r)) (void)gpu::arch_from_id(*id);
  if (auto f = gpu::feature_flag(r)) (void)gpu::feature_flag_name(*f);
  (void)gpu::protected_pcie(r);
  for (const auto& f : r.opaque) {
    (void)gpu::opaque_string(r, static_cast<gpu::OpaqueType>(f.type));
    if (r.find(static_cast<gpu::OpaqueType>(f.type)) == nullptr) __builtin_trap();
  }
  if (auto s = gpu::opaque_string(r, gpu::OpaqueType::ChipSku)) (void)gpu::arch_from_chip_name(*s);
  (void)pi::verify::gpu::verify_report_signature(r, *chain().front());
  return 0;
}
